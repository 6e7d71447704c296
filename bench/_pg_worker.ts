/**
 * One worker process of `bench/pg_scale.ts`: the parent starts 1, 2 or 4 of
 * them with `Deno.Command`, all on the same PostgreSQL schema. Not a benchmark
 * of its own. The protocol, on the child's standard streams:
 *
 * 1. the child connects and sets up, then prints `ready`;
 * 2. it starts working when the parent writes `go` on its standard input
 *    (so every worker starts on the same signal, after the slowest one set up);
 * 3. on SIGTERM it stops (the governed worker with `AgentRuntime.stop()`, which
 *    lets runs in flight finish), prints `stopped`, and exits 0.
 *
 * Modes (`--mode`):
 *
 * - `governed`: `AgentRuntime.start()` over `openStore(url, { schema })`, a
 *   `ControlPlane` with an allow policy and one agent (`--concurrency` at once)
 *   that answers after `--agent-ms` ms of a real `setTimeout` (0: at once);
 * - `floor`: the raw floor of the same work, in `pg` SQL with no governance:
 *   claim up to the free slots in one statement (`FOR UPDATE SKIP LOCKED`) with
 *   one audit row per run, then per run a start and a succeed transaction, each
 *   an update of the run and one audit row (the statements come from the parent,
 *   `--floor-plan`, a JSON file);
 * - `graphile`: graphile-worker's `run()` with `--concurrency` and one no-op task.
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { parseArgs } from "node:util";
import { Logger, run as runGraphile } from "graphile-worker";
import {
  AgentRuntime,
  ControlPlane,
  defineAgent,
  openStore,
  type PolicySet,
} from "../agent_runtime/mod.ts";
import { dropNotifies } from "./_pg_diag.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mode: { type: "string", default: "governed" },
    url: { type: "string" },
    schema: { type: "string" },
    concurrency: { type: "string", default: "8" },
    "agent-ms": { type: "string", default: "0" },
    "poll-ms": { type: "string", default: "10" },
    "floor-plan": { type: "string" },
    owner: { type: "string", default: `worker-${Deno.pid}` },
    "no-notify": { type: "boolean", default: false },
  },
});
const DB_URL = values.url!;
const SCHEMA = values.schema!;
const CONCURRENCY = Number(values.concurrency);
const AGENT_MS = Number(values["agent-ms"]);
const POLL_MS = Number(values["poll-ms"]);
if (values["no-notify"]) dropNotifies();

/** The allow policy every governed worker and the parent's submitter hold. */
export const BENCH_POLICIES: PolicySet = {
  rules: [{ id: "work", effect: "allow", actions: ["bom.update"] }],
};

/** Resolves when the parent writes `go` (or closes standard input). */
async function go(): Promise<void> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of Deno.stdin.readable) {
    text += decoder.decode(chunk, { stream: true });
    if (text.includes("go\n")) return;
  }
}

function say(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));
}

/** Resolves on the first SIGTERM. */
function terminated(): Promise<void> {
  return new Promise((resolve) => Deno.addSignalListener("SIGTERM", () => resolve()));
}

const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function governed(): Promise<void> {
  const store = await openStore(DB_URL, { schema: SCHEMA, poolSize: CONCURRENCY + 2 });
  const controlPlane = new ControlPlane(store, { policies: BENCH_POLICIES });
  const agent = defineAgent({
    id: "worker",
    capabilities: ["bom"],
    maxConcurrency: CONCURRENCY,
    invoke: AGENT_MS > 0 ? () => wait(AGENT_MS).then(() => "ok") : () => Promise.resolve("ok"),
  });
  const runtime = new AgentRuntime({
    controlPlane,
    agents: [agent],
    concurrency: CONCURRENCY,
    owner: values.owner,
  });
  const stop = terminated();
  say("ready");
  await go();
  runtime.start({ pollIntervalMs: POLL_MS });
  await stop;
  await runtime.stop({ graceMs: 10_000 });
  await store.close();
}

/** The floor's statements, made by the parent from the adapter's schema. */
export interface FloorPlan {
  /** Claims up to $3 ready runs for owner $1 with lease expiry $2 at time $4; returns `id`, `version`, `lease_token`. */
  readonly claim: string;
  /** Inserts the claim's audit rows in one statement; `$1` the run ids, the rest fixed (`auditParams[0]`). */
  readonly claimAudit: string;
  /** Inserts one audit row; `$1` the run id, the rest fixed (`auditParams`). */
  readonly audit: string;
  /** The audit rows' other parameters: claim, start, succeed. */
  readonly auditParams: readonly (readonly unknown[])[];
  /** Starts run $1 at version $2 under lease token $3. */
  readonly start: string;
  /** Succeeds run $1 at version $2 under lease token $3. */
  readonly succeed: string;
}

async function floor(): Promise<void> {
  const plan: FloorPlan = JSON.parse(await Deno.readTextFile(values["floor-plan"]!));
  const pool = new pg.Pool({
    connectionString: DB_URL,
    options: `-c search_path=${SCHEMA}`,
    max: CONCURRENCY + 1,
  });
  await Promise.all(Array.from({ length: CONCURRENCY + 1 }, () => pool.connect()))
    .then((clients) => clients.forEach((c) => c.release()));
  const inTransaction = async <T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  };
  const owner = values.owner!;
  let stopping = false;
  const stop = terminated().then(() => void (stopping = true));
  say("ready");
  await go();
  let free = CONCURRENCY;
  let wake: (() => void) | undefined;
  const inFlight = new Set<Promise<void>>();
  const execute = async (id: string, version: number, token: number) => {
    await inTransaction(async (c) => {
      await c.query(plan.start, [id, version, token]);
      await c.query(plan.audit, [id, ...plan.auditParams[1]!]);
    });
    if (AGENT_MS > 0) await wait(AGENT_MS);
    await inTransaction(async (c) => {
      await c.query(plan.succeed, [id, version + 1, token]);
      await c.query(plan.audit, [id, ...plan.auditParams[2]!]);
    });
  };
  while (!stopping) {
    if (free === 0) {
      await Promise.race([new Promise<void>((resolve) => (wake = resolve)), stop]);
      continue;
    }
    const now = Date.now();
    const claimed = await inTransaction(async (c) => {
      const { rows } = await c.query<{ id: string; version: number; lease_token: number }>(
        plan.claim,
        [owner, now + 30_000, free, now],
      );
      if (rows.length > 0) {
        await c.query(plan.claimAudit, [rows.map((r) => r.id), ...plan.auditParams[0]!]);
      }
      return rows;
    });
    if (claimed.length === 0) {
      await Promise.race([wait(10), stop]);
      continue;
    }
    for (const row of claimed) {
      free--;
      const p: Promise<void> = execute(row.id, Number(row.version), Number(row.lease_token))
        .finally(() => {
          free++;
          inFlight.delete(p);
          wake?.();
        });
      inFlight.add(p);
    }
  }
  await Promise.all(inFlight);
  await pool.end();
}

async function graphile(): Promise<void> {
  let stopping = false;
  const stop = terminated().then(() => void (stopping = true));
  say("ready");
  await go();
  const runner = await runGraphile({
    connectionString: DB_URL,
    schema: SCHEMA,
    concurrency: CONCURRENCY,
    noHandleSignals: true,
    logger: new Logger(() => () => {}),
    taskList: {
      noop: AGENT_MS > 0 ? () => wait(AGENT_MS) : () => Promise.resolve(),
    },
  });
  await stop;
  if (stopping) await runner.stop();
}

switch (values.mode) {
  case "governed":
    await governed();
    break;
  case "floor":
    await floor();
    break;
  case "graphile":
    await graphile();
    break;
  default:
    throw new Error(`unknown --mode ${values.mode}`);
}
say("stopped");
Deno.exit(0);
