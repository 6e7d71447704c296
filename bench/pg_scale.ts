/**
 * The PostgreSQL benchmarks of issue 10, side by side in one run on one
 * PostgreSQL server, each case in a fresh schema dropped after it:
 *
 * 1. **Governed runs/s with 1, 2 and 4 worker processes**: the parent submits
 *    `--runs` runs through the governed path (an `AgentRuntime` with no agents:
 *    authorize and create, timed apart as submissions/s), then starts N
 *    processes of `bench/_pg_worker.ts`, each an `AgentRuntime.start()` with
 *    one agent of `--concurrency` slots, and times from the common `go` to the
 *    moment every run is terminal. Once with no-op agents, once with agents that
 *    wait `--agent-ms` (20 ms) on a real `setTimeout`, the I/O-bound case.
 *    Then the chain is sealed and verified from genesis.
 * 2. **The raw floor**: the same rows written by raw `pg` SQL in the same
 *    transactions as a governed run (create with its verdict records; claim up
 *    to the free slots in one statement with a record per run; start; succeed),
 *    from the same number of processes and slots, no-op work.
 * 3. **A peer queue**: graphile-worker 0.18 on the same database, the same
 *    process counts and concurrency, no-op jobs added one at a time with the same
 *    concurrency as our submissions.
 * 4. **Audit appends/s** at 1, 4, 16 and 32 concurrent writers through
 *    `AuditLog.append` on the PostgreSQL store, each append in its own
 *    transaction with a state-change row, with an elected `AuditLog.seal()` loop
 *    running, against raw unchained inserts of the same rows; after each point
 *    the chain is sealed to the end and verified.
 *
 * Why a program and not `Deno.bench`: the quantity measured is the throughput
 * of several operating-system processes sharing one queue, each with its own
 * start-up, connection pool and background loops (polling, heartbeats, the
 * elected sealer and reaper). `Deno.bench` times a function over many
 * iterations inside one process; it cannot start and synchronise child
 * processes per sample, and its per-iteration figure would hide the start-up
 * and drain that a throughput run must exclude or include on purpose. Here
 * every point is one timed window (from the workers' common `go` to the last
 * run terminal), and every worker count runs in the same program so the
 * figures are side by side. In-process hot paths stay in `deno bench` files.
 *
 * ```sh
 * deno task bench:pg                      # the full pass (about 3.5 minutes)
 * deno task bench:pg --quick              # a quick pass (under a minute)
 * deno task bench:pg --cases audit --writers 32 --audit-seconds 10
 * ```
 *
 * `PLM_BENCH_POSTGRES_URL` (or `--url`) names the server; the default is
 * `postgres://postgres@127.0.0.1:5432/test`. Exits 1 when a run did not
 * succeed, a worker did not exit cleanly, or a chain did not verify.
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { parseArgs } from "node:util";
import { Logger, makeWorkerUtils, runMigrations } from "graphile-worker";
import {
  AgentRuntime,
  type AuditEntryInput,
  AuditLog,
  canonicalJson,
  ControlPlane,
  defineAgent,
  type Identity,
  openStore,
  type TaskInput,
  TERMINAL_RUN_STATES,
} from "../agent_runtime/mod.ts";
import type { FloorPlan } from "./_pg_worker.ts";
import {
  cpuSeconds,
  dropNotifies,
  machineBusySeconds,
  postgresCpuBetween,
  postgresCpuSeconds,
} from "./_pg_diag.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    url: {
      type: "string",
      default: Deno.env.get("PLM_BENCH_POSTGRES_URL") || "postgres://postgres@127.0.0.1:5432/test",
    },
    quick: { type: "boolean", default: false },
    "no-notify": { type: "boolean", default: false },
    cases: { type: "string", default: "governed,floor,graphile,audit" },
    runs: { type: "string" },
    workers: { type: "string", default: "1,2,4" },
    concurrency: { type: "string", default: "8" },
    "agent-ms": { type: "string", default: "20" },
    "submit-concurrency": { type: "string", default: "8" },
    "poll-ms": { type: "string", default: "10" },
    writers: { type: "string", default: "1,4,16,32" },
    "audit-seconds": { type: "string" },
  },
});
const DB_URL = flags.url;
const CASES = new Set(flags.cases.split(","));
const RUNS = Number(flags.runs ?? (flags.quick ? 300 : 2000));
const WORKERS = flags.workers.split(",").map(Number);
const CONCURRENCY = Number(flags.concurrency);
const AGENT_MS = Number(flags["agent-ms"]);
const SUBMIT_CONCURRENCY = Number(flags["submit-concurrency"]);
const POLL_MS = Number(flags["poll-ms"]);
const WRITERS = flags.writers.split(",").map(Number);
const AUDIT_MS = 1000 * Number(flags["audit-seconds"] ?? (flags.quick ? 1 : 4));
const NO_NOTIFY = flags["no-notify"];
if (NO_NOTIFY) dropNotifies();
const TERMINAL = TERMINAL_RUN_STATES.map((s) => `'${s}'`).join(", ");

const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };
const POLICIES = { rules: [{ id: "work", effect: "allow" as const, actions: ["bom.update"] }] };
const task = (n: number): TaskInput => ({
  action: "bom.update",
  resource: `bom:${n}`,
  capabilities: ["bom"],
  input: { line: n, qty: 3 },
});

let failed = false;
function fail(why: string): void {
  failed = true;
  console.log(`FAIL: ${why}`);
}

const admin = new pg.Client({ connectionString: DB_URL });
await admin.connect();

async function freshSchema(prefix: string): Promise<string> {
  const schema = `bench_${prefix}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  return schema;
}
const dropSchema = (schema: string) => admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);

const began = performance.now();
/** A progress line on standard error (the tables go to standard output). */
function progress(what: string): void {
  console.error(`[${((performance.now() - began) / 1000).toFixed(1)} s] ${what}`);
}

const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `fn(0..count-1)` with at most `limit` calls in flight. */
async function pooled(count: number, limit: number, fn: (n: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

/** Polls `sql` (one row, one column `n`) every 10 ms until `done(n)`; resolves the time. */
async function until(sql: string, done: (n: number) => boolean): Promise<number> {
  while (true) {
    const { rows } = await admin.query<{ n: string }>(sql);
    if (done(Number(rows[0]!.n))) return performance.now();
    await wait(10);
  }
}

// --- worker processes ----------------------------------------------------------------------

/** Where the CPU went during a timed window, in cores (CPU seconds per second). */
interface CpuUse {
  /** The worker processes, together. */
  readonly workers: number;
  /** Every PostgreSQL server process of the machine. */
  readonly postgres: number;
  /** This process (submitting nothing meanwhile: it polls the count). */
  readonly parent: number;
  /** Everything else on the machine (other work sharing it). */
  readonly other: number;
}

interface CpuSample {
  readonly at: number;
  readonly workers: number;
  readonly postgres: Map<number, number>;
  readonly parent: number;
  readonly machine: number;
}

function cpuSample(pids: readonly number[]): CpuSample {
  return {
    at: performance.now(),
    workers: pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    postgres: postgresCpuSeconds(),
    parent: cpuSeconds(Deno.pid),
    machine: machineBusySeconds(),
  };
}

function cpuUse(from: CpuSample, to: CpuSample): CpuUse {
  const seconds = (to.at - from.at) / 1000;
  const workers = (to.workers - from.workers) / seconds;
  const postgres = postgresCpuBetween(from.postgres, to.postgres) / seconds;
  const parent = (to.parent - from.parent) / seconds;
  const machine = (to.machine - from.machine) / seconds;
  return { workers, postgres, parent, other: Math.max(0, machine - workers - postgres - parent) };
}

const parentCores = (c: CpuUse) =>
  `${c.parent.toFixed(2)} / ${c.postgres.toFixed(2)} / ${c.other.toFixed(2)}`;
const cores = (c: CpuUse) =>
  `${c.workers.toFixed(2)} / ${c.postgres.toFixed(2)} / ${c.other.toFixed(2)}`;

interface Workers {
  /** Tells every worker to start; resolves the time it was told. */
  go(): Promise<number>;
  /** The CPU used since `go()`. */
  cpu(): CpuUse;
  /** SIGTERM to each, then their exit codes. */
  terminate(): Promise<number[]>;
}

/** Starts `count` `_pg_worker.ts` processes and resolves once every one printed `ready`. */
async function startWorkers(count: number, args: string[]): Promise<Workers> {
  const script = new URL("./_pg_worker.ts", import.meta.url).pathname;
  const config = new URL("../deno.json", import.meta.url).pathname;
  const children = Array.from({ length: count }, (_, i) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script, "--url", DB_URL, "--owner", `w${i}`, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  const lines = children.map((child) => {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    return async (expected: string) => {
      while (!buffer.split("\n").includes(expected)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`a worker ended before printing ${expected}`);
        buffer += value;
      }
      buffer = "";
    };
  });
  await Promise.all(lines.map((line) => line("ready")));
  const writers = children.map((child) => child.stdin.getWriter());
  const pids = children.map((child) => child.pid);
  let started: CpuSample | undefined;
  return {
    cpu: () => cpuUse(started!, cpuSample(pids)),
    async go() {
      started = cpuSample(pids);
      const at = performance.now();
      await Promise.all(writers.map((w) => w.write(new TextEncoder().encode("go\n"))));
      return at;
    },
    async terminate() {
      for (const child of children) child.kill("SIGTERM");
      await Promise.all(lines.map((line) => line("stopped").catch(() => {})));
      await Promise.all(writers.map((w) => w.close().catch(() => {})));
      return (await Promise.all(children.map((c) => c.status))).map((s) => s.code);
    },
  };
}

// --- case 1: governed runs with N worker processes -----------------------------------------

interface GovernedPoint {
  readonly workers: number;
  readonly agentMs: number;
  readonly submitsPerSecond: number;
  readonly runsPerSecond: number;
  readonly sealBacklog: number;
  readonly cpu: CpuUse;
}

async function governedPoint(workers: number, agentMs: number): Promise<GovernedPoint> {
  const schema = await freshSchema("gov");
  try {
    await using store = await openStore(DB_URL, { schema, poolSize: SUBMIT_CONCURRENCY + 2 });
    const controlPlane = new ControlPlane(store, { policies: POLICIES });
    const submitter = new AgentRuntime({ controlPlane, agents: [], maxQueue: RUNS });
    const submitStart = performance.now();
    await pooled(RUNS, SUBMIT_CONCURRENCY, (n) => submitter.submit(task(n), { identity: SVC }));
    const submitSeconds = (performance.now() - submitStart) / 1000;
    progress(
      `governed, ${workers} workers, ${agentMs} ms: ${RUNS} submitted in ${
        submitSeconds.toFixed(1)
      } s`,
    );
    const queued = await admin.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${schema}.runs WHERE state = 'queued'`,
    );
    if (Number(queued.rows[0]!.n) !== RUNS) fail(`${queued.rows[0]!.n} of ${RUNS} runs queued`);
    const pool = await startWorkers(workers, [
      "--mode",
      "governed",
      "--schema",
      schema,
      "--concurrency",
      String(CONCURRENCY),
      "--agent-ms",
      String(agentMs),
      "--poll-ms",
      String(POLL_MS),
      ...(NO_NOTIFY ? ["--no-notify"] : []),
    ]);
    const start = await pool.go();
    const end = await until(
      `SELECT count(*) AS n FROM ${schema}.runs WHERE state IN (${TERMINAL})`,
      (n) => n >= RUNS,
    );
    const cpu = pool.cpu();
    progress(`  all terminal in ${((end - start) / 1000).toFixed(1)} s, cores ${cores(cpu)}`);
    const sealBacklog = await store.read((tx) => tx.audit.pendingCount());
    const codes = await pool.terminate();
    if (codes.some((c) => c !== 0)) fail(`governed workers exited ${codes}`);
    const succeeded = await admin.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${schema}.runs WHERE state = 'succeeded'`,
    );
    if (Number(succeeded.rows[0]!.n) !== RUNS) {
      fail(`${succeeded.rows[0]!.n} of ${RUNS} runs succeeded (${workers} workers)`);
    }
    progress(`  workers stopped`);
    const verified = await controlPlane.audit.verify();
    const pending = await store.read((tx) => tx.audit.pendingCount());
    progress(`  chain sealed and verified`);
    if (!verified.ok || pending !== 0) {
      fail(`chain after ${workers} workers: ${JSON.stringify(verified)}, ${pending} pending`);
    }
    return {
      workers,
      agentMs,
      submitsPerSecond: RUNS / submitSeconds,
      runsPerSecond: RUNS / ((end - start) / 1000),
      sealBacklog,
      cpu,
    };
  } finally {
    await dropSchema(schema);
  }
}

// --- case 2: the raw floor -------------------------------------------------------------------

/** What one governed run writes, found by a probe; the floor writes the same. */
interface Probe {
  /** The write transactions of one run: each a list of its statements (`UPDATE runs`, ...). */
  readonly transactions: string[][];
  /** Transactions of the elected roles (sealer, reaper) seen meanwhile, the same way. */
  readonly elected: string[][];
  /** Claim transactions meanwhile that found nothing (polls). */
  readonly emptyPolls: number;
  /** The floor's statements for the worker processes. */
  readonly plan: FloorPlan;
  /** The create transaction's statements: the run insert and its audit rows' parameters. */
  readonly create: {
    /** Inserts the run: `$1` its id, `$2` its idempotency key, the rest `runParams`. */
    readonly run: string;
    readonly runParams: unknown[];
    /** Each audit row's parameters after the run id (for `plan.audit`). */
    readonly audit: unknown[][];
  };
}

let probeResult: Probe | undefined;

async function floorPoint(
  workers: number,
): Promise<{ creates: number; runs: number; cpu: CpuUse }> {
  probeResult ??= await probe();
  const { plan, create } = probeResult;
  const schema = await freshSchema("floor");
  const planFile = await Deno.makeTempFile({ prefix: "plm_floor_plan_", suffix: ".json" });
  try {
    await (await openStore(DB_URL, { schema })).close(); // the adapter's schema, nothing else
    await Deno.writeTextFile(planFile, JSON.stringify(plan));
    const raw = new pg.Pool({
      connectionString: DB_URL,
      options: `-c search_path=${schema}`,
      max: SUBMIT_CONCURRENCY,
    });
    try {
      const createStart = performance.now();
      await pooled(RUNS, SUBMIT_CONCURRENCY, async (n) => {
        const client = await raw.connect();
        try {
          const id = crypto.randomUUID();
          await client.query("BEGIN");
          await client.query(create.run, [id, `floor-${n}`, ...create.runParams]);
          for (const params of create.audit) await client.query(plan.audit, [id, ...params]);
          await client.query("COMMIT");
        } finally {
          client.release();
        }
      });
      const createSeconds = (performance.now() - createStart) / 1000;
      progress(`floor, ${workers} workers: ${RUNS} created in ${createSeconds.toFixed(1)} s`);
      const pool = await startWorkers(workers, [
        "--mode",
        "floor",
        "--schema",
        schema,
        "--concurrency",
        String(CONCURRENCY),
        "--floor-plan",
        planFile,
      ]);
      const start = await pool.go();
      const end = await until(
        `SELECT count(*) AS n FROM ${schema}.runs WHERE state = 'succeeded'`,
        (n) => n >= RUNS,
      );
      const cpu = pool.cpu();
      progress(`  all succeeded in ${((end - start) / 1000).toFixed(1)} s, cores ${cores(cpu)}`);
      const codes = await pool.terminate();
      if (codes.some((c) => c !== 0)) fail(`floor workers exited ${codes}`);
      return { creates: RUNS / createSeconds, runs: RUNS / ((end - start) / 1000), cpu };
    } finally {
      await raw.end();
    }
  } finally {
    await Deno.remove(planFile);
    await dropSchema(schema);
  }
}

/** `INSERT audit_log`, `UPDATE runs`, `SELECT runs`...: what a statement does, and to which table. */
function label(text: string): string {
  const sql = text.replace(/\s+/g, " ").trim();
  if (/pg_try_advisory_xact_lock/i.test(sql)) return "LEAD";
  if (/pg_notify/i.test(sql)) return "NOTIFY";
  const write = /\b(INSERT INTO|(?<!FOR )UPDATE|DELETE FROM)\s+"?(\w+)/i.exec(
    sql.replace(/^WITH .*?\bAS\s*\(/i, ""),
  );
  if (write !== null) return `${write[1]!.split(" ")[0]!.toUpperCase()} ${write[2]!}`;
  const read = /^(?:WITH\b.*?)?SELECT\b.*?\bFROM\s+"?(\w+)/i.exec(sql);
  if (read !== null) return `SELECT ${read[1]!}${/FOR UPDATE/i.test(sql) ? " FOR UPDATE" : ""}`;
  return sql.split(" ").slice(0, 2).join(" ");
}

const WRITES = /^(INSERT|UPDATE|DELETE) /;

/**
 * Runs one governed run with every `pg` query recorded (`pg.Client.prototype.query`
 * wrapped by a counting proxy): submitted here, then claimed, started and
 * succeeded by a worker loop in this process. Prints nothing; returns the
 * transactions it made and the floor's statements, written for the adapter's
 * own tables and filled with the probe's rows (the same sizes).
 */
async function probe(): Promise<Probe> {
  const schema = await freshSchema("probe");
  const log: { client: unknown; text: string; rows?: number }[] = [];
  let recording = false;
  const query = pg.Client.prototype.query;
  // deno-lint-ignore no-explicit-any
  (pg.Client.prototype as any).query = function (this: unknown, ...args: unknown[]) {
    const first = args[0] as string | { text?: string };
    // deno-lint-ignore no-explicit-any
    const result = (query as any).apply(this, args);
    if (recording) {
      const entry: (typeof log)[number] = {
        client: this,
        text: typeof first === "string" ? first : first.text!,
      };
      log.push(entry);
      // Rows changed, to tell a claim that took the run from a poll that found nothing.
      Promise.resolve(result).then((r) => (entry.rows = r?.rowCount ?? 0), () => {});
    }
    return result;
  };
  try {
    await using store = await openStore(DB_URL, { schema, poolSize: 4 });
    const controlPlane = new ControlPlane(store, { policies: POLICIES });
    const submitter = new AgentRuntime({ controlPlane, agents: [] });
    recording = true;
    const id = await submitter.submit(task(0), { identity: SVC });
    recording = false;
    const [queued] = (await admin.query(
      `SELECT row_to_json(r) AS row FROM ${schema}.runs r WHERE id = $1`,
      [id],
    )).rows as { row: Record<string, unknown> }[];
    const worker = new AgentRuntime({
      controlPlane,
      agents: [
        defineAgent({ id: "worker", capabilities: ["bom"], invoke: () => Promise.resolve("ok") }),
      ],
      concurrency: 1,
    });
    recording = true;
    worker.start({ pollIntervalMs: 10 });
    await until(
      `SELECT count(*) AS n FROM ${schema}.runs WHERE state = 'succeeded'`,
      (n) => n === 1,
    );
    await worker.stop();
    recording = false;
    // Split the log into transactions, per connection.
    const open = new Map<unknown, string[]>();
    const done: string[][] = [];
    let emptyPolls = 0;
    for (const { client, text, rows } of log) {
      const head = text.trim().split(/\s+/)[0]!.toUpperCase();
      if (head === "BEGIN" || head === "START") open.set(client, []);
      else if (head === "COMMIT" || head === "ROLLBACK") {
        const statements = open.get(client);
        open.delete(client);
        if (head === "COMMIT" && statements !== undefined) done.push(statements);
      } else if (rows === 0 && /^WITH claimed AS/.test(text.trim())) {
        open.delete(client), emptyPolls++; // a poll that found nothing to claim
      } else open.get(client)?.push(text);
    }
    const labelled = done.map((statements) => statements.map(label));
    const writing = labelled.filter((t) => t.some((l) => WRITES.test(l)));
    const isRun = (t: string[]) => t.some((l) => / runs$/.test(l) && WRITES.test(l));
    const transactions = writing.filter(isRun);
    const elected = writing.filter((t) => !isRun(t));
    const audits = (await admin.query(
      `SELECT row_to_json(a) AS row FROM ${schema}.audit_log a WHERE run_id = $1 ORDER BY id`,
      [id],
    )).rows.map((r) => r.row as Record<string, unknown>);
    return {
      transactions,
      elected,
      emptyPolls,
      ...await floorStatements(schema, queued!.row, audits),
    };
  } finally {
    pg.Client.prototype.query = query;
    await dropSchema(schema);
  }
}

/** The floor's SQL on the adapter's tables, with the probe run's rows as the values. */
async function floorStatements(
  schema: string,
  run: Record<string, unknown>,
  audits: Record<string, unknown>[],
): Promise<Pick<Probe, "plan" | "create">> {
  const types = new Map(
    (await admin.query<{ table_name: string; column_name: string; udt_name: string }>(
      `SELECT table_name, column_name, udt_name FROM information_schema.columns
       WHERE table_schema = $1`,
      [schema],
    )).rows.map((c) => [`${c.table_name}.${c.column_name}`, c.udt_name]),
  );
  /** A parameter as `pg` must send it: JSON columns as their JSON text. */
  const param = (table: string, column: string, value: unknown) =>
    types.get(`${table}.${column}`)?.startsWith("json") && value !== null
      ? JSON.stringify(value)
      : value;
  const cast = (table: string, column: string) => `::${types.get(`${table}.${column}`)}`;
  // The run: every column, id and idempotency key given, the rest as the probe queued it.
  const runColumns = Object.keys(run).filter((c) => c !== "id" && c !== "idempotency_key");
  const runInsert = `INSERT INTO runs (id, idempotency_key, ${runColumns.join(", ")}) VALUES ` +
    `($1, $2, ${runColumns.map((c, i) => `$${i + 3}${cast("runs", c)}`).join(", ")})`;
  // An audit row: every column but the keys the table assigns (tx, id); run id $1.
  const auditColumns = Object.keys(audits[0]!).filter((c) => c !== "tx" && c !== "id");
  const fixed = auditColumns.filter((c) => c !== "run_id" && c !== "resource");
  const auditInsert = `INSERT INTO audit_log (run_id, resource, ${fixed.join(", ")}) VALUES ` +
    `($1, 'run:' || $1, ${fixed.map((c, i) => `$${i + 2}${cast("audit_log", c)}`).join(", ")})`;
  const auditParams = audits.map((a) => fixed.map((c) => param("audit_log", c, a[c])));
  if (audits.length !== 5) throw new Error(`one governed run wrote ${audits.length} audit rows`);
  const ready = "state IN ('queued', 'retrying', 'escalated')";
  const now = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
  return {
    create: {
      run: runInsert,
      runParams: runColumns.map((c) => param("runs", c, run[c])),
      audit: auditParams.slice(0, 2),
    },
    plan: {
      claim: `WITH claimed AS (
        UPDATE runs r SET lease_owner = $1, lease_expires_at = $2,
          lease_token = r.lease_token + 1, version = r.version + 1
        FROM (SELECT id FROM runs WHERE ${ready}
          AND (lease_owner IS NULL OR lease_expires_at <= $4)
          ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) p
        WHERE r.id = p.id RETURNING r.id, r.version, r.lease_token)
        SELECT * FROM claimed`,
      claimAudit: `INSERT INTO audit_log (run_id, resource, ${fixed.join(", ")})
        SELECT id, 'run:' || id, ${
        fixed.map((c, i) => `$${i + 2}${cast("audit_log", c)}`).join(", ")
      }
        FROM unnest($1::text[]) AS id`,
      audit: auditInsert,
      auditParams: auditParams.slice(2),
      start: `UPDATE runs SET state = 'running', version = version + 1, attempt = attempt + 1,
        agent_id = 'worker', updated_at = ${now}
        WHERE id = $1 AND version = $2 AND lease_token = $3`,
      succeed: `UPDATE runs SET state = 'succeeded', version = version + 1, result = '"ok"',
        lease_owner = NULL, lease_expires_at = NULL, updated_at = ${now}
        WHERE id = $1 AND version = $2 AND lease_token = $3`,
    },
  };
}

// --- case 3: graphile-worker ---------------------------------------------------------------

const silent = new Logger(() => () => {});

async function graphilePoint(
  workers: number,
): Promise<{ adds: number; jobs: number; cpu: CpuUse }> {
  const schema = await freshSchema("gw");
  try {
    await runMigrations({ connectionString: DB_URL, schema, logger: silent });
    const utils = await makeWorkerUtils({ connectionString: DB_URL, schema, logger: silent });
    let addSeconds: number;
    try {
      const addStart = performance.now();
      await pooled(RUNS, SUBMIT_CONCURRENCY, (n) => utils.addJob("noop", { line: n, qty: 3 }));
      addSeconds = (performance.now() - addStart) / 1000;
      progress(`graphile-worker, ${workers} workers: ${RUNS} added in ${addSeconds.toFixed(1)} s`);
    } finally {
      await utils.release();
    }
    const pool = await startWorkers(workers, [
      "--mode",
      "graphile",
      "--schema",
      schema,
      "--concurrency",
      String(CONCURRENCY),
    ]);
    const start = await pool.go();
    // graphile-worker deletes a job when it succeeds.
    const end = await until(`SELECT count(*) AS n FROM ${schema}._private_jobs`, (n) => n === 0);
    const cpu = pool.cpu();
    progress(`  all done in ${((end - start) / 1000).toFixed(1)} s, cores ${cores(cpu)}`);
    const codes = await pool.terminate();
    if (codes.some((c) => c !== 0)) fail(`graphile workers exited ${codes}`);
    return { adds: RUNS / addSeconds, jobs: RUNS / ((end - start) / 1000), cpu };
  } finally {
    await dropSchema(schema);
  }
}

// --- case 4: audit appends -----------------------------------------------------------------

interface AuditPoint {
  readonly writers: number;
  readonly floor: number;
  readonly floorCpu: CpuUse;
  readonly floorNotify: number;
  readonly ours: number;
  readonly cpu: CpuUse;
  readonly backlogAtStop: number;
  readonly drainMs: number;
  readonly verified: number;
}

function entry(writer: number, n: number): AuditEntryInput {
  const runId = `r-${writer}-${n}`;
  return {
    actor: { subject: `worker-${writer}`, kind: "service" },
    action: "run.transition",
    resource: `run:${runId}`,
    outcome: "succeeded",
    runId,
    data: { attempt: 1, from: "running", to: "succeeded" },
  };
}

/** Runs `writers` loops of `append(w, n)` for {@link AUDIT_MS}; resolves appends/s. */
async function writeFor(writers: number, append: (w: number, n: number) => Promise<void>) {
  let appends = 0;
  const from = cpuSample([]);
  const start = performance.now();
  const deadline = start + AUDIT_MS;
  await Promise.all(Array.from({ length: writers }, async (_, w) => {
    for (let n = 0; performance.now() < deadline; n++) {
      await append(w, n);
      appends++;
    }
  }));
  const cpu = cpuUse(from, cpuSample([]));
  return {
    perSecond: appends / ((performance.now() - start) / 1000),
    stop: performance.now(),
    cpu,
  };
}

/**
 * Raw unchained inserts of the same rows; with `notify`, each transaction also
 * sends one `pg_notify` (as the store's wake-up hint does, here with no
 * listener): what the notification alone costs.
 */
async function auditFloor(
  writers: number,
  notify: boolean,
): Promise<{ perSecond: number; cpu: CpuUse }> {
  const schema = await freshSchema("auditraw");
  try {
    await (await openStore(DB_URL, { schema })).close();
    const raw = new pg.Pool({
      connectionString: DB_URL,
      options: `-c search_path=${schema}`,
      max: writers,
    });
    const clients = await Promise.all(Array.from({ length: writers }, () => raw.connect()));
    try {
      const { perSecond, cpu } = await writeFor(writers, async (w, n) => {
        const client = clients[w]!;
        const e = entry(w, n);
        await client.query("BEGIN");
        await client.query(AUDIT_FLOOR.stateChange, [`worker-${w}`, Date.now()]);
        await client.query(AUDIT_FLOOR.insert, AUDIT_FLOOR.params(e));
        if (notify) await client.query("SELECT pg_notify('plm_bench', 'audit')");
        await client.query("COMMIT");
      });
      progress(`audit floor${notify ? " + notify" : ""}, ${writers} writers: ${fmt(perSecond)}/s`);
      return { perSecond, cpu };
    } finally {
      clients.forEach((c) => c.release());
      await raw.end();
    }
  } finally {
    await dropSchema(schema);
  }
}

/**
 * The floor's statements of case 4, on the adapter's tables: the state-change
 * row `tx.governance.insertStart` writes, and the record's row as
 * `AuditLog.append` leaves it for the sealer (no seq, no hash).
 */
const AUDIT_FLOOR = {
  stateChange: "INSERT INTO agent_run_starts (agent_id, at) VALUES ($1, $2)",
  insert: `INSERT INTO audit_log (at, actor_subject, actor_kind, action, resource, outcome,
    reason, run_id, trace_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
  params(e: AuditEntryInput): unknown[] {
    return [
      Date.now(),
      e.actor.subject,
      e.actor.kind,
      e.action,
      e.resource,
      e.outcome,
      e.reason ?? null,
      e.runId ?? null,
      e.traceId ?? null,
      canonicalJson(e.data ?? null),
    ];
  },
};

async function auditOurs(writers: number) {
  const schema = await freshSchema("audit");
  try {
    await using store = await openStore(DB_URL, { schema, poolSize: writers + 2 });
    const audit = new AuditLog(store);
    let sealing = true;
    const sealer = (async () => {
      // As a worker's sealer does: seal() chains batches until one is not full; then a pause.
      while (sealing) await audit.seal(), await wait(10);
    })();
    let result: { perSecond: number; stop: number; cpu: CpuUse };
    try {
      result = await writeFor(writers, (w, n) =>
        store.transaction(async (tx) => {
          await tx.governance.insertStart(`worker-${w}`, Date.now());
          await audit.append(entry(w, n), { tx });
        }));
    } finally {
      sealing = false;
      await sealer;
    }
    const backlogAtStop = await store.read((tx) => tx.audit.pendingCount());
    progress(
      `audit ours, ${writers} writers: ${fmt(result.perSecond)}/s, ${backlogAtStop} pending`,
    );
    while ((await audit.seal()) > 0);
    const drainMs = performance.now() - result.stop;
    const verified = await audit.verify();
    const pending = await store.read((tx) => tx.audit.pendingCount());
    progress(`  drained in ${drainMs.toFixed(0)} ms, verified`);
    if (!verified.ok || pending !== 0) {
      fail(`audit chain at ${writers} writers: ${JSON.stringify(verified)}, ${pending} pending`);
    }
    return {
      perSecond: result.perSecond,
      cpu: result.cpu,
      backlogAtStop,
      drainMs,
      verified: verified.ok ? verified.checked : -1,
    };
  } finally {
    await dropSchema(schema);
  }
}

// --- the run -------------------------------------------------------------------------------

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

async function main(): Promise<void> {
  const server = await admin.query<{ v: string; sc: string }>(
    "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc",
  );
  const cpus = navigator.hardwareConcurrency;
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(
    `# pg_scale ${new Date().toISOString()}: PostgreSQL ${server.rows[0]!.v} ` +
      `(synchronous_commit=${server.rows[0]!.sc}), ${cpus} CPUs, load ${load}, ` +
      `Deno ${Deno.version.deno}; ${RUNS} runs per point, ${CONCURRENCY} slots per worker, ` +
      `${SUBMIT_CONCURRENCY} submissions in flight, worker poll ${POLL_MS} ms, ` +
      `${NO_NOTIFY ? "pg_notify DROPPED (diagnostic), " : ""}` +
      `audit ${AUDIT_MS / 1000} s per point\n`,
  );
  const governed: GovernedPoint[] = [];
  const floors = new Map<number, { creates: number; runs: number; cpu: CpuUse }>();
  const graphile = new Map<number, { adds: number; jobs: number; cpu: CpuUse }>();
  // Interleaved per worker count, so that the machine's noise spreads over every column.
  for (const workers of WORKERS) {
    if (CASES.has("governed") || CASES.has("floor") || CASES.has("graphile")) {
      governed.push(await governedPoint(workers, 0));
    }
    if (CASES.has("floor")) floors.set(workers, await floorPoint(workers));
    if (CASES.has("graphile")) graphile.set(workers, await graphilePoint(workers));
    if (CASES.has("governed")) governed.push(await governedPoint(workers, AGENT_MS));
  }
  const at = (w: number, ms: number) => governed.find((p) => p.workers === w && p.agentMs === ms)!;
  const one = WORKERS[0]!;

  if (CASES.has("governed")) {
    console.log(
      `## Governed runs/s, N worker processes, ${CONCURRENCY} slots each, ${RUNS} runs\n\n` +
        `| workers | submissions/s | no-op runs/s | x ${one} | ${AGENT_MS} ms runs/s | x ${one} ` +
        `| seal backlog at the end (no-op / ${AGENT_MS} ms) | cores: workers / PostgreSQL / ` +
        `other (no-op; ${AGENT_MS} ms) |\n| --: | --: | --: | --: | --: | --: | --: | --: |`,
    );
    for (const w of WORKERS) {
      const noop = at(w, 0);
      const io = at(w, AGENT_MS);
      console.log(
        `| ${w} | ${fmt(noop.submitsPerSecond)} / ${fmt(io.submitsPerSecond)} | ` +
          `${fmt(noop.runsPerSecond)} | ${ratio(noop.runsPerSecond, at(one, 0).runsPerSecond)} | ` +
          `${fmt(io.runsPerSecond)} | ${
            ratio(io.runsPerSecond, at(one, AGENT_MS).runsPerSecond)
          } | ` +
          `${fmt(noop.sealBacklog)} / ${fmt(io.sealBacklog)} | ${cores(noop.cpu)}; ${
            cores(io.cpu)
          } |`,
      );
    }
    console.log();
  }
  if (CASES.has("floor")) {
    console.log(
      `## One governed run against the raw floor (no-op work, same processes and slots)\n\n` +
        `One governed run (the probe): ${probeResult!.transactions.length} transactions: ` +
        probeResult!.transactions.map((t) => `[${t.join(", ")}]`).join(" ") +
        `; elected roles meanwhile: ` +
        probeResult!.elected.map((t) => `[${t.join(", ")}]`).join(" ") +
        `; claim polls that found nothing: ${probeResult!.emptyPolls}.\n` +
        `The floor: [INSERT runs, INSERT audit_log x 2], [UPDATE runs (claim, SKIP LOCKED), ` +
        `one INSERT audit_log of a row per run], [UPDATE runs, INSERT audit_log] x 2, ` +
        `no NOTIFY, no sealer.\n\n` +
        `| workers | governed submissions/s | floor creates/s | ours/floor | governed runs/s | ` +
        `floor runs/s | ours/floor | end to end ours/floor | floor cores: workers / PostgreSQL / ` +
        `other |\n| --: | --: | --: | --: | --: | --: | --: | --: | --: |`,
    );
    for (const w of WORKERS) {
      const ours = at(w, 0);
      const f = floors.get(w)!;
      // Cost per run = 1 / rate; end to end = create + execute.
      const oursCost = 1 / ours.submitsPerSecond + 1 / ours.runsPerSecond;
      const floorCost = 1 / f.creates + 1 / f.runs;
      console.log(
        `| ${w} | ${fmt(ours.submitsPerSecond)} | ${fmt(f.creates)} | ` +
          `${ratio(f.creates, ours.submitsPerSecond)} | ${fmt(ours.runsPerSecond)} | ` +
          `${fmt(f.runs)} | ${ratio(f.runs, ours.runsPerSecond)} | ${
            ratio(oursCost, floorCost)
          } | ` +
          `${cores(f.cpu)} |`,
      );
    }
    console.log();
  }
  if (CASES.has("graphile")) {
    console.log(
      `## Against graphile-worker 0.18.0 (no-op jobs, same processes and concurrency)\n\n` +
        `| workers | our submissions/s | graphile addJob/s | ours/theirs | our runs/s | ` +
        `graphile jobs/s | ours/theirs | graphile cores: workers / PostgreSQL / other |\n` +
        `| --: | --: | --: | --: | --: | --: | --: | --: |`,
    );
    for (const w of WORKERS) {
      const ours = at(w, 0);
      const g = graphile.get(w)!;
      console.log(
        `| ${w} | ${fmt(ours.submitsPerSecond)} | ${fmt(g.adds)} | ` +
          `${ratio(ours.submitsPerSecond, g.adds)} | ${fmt(ours.runsPerSecond)} | ` +
          `${fmt(g.jobs)} | ${ratio(ours.runsPerSecond, g.jobs)} | ${cores(g.cpu)} |`,
      );
    }
    console.log();
  }
  if (CASES.has("audit")) {
    const points: AuditPoint[] = [];
    for (const writers of WRITERS) {
      const floor = await auditFloor(writers, false);
      const floorNotify = await auditFloor(writers, true);
      const ours = await auditOurs(writers);
      points.push({
        writers,
        floor: floor.perSecond,
        floorCpu: floor.cpu,
        floorNotify: floorNotify.perSecond,
        ours: ours.perSecond,
        ...ours,
      });
    }
    console.log(
      `## Audit appends/s, N writers, one transaction per append with a state-change row, ` +
        `${AUDIT_MS / 1000} s per point\n\n` +
        `| writers | unchained inserts/s | AuditLog.append/s | ours/floor | ` +
        `unchained + pg_notify/s (x floor) | backlog at stop | drained in | chain verified | ` +
        `cores, floor; ours: writers and sealer / PostgreSQL / other |\n` +
        `| --: | --: | --: | --: | --: | --: | --: | --: | --: |`,
    );
    for (const p of points) {
      console.log(
        `| ${p.writers} | ${fmt(p.floor)} | ${fmt(p.ours)} | ${ratio(p.ours, p.floor)} | ` +
          `${fmt(p.floorNotify)} (${ratio(p.floorNotify, p.floor)}) | ` +
          `${fmt(p.backlogAtStop)} | ${p.drainMs.toFixed(0)} ms | ` +
          `${p.verified >= 0 ? `ok, ${fmt(p.verified)} records` : "FAILED"} | ` +
          `${parentCores(p.floorCpu)}; ${parentCores(p.cpu)} |`,
      );
    }
    console.log();
  }
}

try {
  await main();
} finally {
  await admin.end();
}
if (failed) console.log("FAIL");
Deno.exit(failed ? 1 : 0);
