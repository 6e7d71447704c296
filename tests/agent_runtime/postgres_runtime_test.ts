/**
 * The worker loop on PostgreSQL (when `PLM_TEST_POSTGRES_URL` is set): two
 * workers, each with its own store (its own pool), in a database of the
 * test's own (the elected roles' advisory locks are per database). Leases run
 * on a fake clock; the store's round trips are real, so the test waits for
 * conditions by letting the fake timers and the I/O turn.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  AgentRuntime,
  ControlPlane,
  FakeClock,
  FakeTimers,
  type Identity,
  openStore,
  type PolicySet,
  type Store,
} from "../../agent_runtime/mod.ts";
import { POSTGRES_URL } from "../_postgres.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";
import { gatedAgent } from "./_gated_agent.ts";

const POLICIES: PolicySet = { rules: [{ id: "work", effect: "allow", actions: ["bom.**"] }] };
const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };

/**
 * Lets the fake timers fire what is due and the store's I/O settle, moving the
 * clock 1 ms a turn (the loop's next tick may be due later), until `done()`.
 */
async function until(timers: FakeTimers[], done: () => boolean, what: string): Promise<void> {
  for (let turn = 0; !done(); turn++) {
    if (turn > 3_000) assert.fail(`never happened: ${what}`);
    const [first, ...others] = timers;
    await first?.advance(1); // the clock is shared: the others fire what is due by it
    for (const t of others) await t.advance(0);
  }
}

if (POSTGRES_URL !== undefined) {
  const url = POSTGRES_URL;
  Deno.test({
    name: "[postgres] a worker whose lease was taken over writes nothing more for the run",
    sanitizeResources: false, // pg keeps its sockets until end() settles
    sanitizeOps: false,
    async fn() {
      await withPostgresDatabase(url, (location) => takeover(location));
    },
  });
}

/** w1 runs a run, its lease expires, w2 takes it over; w1's late completion changes nothing. */
async function takeover(url: string): Promise<void> {
  const clock = new FakeClock(Date.UTC(2026, 10, 30, 12));
  const stores: Store[] = [];
  const worker = async (owner: string) => {
    const store = await openStore(url, { clock });
    stores.push(store);
    const controlPlane = new ControlPlane(store, { policies: POLICIES, clock });
    const timers = new FakeTimers(clock);
    const errors: unknown[] = [];
    const { agent, calls } = gatedAgent(`agent-${owner}`, { maxConcurrency: 4 });
    const runtime = new AgentRuntime({
      controlPlane,
      agents: [agent],
      owner,
      clock,
      timer: timers.timer,
      leaseTtlMs: 1_000,
      retry: { maxAttempts: 1 },
      onError: (_runId, err) => errors.push(err),
    });
    return { controlPlane, runtime, timers, errors, calls };
  };
  try {
    const w1 = await worker("w1");
    const w2 = await worker("w2");
    const id = await w1.runtime.submit({ action: "bom.update", resource: "bom:1" }, {
      identity: SVC,
    });
    await until([w1.timers], () => w1.calls.length === 1, "w1 runs the run");
    const first = (await w1.controlPlane.runs.get(id)).lease!;
    clock.advance(2_000); // w1's timers stay still from here: no heartbeat, its lease expired

    w2.runtime.start({ pollIntervalMs: 100, maxPollIntervalMs: 100 });
    await until([w2.timers], () => w2.calls.length === 1, "w2 takes the run over");
    const taken = await w2.controlPlane.runs.get(id);
    assert.deepEqual([taken.state, taken.lease?.owner], ["running", "w2"]);
    assert.ok(taken.lease!.token > first.token, "the takeover's claim fenced w1 out");
    const before = (await w2.controlPlane.audit.list({ runId: id })).length;

    w1.calls[0]!.finish(); // w1's agent comes back while w2's attempt runs
    const seen = await w1.runtime.wait(id);
    assert.deepEqual([seen.state, seen.lease?.owner], ["running", "w2"], "w1 changed nothing");
    assert.equal((await w2.controlPlane.audit.list({ runId: id })).length, before);

    w2.calls[0]!.finish();
    const done = await w2.runtime.wait(id);
    assert.deepEqual([done.state, done.result], ["succeeded", "ok from agent-w2"]);
    const records = await w2.controlPlane.audit.list({ runId: id });
    const takeover = records.findIndex((r) => r.actor.subject === "w2");
    assert.ok(takeover > 0);
    assert.deepEqual(records.slice(takeover).filter((r) => r.actor.subject === "w1"), []);
    assert.deepEqual([...w1.errors, ...w2.errors], [], "a lost lease is no error");
    const stopped = w2.runtime.stop();
    await until([w2.timers], () => w2.runtime.dispatcher.inFlight === 0, "w2 stops");
    await stopped;
    assert.equal((await w2.controlPlane.audit.verify()).ok, true);
  } finally {
    for (const store of stores) await store.close();
  }
}
