import assert from "node:assert/strict";
import { allRuns } from "../_all_runs.ts";
import {
  type AuditSink,
  type Database,
  type PrepareOptions,
  type Run,
  RUN_STATES,
  type RunEvent,
  type RunState,
  RunStore,
  type Statement,
  transition,
} from "../../control_plane/mod.ts";
import { isPlmError } from "../../shared/mod.ts";
import { ACTOR, ALICE, setUp, task, TRACEPARENT } from "./_runs_fixture.ts";

const EVENTS: readonly RunEvent[] = [
  { type: "request_approval", at: 1, approvalId: "ap-1" },
  { type: "approve", at: 1 },
  { type: "reject", at: 1, reason: "policy" },
  { type: "expire", at: 1, reason: "late" },
  { type: "start", at: 1, agentId: "a" },
  { type: "succeed", at: 1, result: 1 },
  { type: "suggest", at: 1, result: 1 },
  { type: "fail", at: 1, error: { code: "ERR_AGENT_FAILED", message: "x" }, retry: true },
  { type: "fail", at: 1, error: { code: "ERR_AGENT_FAILED", message: "x" }, retry: false },
  { type: "escalate", at: 1, reason: "exhausted" },
  { type: "cancel", at: 1, reason: "user" },
  { type: "lease_expired", at: 1 },
];

// Written out by hand, independently of RUN_TRANSITIONS: state + event label -> next state.
const LEGAL: Record<string, string> = {
  "queued request_approval": "awaiting_approval",
  "queued start": "running",
  "queued reject": "rejected",
  "queued escalate": "escalated",
  "queued fail+retry": "failed",
  "queued fail": "failed",
  "queued cancel": "cancelled",
  "awaiting_approval approve": "queued",
  "awaiting_approval reject": "rejected",
  "awaiting_approval expire": "expired",
  "awaiting_approval escalate": "escalated",
  "awaiting_approval cancel": "cancelled",
  "running succeed": "succeeded",
  "running suggest": "suggested",
  "running fail+retry": "retrying",
  "running fail": "failed",
  "running escalate": "escalated",
  "running cancel": "cancelled",
  "running lease_expired": "retrying",
  "retrying start": "running",
  "retrying escalate": "escalated",
  "retrying fail+retry": "failed",
  "retrying fail": "failed",
  "retrying cancel": "cancelled",
  "escalated start": "running",
  "escalated request_approval": "awaiting_approval",
  "escalated fail+retry": "failed",
  "escalated fail": "failed",
  "escalated cancel": "cancelled",
};

function label(e: RunEvent): string {
  return e.type === "fail" && e.retry ? "fail+retry" : e.type;
}

function runIn(state: Run["state"]): Run {
  return {
    id: "r",
    state,
    version: 3,
    task: task(),
    requester: { subject: "alice", kind: "human" },
    idempotencyKey: null,
    traceparent: TRACEPARENT,
    tracestate: "",
    attempt: 1,
    escalations: 0,
    costUnits: 0,
    agentId: null,
    approvalId: null,
    result: null,
    error: null,
    createdAt: 0,
    updatedAt: 0,
    lease: null,
  };
}

Deno.test("transition() follows the lifecycle table for every state and event", async (t) => {
  for (const state of RUN_STATES) {
    await t.step(state, () => {
      for (const event of EVENTS) {
        const expected = LEGAL[`${state} ${label(event)}`];
        if (expected === undefined) {
          assert.throws(
            () => transition(runIn(state), event),
            (err: unknown) => isPlmError(err, "ERR_RUN_ILLEGAL_TRANSITION"),
            `${state} + ${label(event)} must be illegal`,
          );
        } else {
          const next = transition(runIn(state), event);
          assert.equal(next.state, expected, `${state} + ${label(event)}`);
          assert.equal(next.version, 3, "the pure machine leaves the version to the store");
        }
      }
    });
  }
});

Deno.test("transition() keeps attempts, escalations, costs and reasons", () => {
  const started = transition(runIn("queued"), { type: "start", at: 5, agentId: "a-1" });
  assert.equal(started.attempt, 2);
  assert.equal(started.agentId, "a-1");
  assert.equal(started.updatedAt, 5);
  const failed = transition(started, {
    type: "fail",
    at: 6,
    error: { code: "ERR_TIMEOUT", message: "slow" },
    retry: true,
    costUnits: 2,
  });
  assert.deepEqual(failed.error, { code: "ERR_TIMEOUT", message: "slow" });
  assert.equal(failed.costUnits, 2);
  const escalated = transition(failed, { type: "escalate", at: 7, reason: "retries exhausted" });
  assert.equal(escalated.escalations, 1);
  const rejected = transition(runIn("awaiting_approval"), { type: "reject", at: 8, reason: "no" });
  assert.deepEqual(rejected.error, { code: "ERR_FORBIDDEN", message: "no" });
  const expired = transition(runIn("awaiting_approval"), { type: "expire", at: 8, reason: "late" });
  assert.equal(expired.error?.code, "ERR_APPROVAL_EXPIRED");
});

Deno.test("RunStore.create() gives the same run for the same idempotency key", () => {
  const { db, runs, audit } = setUp();
  const first = runs.create({
    task: task(),
    requester: ALICE,
    idempotencyKey: "k",
    traceparent: TRACEPARENT,
  });
  const again = runs.create({
    task: task(),
    requester: ALICE,
    idempotencyKey: "k",
    traceparent: TRACEPARENT,
  });
  assert.equal(first.created, true);
  assert.equal(again.created, false);
  assert.equal(again.run.id, first.run.id);
  assert.equal(allRuns(runs).length, 1);
  assert.throws(
    () =>
      runs.create({
        task: task({ resource: "bom:43" }),
        requester: ALICE,
        idempotencyKey: "k",
        traceparent: TRACEPARENT,
      }),
    (err: unknown) => isPlmError(err, "ERR_RUN_IDEMPOTENCY_CONFLICT"),
  );
  const created = audit.list({ actionPrefix: "run.created" });
  assert.equal(created.length, 1);
  assert.equal(created[0]?.actor.subject, "alice");
  assert.equal(created[0]?.traceId, "0af7651916cd43dd8448eb211c80319c");
  db.close();
});

Deno.test("RunStore.create() refuses an invalid trace with ERR_INVALID_ARGUMENT and writes nothing", async (t) => {
  const { db, runs, audit } = setUp();
  const bad = [
    ["an upper-case traceparent", { traceparent: TRACEPARENT.toUpperCase() }],
    ["a tracestate with a repeated key", { traceparent: TRACEPARENT, tracestate: "a=1,a=2" }],
    ["a tracestate with a bad key", { traceparent: TRACEPARENT, tracestate: "A=1" }],
    ["a traceparent that is a number", { traceparent: 7 }],
    ["a traceparent that is an object", { traceparent: { length: 55 } }],
    ["no traceparent", {}],
    ["a tracestate that is a number", { traceparent: TRACEPARENT, tracestate: 7 }],
    ["a 1 MB traceparent", { traceparent: `01-${"a".repeat(1_000_000)}` }],
    ["a traceparent with U+0000", { traceparent: `${TRACEPARENT.replace(/^00/, "01")}-\0` }],
    ["a 1 MB tracestate", { traceparent: TRACEPARENT, tracestate: `a=${"b".repeat(1_000_000)}` }],
  ] as const;
  for (const [name, trace] of bad) {
    await t.step(name, () => {
      assert.throws(
        () =>
          runs.create({ task: task(), requester: ALICE, idempotencyKey: name, ...trace } as never),
        (err: unknown) =>
          isPlmError(err, "ERR_INVALID_ARGUMENT") && /trace(parent|state)/.test(err.message) &&
          err.message.length < 200, // the bad value is not echoed
      );
    });
  }
  assert.equal(allRuns(runs).length, 0);
  assert.equal(audit.list({ actionPrefix: "run." }).length, 0);
  assert.throws(
    () => runs.page({ states: ["paused" as never] }),
    (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
  );
  db.close();
});

Deno.test("RunStore.find(), get() and apply() refuse an id that is not a text", async (t) => {
  const { db, runs } = setUp();
  for (const id of [7, { id: "r" }, "r\0", "x".repeat(1_025)]) {
    await t.step(JSON.stringify(id).slice(0, 20), () => {
      const invalid = (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT");
      assert.throws(() => runs.find(id as string), invalid);
      assert.throws(() => runs.get(id as string), invalid);
      assert.throws(() => runs.apply(id as string, { type: "approve" }, { actor: ACTOR }), invalid);
    });
  }
  db.close();
});

Deno.test("RunStore.apply() refuses a result JSON cannot carry instead of converting it", async (t) => {
  const { db, runs, audit } = setUp();
  const cases: [string, unknown][] = [
    ["NaN", { score: NaN }],
    ["Infinity", [Infinity]],
    ["a Date", { at: new Date(0) }],
    ["a BigInt", 1n],
    ["a Map", new Map()],
    ["a function", { f: () => 1 }],
    ["undefined", undefined],
  ];
  for (const type of ["succeed", "suggest"] as const) {
    for (const [name, result] of cases) {
      await t.step(`${type}: ${name}`, () => {
        const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
        runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR });
        const before = audit.head();
        assert.throws(
          () => runs.apply(run.id, { type, result: result as never }, { actor: ACTOR }),
          (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /event\.result/.test(err.message),
        );
        assert.equal(runs.get(run.id).state, "running");
        assert.deepEqual(audit.head(), before);
      });
    }
  }
  await t.step("a result is stored as given", () => {
    const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
    runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR });
    const result = { b: [1, "\u2028", null], a: { "é": -0.5 } };
    runs.apply(run.id, { type: "succeed", result }, { actor: ACTOR });
    assert.deepEqual(runs.get(run.id).result, result);
  });
  db.close();
});

Deno.test("RunStore.apply() refuses a fail event whose error is not bounded text", async (t) => {
  const { db, runs } = setUp();
  const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR });
  const cases: [string, unknown, RegExp][] = [
    ["no error", undefined, /event\.error\.code/],
    ["a numeric code", { code: 7, message: "x" }, /event\.error\.code/],
    ["a message with U+0000", { code: "ERR_X", message: "a\0b" }, /event\.error\.message/],
    ["a 1 MB message", { code: "ERR_X", message: "m".repeat(1_000_000) }, /event\.error\.message/],
  ];
  for (const [name, error, field] of cases) {
    await t.step(name, () => {
      assert.throws(
        () =>
          runs.apply(run.id, { type: "fail", retry: false, error: error as never }, {
            actor: ACTOR,
          }),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message),
      );
    });
  }
  assert.equal(runs.get(run.id).state, "running");
  db.close();
});

Deno.test("RunStore.claim() and heartbeat() refuse a bad ttlMs with ERR_INVALID_ARGUMENT", async (t) => {
  const { db, runs } = setUp();
  const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  for (const ttlMs of [0, -1, 1.5, NaN, Infinity, "1000"]) {
    await t.step(String(ttlMs), () => {
      const invalid = (err: unknown) =>
        isPlmError(err, "ERR_INVALID_ARGUMENT") && /ttlMs/.test(err.message);
      assert.throws(() => runs.claim(run.id, "w1", ttlMs as number, { actor: ACTOR }), invalid);
      assert.throws(() => runs.heartbeat(run.id, "w1", ttlMs as number), invalid);
    });
  }
  assert.equal(runs.get(run.id).lease, null);
  db.close();
});

Deno.test("RunStore.apply() refuses a stale version", () => {
  const { db, runs } = setUp();
  const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, expectedVersion: 1 });
  assert.throws(
    () => runs.apply(run.id, { type: "cancel", reason: "x" }, { actor: ACTOR, expectedVersion: 1 }),
    (err: unknown) => isPlmError(err, "ERR_RUN_VERSION_CONFLICT"),
  );
  assert.equal(runs.get(run.id).state, "running");
  assert.equal(runs.get(run.id).version, 2);
  db.close();
});

Deno.test("RunStore.apply() fails closed without an actor", () => {
  const { db, runs } = setUp();
  const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  assert.throws(
    () => runs.apply(run.id, { type: "start", agentId: "a" }),
    (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
  );
  assert.equal(runs.get(run.id).state, "queued");
  db.close();
});

Deno.test("RunStore leases: one owner at a time, expiry and reclaim", () => {
  const { db, runs, clock, audit } = setUp();
  const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  runs.claim(run.id, "w1", 1_000, { actor: ACTOR });
  assert.throws(
    () => runs.claim(run.id, "w2", 1_000, { actor: ACTOR }),
    (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_HELD"),
  );
  runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, owner: "w1" });
  clock.advance(500);
  runs.heartbeat(run.id, "w1", 1_000);
  clock.advance(900);
  assert.deepEqual(runs.reclaimExpired(undefined, { actor: ACTOR }), [], "the heartbeat kept it");
  clock.advance(200);
  const [reclaimed, ...more] = runs.reclaimExpired(undefined, { actor: ACTOR });
  assert.equal(more.length, 0);
  assert.equal(reclaimed?.state, "retrying");
  assert.equal(reclaimed?.lease, null);
  // The old owner is fenced off: it cannot finish or heartbeat the run.
  assert.throws(
    () => runs.apply(run.id, { type: "succeed", result: 1 }, { actor: ACTOR, owner: "w1" }),
    (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_LOST"),
  );
  assert.throws(
    () => runs.heartbeat(run.id, "w1", 1_000),
    (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_LOST"),
  );
  runs.claim(run.id, "w2", 1_000, { actor: ACTOR });
  runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, owner: "w2" });
  const done = runs.apply(run.id, { type: "succeed", result: 1 }, { actor: ACTOR, owner: "w2" });
  assert.equal(done.attempt, 2);
  assert.equal(done.lease, null, "a terminal state releases the lease");
  assert.throws(
    () => runs.claim(run.id, "w3", 1_000, { actor: ACTOR }),
    (err: unknown) => isPlmError(err, "ERR_RUN_ILLEGAL_TRANSITION"),
  );
  const actions = audit.list({ runId: run.id }).map((r) => `${r.action}:${r.outcome}`);
  assert.deepEqual(actions, [
    "run.created:queued",
    "run.lease.claimed:claimed",
    "run.transition:running",
    "run.transition:retrying",
    "run.lease.reclaimed:retrying",
    "run.lease.claimed:claimed",
    "run.transition:running",
    "run.transition:succeeded",
  ]);
  assert.equal(audit.verify().ok, true);
  db.close();
});

Deno.test("RunStore keeps state and audit atomic", () => {
  const { db, runs, clock, audit } = setUp();
  const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  const failing: AuditSink = {
    append() {
      throw new Error("disk full");
    },
  };
  const broken = new RunStore(db, { audit: failing, clock });
  assert.throws(
    () => broken.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR }),
    /disk full/,
  );
  assert.equal(runs.get(run.id).state, "queued", "the state change rolled back with the audit");
  assert.equal(runs.get(run.id).version, 1);
  assert.throws(
    () => broken.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }),
    /disk full/,
  );
  assert.equal(allRuns(runs).length, 1, "no half-created run");
  // And the other way round: a transition that fails leaves no audit record.
  const before = audit.head().seq;
  assert.throws(() => runs.apply(run.id, { type: "succeed", result: 1 }, { actor: ACTOR }));
  assert.equal(audit.head().seq, before);
  db.close();
});

Deno.test("RunStore.page() filters by state, newest first", () => {
  const { db, runs } = setUp();
  const a = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }).run;
  const b = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }).run;
  const c = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }).run;
  runs.apply(b.id, { type: "cancel", reason: "x" }, { actor: ACTOR });
  const ids = (options: Parameters<typeof runs.page>[0]) =>
    runs.page(options).items.map((r) => r.id);
  assert.deepEqual(ids({ states: ["queued"] }), [c.id, a.id]);
  assert.deepEqual(ids({ states: ["queued", "queued"], limit: 1 }), [c.id]);
  assert.deepEqual(ids({ states: ["cancelled"] }), [b.id]);
  assert.throws(() => runs.get("nope"), (err: unknown) => isPlmError(err, "ERR_RUN_NOT_FOUND"));
  db.close();
});

Deno.test("RunStore.claim() takes over an expired lease as a reclaim, never leaving a run running", () => {
  const { db, runs, clock, audit } = setUp();
  const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  runs.claim(run.id, "w1", 1_000, { actor: ACTOR });
  runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, owner: "w1" });
  clock.advance(1_000);
  const taken = runs.claim(run.id, "w2", 1_000, { actor: ACTOR });
  assert.equal(taken.state, "retrying");
  assert.equal(taken.lease?.owner, "w2");
  const tail = audit.list({ runId: run.id }).slice(-3).map((r) => `${r.action}:${r.outcome}`);
  assert.deepEqual(tail, [
    "run.transition:retrying",
    "run.lease.reclaimed:retrying",
    "run.lease.claimed:claimed",
  ]);
  runs.release(run.id, "w2");
  assert.equal(audit.list({ runId: run.id }).at(-1)?.action, "run.lease.released");
  db.close();
});

/** Invalid list limits: -1 returned every row and NaN, 1.5, Infinity, strings reached SQLite. */
const BAD_LIMITS: readonly [string, unknown][] = [
  ["-1", -1],
  ["0", 0],
  ["NaN", NaN],
  ["1.5", 1.5],
  ["Infinity", Infinity],
  ["a string", "10"],
  ["an object", { n: 1 }],
  ["null", null],
];

function isInvalid(field: RegExp): (err: unknown) => boolean {
  return (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message);
}

Deno.test("RunStore.page(), listReady() and reclaimExpired() refuse a limit that is not an integer 1..1,000", async (t) => {
  const { db, runs } = setUp();
  for (let i = 0; i < 3; i++) {
    runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  }
  const calls: [string, (limit: unknown) => unknown][] = [
    ["page", (limit) => runs.page({ limit: limit as number })],
    ["listReady", (limit) => runs.listReady(limit as number)],
    [
      "reclaimExpired",
      (limit) => runs.reclaimExpired(undefined, { actor: ACTOR, limit: limit as number }),
    ],
  ];
  for (const [name, call] of calls) {
    await t.step(name, () => {
      for (const [label, limit] of BAD_LIMITS) {
        assert.throws(() => call(limit), isInvalid(/limit/), `${name} accepted ${label}`);
      }
      if (name !== "list") assert.throws(() => call(1_001), isInvalid(/limit/));
      call(1_000);
    });
  }
  assert.throws(() => runs.listReady(1, NaN), isInvalid(/now/));
  assert.throws(() => runs.page({ states: ["paused" as never] }), isInvalid(/states/));
  assert.throws(() => runs.page({ states: "queued" as never }), isInvalid(/states/));
  db.close();
});

/** Newest first: by createdAt, then id (SQLite's binary order; the ids here are ASCII). */
function newestFirst(a: Run, b: Run): number {
  return b.createdAt - a.createdAt || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0);
}

Deno.test("RunStore.page() returns every run exactly once, newest first, while runs are created", async (t) => {
  const { db, runs, clock } = setUp();
  const create = () =>
    runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }).run;
  const existing: Run[] = [];
  for (let i = 0; i < 23; i++) {
    existing.push(create());
    if (i % 3 === 0) clock.advance(1); // runs share a millisecond: the id breaks the tie
  }
  for (const run of existing.filter((_, i) => i % 4 === 0)) {
    runs.apply(run.id, { type: "cancel", reason: "x" }, { actor: ACTOR });
  }
  const states = new Map(existing.map((run) => [run.id, runs.get(run.id).state]));

  const walk = (options: { states?: RunState[] }) => {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = runs.page({ ...options, limit: 4, ...(cursor === undefined ? {} : { cursor }) });
      assert.ok(page.items.length <= 4);
      seen.push(...page.items.map((run) => run.id));
      cursor = page.nextCursor ?? undefined;
      clock.advance(1);
      create(); // a newer run arrives between pages
    } while (cursor !== undefined);
    return seen;
  };
  await t.step("every state", () => {
    const seen = walk({});
    const expected = [...existing].sort(newestFirst).map((run) => run.id);
    assert.deepEqual(seen, expected);
  });
  await t.step("by states", () => {
    const seen = walk({ states: ["cancelled", "queued"] }).filter((id) => states.has(id));
    assert.deepEqual(seen, [...existing].sort(newestFirst).map((run) => run.id));
    const cancelled = walk({ states: ["cancelled"] });
    assert.deepEqual(
      cancelled,
      [...existing].sort(newestFirst).filter((run) => states.get(run.id) === "cancelled")
        .map((run) => run.id),
    );
  });
  await t.step("the last page has no cursor", () => {
    const all = runs.page({ limit: 1_000 });
    assert.equal(all.nextCursor, null);
    const exact = runs.page({ limit: all.items.length });
    assert.equal(exact.nextCursor, null);
    assert.deepEqual(runs.page({ states: [] }), { items: [], nextCursor: null });
  });
  db.close();
});

Deno.test("RunStore.page() refuses a forged or garbled cursor", async (t) => {
  const { db, runs } = setUp();
  for (let i = 0; i < 3; i++) {
    runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  }
  const cursor = runs.page({ limit: 1 }).nextCursor!;
  const encode = (text: string) =>
    new TextEncoder().encode(text).toBase64({ alphabet: "base64url", omitPadding: true });
  const bad: [string, unknown][] = [
    ["not base64", "!!!"],
    ["empty", ""],
    ["truncated", cursor.slice(0, -3)],
    ["not JSON", encode("[1,")],
    ["an object", encode('{"createdAt":1,"id":"run-1"}')],
    ["one element", encode("[1]")],
    ["a fractional time", encode('[1.5,"run-1"]')],
    ["a string time", encode('["1","run-1"]')],
    ["a numeric id", encode("[1,2]")],
    ["an id with U+0000", encode('[1,"run\\u0000"]')],
    ["invalid UTF-8", new Uint8Array([0x5b, 0xff, 0x5d]).toBase64({ alphabet: "base64url" })],
    ["too long", "A".repeat(100_000)],
    ["a number", 7],
    ["an object value", { createdAt: 1 }],
  ];
  for (const [name, value] of bad) {
    await t.step(name, () => {
      assert.throws(() => runs.page({ cursor: value as string }), isInvalid(/cursor/));
    });
  }
  assert.equal(runs.page({ cursor }).items.length, 2, "a real cursor still works");
  db.close();
});

Deno.test("RunStore.listReady() returns runs without a live lease, oldest first", () => {
  const { db, runs, clock } = setUp();
  const create = () => {
    clock.advance(1);
    return runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }).run.id;
  };
  const leased = create(); // queued, under a live lease
  const queued = create();
  const running = create();
  const retrying = create();
  const escalated = create();
  const awaiting = create();
  const cancelled = create();
  const last = create();
  const actor = { actor: ACTOR };
  runs.claim(leased, "w1", 1_000, actor);
  runs.apply(running, { type: "start", agentId: "a" }, actor);
  runs.apply(retrying, { type: "start", agentId: "a" }, actor);
  runs.apply(retrying, {
    type: "fail",
    error: { code: "ERR_AGENT_FAILED", message: "x" },
    retry: true,
  }, actor);
  runs.apply(escalated, { type: "escalate", reason: "x" }, actor);
  runs.apply(awaiting, { type: "request_approval", approvalId: "ap-1" }, actor);
  runs.apply(cancelled, { type: "cancel", reason: "x" }, actor);

  assert.deepEqual(
    runs.listReady(16),
    [queued, retrying, escalated, last].map((id) => runs.get(id)),
  );
  assert.deepEqual(runs.listReady(2).map((r) => r.id), [queued, retrying]);
  // At the lease's expiry the run is ready again, and it is the oldest.
  assert.deepEqual(
    runs.listReady(16, clock.now() + 1_000).map((r) => r.id).slice(0, 2),
    [leased, queued],
  );
  clock.advance(1_000);
  assert.deepEqual(runs.listReady(1).map((r) => r.id), [leased]);
  db.close();
});

/** `db`, seen through a proxy that records the SQL of every statement it executes. */
function recording(db: Database): { spy: Database; executed: string[] } {
  const executed: string[] = [];
  const spy = new Proxy(db, {
    get(target, key) {
      if (key === "prepare") {
        return (sql: string, options?: PrepareOptions): Statement => {
          const stmt = target.prepare(sql, options);
          const record = <T>(result: T): T => (executed.push(sql), result);
          return {
            sql,
            run: (...params) => record(stmt.run(...params)),
            get: (...params) => record(stmt.get(...params)),
            all: (...params) => record(stmt.all(...params)),
            iterate: (...params) => record(stmt.iterate(...params)),
          };
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { spy, executed };
}

Deno.test("RunStore reads pages and ready runs in index order, without sorting the history", async (t) => {
  const { db, audit, clock } = setUp();
  const { spy, executed } = recording(db);
  const runs = new RunStore(spy, { audit, clock });
  for (let i = 0; i < 50; i++) {
    clock.advance(1);
    const { run } = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
    if (i % 2 === 0) runs.apply(run.id, { type: "cancel", reason: "x" }, { actor: ACTOR });
  }
  db.exec("ANALYZE"); // statistics must not lead the planner to a sort
  const cursor = runs.page({ limit: 1 }).nextCursor!;
  /** The query plan of the one statement on `runs` that `call` executes. */
  const planOf = (call: () => unknown): string => {
    executed.length = 0;
    call();
    const [sql, ...more] = executed.filter((text) => text.includes("FROM runs"));
    assert.ok(sql !== undefined && more.length === 0, `one statement: ${executed.join("; ")}`);
    const params = Array.from(sql.matchAll(/\?/g), () => 1);
    return db.prepare<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`).all(...params)
      .map((row) => row.detail).join("\n");
  };
  const cases: [string, () => unknown, RegExp][] = [
    ["page(), first page", () => runs.page(), /^SCAN runs USING INDEX runs_created$/],
    [
      "page() with a cursor",
      () => runs.page({ cursor }),
      /^SEARCH runs USING INDEX runs_created \(\(created_at,id\)<\(\?,\?\)\)$/,
    ],
    [
      "page() by one state",
      () => runs.page({ states: ["queued"], cursor }),
      /^SEARCH runs USING INDEX runs_state_created \(state=\? AND \(created_at,id\)<\(\?,\?\)\)$/,
    ],
    ["listReady()", () => runs.listReady(16), /^SCAN runs USING INDEX runs_ready$/],
  ];
  for (const [name, call, expected] of cases) {
    await t.step(name, () => {
      const plan = planOf(call);
      assert.match(plan, expected);
      assert.doesNotMatch(plan, /TEMP B-TREE/);
    });
  }
  await t.step("page() by several states reads each state from its index", () => {
    const plan = planOf(() => runs.page({ states: ["queued", "cancelled"], cursor }));
    const searches = plan.split("\n").filter((line) => line.includes("runs"));
    assert.deepEqual(searches, [
      "SEARCH runs USING INDEX runs_state_created (state=? AND (created_at,id)<(?,?))",
      "SEARCH runs USING INDEX runs_state_created (state=? AND (created_at,id)<(?,?))",
    ]);
  });
  db.close();
});
