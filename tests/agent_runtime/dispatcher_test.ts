import assert from "node:assert/strict";
import { allRuns } from "../_all_runs.ts";
import { getEventListeners } from "node:events";
import {
  type Agent,
  AgentError,
  AgentRuntime,
  type AgentRuntimeOptions,
  ControlPlane,
  defineAgent,
  Dispatcher,
  type DispatcherOptions,
  EscalationLadder,
  FakeClock,
  FakeTimers,
  type Identity,
  type JsonValue,
  openStore,
  PlmError,
  type PolicySet,
  type RunTask,
  withIdentity,
} from "../../agent_runtime/mod.ts";
import { gatedAgent } from "./_gated_agent.ts";

const POLICIES: PolicySet = { rules: [{ id: "work", effect: "allow", actions: ["bom.**"] }] };
const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

function taskOf(n: number): RunTask {
  return {
    action: "bom.update",
    resource: `bom:${n}`,
    capabilities: [],
    input: n,
    risk: "low",
    attributes: {},
  };
}

/** A control plane on `:memory:` with fake time, and a dispatcher factory on it. */
async function setUp() {
  const db = await openStore(":memory:");
  const clock = new FakeClock(Date.UTC(2026, 10, 30, 12));
  const timers = new FakeTimers(clock);
  const controlPlane = new ControlPlane(db, { policies: POLICIES, clock });
  const dispatcher = (agents: Agent[], options: Partial<DispatcherOptions> = {}) =>
    new Dispatcher({
      controlPlane,
      agents,
      clock,
      timer: timers.timer,
      random: () => 0.5,
      retry: { maxAttempts: 1 },
      maxQueue: 10_000,
      ...options,
    });
  const create = (count: number) => createRuns(controlPlane, count);
  return { db, clock, timers, controlPlane, dispatcher, create };
}

/** Creates `count` runs of tasks 0, 1, ..., one after the other; their ids. */
async function createRuns(controlPlane: ControlPlane, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let n = 0; n < count; n++) {
    const { run } = await controlPlane.runs.create(
      { task: taskOf(n), requester: SVC, traceparent: TRACEPARENT },
      { actor: { subject: "planner", kind: "service" } },
    );
    ids.push(run.id);
  }
  return ids;
}

/** Lets promise callbacks and the dispatcher's event-loop turns run. */
async function settle(timers: FakeTimers): Promise<void> {
  for (let i = 0; i < 3; i++) await timers.advance(0);
}

Deno.test("Dispatcher serves runs first come, first served", async (t) => {
  await t.step("concurrency 1", async () => {
    const { db, dispatcher, create } = await setUp();
    const order: string[] = [];
    const agent = defineAgent({
      id: "sync",
      invoke: (_task, ctx) => (order.push(ctx.runId), Promise.resolve("ok")),
    });
    const d = dispatcher([agent], { concurrency: 1 });
    const ids = await create(50);
    const done = await Promise.all(ids.map((id) => d.dispatch(id)));
    assert.deepEqual(order, ids);
    assert.ok(done.every((r) => r.state === "succeeded"));
    await db.close();
  });
  await t.step("many slots, one busy agent", async () => {
    const { db, dispatcher, create } = await setUp();
    const order: string[] = [];
    const finished: string[] = [];
    const agent = defineAgent({
      id: "sync",
      maxConcurrency: 1,
      invoke: (_task, ctx) => (order.push(ctx.runId), Promise.resolve("ok")),
    });
    const d = dispatcher([agent], { concurrency: 16 });
    const ids = await create(200);
    await Promise.all(ids.map((id) => d.dispatch(id).then((r) => finished.push(r.id))));
    assert.deepEqual(order, ids, "the agent took the runs in the order they were dispatched");
    assert.deepEqual(finished, ids);
    await db.close();
  });
});

Deno.test("Dispatcher wakes exactly one waiter per freed agent slot, in order", async () => {
  const { db, dispatcher, create, timers } = await setUp();
  const { agent, calls } = gatedAgent("one", { maxConcurrency: 1 });
  const d = dispatcher([agent], { concurrency: 8 });
  const ids = await create(5);
  const done = ids.map((id) => d.dispatch(id));
  await settle(timers);
  assert.equal(calls.length, 1);
  assert.equal(d.waitingForAgent, 4);
  for (let i = 0; i < 4; i++) {
    calls[i]!.finish();
    await settle(timers);
    assert.equal(calls.length, i + 2, "one more call started");
    assert.equal(calls[i + 1]!.runId, ids[i + 1]);
    assert.equal(d.waitingForAgent, 3 - i, "one waiter left the line, the others still wait");
  }
  calls[4]!.finish();
  assert.ok((await Promise.all(done)).every((r) => r.state === "succeeded"));
  await db.close();
});

Deno.test("Dispatcher leaves no abort listener on the agent's signal after an attempt", async () => {
  const { db, dispatcher, create, timers } = await setUp();
  const { agent, calls } = gatedAgent("g", { maxConcurrency: 4 });
  const d = dispatcher([agent]);
  const done = (await create(3)).map((id) => d.dispatch(id));
  await settle(timers);
  assert.equal(calls.length, 3);
  for (const call of calls) call.finish();
  await Promise.all(done);
  for (const call of calls) assert.equal(getEventListeners(call.signal, "abort").length, 0);
  await db.close();
});

Deno.test("Dispatcher lets timers fire during a burst of runs that settle without I/O", async () => {
  // Real timers: the point is the event loop itself. An ordering check, not a duration.
  await using db = await openStore(":memory:");
  const controlPlane = new ControlPlane(db, { policies: POLICIES });
  const agent = defineAgent({ id: "sync", invoke: (task) => Promise.resolve(task.input) });
  const d = new Dispatcher({ controlPlane, agents: [agent], maxQueue: 10_000 });
  const ids = await createRuns(controlPlane, 2_000);
  let finished = 0;
  let finishedWhenTimerFired = -1;
  const done = ids.map((id) => d.dispatch(id).then(() => finished++));
  setTimeout(() => (finishedWhenTimerFired = finished), 0);
  await Promise.all(done);
  await d.idle();
  assert.ok(finishedWhenTimerFired >= 0, "the timer fired");
  assert.ok(finishedWhenTimerFired < ids.length, "the timer fired before the burst ended");
  const left = await allRuns(controlPlane.runs, ["queued", "running"]);
  assert.deepEqual(left, [], "no run left behind");
  assert.equal((await allRuns(controlPlane.runs, ["succeeded"])).length, 2_000);
});

Deno.test("Dispatcher fails an attempt whose result JSON cannot carry, without retrying", async (t) => {
  const deep: JsonValue[] = [];
  let cursor = deep;
  for (let i = 0; i < 100; i++) {
    const next: JsonValue[] = [];
    cursor.push(next);
    cursor = next;
  }
  const results: [string, unknown][] = [
    ["NaN", { n: NaN }],
    ["a lone surrogate", "\ud800"],
    ["BigInt", { n: 10n }],
    ["too deep", deep],
    ["a Date", new Date(0)],
  ];
  for (const [name, result] of results) {
    await t.step(name, async () => {
      const { db, dispatcher, create, controlPlane } = await setUp();
      let calls = 0;
      const agent = defineAgent({
        id: "odd",
        invoke: () => (calls++, Promise.resolve(result as JsonValue)),
      });
      const d = dispatcher([agent], { retry: { maxAttempts: 3, initialDelayMs: 0 } });
      const [id] = await create(1);
      const run = await d.dispatch(id!);
      assert.equal(run.state, "failed");
      assert.equal(run.error?.code, "ERR_AGENT_FAILED");
      assert.equal(calls, 1, "not retried");
      assert.equal(run.lease, null);
      assert.equal((await controlPlane.audit.verify()).ok, true);
      await db.close();
    });
  }
});

Deno.test("Dispatcher records an agent's error message bounded and well-formed", async (t) => {
  const messages: [string, string][] = [
    ["100,000 characters", "x".repeat(100_000)],
    ["U+0000 and a lone surrogate", "bad\0input \ud800 here"],
  ];
  for (const [name, message] of messages) {
    await t.step(name, async () => {
      const { db, dispatcher, create, controlPlane } = await setUp();
      const agent = defineAgent({ id: "bad", invoke: () => Promise.reject(new Error(message)) });
      const d = dispatcher([agent]);
      const [id] = await create(1);
      const run = await d.dispatch(id!);
      assert.equal(run.state, "failed");
      const recorded = run.error?.message ?? "";
      assert.ok(recorded.length <= 2_100, `${recorded.length} characters`);
      assert.ok(!recorded.includes("\0") && recorded.isWellFormed());
      assert.equal((await controlPlane.audit.verify()).ok, true);
      await db.close();
    });
  }
});

/** Two runtimes (two workers) on one database, each with its own agent and fake timers. */
async function twoWorkers() {
  const db = await openStore(":memory:");
  const clock = new FakeClock(Date.UTC(2026, 10, 30, 12));
  const controlPlane = new ControlPlane(db, { policies: POLICIES, clock });
  const worker = (owner: string) => {
    const timers = new FakeTimers(clock);
    const errors: unknown[] = [];
    const { agent, calls } = gatedAgent(`agent-${owner}`, { maxConcurrency: 4 });
    const options: AgentRuntimeOptions = {
      controlPlane,
      agents: [agent],
      owner,
      clock,
      timer: timers.timer,
      leaseTtlMs: 1_000,
      retry: { maxAttempts: 1 },
      onError: (_runId, err) => errors.push(err),
    };
    return { runtime: new AgentRuntime(options), timers, errors, calls };
  };
  return { db, clock, controlPlane, w1: worker("w1"), w2: worker("w2") };
}

Deno.test("Dispatcher leaves a run it lost to another worker alone, quietly", async (t) => {
  await t.step("another worker holds the lease", async () => {
    const { db, controlPlane, w1, w2 } = await twoWorkers();
    const id = await w1.runtime.submit({ action: "bom.update", resource: "bom:1" }, {
      identity: SVC,
    });
    await settle(w1.timers);
    assert.equal(w1.calls.length, 1);
    const seen = await w2.runtime.dispatcher.dispatch(id);
    assert.equal(seen.state, "running");
    assert.equal(seen.lease?.owner, "w1");
    assert.equal(w2.calls.length, 0);
    w1.calls[0]!.finish();
    assert.equal((await w1.runtime.wait(id)).state, "succeeded");
    assert.deepEqual([...w1.errors, ...w2.errors], []);
    assert.equal((await controlPlane.audit.verify()).ok, true);
    await db.close();
  });
  await t.step("its lease expired and another worker finished the run", async () => {
    const { db, clock, controlPlane, w1, w2 } = await twoWorkers();
    const id = await w1.runtime.submit({ action: "bom.update", resource: "bom:1" }, {
      identity: SVC,
    });
    await settle(w1.timers);
    clock.advance(2_000); // w1's heartbeats never ran: its lease expired
    w2.runtime.start();
    await settle(w2.timers);
    assert.equal(w2.calls.length, 1, "w2 reclaimed the run and runs it");
    w2.calls[0]!.finish();
    assert.equal((await w2.runtime.wait(id)).state, "succeeded");
    w1.calls[0]!.finish(); // w1's agent comes back late
    const seen = await w1.runtime.wait(id);
    assert.equal(seen.state, "succeeded");
    assert.equal(seen.result, "ok from agent-w2");
    assert.deepEqual([...w1.errors, ...w2.errors], [], "losing a race is no error");
    const succeeded = (await controlPlane.audit.list({ runId: id, actionPrefix: "run.transition" }))
      .filter((r) => r.outcome === "succeeded");
    assert.deepEqual(succeeded.map((r) => r.actor.subject), ["w2"]);
    // Fenced: from the takeover on, nothing of w1's reached the store for this run.
    const records = await controlPlane.audit.list({ runId: id });
    const takeover = records.findIndex((r) => r.actor.subject === "w2");
    assert.ok(takeover > 0);
    assert.deepEqual(records.slice(takeover).filter((r) => r.actor.subject === "w1"), []);
    await w2.runtime.stop();
    await db.close();
  });
  await t.step("its lease was taken over while the other worker still runs it", async () => {
    const { db, clock, controlPlane, w1, w2 } = await twoWorkers();
    const id = await w1.runtime.submit({ action: "bom.update", resource: "bom:1" }, {
      identity: SVC,
    });
    await settle(w1.timers);
    assert.equal(w1.calls.length, 1);
    const first = (await controlPlane.runs.get(id)).lease!;
    assert.equal(first.owner, "w1");
    clock.advance(2_000); // w1's heartbeats never ran: its lease expired
    w2.runtime.start();
    await settle(w2.timers);
    assert.equal(w2.calls.length, 1, "w2 took the run over and runs it");
    const taken = await controlPlane.runs.get(id);
    assert.deepEqual([taken.state, taken.lease?.owner], ["running", "w2"]);
    assert.ok(taken.lease!.token > first.token, "the takeover's claim fenced w1 out");
    const before = (await controlPlane.audit.list({ runId: id })).length;

    w1.calls[0]!.finish(); // w1's agent comes back while w2's attempt runs: a legal transition
    const seen = await w1.runtime.wait(id);
    assert.deepEqual([seen.state, seen.lease?.owner], ["running", "w2"], "w1 changed nothing");
    assert.equal((await controlPlane.audit.list({ runId: id })).length, before, "nor audited");
    assert.deepEqual(w1.errors, [], "a lost lease is no error");

    w2.calls[0]!.finish();
    const done = await w2.runtime.wait(id);
    assert.deepEqual([done.state, done.result, done.attempt], ["succeeded", "ok from agent-w2", 2]);
    const records = await controlPlane.audit.list({ runId: id });
    const takeover = records.findIndex((r) => r.actor.subject === "w2");
    assert.deepEqual(records.slice(takeover).filter((r) => r.actor.subject === "w1"), []);
    assert.deepEqual([...w1.errors, ...w2.errors], []);
    assert.equal((await controlPlane.audit.verify()).ok, true);
    await w2.runtime.stop();
    await db.close();
  });
  await t.step("another worker cancelled the run while the agent worked", async () => {
    const { db, w1, w2 } = await twoWorkers();
    const id = await w1.runtime.submit({ action: "bom.update", resource: "bom:1" }, {
      identity: SVC,
    });
    await settle(w1.timers);
    await withIdentity(SVC, () => w2.runtime.cancel(id, "not needed"));
    w1.calls[0]!.finish();
    const seen = await w1.runtime.wait(id);
    assert.equal(seen.state, "cancelled");
    assert.deepEqual([...w1.errors, ...w2.errors], []);
    await db.close();
  });
});

Deno.test("Dispatcher waits an agent's retryAfterMs, capped at maxDelayMs", async () => {
  const { db, dispatcher, create, timers } = await setUp();
  let calls = 0;
  const agent = defineAgent({
    id: "limited",
    invoke: () =>
      ++calls === 1
        ? Promise.reject(new AgentError("ERR_AGENT_FAILED", "Slow down", { retryAfterMs: 60_000 }))
        : Promise.resolve("ok"),
  });
  const d = dispatcher([agent], {
    retry: { maxAttempts: 2, initialDelayMs: 100, maxDelayMs: 1_000, jitter: "none" },
  });
  const [id] = await create(1);
  const done = d.dispatch(id!);
  await timers.advance(999);
  assert.equal(calls, 1);
  await timers.advance(1);
  assert.equal(calls, 2);
  assert.equal((await done).state, "succeeded");
  await db.close();
});

Deno.test("Dispatcher spends one retryBudget across escalation steps", async () => {
  const { db, dispatcher, create, timers } = await setUp();
  const calls: string[] = [];
  const failing = (id: string, tier: number) =>
    defineAgent({ id, tier, invoke: () => (calls.push(id), Promise.reject(new Error("down"))) });
  const d = dispatcher([failing("weak", 1), failing("strong", 2)], {
    retry: { maxAttempts: 3, retryBudget: 4, initialDelayMs: 10, jitter: "none" },
    escalation: new EscalationLadder([{ kind: "tier", minTier: 2 }, { kind: "fail" }]),
  });
  const [id] = await create(1);
  const done = d.dispatch(id!);
  await timers.runAll();
  const run = await done;
  assert.deepEqual(calls, ["weak", "weak", "weak", "strong"]);
  assert.equal(run.state, "failed");
  assert.equal(run.attempt, 4);
  assert.equal(run.error?.code, "ERR_RETRY_EXHAUSTED");
  await db.close();
});

Deno.test("Dispatcher lets a run waiting for an agent choose again when its circuit opens", async () => {
  const { db, dispatcher, create, timers } = await setUp();
  const pending: ((error: Error) => void)[] = [];
  const agent = defineAgent({
    id: "fragile",
    maxConcurrency: 1,
    invoke: () => new Promise<JsonValue>((_, reject) => pending.push(reject)),
  });
  const d = dispatcher([agent], { breakers: { failureThreshold: 1 } });
  const [first, second] = await create(2);
  const done = [d.dispatch(first!), d.dispatch(second!)] as const;
  await settle(timers);
  assert.equal(d.waitingForAgent, 1);
  pending[0]!(new Error("down")); // the circuit opens: no slot will be freed for the waiter
  const [a, b] = await Promise.all(done);
  assert.equal(a.state, "failed");
  assert.equal(b.state, "failed");
  assert.equal(b.error?.code, "ERR_NO_AGENT");
  assert.equal(d.waitingForAgent, 0);
  await db.close();
});

Deno.test("Dispatcher takes a cancelled run out of the line for an agent", async () => {
  const { db, dispatcher, create, timers } = await setUp();
  const { agent, calls } = gatedAgent("one", { maxConcurrency: 1 });
  const d = dispatcher([agent], { concurrency: 8 });
  const [first, second, third] = await create(3);
  const done = [first!, second!, third!].map((id) => d.dispatch(id));
  await settle(timers);
  assert.equal(d.waitingForAgent, 2);
  await assert.rejects(d.cancel(second!, { reason: "not needed" }), {
    code: "ERR_IDENTITY_REQUIRED",
  });
  await assert.rejects(
    d.cancel(second!, { identity: { ...SVC, subject: "mallory" }, reason: "mine" }),
    { code: "ERR_FORBIDDEN" },
  );
  assert.equal(d.waitingForAgent, 2, "a refused cancel changes nothing");
  const cancelled = await d.cancel(second!, { identity: SVC, reason: "not needed" });
  assert.equal(cancelled.state, "cancelled");
  assert.equal(d.waitingForAgent, 1, "the cancelled run left the line");
  calls[0]!.finish();
  await settle(timers);
  assert.deepEqual(calls.map((c) => c.runId), [first, third], "the slot went to the next in line");
  calls[1]!.finish();
  assert.deepEqual((await Promise.all(done)).map((r) => r.state), [
    "succeeded",
    "cancelled",
    "succeeded",
  ]);
  await db.close();
});

Deno.test("Dispatcher takes over a run whose worker died mid-attempt once its lease expired", async () => {
  const { db, dispatcher, create, controlPlane, clock } = await setUp();
  const [id] = await create(1);
  const actor = { subject: "dead", kind: "service" } as const;
  const { lease } = await controlPlane.runs.claim(id!, "dead", 1_000, { actor });
  await controlPlane.runs.apply(id!, { type: "start", agentId: "a" }, {
    actor,
    lease: { owner: "dead", token: lease!.token },
  });
  const d = dispatcher([defineAgent({ id: "a", invoke: () => Promise.resolve("ok") })]);
  const held = await d.dispatch(id!);
  assert.equal(held.state, "running", "a live lease is left alone");
  assert.equal(held.lease?.owner, "dead");
  clock.advance(1_000);
  const done = await d.dispatch(id!);
  assert.equal(done.state, "succeeded");
  assert.equal(done.attempt, 2);
  await db.close();
});

Deno.test("Dispatcher.cancel() of a run waiting for a slot settles at once and frees its place", async () => {
  const { db, dispatcher, create, timers, controlPlane } = await setUp();
  const { agent, calls } = gatedAgent("stuck", { maxConcurrency: 4 });
  const d = dispatcher([agent], { concurrency: 1, maxQueue: 1 });
  const [first, second, third] = await create(3);
  const running = d.dispatch(first!);
  const waiting = d.dispatch(second!);
  await settle(timers);
  assert.equal(d.queued, 1);
  assert.equal(d.full, true);
  const cancelled = await d.cancel(second!, { identity: SVC, reason: "not needed" });
  assert.equal(cancelled.state, "cancelled", "settled while the first run still holds the slot");
  assert.equal((await waiting).attempt, 0, "its dispatch settled without running it");
  assert.equal((await controlPlane.runs.get(second!)).state, "cancelled");
  assert.equal(d.queued, 0, "it left the line");
  assert.equal(d.full, false, "and its place in the queue");
  const next = d.dispatch(third!);
  calls[0]!.finish();
  await settle(timers);
  calls[1]!.finish();
  assert.deepEqual([(await running).state, (await next).state], ["succeeded", "succeeded"]);
  assert.deepEqual(calls.map((c) => c.runId), [first, third]);
  assert.equal((await controlPlane.audit.verify()).ok, true);
  await db.close();
});

Deno.test("Dispatcher keeps a run whose heartbeat failed once for a passing reason (the database busy)", async () => {
  const { db, dispatcher, create, timers, controlPlane, clock } = await setUp();
  const { agent, calls } = gatedAgent("slow");
  const d = dispatcher([agent], { leaseTtlMs: 30_000 });
  const [id] = await create(1);
  const runs = controlPlane.runs;
  const heartbeat = runs.heartbeat.bind(runs);
  let failures = 1;
  runs.heartbeat = (...args: Parameters<typeof heartbeat>) => {
    if (failures-- > 0) {
      return Promise.reject(new PlmError("ERR_STORE_BUSY", "Another process holds the lock"));
    }
    return heartbeat(...args);
  };
  const done = d.dispatch(id!);
  await settle(timers);
  await timers.advance(10_000); // first beat: busy
  assert.equal(calls[0]!.signal.aborted, false, "a busy database does not end the attempt");
  await timers.advance(10_000); // second beat renews the lease
  assert.equal((await runs.get(id!)).lease?.expiresAt, clock.now() + 30_000);
  calls[0]!.finish();
  assert.equal((await done).state, "succeeded");
  await db.close();
});
