import assert from "node:assert/strict";
import { allRuns } from "../_all_runs.ts";
import {
  type Agent,
  AgentError,
  AgentRuntime,
  type AgentRuntimeOptions,
  ControlPlane,
  type ControlPlaneOptions,
  defineAgent,
  EscalationLadder,
  openStore,
  type PolicySet,
  withIdentity,
} from "../../agent_runtime/mod.ts";
import {
  FakeClock,
  FakeTimers,
  type Identity,
  isPlmError,
  type JsonValue,
} from "../../shared/mod.ts";
import { gatedAgent } from "./_gated_agent.ts";

const POLICIES: PolicySet = {
  rules: [
    { id: "work", effect: "allow", actions: ["bom.**"] },
    { id: "no-delete", effect: "deny", actions: ["bom.delete"] },
    {
      id: "release",
      effect: "require_approval",
      actions: ["bom.release"],
      approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 3600, onExpiry: "deny" },
    },
  ],
};
const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };
const LEAD: Identity = { subject: "lena", actorKind: "human", roles: ["lead"], scopes: [] };
/** The task most tests submit, with and without a required capability. */
const BOM_UPDATE = { action: "bom.update", resource: "bom:1", capabilities: ["bom"] };
const PLAIN_UPDATE = { action: "bom.update", resource: "bom:1" };
const HUMAN_TIER = {
  kind: "human" as const,
  approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" as const },
};

async function setUp(
  agents: Agent[],
  options: Partial<AgentRuntimeOptions> = {},
  cpOptions: Partial<ControlPlaneOptions> = {},
  path = ":memory:",
) {
  const db = await openStore(path);
  const clock = new FakeClock(Date.UTC(2026, 10, 25, 12));
  const timers = new FakeTimers(clock);
  const controlPlane = new ControlPlane(db, { policies: POLICIES, clock, ...cpOptions });
  const runtime = new AgentRuntime({
    controlPlane,
    agents,
    clock,
    timer: timers.timer,
    random: () => 0.5,
    retry: { maxAttempts: 3, initialDelayMs: 100, jitter: "none" },
    owner: "w1",
    ...options,
  });
  return { db, clock, timers, controlPlane, runtime };
}

/** An agent that fails `failures` times (retryably), then returns "ok"; records its calls. */
function flaky(id: string, failures: number, extra: Partial<Agent> = {}) {
  const calls: { attempt: number; idempotencyKey: string; traceId: string }[] = [];
  const agent = defineAgent({
    id,
    capabilities: ["bom"],
    ...extra,
    invoke: (_task, ctx) => {
      calls.push({
        attempt: ctx.attempt,
        idempotencyKey: ctx.idempotencyKey,
        traceId: ctx.trace.traceId,
      });
      if (calls.length <= failures) {
        return Promise.reject(
          new AgentError("ERR_AGENT_FAILED", `boom ${calls.length}`, { retryable: true }),
        );
      }
      return Promise.resolve(`ok from ${id}`);
    },
  });
  return { agent, calls };
}

async function transitions(cp: ControlPlane, runId: string): Promise<string[]> {
  return (await cp.audit.list({ runId, actionPrefix: "run.transition" })).map((r) => r.outcome);
}

Deno.test("AgentRuntime.submit() runs an allowed task and rejects a denied one", async () => {
  const { db, runtime, controlPlane } = await setUp([flaky("a", 0).agent]);
  const ok = await runtime.submit(BOM_UPDATE, { identity: SVC });
  const done = await runtime.wait(ok);
  assert.equal(done.state, "succeeded");
  assert.equal(done.result, "ok from a");
  assert.deepEqual(await transitions(controlPlane, ok), ["running", "succeeded"]);
  const no = await runtime.submit({ action: "bom.delete", resource: "bom:1" }, { identity: SVC });
  const rejected = await controlPlane.runs.get(no);
  assert.equal(rejected.state, "rejected");
  assert.match(rejected.error?.message ?? "", /no-delete/);
  await assert.rejects(
    runtime.submit({ action: "bom.update", resource: "bom:1" }),
    (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
  );
  assert.equal((await controlPlane.audit.verify()).ok, true);
  await db.close();
});

Deno.test("AgentRuntime.submit() with the same idempotency key gives one run and one invocation", async () => {
  const { agent, calls } = flaky("a", 0);
  const { db, runtime, controlPlane } = await setUp([agent]);
  const task = { action: "bom.update", resource: "bom:1", capabilities: ["bom"] };
  const first = await runtime.submit(task, { identity: SVC, idempotencyKey: "order-7" });
  const second = await runtime.submit(task, { identity: SVC, idempotencyKey: "order-7" });
  assert.equal(second, first);
  await runtime.idle();
  assert.equal(calls.length, 1);
  assert.equal(calls[0]?.idempotencyKey, "order-7");
  assert.equal((await allRuns(controlPlane.runs)).length, 1);
  await db.close();
});

Deno.test("AgentRuntime retries with backoff on the injected clock and succeeds", async () => {
  const { agent, calls } = flaky("a", 2);
  const { db, runtime, controlPlane, timers, clock } = await setUp([agent]);
  const start = clock.now();
  const id = await runtime.submit(BOM_UPDATE, { identity: SVC });
  await timers.runAll();
  const done = await runtime.wait(id);
  assert.equal(done.state, "succeeded");
  assert.equal(done.attempt, 3);
  assert.deepEqual(calls.map((c) => c.attempt), [1, 2, 3]);
  assert.equal(clock.now() - start, 100 + 200, "no jitter: 100 ms then 200 ms");
  assert.deepEqual(await transitions(controlPlane, id), [
    "running",
    "retrying",
    "running",
    "retrying",
    "running",
    "succeeded",
  ]);
  assert.equal(
    new Set(calls.map((c) => c.traceId)).size,
    1,
    "every attempt carries the run's trace",
  );
  await db.close();
});

Deno.test("AgentRuntime stops at once on a non-retryable error", async () => {
  const agent = defineAgent({
    id: "strict",
    invoke: () =>
      Promise.reject(new AgentError("ERR_INVALID_ARGUMENT", "bad input", { retryable: false })),
  });
  const { db, runtime } = await setUp([agent]);
  const id = await runtime.submit(PLAIN_UPDATE, { identity: SVC });
  const done = await runtime.wait(id);
  assert.equal(done.state, "failed");
  assert.equal(done.attempt, 1);
  assert.equal(done.error?.code, "ERR_INVALID_ARGUMENT");
  await db.close();
});

Deno.test("AgentRuntime escalates to a stronger tier when retries are exhausted", async () => {
  const weak = flaky("weak", 99, { tier: 1 });
  const strong = flaky("strong", 0, { tier: 2, costPerRun: 5 });
  const { db, runtime, controlPlane, timers } = await setUp([weak.agent, strong.agent], {
    escalation: new EscalationLadder([{ kind: "tier", minTier: 2 }, { kind: "fail" }]),
  });
  const id = await runtime.submit(BOM_UPDATE, { identity: SVC });
  await timers.runAll();
  const done = await runtime.wait(id);
  assert.equal(done.state, "succeeded");
  assert.equal(done.result, "ok from strong");
  assert.equal(weak.calls.length, 3);
  assert.equal(done.escalations, 1);
  assert.deepEqual((await transitions(controlPlane, id)).slice(-3), [
    "escalated",
    "running",
    "succeeded",
  ]);
  const escalation = (await controlPlane.audit.list({ runId: id })).find((r) =>
    r.outcome === "escalated"
  );
  assert.match(escalation?.reason ?? "", /Tier 2: .*ERR_AGENT_FAILED/);
  await db.close();
});

Deno.test("AgentRuntime's human tier: approval resumes the run, rejection ends it", async (t) => {
  for (const decision of ["approve", "reject"] as const) {
    await t.step(decision, async () => {
      let fail = true;
      const agent = defineAgent({
        id: "a",
        invoke: () => fail ? Promise.reject(new Error("nope")) : Promise.resolve("fixed"),
      });
      const { db, runtime, controlPlane, timers } = await setUp([agent], {
        retry: { maxAttempts: 1 },
        escalation: new EscalationLadder([HUMAN_TIER, { kind: "fail" }]),
      });
      const id = await runtime.submit({ action: "bom.update", resource: "bom:1" }, {
        identity: SVC,
      });
      await timers.runAll();
      const parked = await runtime.wait(id);
      assert.equal(parked.state, "awaiting_approval");
      const approval = await controlPlane.approvals.get(parked.approvalId!);
      assert.equal(approval.kind, "escalation");
      fail = false;
      await runtime.decideApproval(approval.id, decision, {
        identity: LEAD,
        digest: approval.digest,
      });
      const done = await runtime.wait(id);
      assert.equal(done.state, decision === "approve" ? "succeeded" : "rejected");
      await db.close();
    });
  }
});

Deno.test("AgentRuntime parks a run for approval and resumes it after a restart", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/plm.db`;
  try {
    const first = await setUp([flaky("a", 0).agent], {}, {}, path);
    const id = await first.runtime.submit({ action: "bom.release", resource: "bom:1" }, {
      identity: SVC,
    });
    const parked = await first.controlPlane.runs.get(id);
    assert.equal(parked.state, "awaiting_approval");
    await first.db.close();

    const second = await setUp([flaky("a", 0).agent], { owner: "w2" }, {}, path);
    const approval = (await second.controlPlane.approvals.list({ runId: id }))[0]!;
    await assert.rejects(
      second.runtime.decideApproval(approval.id, "approve", {
        identity: SVC,
        digest: approval.digest,
      }),
      (err: unknown) => isPlmError(err, "ERR_APPROVAL_SELF"),
    );
    await second.runtime.decideApproval(approval.id, "approve", {
      identity: LEAD,
      digest: approval.digest,
    });
    const done = await second.runtime.wait(id);
    assert.equal(done.state, "succeeded");
    assert.equal(
      done.traceparent,
      parked.traceparent,
      "the trace survived the pause and the restart",
    );
    assert.equal((await second.controlPlane.audit.verify()).ok, true);
    await second.db.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AgentRuntime times an attempt out and aborts the agent's signal", async () => {
  const aborts: unknown[] = [];
  const agent = defineAgent({
    id: "slow",
    invoke: (_task, ctx) =>
      new Promise<JsonValue>((_, reject) => {
        ctx.signal.addEventListener("abort", () => {
          aborts.push(ctx.signal.reason);
          reject(ctx.signal.reason);
        });
      }),
  });
  const { db, runtime, timers } = await setUp([agent], {
    attemptTimeoutMs: 1_000,
    retry: { maxAttempts: 2, initialDelayMs: 10, jitter: "none" },
  });
  const id = await runtime.submit(PLAIN_UPDATE, { identity: SVC });
  await timers.advance(999);
  assert.equal(aborts.length, 0);
  await timers.advance(1);
  assert.equal(aborts.length, 1);
  assert.ok(isPlmError(aborts[0], "ERR_TIMEOUT"));
  await timers.runAll();
  const done = await runtime.wait(id);
  assert.equal(done.state, "failed");
  assert.equal(done.attempt, 2);
  assert.equal(done.error?.code, "ERR_RETRY_EXHAUSTED");
  assert.match(done.error?.message ?? "", /ERR_TIMEOUT/);
  await db.close();
});

Deno.test("AgentRuntime.cancel() aborts the agent's signal and ends the run cancelled", async () => {
  let seen: AbortSignal | undefined;
  const agent = defineAgent({
    id: "slow",
    invoke: (_task, ctx) => {
      seen = ctx.signal;
      return new Promise<JsonValue>(() => {});
    },
  });
  const { db, runtime, timers } = await setUp([agent]);
  const id = await runtime.submit(PLAIN_UPDATE, { identity: SVC });
  await timers.advance(0);
  assert.equal(seen?.aborted, false);
  const cancelled = await withIdentity(SVC, () => runtime.cancel(id, "user changed their mind"));
  assert.equal(seen?.aborted, true);
  assert.equal(cancelled.state, "cancelled");
  assert.equal(cancelled.error?.message, "user changed their mind");
  assert.equal(cancelled.lease, null);
  await db.close();
});

Deno.test("AgentRuntime never exceeds the global and per-agent concurrency limits", async () => {
  let now = 0;
  let maxNow = 0;
  const perAgent = new Map<string, { now: number; max: number }>();
  const pending: (() => void)[] = [];
  const make = (id: string, maxConcurrency: number) =>
    defineAgent({
      id,
      maxConcurrency,
      capabilities: ["bom"],
      invoke: () => {
        const mine = perAgent.get(id) ?? { now: 0, max: 0 };
        perAgent.set(id, mine);
        now++;
        mine.now++;
        maxNow = Math.max(maxNow, now);
        mine.max = Math.max(mine.max, mine.now);
        return new Promise<JsonValue>((resolve) =>
          pending.push(() => {
            now--;
            mine.now--;
            resolve("done");
          })
        );
      },
    });
  const { db, runtime, timers } = await setUp([make("a", 2), make("b", 3)], {
    concurrency: 4,
    maxQueue: 100,
  });
  const ids: string[] = [];
  for (let i = 0; i < 40; i++) {
    ids.push(
      await runtime.submit({ action: "bom.update", resource: `bom:${i}`, capabilities: ["bom"] }, {
        identity: SVC,
      }),
    );
  }
  // Let every started call finish, a batch at a time, without moving the clock.
  for (let i = 0; i < 100 && (pending.length > 0 || runtime.dispatcher.inFlight > 0); i++) {
    await timers.advance(0);
    pending.splice(0).forEach((finish) => finish());
  }
  const states = await Promise.all(ids.map((id) => runtime.wait(id)));
  assert.ok(states.every((r) => r.state === "succeeded"), states.map((r) => r.state).join(","));
  assert.equal(maxNow, 4);
  assert.ok((perAgent.get("a")?.max ?? 0) <= 2);
  assert.ok((perAgent.get("b")?.max ?? 0) <= 3);
  await db.close();
});

Deno.test("AgentRuntime.submit() refuses with ERR_QUEUE_FULL and creates nothing", async () => {
  const agent = defineAgent({ id: "stuck", invoke: () => new Promise<JsonValue>(() => {}) });
  const { db, runtime, controlPlane } = await setUp([agent], { concurrency: 1, maxQueue: 1 });
  await runtime.submit(PLAIN_UPDATE, { identity: SVC });
  await runtime.submit({ action: "bom.update", resource: "bom:2" }, { identity: SVC });
  const before = (await allRuns(controlPlane.runs)).length;
  const auditBefore = (await controlPlane.audit.head()).seq;
  await assert.rejects(
    runtime.submit({ action: "bom.update", resource: "bom:3" }, { identity: SVC }),
    (err: unknown) => isPlmError(err, "ERR_QUEUE_FULL"),
  );
  assert.equal((await allRuns(controlPlane.runs)).length, before);
  assert.equal((await controlPlane.audit.head()).seq, auditBefore);
  await db.close();
});

Deno.test("AgentRuntime fails a run over its budget with ERR_BUDGET_EXCEEDED", async () => {
  const { agent, calls } = flaky("a", 99);
  const { db, runtime, timers } = await setUp([agent], {
    retry: { maxAttempts: 10, initialDelayMs: 1, jitter: "none" },
  }, {
    runBudget: { maxAttempts: 2 },
  });
  const id = await runtime.submit(BOM_UPDATE, { identity: SVC });
  await timers.runAll();
  const done = await runtime.wait(id);
  assert.equal(done.state, "failed");
  assert.equal(done.error?.code, "ERR_BUDGET_EXCEEDED");
  assert.equal(calls.length, 2);
  await db.close();
});

Deno.test("AgentRuntime reports ERR_NO_AGENT when no agent has the capability", async () => {
  const { db, runtime } = await setUp([flaky("a", 0).agent]);
  const id = await runtime.submit({
    action: "bom.update",
    resource: "bom:1",
    capabilities: ["cad"],
  }, {
    identity: SVC,
  });
  const done = await runtime.wait(id);
  assert.equal(done.state, "failed");
  assert.equal(done.error?.code, "ERR_NO_AGENT");
  assert.match(done.error?.message ?? "", /cad/);
  await db.close();
});

Deno.test("AgentRuntime climbs the ladder in order: stronger tier, then humans, then fail", async () => {
  const weak = flaky("weak", 99, { tier: 1 });
  const strong = flaky("strong", 99, { tier: 2 });
  const { db, runtime, controlPlane, timers } = await setUp([weak.agent, strong.agent], {
    retry: { maxAttempts: 2, initialDelayMs: 10, jitter: "none" },
    escalation: new EscalationLadder([{ kind: "tier", minTier: 2 }, HUMAN_TIER, { kind: "fail" }]),
  });
  const id = await runtime.submit(BOM_UPDATE, { identity: SVC });
  await timers.runAll();
  const parked = await runtime.wait(id);
  assert.equal(parked.state, "awaiting_approval", "after the stronger tier, the humans");
  assert.deepEqual([weak.calls.length, strong.calls.length], [2, 2]);
  const approval = await controlPlane.approvals.get(parked.approvalId!);
  assert.equal(approval.kind, "escalation");
  await runtime.decideApproval(approval.id, "approve", { identity: LEAD, digest: approval.digest });
  await timers.runAll();
  const done = await runtime.wait(id);
  assert.equal(done.state, "failed", "the humans let it go on; the strongest tier failed again");
  assert.equal(done.escalations, 2);
  assert.equal(strong.calls.length, 4, "approval resumed the run on the strongest tier");
  assert.deepEqual(
    (await controlPlane.audit.list({ runId: id, actionPrefix: "run.transition" }))
      .map((r) => r.outcome)
      .filter((s) => s !== "running" && s !== "retrying"),
    ["escalated", "escalated", "awaiting_approval", "queued", "failed"],
  );
  await db.close();
});

Deno.test("AgentRuntime.cancel() refuses another identity and records who cancelled", async () => {
  const agent = defineAgent({ id: "slow", invoke: () => new Promise<JsonValue>(() => {}) });
  const { db, runtime, timers, controlPlane } = await setUp([agent]);
  const id = await runtime.submit(PLAIN_UPDATE, { identity: SVC });
  await timers.advance(0);
  const other: Identity = { subject: "mallory", actorKind: "human", roles: ["lead"], scopes: [] };
  await assert.rejects(
    withIdentity(other, () => runtime.cancel(id, "mine now")),
    (err: unknown) => isPlmError(err, "ERR_FORBIDDEN"),
  );
  assert.equal((await controlPlane.runs.get(id)).state, "running");
  await assert.rejects(
    runtime.cancel(id),
    (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
  );
  const admin: Identity = { subject: "ops", actorKind: "human", roles: ["run-admin"], scopes: [] };
  const cancelled = await withIdentity(admin, () => runtime.cancel(id, "stuck"));
  assert.equal(cancelled.state, "cancelled");
  const last = (await controlPlane.audit.list({ runId: id, actionPrefix: "run.transition" })).at(
    -1,
  );
  assert.deepEqual([last?.outcome, last?.actor.subject], ["cancelled", "ops"]);
  const decisions = await controlPlane.audit.list({ runId: id, actionPrefix: "run.cancel" });
  assert.deepEqual(decisions.map((r) => `${r.actor.subject}:${r.outcome}`), [
    "mallory:denied",
    "ops:allowed",
  ]);
  await db.close();
});

Deno.test("AgentRuntime runs an L1 agent's task suggest-only and ends it suggested", async (t) => {
  const modes: (string | undefined)[] = [];
  const agent = defineAgent({
    id: "drafter",
    invoke: (_task, ctx) => {
      modes.push(ctx.mode);
      return Promise.resolve({ draft: "raise quantity to 12" });
    },
  });
  const { db, runtime, timers, controlPlane } = await setUp([agent], {}, {
    autonomy: { defaultLevel: "L1", agents: { "bot-4": { level: "L4" } } },
  });
  const bot = (subject: string): Identity => ({
    subject,
    actorKind: "agent",
    roles: [],
    scopes: [],
  });
  await t.step("L1: approved, then suggested", async () => {
    const id = await runtime.submit(PLAIN_UPDATE, { identity: bot("bot-1") });
    const parked = await controlPlane.runs.get(id);
    assert.equal(parked.state, "awaiting_approval");
    const approval = await controlPlane.approvals.get(parked.approvalId!);
    assert.equal((approval.subject as { mode?: string }).mode, "suggest");
    const approver: Identity = { ...LEAD, roles: ["approver"] };
    await runtime.decideApproval(approval.id, "approve", {
      identity: approver,
      digest: approval.digest,
    });
    await timers.advance(0);
    const done = await runtime.wait(id);
    assert.equal(done.state, "suggested");
    assert.deepEqual(done.result, { draft: "raise quantity to 12" });
    assert.deepEqual(modes, ["suggest"]);
    assert.deepEqual(await transitions(controlPlane, id), [
      "awaiting_approval",
      "queued",
      "running",
      "suggested",
    ]);
  });
  await t.step("L4: acts and succeeds", async () => {
    modes.length = 0;
    const id = await runtime.submit(PLAIN_UPDATE, { identity: bot("bot-4") });
    assert.equal((await runtime.wait(id)).state, "succeeded");
    assert.deepEqual(modes, ["act"]);
  });
  await db.close();
});

Deno.test("AgentRuntime stores an agent's failure streak and drop with its failed runs, for every connection", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_runtime_test_" });
  const path = `${dir}/plm.db`;
  const autonomy = { defaultLevel: "L4" } as const;
  const { db, runtime, timers } = await setUp(
    [flaky("a", 99).agent],
    {
      retry: { maxAttempts: 1, initialDelayMs: 100, jitter: "none" },
    },
    { autonomy },
    path,
  );
  await using other = await openStore(path); // another process's connection, or after a restart
  const elsewhere = new ControlPlane(other, { policies: POLICIES, autonomy });
  const bot: Identity = { subject: "bot-9", actorKind: "agent", roles: [], scopes: [] };
  try {
    for (let i = 1; i <= 3; i++) {
      const id = await runtime.submit(BOM_UPDATE, { identity: bot });
      await timers.advance(0);
      assert.equal((await runtime.wait(id)).state, "failed");
      if (i < 3) assert.equal(await elsewhere.autonomy?.consecutiveFailures("bot-9"), i);
    }
    assert.equal(await elsewhere.autonomy?.levelOf("bot-9"), "L3");
    const [drop] = await elsewhere.audit.list({ actionPrefix: "autonomy.level.changed" });
    assert.equal(drop?.resource, "agent:bot-9");
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AgentRuntime keeps no failure streak for a requester that is not an agent", async () => {
  const { db, runtime, timers, controlPlane } = await setUp(
    [flaky("a", 99).agent],
    { retry: { maxAttempts: 1, initialDelayMs: 100, jitter: "none" } },
    { autonomy: { defaultLevel: "L4" } },
  );
  for (let i = 1; i <= 3; i++) {
    const id = await runtime.submit(BOM_UPDATE, { identity: SVC });
    await timers.advance(0);
    assert.equal((await runtime.wait(id)).state, "failed");
  }
  assert.equal(await controlPlane.autonomy?.consecutiveFailures(SVC.subject), 0);
  assert.deepEqual(await controlPlane.audit.list({ actionPrefix: "autonomy.level.changed" }), []);
  await db.close();
});

// --- the worker loop: start() and stop() ---------------------------------------------------

/** The states of runs `ids`, in order. */
async function statesOf(controlPlane: ControlPlane, ids: readonly string[]): Promise<string[]> {
  return (await Promise.all(ids.map((id) => controlPlane.runs.get(id)))).map((run) => run.state);
}

/**
 * Submits `count` runs through a runtime that only submits (as an API process
 * does), 1 ms apart: runs created in the same millisecond have no order.
 */
async function submitQueued(controlPlane: ControlPlane, count: number, from = 0) {
  const api = new AgentRuntime({ controlPlane, agents: [] });
  const clock = controlPlane.clock as FakeClock;
  const ids: string[] = [];
  for (let i = from; i < from + count; i++) {
    ids.push(await api.submit({ action: "bom.update", resource: `bom:${i}` }, { identity: SVC }));
    clock.advance(1);
  }
  return ids;
}

Deno.test("AgentRuntime.start() claims ready runs at once and on every poll, up to its free slots", async () => {
  const { db, runtime, controlPlane, timers, clock } = await setUp([flaky("a", 0).agent], {
    concurrency: 2,
  });
  const first = await submitQueued(controlPlane, 3);
  const started = clock.now();
  runtime.start({ pollIntervalMs: 1_000 });
  await timers.advance(0);
  await runtime.idle();
  // Two at once (its slots); the first poll filled them all, so the slot that freed first
  // polled again at once and took the third, without waiting for the poll interval.
  assert.deepEqual(await statesOf(controlPlane, first), ["succeeded", "succeeded", "succeeded"]);
  const records = await controlPlane.audit.list({ actionPrefix: "run." });
  const claims = records.filter((r) => r.action === "run.lease.claimed");
  assert.deepEqual(claims.map((r) => r.runId), first, "oldest first");
  const firstEnd = records.find((r) => r.outcome === "succeeded")!;
  assert.ok(claims[1]!.seq < firstEnd.seq, "two claimed before any ended");
  assert.ok(claims[2]!.seq > firstEnd.seq, "the third only once a slot was free");
  assert.equal(clock.now(), started, "no poll interval waited");
  const later = await submitQueued(controlPlane, 2, 3);
  await timers.advance(0);
  assert.deepEqual(await statesOf(controlPlane, later), ["queued", "queued"]);
  await timers.advance(1_000);
  await runtime.idle();
  assert.deepEqual(await statesOf(controlPlane, later), ["succeeded", "succeeded"]);
  await runtime.stop();
  await db.close();
});

Deno.test("AgentRuntime.start() takes back a dead worker's running run when its lease expires", async () => {
  const { db, runtime, controlPlane, timers, clock } = await setUp([flaky("a", 0).agent]);
  const [id] = await submitQueued(controlPlane, 1);
  const actor = { subject: "dead", kind: "service" } as const;
  const { lease } = await controlPlane.runs.claim(id!, "dead", 30_000, { actor });
  await controlPlane.runs.apply(id!, { type: "start", agentId: "a" }, {
    actor,
    lease: { owner: "dead", token: lease!.token },
  }); // then its process died
  const started = clock.now();
  runtime.start({ reclaimIntervalMs: 5_000, pollIntervalMs: 1_000 });
  await timers.advance(29_999);
  assert.equal((await controlPlane.runs.get(id!)).state, "running", "the lease is still live");
  assert.equal((await controlPlane.runs.get(id!)).lease?.owner, "dead");
  await timers.advance(started + 36_000 - clock.now());
  await runtime.idle();
  const done = await controlPlane.runs.get(id!);
  assert.equal(done.state, "succeeded");
  assert.equal(done.lease, null);
  const reclaimed = await controlPlane.audit.list({
    runId: id!,
    actionPrefix: "run.lease.reclaimed",
  });
  assert.deepEqual(reclaimed.map((r) => r.actor.subject), ["w1"]);
  await runtime.stop();
  await db.close();
});

Deno.test("AgentRuntime.start() expires overdue approvals periodically", async () => {
  const { db, runtime, controlPlane, timers } = await setUp([flaky("a", 0).agent]);
  const id = await runtime.submit({ action: "bom.release", resource: "bom:1" }, {
    identity: SVC,
  });
  runtime.start({
    approvalIntervalMs: 60_000,
    pollIntervalMs: 600_000,
    maxPollIntervalMs: 600_000,
    reclaimIntervalMs: 600_000,
  });
  await timers.advance(3_600_000 - 1);
  assert.equal((await controlPlane.runs.get(id)).state, "awaiting_approval");
  await timers.advance(60_000);
  assert.equal((await controlPlane.runs.get(id)).state, "expired");
  await runtime.stop();
  await db.close();
});

Deno.test("AgentRuntime.stop() lets runs in flight finish within the grace period", async () => {
  const { agent, calls } = gatedAgent("a", { maxConcurrency: 8, capabilities: ["bom"] });
  const { db, runtime, controlPlane, timers } = await setUp([agent]);
  runtime.start();
  const id = await runtime.submit(BOM_UPDATE, { identity: SVC });
  await timers.advance(0);
  assert.equal(calls.length, 1);
  let stopped = false;
  const stopping = runtime.stop({ graceMs: 1_000 }).then(() => (stopped = true));
  await timers.advance(500);
  assert.equal(stopped, false);
  assert.equal(calls[0]!.signal.aborted, false);
  calls[0]!.finish();
  await stopping;
  assert.equal((await controlPlane.runs.get(id)).state, "succeeded");
  assert.equal(timers.pending, 0, "no timer of the loop is left");
  await db.close();
});

Deno.test("AgentRuntime.stop() gives back the runs that outlive the grace period", async () => {
  const { agent, calls } = gatedAgent("a", { maxConcurrency: 8, capabilities: ["bom"] });
  const { db, runtime, controlPlane, timers, clock } = await setUp([agent], { concurrency: 1 });
  runtime.start();
  const running = await runtime.submit(BOM_UPDATE, { identity: SVC });
  const waiting = await runtime.submit(BOM_UPDATE, { identity: SVC });
  await timers.advance(0);
  assert.equal(calls.length, 1);
  const stopping = runtime.stop({ graceMs: 1_000 });
  await timers.advance(1_000);
  await stopping;
  assert.equal(calls[0]!.signal.aborted, true, "the agent was told to stop");
  const back = await controlPlane.runs.get(running);
  assert.equal(back.state, "retrying");
  assert.equal(back.lease, null);
  assert.deepEqual(
    (await controlPlane.audit.list({ runId: running, actionPrefix: "run.lease.released" }))
      .map((r) => r.actor.subject),
    ["w1"],
  );
  assert.equal((await controlPlane.runs.get(waiting)).state, "queued");
  assert.equal(
    (await controlPlane.runs.get(waiting)).lease,
    null,
    "a waiting run was never claimed",
  );
  assert.equal(
    (await controlPlane.audit.list({ runId: waiting, actionPrefix: "run.lease" })).length,
    0,
  );

  // Another worker takes both at once, without waiting for a lease to expire.
  const w2 = new AgentRuntime({
    controlPlane,
    agents: [flaky("b", 0).agent],
    owner: "w2",
    clock,
    timer: timers.timer,
  });
  w2.start();
  await timers.advance(0);
  await w2.idle();
  assert.deepEqual(await statesOf(controlPlane, [running, waiting]), ["succeeded", "succeeded"]);
  await w2.stop();
  assert.equal((await controlPlane.audit.verify()).ok, true);
  await db.close();
});

Deno.test("AgentRuntime.start() and stop() are idempotent; a stopped runtime dispatches nothing", async () => {
  const { db, runtime, controlPlane, timers } = await setUp([flaky("a", 0).agent]);
  runtime.start();
  const armed = timers.pending;
  runtime.start();
  assert.equal(timers.pending, armed, "a second start() arms nothing more");
  await Promise.all([runtime.stop(), runtime.stop()]);
  await runtime.stop();
  assert.equal(timers.pending, 0);
  const id = await runtime.submit(BOM_UPDATE, { identity: SVC });
  await timers.advance(10_000);
  assert.equal((await controlPlane.runs.get(id)).state, "queued", "left for another worker");
  assert.equal((await runtime.wait(id)).state, "queued");
  runtime.start();
  await timers.advance(0);
  await runtime.idle();
  assert.equal((await controlPlane.runs.get(id)).state, "succeeded", "started again, it claims");
  await runtime.stop();
  await db.close();
});

Deno.test("AgentRuntime.start() and stop() refuse malformed intervals", async () => {
  const { db, runtime, timers } = await setUp([flaky("a", 0).agent]);
  for (const pollIntervalMs of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => runtime.start({ pollIntervalMs }), RangeError);
  }
  assert.throws(
    () => runtime.start({ pollIntervalMs: 2_000, maxPollIntervalMs: 1_000 }),
    RangeError,
  );
  assert.throws(() => runtime.start({ wakeDebounceMs: -1 }), RangeError);
  assert.throws(() => runtime.start({ reclaimIntervalMs: 0 }), RangeError);
  assert.throws(() => runtime.start({ sealIntervalMs: 0 }), RangeError);
  assert.throws(() => runtime.start({ approvalIntervalMs: 0 }), RangeError);
  assert.equal(timers.pending, 0, "a refused start() arms nothing");
  assert.throws(() => runtime.stop({ graceMs: -1 }), RangeError);
  await db.close();
});
