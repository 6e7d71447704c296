/**
 * Scheduling through the code a user's run goes through: `Dispatcher.dispatch()`
 * of 1,000 runs on no-op in-process agents (selection among 8 agents, the
 * global slots and per-agent counts, circuit breakers, the retry path, the
 * lease claim and the `running`/`succeeded` transitions, each audited), side
 * by side with `npm:p-queue` running 1,000 no-op tasks at the same
 * concurrency, in one run.
 *
 * Not like for like, on purpose: p-queue only schedules promises in memory,
 * while every dispatch persists its lease and transitions (3 `BEGIN IMMEDIATE`
 * transactions, 2 run updates and 3 audit records a run) before it settles.
 * The dispatcher's in-memory part cannot be run apart from the store through
 * public code (a dispatch starts by claiming the run's lease), so it is not
 * benchmarked alone: a hand-built stand-in would measure code no run uses.
 *
 * The runs are created before the timer starts (`b.start()`), with the
 * control plane's `runs.create`, outside the measured part. Each iteration
 * dispatches fresh runs: a run is dispatched once.
 *
 * ```sh
 * deno bench -A bench/scheduling_bench.ts
 * ```
 *
 * @module
 */
import PQueue from "p-queue";
import {
  type AuditActor,
  ControlPlane,
  defineAgent,
  Dispatcher,
  type Identity,
  openStore,
  type RunTask,
  type Store,
} from "../agent_runtime/mod.ts";

const RUNS = 1_000;
const noop = () => Promise.resolve(null);

// 8 agents: two tiers, varied costs; all can read, half can also write.
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
const SVC: Identity = { subject: "bench", actorKind: "service", roles: [], scopes: [] };
const ACTOR: AuditActor = { subject: "bench", kind: "service" };
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const dir = Deno.makeTempDirSync({ prefix: "plm_scheduling_bench_" });
const databases: Store[] = [];
globalThis.addEventListener("unload", () => {
  databases.forEach((db) => void db.close());
  Deno.removeSync(dir, { recursive: true });
});

async function dispatcherOn(path: string, concurrency: number) {
  const db = await openStore(path);
  databases.push(db);
  const controlPlane = new ControlPlane(db, { policies: { rules: [] } });
  const dispatcher = new Dispatcher({ controlPlane, agents: AGENTS, concurrency, maxQueue: RUNS });
  const create = async () => {
    const ids: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      const { run } = await controlPlane.runs.create(
        { task: TASK, requester: SVC, traceparent: TRACEPARENT },
        { actor: ACTOR },
      );
      ids.push(run.id);
    }
    return ids;
  };
  return { dispatcher, create };
}

// Both sides must do the work before their speed means anything.
{
  const { dispatcher, create } = await dispatcherOn(":memory:", 4);
  const runs = await Promise.all((await create()).map((id) => dispatcher.dispatch(id)));
  if (runs.some((r) => r.state !== "succeeded")) {
    throw new Error("Cannot compare: the dispatcher did not finish every run");
  }
  const queue = new PQueue({ concurrency: 4 });
  let ran = 0;
  await Promise.all(Array.from({ length: 100 }, () => queue.add(() => (ran++, noop()))));
  if (ran !== 100) throw new Error("Cannot compare: p-queue did not run every task");
}

for (const concurrency of [1, 64]) {
  const group = `${RUNS} no-op runs, concurrency ${concurrency}`;
  const queue = new PQueue({ concurrency });
  const tasks = new Array<Promise<unknown>>(RUNS);

  Deno.bench({
    name: "npm:p-queue add() (in memory, persists nothing)",
    group,
    baseline: true,
    async fn() {
      for (let i = 0; i < RUNS; i++) tasks[i] = queue.add(noop);
      await Promise.all(tasks);
    },
  });
  for (
    const [name, path] of [
      ["Dispatcher.dispatch() on :memory:", ":memory:"],
      ["Dispatcher.dispatch() on a file (WAL, NORMAL)", `${dir}/c${concurrency}.db`],
    ] as const
  ) {
    const { dispatcher, create } = await dispatcherOn(path, concurrency);
    Deno.bench({
      name,
      group,
      n: 20,
      warmup: 2,
      async fn(b) {
        const ids = await create();
        b.start();
        for (let i = 0; i < RUNS; i++) tasks[i] = dispatcher.dispatch(ids[i]!);
        await Promise.all(tasks);
        b.end();
      },
    });
  }
}
