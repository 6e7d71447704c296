import assert from "node:assert/strict";
import {
  type AuditSink,
  type Run,
  RUN_STATES,
  type RunEvent,
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
  assert.equal(runs.list().length, 1);
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
  ] as const;
  for (const [name, trace] of bad) {
    await t.step(name, () => {
      assert.throws(
        () => runs.create({ task: task(), requester: ALICE, idempotencyKey: name, ...trace }),
        (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
      );
    });
  }
  assert.equal(runs.list().length, 0);
  assert.equal(audit.list({ actionPrefix: "run." }).length, 0);
  assert.throws(
    () => runs.list({ states: ["paused" as never] }),
    (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
  );
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
  assert.equal(runs.list().length, 1, "no half-created run");
  // And the other way round: a transition that fails leaves no audit record.
  const before = audit.head().seq;
  assert.throws(() => runs.apply(run.id, { type: "succeed", result: 1 }, { actor: ACTOR }));
  assert.equal(audit.head().seq, before);
  db.close();
});

Deno.test("RunStore.list() filters by state and lease", () => {
  const { db, runs, clock } = setUp();
  const a = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }).run;
  const b = runs.create({ task: task(), requester: ALICE, traceparent: TRACEPARENT }).run;
  runs.apply(b.id, { type: "cancel", reason: "x" }, { actor: ACTOR });
  runs.claim(a.id, "w", 100, { actor: ACTOR });
  assert.deepEqual(runs.list({ states: ["queued"] }).map((r) => r.id), [a.id]);
  assert.deepEqual(runs.list({ states: ["queued"], unleasedAt: clock.now() }), []);
  assert.deepEqual(
    runs.list({ states: ["queued"], unleasedAt: clock.now() + 100 }).map((r) => r.id),
    [a.id],
  );
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
