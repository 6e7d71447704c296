// The scheduling core of the agent runtime (selection among 8 agents, the concurrency limiter,
// the circuit breakers, the retry wrapper around a no-op agent; no store, no audit) side by side
// with npm:p-queue running the same no-op tasks at the same concurrency. Each iteration pushes
// 1,000 tasks through and awaits them all. Run: deno bench -A bench/scheduling_bench.ts
import PQueue from "p-queue";
import {
  type AgentContext,
  CircuitBreakers,
  ConcurrencyLimiter,
  defineAgent,
  FakeClock,
  InFlightCounter,
  retry,
  RetryPolicy,
  type RunTask,
  selectAgent,
  type SelectorState,
  TraceState,
} from "../agent_runtime/mod.ts";

const TASKS = 1_000;

const noop = () => Promise.resolve(null);

// 8 agents: two tiers, varied costs and capacities; all can read, half can also write.
const AGENTS = Array.from({ length: 8 }, (_, i) =>
  defineAgent({
    id: `agent-${i}`,
    capabilities: i % 2 === 0 ? ["bom.read", "bom.write"] : ["bom.read"],
    tier: i < 6 ? 0 : 1,
    costPerRun: i % 3,
    maxConcurrency: 16,
    invoke: noop,
  }));

const TASK: RunTask = {
  action: "bom.read",
  resource: "bom:1",
  capabilities: ["bom.read"],
  input: null,
  risk: "low",
  attributes: {},
};

const CTX: AgentContext = {
  signal: new AbortController().signal,
  deadline: Number.MAX_SAFE_INTEGER,
  attempt: 1,
  identity: { subject: "bench", actorKind: "service", roles: [], scopes: [] },
  trace: {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    traceFlags: 1,
    traceState: TraceState.EMPTY,
  },
  runId: "run-bench",
  idempotencyKey: "run-bench",
};

const clock = new FakeClock(0);
const policy = new RetryPolicy();
const retryOptions = { clock, random: () => 0.5, sleep: () => Promise.resolve() };

/** One scheduler: a limiter, per-agent counts and breakers, as the dispatcher would hold them. */
function scheduler(concurrency: number) {
  const limiter = new ConcurrencyLimiter({ concurrency });
  const counter = new InFlightCounter();
  const breakers = new CircuitBreakers({ clock });
  const state: SelectorState = {
    inFlight: (id) => counter.inFlight(id),
    isAvailable: (id) => breakers.isAvailable(id),
  };
  return function schedule(task: RunTask) {
    return limiter.run(async () => {
      const { agent } = selectAgent(task, AGENTS, state);
      counter.increment(agent.id);
      try {
        const result = await retry(() => agent.invoke(task, CTX), policy, retryOptions);
        breakers.get(agent.id).recordSuccess();
        return result;
      } finally {
        counter.decrement(agent.id);
      }
    });
  };
}

// Both sides must do the work before their speed means anything.
{
  const schedule = scheduler(4);
  const results = await Promise.all(Array.from({ length: 100 }, () => schedule(TASK)));
  if (results.length !== 100 || results.some((r) => r !== null)) {
    throw new Error("Cannot compare: the scheduler did not run every task");
  }
  const queue = new PQueue({ concurrency: 4 });
  let ran = 0;
  await Promise.all(Array.from({ length: 100 }, () => queue.add(() => (ran++, noop()))));
  if (ran !== 100) throw new Error("Cannot compare: p-queue did not run every task");
}

for (const concurrency of [1, 64]) {
  const group = `${TASKS} no-op tasks, concurrency ${concurrency}`;
  const queue = new PQueue({ concurrency });
  const limiter = new ConcurrencyLimiter({ concurrency });
  const schedule = scheduler(concurrency);
  const tasks = new Array<Promise<unknown>>(TASKS);

  Deno.bench({
    name: "npm:p-queue add()",
    group,
    baseline: true,
    async fn() {
      for (let i = 0; i < TASKS; i++) tasks[i] = queue.add(noop);
      await Promise.all(tasks);
    },
  });
  Deno.bench({
    name: "ConcurrencyLimiter run() alone",
    group,
    async fn() {
      for (let i = 0; i < TASKS; i++) tasks[i] = limiter.run(noop);
      await Promise.all(tasks);
    },
  });
  Deno.bench({
    name: "scheduling core: selectAgent + limiter + breakers + retry",
    group,
    async fn() {
      for (let i = 0; i < TASKS; i++) tasks[i] = schedule(TASK);
      await Promise.all(tasks);
    },
  });
}
