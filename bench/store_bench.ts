/**
 * One worker's hot path through `RunStore` on each engine, per call, in one
 * process: `claimReady(owner, ttl, 1)` (one statement, audited), then
 * `apply(start)` and `apply(succeed)` under the lease it got (each a fenced
 * update and its audit record, in one transaction). The run is created before
 * the timed part of each iteration.
 *
 * - group `claim + start + succeed`: SQLite `:memory:` (baseline), a SQLite
 *   file (WAL, NORMAL) and PostgreSQL (the sealer not running: records wait,
 *   unchained, as they do between two passes of a worker's sealer).
 *
 * The PostgreSQL store is `PLM_BENCH_POSTGRES_URL`, default the local server,
 * in a fresh schema dropped at exit. Throughput across processes is measured
 * by `bench/pg_scale.ts`, not here.
 *
 * ```sh
 * deno bench -A bench/store_bench.ts
 * ```
 *
 * @module
 */
import {
  ControlPlane,
  type Identity,
  type LeaseHold,
  openStore,
  type Store,
} from "../control_plane/mod.ts";

const URL = Deno.env.get("PLM_BENCH_POSTGRES_URL") || "postgres://postgres@127.0.0.1:5432/test";
const SCHEMA = `bench_store_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
const REQUESTER: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };
const WORKER = { subject: "worker-1", kind: "service" } as const;
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TASK = {
  action: "bom.update",
  resource: "bom:42",
  capabilities: ["bom"],
  input: { line: 7, qty: 3 },
  risk: "low" as const,
  attributes: {},
};

const dir = Deno.makeTempDirSync({ prefix: "plm_store_bench_" });
const stores: Store[] = [];
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

function controlPlaneOn(store: Store): ControlPlane {
  stores.push(store);
  return new ControlPlane(store, { policies: { rules: [] } });
}

/** One iteration: a run created untimed, then claimed, started and succeeded, timed. */
function bench(name: string, controlPlane: ControlPlane, baseline = false): void {
  const runs = controlPlane.runs;
  Deno.bench({
    name,
    group: "claim + start + succeed",
    baseline,
    async fn(b) {
      await runs.create({ task: TASK, requester: REQUESTER, traceparent: TRACEPARENT });
      b.start();
      const [run] = await runs.claimReady("worker-1", 30_000, 1, { actor: WORKER });
      const lease: LeaseHold = { owner: "worker-1", token: run!.lease!.token };
      await runs.apply(run!.id, { type: "start", agentId: "noop" }, { actor: WORKER, lease });
      await runs.apply(run!.id, { type: "succeed", result: "ok" }, { actor: WORKER, lease });
      b.end();
    },
  });
}

bench("SQLite :memory:", controlPlaneOn(await openStore(":memory:")), true);
bench("SQLite file (WAL, NORMAL)", controlPlaneOn(await openStore(`${dir}/store.db`)));
bench(
  "PostgreSQL (same machine)",
  controlPlaneOn(await openStore(URL, { schema: SCHEMA, poolSize: 2 })),
);

// At exit, the schema goes (a synchronous child, since "unload" cannot wait for a promise).
globalThis.addEventListener("unload", () => {
  const drop = `import pg from "npm:pg@8.23.1";
    const c = new pg.Client({ connectionString: ${JSON.stringify(URL)} });
    await c.connect(); await c.query("DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE"); await c.end();`;
  new Deno.Command(Deno.execPath(), { args: ["eval", drop], stdout: "null" }).outputSync();
});
