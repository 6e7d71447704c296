import assert from "node:assert/strict";
import { allRuns } from "../_all_runs.ts";
import {
  type AuditSink,
  type LeaseHold,
  type Run,
  RUN_STATES,
  type RunEvent,
  type RunState,
  RunStore,
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

Deno.test("RunStore.create() gives the same run for the same idempotency key", async () => {
  const { store, runs, audit } = await setUp();
  const first = await runs.create({
    task: task(),
    requester: ALICE,
    idempotencyKey: "k",
    traceparent: TRACEPARENT,
  });
  const again = await runs.create({
    task: task(),
    requester: ALICE,
    idempotencyKey: "k",
    traceparent: TRACEPARENT,
  });
  assert.equal(first.created, true);
  assert.equal(again.created, false);
  assert.equal(again.run.id, first.run.id);
  assert.equal((await allRuns(runs)).length, 1);
  await assert.rejects(
    () =>
      runs.create({
        task: task({ resource: "bom:43" }),
        requester: ALICE,
        idempotencyKey: "k",
        traceparent: TRACEPARENT,
      }),
    (err: unknown) => isPlmError(err, "ERR_RUN_IDEMPOTENCY_CONFLICT"),
  );
  const created = await audit.list({ actionPrefix: "run.created" });
  assert.equal(created.length, 1);
  assert.equal(created[0]?.actor.subject, "alice");
  assert.equal(created[0]?.traceId, "0af7651916cd43dd8448eb211c80319c");
  await store.close();
});

Deno.test("RunStore.create() refuses an invalid trace with ERR_INVALID_ARGUMENT and writes nothing", async (t) => {
  const { store, runs, audit } = await setUp();
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
    await t.step(name, async () => {
      await assert.rejects(
        () =>
          runs.create({ task: task(), requester: ALICE, idempotencyKey: name, ...trace } as never),
        (err: unknown) =>
          isPlmError(err, "ERR_INVALID_ARGUMENT") && /trace(parent|state)/.test(err.message) &&
          err.message.length < 200, // the bad value is not echoed
      );
    });
  }
  assert.equal((await allRuns(runs)).length, 0);
  assert.equal((await audit.list({ actionPrefix: "run." })).length, 0);
  await assert.rejects(
    () => runs.page({ states: ["paused" as never] }),
    (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
  );
  await store.close();
});

Deno.test("RunStore.find(), get() and apply() refuse an id that is not a text", async (t) => {
  const { store, runs } = await setUp();
  for (const id of [7, { id: "r" }, "r\0", "x".repeat(1_025)]) {
    await t.step(JSON.stringify(id).slice(0, 20), async () => {
      const invalid = (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT");
      await assert.rejects(() => runs.find(id as string), invalid);
      await assert.rejects(() => runs.get(id as string), invalid);
      await assert.rejects(
        () => runs.apply(id as string, { type: "approve" }, { actor: ACTOR }),
        invalid,
      );
    });
  }
  await store.close();
});

Deno.test("RunStore.apply() refuses a result JSON cannot carry instead of converting it", async (t) => {
  const { store, runs, audit } = await setUp();
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
      await t.step(`${type}: ${name}`, async () => {
        const { run } = await runs.create({
          task: task(),
          requester: ALICE,
          traceparent: TRACEPARENT,
        });
        await runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR });
        const before = await audit.head();
        await assert.rejects(
          () => runs.apply(run.id, { type, result: result as never }, { actor: ACTOR }),
          (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /event\.result/.test(err.message),
        );
        assert.equal((await runs.get(run.id)).state, "running");
        assert.deepEqual(await audit.head(), before);
      });
    }
  }
  await t.step("a result is stored as given", async () => {
    const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
    await runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR });
    const result = { b: [1, "\u2028", null], a: { "é": -0.5 } };
    await runs.apply(run.id, { type: "succeed", result }, { actor: ACTOR });
    assert.deepEqual((await runs.get(run.id)).result, result);
  });
  await store.close();
});

Deno.test("RunStore.apply() refuses a fail event whose error is not bounded text", async (t) => {
  const { store, runs } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  await runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR });
  const cases: [string, unknown, RegExp][] = [
    ["no error", undefined, /event\.error\.code/],
    ["a numeric code", { code: 7, message: "x" }, /event\.error\.code/],
    ["a message with U+0000", { code: "ERR_X", message: "a\0b" }, /event\.error\.message/],
    ["a 1 MB message", { code: "ERR_X", message: "m".repeat(1_000_000) }, /event\.error\.message/],
  ];
  for (const [name, error, field] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        () =>
          runs.apply(run.id, { type: "fail", retry: false, error: error as never }, {
            actor: ACTOR,
          }),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message),
      );
    });
  }
  assert.equal((await runs.get(run.id)).state, "running");
  await store.close();
});

Deno.test("RunStore.claim() and heartbeat() refuse a bad ttlMs with ERR_INVALID_ARGUMENT", async (t) => {
  const { store, runs } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  for (const ttlMs of [0, -1, 1.5, NaN, Infinity, "1000"]) {
    await t.step(String(ttlMs), async () => {
      const invalid = (err: unknown) =>
        isPlmError(err, "ERR_INVALID_ARGUMENT") && /ttlMs/.test(err.message);
      await assert.rejects(
        () => runs.claim(run.id, "w1", ttlMs as number, { actor: ACTOR }),
        invalid,
      );
      await assert.rejects(
        () => runs.heartbeat(run.id, { owner: "w1", token: 1 }, ttlMs as number),
        invalid,
      );
    });
  }
  assert.equal((await runs.get(run.id)).lease, null);
  await store.close();
});

Deno.test("RunStore.apply() refuses a stale version", async () => {
  const { store, runs } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  await runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, expectedVersion: 1 });
  await assert.rejects(
    () => runs.apply(run.id, { type: "cancel", reason: "x" }, { actor: ACTOR, expectedVersion: 1 }),
    (err: unknown) => isPlmError(err, "ERR_RUN_VERSION_CONFLICT"),
  );
  assert.equal((await runs.get(run.id)).state, "running");
  assert.equal((await runs.get(run.id)).version, 2);
  await store.close();
});

Deno.test("RunStore.apply() fails closed without an actor", async () => {
  const { store, runs } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  await assert.rejects(
    () => runs.apply(run.id, { type: "start", agentId: "a" }),
    (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
  );
  assert.equal((await runs.get(run.id)).state, "queued");
  await store.close();
});

/** The hold a claim returned: what its later writes name. */
function holdOf(run: Run): LeaseHold {
  assert.ok(run.lease !== null, `run ${run.id} has a lease`);
  return { owner: run.lease.owner, token: run.lease.token };
}

Deno.test("RunStore leases: one owner at a time, expiry and reclaim", async () => {
  const { store, runs, clock, audit } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  const w1 = holdOf(await runs.claim(run.id, "w1", 1_000, { actor: ACTOR }));
  await assert.rejects(
    () => runs.claim(run.id, "w2", 1_000, { actor: ACTOR }),
    (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_HELD"),
  );
  await runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, lease: w1 });
  clock.advance(500);
  await runs.heartbeat(run.id, w1, 1_000);
  clock.advance(900);
  assert.deepEqual(
    await runs.reclaimExpired(undefined, { actor: ACTOR }),
    [],
    "the heartbeat kept it",
  );
  clock.advance(200);
  const [reclaimed, ...more] = await runs.reclaimExpired(undefined, { actor: ACTOR });
  assert.equal(more.length, 0);
  assert.equal(reclaimed?.state, "retrying");
  assert.equal(reclaimed?.lease, null);
  // The old owner is fenced off: it cannot finish or heartbeat the run.
  await assert.rejects(
    () => runs.apply(run.id, { type: "succeed", result: 1 }, { actor: ACTOR, lease: w1 }),
    (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_LOST"),
  );
  await assert.rejects(
    () => runs.heartbeat(run.id, w1, 1_000),
    (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_LOST"),
  );
  const w2 = holdOf(await runs.claim(run.id, "w2", 1_000, { actor: ACTOR }));
  assert.ok(w2.token > w1.token, "every claim gives a greater token");
  await runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, lease: w2 });
  const done = await runs.apply(run.id, { type: "succeed", result: 1 }, {
    actor: ACTOR,
    lease: w2,
  });
  assert.equal(done.attempt, 2);
  assert.equal(done.lease, null, "a terminal state releases the lease");
  await assert.rejects(
    () => runs.claim(run.id, "w3", 1_000, { actor: ACTOR }),
    (err: unknown) => isPlmError(err, "ERR_RUN_ILLEGAL_TRANSITION"),
  );
  const actions = (await audit.list({ runId: run.id })).map((r) => `${r.action}:${r.outcome}`);
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
  assert.equal((await audit.verify()).ok, true);
  await store.close();
});

Deno.test("RunStore: a lost lease writes nothing, not even an audit record", async (t) => {
  const { store, runs, clock, audit } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  const old = holdOf(await runs.claim(run.id, "w1", 1_000, { actor: ACTOR }));
  clock.advance(1_000); // w1 stalls past its lease; another worker takes the run
  const taken = await runs.claim(run.id, "w2", 1_000, { actor: ACTOR });
  const before = { run: await runs.get(run.id), head: await audit.head() };
  assert.deepEqual(before.run, taken);
  const lost = (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_LOST");
  await t.step("apply()", async () => {
    await assert.rejects(
      runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, lease: old }),
      lost,
    );
  });
  await t.step("heartbeat()", async () => {
    await assert.rejects(runs.heartbeat(run.id, old, 1_000), lost);
  });
  await t.step("release()", async () => {
    await assert.rejects(runs.release(run.id, old, { actor: ACTOR }), lost);
  });
  await t.step("the same owner with an older token", async () => {
    // w2 claims again (a renewal): its first hold is now stale too.
    const stale = holdOf(taken);
    const renewed = holdOf(await runs.claim(run.id, "w2", 1_000, { actor: ACTOR }));
    assert.equal(renewed.owner, stale.owner);
    assert.notEqual(renewed.token, stale.token);
    const head = await audit.head();
    await assert.rejects(runs.heartbeat(run.id, stale, 1_000), lost);
    await assert.rejects(
      runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, lease: stale }),
      lost,
    );
    assert.deepEqual(await audit.head(), head);
    before.run = await runs.get(run.id);
    before.head = head;
  });
  assert.deepEqual(await runs.get(run.id), before.run, "the run is untouched");
  assert.deepEqual(await audit.head(), before.head, "no audit record was written");
  await store.close();
});

Deno.test("RunStore.claimReady() claims the oldest ready runs up to the limit, one audit record each", async () => {
  const { store, runs, clock, audit } = await setUp();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    clock.advance(1);
    ids.push(
      (await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT })).run.id,
    );
  }
  await runs.apply(ids[1]!, { type: "cancel", reason: "x" }, { actor: ACTOR }); // not ready
  const held = await runs.claim(ids[0]!, "w0", 10_000, { actor: ACTOR }); // under a live lease
  const head = await audit.head();

  const taken = await runs.claimReady("w1", 1_000, 2);
  assert.deepEqual(taken.map((run) => run.id), [ids[2], ids[3]], "oldest ready first");
  for (const run of taken) {
    assert.equal(run.lease?.owner, "w1");
    assert.equal(run.lease?.expiresAt, clock.now() + 1_000);
    assert.deepEqual(await runs.get(run.id), run);
  }
  const records = await audit.list({ fromSeq: head.seq + 1 });
  assert.deepEqual(
    records.map((r) => [r.action, r.runId, r.actor.subject, (r.data as { owner: string }).owner]),
    taken.map((run) => ["run.lease.claimed", run.id, "w1", "w1"]),
  );
  assert.deepEqual(
    records.map((r) => (r.data as { previousOwner: string | null }).previousOwner),
    [null, null],
  );
  // The rest: one left; the held run comes back once its lease expires, with its previous owner.
  assert.deepEqual((await runs.claimReady("w2", 1_000, 10)).map((run) => run.id), [ids[4]]);
  assert.deepEqual(await runs.claimReady("w2", 1_000, 10), []);
  clock.advance(10_000);
  // Every lease expired: the oldest, w0's, comes first, with its previous owner.
  const [again, ...none] = await runs.claimReady("w2", 1_000, 1);
  assert.deepEqual([again?.id, none], [ids[0], []]);
  assert.ok(again!.lease!.token > held.lease!.token);
  const [last] = await audit.list({ newestFirst: true, limit: 1 });
  assert.deepEqual([last?.runId, (last?.data as { previousOwner: string }).previousOwner], [
    ids[0],
    "w0",
  ]);
  // The hold claimReady returned fences writes like claim's.
  await runs.apply(ids[0]!, { type: "start", agentId: "a" }, {
    actor: ACTOR,
    lease: holdOf(again!),
  });
  await assert.rejects(
    runs.claimReady("w1", 1_000, 0),
    (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
  );
  assert.equal((await audit.verify()).ok, true);
  await store.close();
});

Deno.test("RunStore keeps state and audit atomic", async () => {
  const { store, runs, clock, audit } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  const failing: AuditSink = {
    append() {
      return Promise.reject(new Error("disk full"));
    },
  };
  const broken = new RunStore(store, { audit: failing, clock });
  await assert.rejects(
    () => broken.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR }),
    /disk full/,
  );
  assert.equal(
    (await runs.get(run.id)).state,
    "queued",
    "the state change rolled back with the audit",
  );
  assert.equal((await runs.get(run.id)).version, 1);
  await assert.rejects(
    () => broken.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }),
    /disk full/,
  );
  assert.equal((await allRuns(runs)).length, 1, "no half-created run");
  // And the other way round: a transition that fails leaves no audit record.
  const before = (await audit.head()).seq;
  await assert.rejects(() => runs.apply(run.id, { type: "succeed", result: 1 }, { actor: ACTOR }));
  assert.equal((await audit.head()).seq, before);
  await store.close();
});

Deno.test("RunStore.page() filters by state, newest first", async () => {
  const { store, runs } = await setUp();
  const a = (await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT })).run;
  const b = (await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT })).run;
  const c = (await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT })).run;
  await runs.apply(b.id, { type: "cancel", reason: "x" }, { actor: ACTOR });
  const ids = async (options: Parameters<typeof runs.page>[0]) =>
    (await runs.page(options)).items.map((r) => r.id);
  assert.deepEqual(await ids({ states: ["queued"] }), [c.id, a.id]);
  assert.deepEqual(await ids({ states: ["queued", "queued"], limit: 1 }), [c.id]);
  assert.deepEqual(await ids({ states: ["cancelled"] }), [b.id]);
  await assert.rejects(
    () => runs.get("nope"),
    (err: unknown) => isPlmError(err, "ERR_RUN_NOT_FOUND"),
  );
  await store.close();
});

Deno.test("RunStore.claim() takes over an expired lease as a reclaim, never leaving a run running", async () => {
  const { store, runs, clock, audit } = await setUp();
  const { run } = await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  const w1 = holdOf(await runs.claim(run.id, "w1", 1_000, { actor: ACTOR }));
  await runs.apply(run.id, { type: "start", agentId: "a" }, { actor: ACTOR, lease: w1 });
  clock.advance(1_000);
  const taken = await runs.claim(run.id, "w2", 1_000, { actor: ACTOR });
  assert.equal(taken.state, "retrying");
  assert.equal(taken.lease?.owner, "w2");
  const tail = (await audit.list({ runId: run.id })).slice(-3).map((r) =>
    `${r.action}:${r.outcome}`
  );
  assert.deepEqual(tail, [
    "run.transition:retrying",
    "run.lease.reclaimed:retrying",
    "run.lease.claimed:claimed",
  ]);
  await runs.release(run.id, holdOf(taken));
  assert.equal((await audit.list({ runId: run.id })).at(-1)?.action, "run.lease.released");
  await store.close();
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
  const { store, runs } = await setUp();
  for (let i = 0; i < 3; i++) {
    await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
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
    await t.step(name, async () => {
      for (const [label, limit] of BAD_LIMITS) {
        await assert.rejects(
          async () => await call(limit),
          isInvalid(/limit/),
          `${name} accepted ${label}`,
        );
      }
      await assert.rejects(async () => await call(1_001), isInvalid(/limit/));
      await call(1_000);
    });
  }
  await assert.rejects(() => runs.listReady(1, NaN), isInvalid(/now/));
  await assert.rejects(() => runs.page({ states: ["paused" as never] }), isInvalid(/states/));
  await assert.rejects(() => runs.page({ states: "queued" as never }), isInvalid(/states/));
  await store.close();
});

/** Newest first: by createdAt, then id (SQLite's binary order; the ids here are ASCII). */
function newestFirst(a: Run, b: Run): number {
  return b.createdAt - a.createdAt || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0);
}

Deno.test("RunStore.page() returns every run exactly once, newest first, while runs are created", async (t) => {
  const { store, runs, clock } = await setUp();
  const create = async () =>
    (await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT })).run;
  const existing: Run[] = [];
  for (let i = 0; i < 23; i++) {
    existing.push(await create());
    if (i % 3 === 0) clock.advance(1); // runs share a millisecond: the id breaks the tie
  }
  for (const run of existing.filter((_, i) => i % 4 === 0)) {
    await runs.apply(run.id, { type: "cancel", reason: "x" }, { actor: ACTOR });
  }
  const states = new Map<string, RunState>();
  for (const run of existing) states.set(run.id, (await runs.get(run.id)).state);

  const walk = async (options: { states?: RunState[] }) => {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await runs.page({
        ...options,
        limit: 4,
        ...(cursor === undefined ? {} : { cursor }),
      });
      assert.ok(page.items.length <= 4);
      seen.push(...page.items.map((run) => run.id));
      cursor = page.nextCursor ?? undefined;
      clock.advance(1);
      await create(); // a newer run arrives between pages
    } while (cursor !== undefined);
    return seen;
  };
  await t.step("every state", async () => {
    const seen = await walk({});
    const expected = [...existing].sort(newestFirst).map((run) => run.id);
    assert.deepEqual(seen, expected);
  });
  await t.step("by states", async () => {
    const seen = (await walk({ states: ["cancelled", "queued"] })).filter((id) => states.has(id));
    assert.deepEqual(seen, [...existing].sort(newestFirst).map((run) => run.id));
    const cancelled = await walk({ states: ["cancelled"] });
    assert.deepEqual(
      cancelled,
      [...existing].sort(newestFirst).filter((run) => states.get(run.id) === "cancelled")
        .map((run) => run.id),
    );
  });
  await t.step("the last page has no cursor", async () => {
    const all = await runs.page({ limit: 1_000 });
    assert.equal(all.nextCursor, null);
    const exact = await runs.page({ limit: all.items.length });
    assert.equal(exact.nextCursor, null);
    assert.deepEqual(await runs.page({ states: [] }), { items: [], nextCursor: null });
  });
  await store.close();
});

Deno.test("RunStore.page() refuses a forged or garbled cursor", async (t) => {
  const { store, runs } = await setUp();
  for (let i = 0; i < 3; i++) {
    await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT });
  }
  const cursor = (await runs.page({ limit: 1 })).nextCursor!;
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
    await t.step(name, async () => {
      await assert.rejects(() => runs.page({ cursor: value as string }), isInvalid(/cursor/));
    });
  }
  assert.equal((await runs.page({ cursor })).items.length, 2, "a real cursor still works");
  await store.close();
});

Deno.test("RunStore.listReady() returns runs without a live lease, oldest first", async () => {
  const { store, runs, clock } = await setUp();
  const create = async () => {
    clock.advance(1);
    return (await runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT })).run.id;
  };
  const leased = await create(); // queued, under a live lease
  const queued = await create();
  const running = await create();
  const retrying = await create();
  const escalated = await create();
  const awaiting = await create();
  const cancelled = await create();
  const last = await create();
  const actor = { actor: ACTOR };
  await runs.claim(leased, "w1", 1_000, actor);
  await runs.apply(running, { type: "start", agentId: "a" }, actor);
  await runs.apply(retrying, { type: "start", agentId: "a" }, actor);
  await runs.apply(retrying, {
    type: "fail",
    error: { code: "ERR_AGENT_FAILED", message: "x" },
    retry: true,
  }, actor);
  await runs.apply(escalated, { type: "escalate", reason: "x" }, actor);
  await runs.apply(awaiting, { type: "request_approval", approvalId: "ap-1" }, actor);
  await runs.apply(cancelled, { type: "cancel", reason: "x" }, actor);

  assert.deepEqual(
    await runs.listReady(16),
    await Promise.all([queued, retrying, escalated, last].map((id) => runs.get(id))),
  );
  assert.deepEqual((await runs.listReady(2)).map((r) => r.id), [queued, retrying]);
  // At the lease's expiry the run is ready again, and it is the oldest.
  assert.deepEqual(
    (await runs.listReady(16, clock.now() + 1_000)).map((r) => r.id).slice(0, 2),
    [leased, queued],
  );
  clock.advance(1_000);
  assert.deepEqual((await runs.listReady(1)).map((r) => r.id), [leased]);
  await store.close();
});
