/**
 * The worker loop of `AgentRuntime.start()` on fake time: adaptive jittered
 * polling, wake-up hints, the elected reaper, and fencing of a worker whose
 * lease was taken over.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type Agent,
  AgentRuntime,
  type AgentRuntimeOptions,
  ControlPlane,
  defineAgent,
  FakeClock,
  FakeTimers,
  type Identity,
  openStore,
  type PolicySet,
  type Run,
  type Store,
  type StoreTx,
  type WakeTopic,
} from "../../agent_runtime/mod.ts";
import { gatedAgent } from "./_gated_agent.ts";

const POLICIES: PolicySet = { rules: [{ id: "work", effect: "allow", actions: ["bom.**"] }] };
const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const T0 = Date.UTC(2026, 10, 30, 12);

/**
 * A store that passes everything to a real one and lets the test send wake-up
 * hints (`"reconnected"` included, which only a PostgreSQL listener sends).
 */
class HintingStore implements Store {
  readonly #inner: Store;
  readonly #listeners = new Set<(topic: WakeTopic | "reconnected") => void>();
  constructor(inner: Store) {
    this.#inner = inner;
  }
  /** Sends `topic` to every subscriber, as the store does after a commit. */
  hint(topic: WakeTopic | "reconnected"): void {
    for (const listener of this.#listeners) listener(topic);
  }
  get subscribers(): number {
    return this.#listeners.size;
  }
  get kind() {
    return this.#inner.kind;
  }
  get location() {
    return this.#inner.location;
  }
  get readOnly() {
    return this.#inner.readOnly;
  }
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.#inner.transaction(fn);
  }
  read<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.#inner.read(fn);
  }
  lead<T>(role: Parameters<Store["lead"]>[0], fn: (tx: StoreTx) => Promise<T>) {
    return this.#inner.lead(role, fn);
  }
  onWake(listener: (topic: WakeTopic | "reconnected") => void): () => void {
    this.#listeners.add(listener);
    const inner = this.#inner.onWake(listener);
    return () => {
      this.#listeners.delete(listener);
      inner();
    };
  }
  schemaVersion(): Promise<number> {
    return this.#inner.schemaVersion();
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.#inner.close();
  }
}

/** A worker on a `:memory:` store with fake time, whose polls (claimReady calls) are recorded. */
async function setUp(agents: Agent[], options: Partial<AgentRuntimeOptions> = {}) {
  const store = new HintingStore(await openStore(":memory:"));
  const clock = new FakeClock(T0);
  const timers = new FakeTimers(clock);
  const controlPlane = new ControlPlane(store, { policies: POLICIES, clock });
  const errors: unknown[] = [];
  const runtime = new AgentRuntime({
    controlPlane,
    agents,
    clock,
    timer: timers.timer,
    random: () => 0.5, // jitter factor 0.8 + 0.4 * 0.5 = 1: exact intervals
    owner: "w1",
    onError: (_runId, err) => errors.push(err),
    ...options,
  });
  /** Each poll: when it ran and how many runs it claimed. */
  const polls: { at: number; claimed: number }[] = [];
  const runs = controlPlane.runs;
  const claimReady = runs.claimReady.bind(runs);
  runs.claimReady = async (...args: Parameters<typeof claimReady>) => {
    const at = clock.now();
    const claimed = await claimReady(...args);
    polls.push({ at, claimed: claimed.length });
    return claimed;
  };
  /** A queued run, created as an API process would, without a wake-up hint. */
  const queue = async (n: number): Promise<string> => {
    const { run } = await controlPlane.runs.create({
      task: {
        action: "bom.update",
        resource: `bom:${n}`,
        capabilities: [],
        input: n,
        risk: "low",
        attributes: {},
      },
      requester: SVC,
      traceparent: TRACEPARENT,
    }, { actor: { subject: "api", kind: "service" } });
    return run.id;
  };
  return { store, clock, timers, controlPlane, runtime, polls, errors, queue };
}

/** The waits between consecutive polls. */
function gaps(polls: readonly { at: number }[]): number[] {
  return polls.slice(1).map((poll, i) => poll.at - polls[i]!.at);
}

const ok = () => defineAgent({ id: "a", invoke: () => Promise.resolve("ok") });

Deno.test("AgentRuntime.start() polls at once, backs off x2 to the max when idle, and back to the min on work", async () => {
  const { store, timers, runtime, polls, errors, queue } = await setUp([ok()]);
  runtime.start({ pollIntervalMs: 100, maxPollIntervalMs: 800, wakeDebounceMs: 10_000 });
  await timers.advance(2_999);
  assert.equal(polls[0]?.at, T0, "the first poll is at once");
  assert.deepEqual(gaps(polls), [200, 400, 800, 800], "x2 after each empty poll, up to max");
  assert.ok(polls.every((poll) => poll.claimed === 0));

  await queue(1);
  await timers.advance(1); // the next poll, 800 ms after the last, finds the run
  assert.deepEqual(polls.at(-1), { at: T0 + 3_000, claimed: 1 });
  await runtime.idle();
  await timers.advance(700);
  assert.deepEqual(
    gaps(polls).slice(-3),
    [100, 200, 400],
    "back to the min after work, then x2 again",
  );
  await runtime.stop();
  assert.deepEqual(errors, []);
  await store.close();
});

Deno.test("AgentRuntime.start() jitters every wait by ±20% with the injected randomness", async (t) => {
  for (
    const [random, expected] of [
      [0, [160, 320, 640, 640, 640]],
      [0.75, [220, 440, 880, 880, 880]],
      [0.999_999, [240, 480, 960, 960, 960]],
    ] as const
  ) {
    await t.step(`random() = ${random}`, async () => {
      const { store, timers, runtime, polls } = await setUp([ok()], { random: () => random });
      runtime.start({ pollIntervalMs: 100, maxPollIntervalMs: 800 });
      await timers.advance(5_000);
      assert.deepEqual(gaps(polls).slice(0, 5), expected);
      await runtime.stop();
      await store.close();
    });
  }
  await t.step("a seeded sequence gives the same waits every time", async () => {
    const waits: number[][] = [];
    for (let i = 0; i < 2; i++) {
      let seed = 7;
      const random = () => ((seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647);
      const { store, timers, runtime, polls } = await setUp([ok()], { random });
      runtime.start({ pollIntervalMs: 100, maxPollIntervalMs: 800 });
      await timers.advance(5_000);
      waits.push(gaps(polls));
      for (const [i, wait] of gaps(polls).entries()) {
        const base = Math.min(800, 100 * 2 ** (i + 1));
        assert.ok(wait >= base * 0.8 && wait <= base * 1.2, `wait ${i}: ${wait} of ${base}`);
      }
      await runtime.stop();
      await store.close();
    }
    assert.deepEqual(waits[0], waits[1]);
  });
});

Deno.test("AgentRuntime.start() polls soon after a 'runs' wake-up hint, once for a burst of hints", async () => {
  const { store, timers, runtime, polls, controlPlane, queue } = await setUp([ok()]);
  runtime.start({ pollIntervalMs: 1_000, maxPollIntervalMs: 60_000, wakeDebounceMs: 20 });
  await timers.advance(10_000); // idle: polls at 0, 2 s, 6 s; the next is due at 14 s
  assert.deepEqual(polls.map((poll) => poll.at - T0), [0, 2_000, 6_000]);
  const id = await queue(1);
  store.hint("runs");
  store.hint("runs");
  await timers.advance(5);
  store.hint("runs");
  await timers.advance(14);
  assert.equal(polls.length, 3, "not before the debounce");
  await timers.advance(1);
  assert.deepEqual(polls.slice(3), [{ at: T0 + 10_020, claimed: 1 }], "one poll for three hints");
  await runtime.idle();
  assert.equal((await controlPlane.runs.get(id)).state, "succeeded");
  await timers.advance(1_000);
  assert.deepEqual(polls.slice(4).map((poll) => poll.at - T0), [11_020], "then the min again");
  await runtime.stop();
  await store.close();
});

Deno.test("AgentRuntime.start() polls at once after 'reconnected', from the min interval", async () => {
  const { store, timers, runtime, polls, queue } = await setUp([ok()]);
  runtime.start({ pollIntervalMs: 1_000, maxPollIntervalMs: 60_000, wakeDebounceMs: 500 });
  await timers.advance(20_000); // polls at 0, 2 s, 6 s, 14 s; the next at 30 s
  assert.equal(polls.length, 4);
  await queue(1);
  store.hint("reconnected"); // hints may have been missed: poll fully, now
  await timers.advance(0);
  assert.deepEqual(polls.slice(4), [{ at: T0 + 20_000, claimed: 1 }]);
  await runtime.idle();
  await timers.advance(1_000);
  assert.equal(polls.at(-1)?.at, T0 + 21_000);
  await runtime.stop();
  assert.equal(store.subscribers, 0, "stop() unsubscribed");
  await store.close();
});

Deno.test("AgentRuntime.start() takes a hint during a poll as a poll soon after it", async () => {
  const { store, timers, runtime, polls, controlPlane, queue } = await setUp([ok()]);
  const runs = controlPlane.runs;
  const claimReady = runs.claimReady.bind(runs);
  let hintDuring = true;
  runs.claimReady = async (...args: Parameters<typeof claimReady>) => {
    const claimed = await claimReady(...args);
    if (hintDuring) {
      hintDuring = false;
      await queue(1);
      store.hint("runs"); // arrives while this poll is still in flight, after its claim
    }
    return claimed;
  };
  runtime.start({ pollIntervalMs: 1_000, maxPollIntervalMs: 60_000, wakeDebounceMs: 20 });
  await timers.advance(20);
  assert.deepEqual(polls, [{ at: T0, claimed: 0 }, { at: T0 + 20, claimed: 1 }]);
  await runtime.stop();
  await store.close();
});

Deno.test("AgentRuntime's reaper takes back an expired lease within 1.5 lease lifetimes", async (t) => {
  const TTL = 1_000;
  for (const phase of [0, 1, 250, 499, 500, 777]) {
    await t.step(`worker started ${phase} ms after the dead worker's claim`, async () => {
      const { store, clock, timers, runtime, controlPlane, queue } = await setUp([ok()], {
        leaseTtlMs: TTL,
      });
      const id = await queue(1);
      const actor = { subject: "dead", kind: "service" } as const;
      const claimed = await controlPlane.runs.claim(id, "dead", TTL, { actor });
      await controlPlane.runs.apply(id, { type: "start", agentId: "a" }, {
        actor,
        lease: { owner: "dead", token: claimed.lease!.token },
      }); // then its process died
      const expiresAt = claimed.lease!.expiresAt;
      await timers.advance(phase);
      runtime.start({ pollIntervalMs: 100, maxPollIntervalMs: 100 }); // reaper every TTL / 2
      let reclaimedAt: number | undefined;
      while (reclaimedAt === undefined && clock.now() < T0 + 3 * TTL) {
        await timers.advance(100);
        const [record] = await controlPlane.audit.list({
          runId: id,
          actionPrefix: "run.lease.reclaimed",
        });
        reclaimedAt = record?.at;
      }
      assert.ok(reclaimedAt !== undefined, "reclaimed");
      assert.ok(reclaimedAt >= expiresAt, "never before the lease expired");
      assert.ok(reclaimedAt <= T0 + 1.5 * TTL, `reclaimed ${reclaimedAt - T0} ms after the claim`);
      await timers.advance(100);
      await runtime.idle();
      const done = await controlPlane.runs.get(id);
      assert.deepEqual([done.state, done.attempt], ["succeeded", 2]);
      await runtime.stop();
      await store.close();
    });
  }
});

Deno.test("AgentRuntime.stop() during a poll gives back what the poll claimed", async () => {
  const { agent, calls } = gatedAgent("a", { maxConcurrency: 4 });
  const { store, timers, runtime, controlPlane, queue } = await setUp([agent]);
  const id = await queue(1);
  const runs = controlPlane.runs;
  const claimReady = runs.claimReady.bind(runs);
  let stopping: Promise<void> | undefined;
  runs.claimReady = async (...args: Parameters<typeof claimReady>) => {
    stopping = runtime.stop({ graceMs: 0 }); // stop() comes while the claim is in flight
    return await claimReady(...args);
  };
  runtime.start();
  await timers.advance(0);
  await stopping;
  assert.equal(calls.length, 0, "nothing ran after stop()");
  const run: Run = await controlPlane.runs.get(id);
  assert.deepEqual([run.state, run.lease], ["queued", null], "the lease was given back");
  const released = await controlPlane.audit.list({ runId: id, actionPrefix: "run.lease.released" });
  assert.equal(released.length, 1);
  await store.close();
});
