/**
 * The whole governed pipeline, one run at a time: `AgentRuntime.submit()` then
 * `wait()` with a no-op in-process agent (create, verdict, claim, start,
 * succeed, each audited), against the floor of raw `node:sqlite` writes of the
 * same rows in the same `BEGIN IMMEDIATE` transactions, on the same schema.
 *
 * - group `pipeline (:memory:)`: governed on `:memory:`, with its in-memory floor;
 * - group `pipeline (file, WAL, NORMAL)`: governed on a file database (WAL,
 *   `synchronous = NORMAL`), with its file floor.
 *
 * Runs per second = 1 / time per iteration. At start-up one governed run is
 * measured on an instrumented database: the row writes and top-level
 * transactions it makes are printed, and the floor's plan is checked against
 * them, so the two stay comparable when the pipeline changes.
 *
 * ```sh
 * deno bench -A bench/pipeline_bench.ts
 * ```
 *
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import {
  AgentRuntime,
  ControlPlane,
  Database,
  defineAgent,
  type Identity,
  openDatabase,
  type TaskInput,
} from "../agent_runtime/mod.ts";

const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };
const TASK: TaskInput = {
  action: "bom.update",
  resource: "bom:42",
  capabilities: ["bom"],
  input: { line: 7, qty: 3 },
};
const POLICIES = { rules: [{ id: "work", effect: "allow" as const, actions: ["bom.update"] }] };

const dir = Deno.makeTempDirSync({ prefix: "plm_pipeline_bench_" });
const closers: (() => void)[] = [];
globalThis.addEventListener("unload", () => {
  closers.forEach((close) => close());
  Deno.removeSync(dir, { recursive: true });
});

function governed(db: Database): AgentRuntime {
  closers.push(() => db.close());
  const noop = defineAgent({
    id: "noop",
    capabilities: ["bom"],
    maxConcurrency: 16,
    invoke: () => Promise.resolve("ok"),
  });
  return new AgentRuntime({
    controlPlane: new ControlPlane(db, { policies: POLICIES }),
    agents: [noop],
  });
}

async function governedRun(runtime: AgentRuntime, key: string): Promise<void> {
  const id = await runtime.submit(TASK, { identity: SVC, idempotencyKey: key });
  const run = await runtime.wait(id);
  if (run.state !== "succeeded") throw new Error(`Run ${id} ended ${run.state}`);
}

// --- what one governed run writes ----------------------------------------------------------

/** Counts top-level (`BEGIN IMMEDIATE`) transactions; nested ones are savepoints. */
class CountingDatabase extends Database {
  transactions = 0;
  override transaction<T>(fn: () => T): T {
    if (!this.inTransaction) this.transactions++;
    return super.transaction(fn);
  }
}

const probeDb = new CountingDatabase(`${dir}/probe.db`);
const probe = governed(probeDb);
const totalChanges = probeDb.prepare<{ n: number }>("SELECT total_changes() AS n");
await governedRun(probe, "warm-up");
const changesBefore = totalChanges.get()!.n;
const transactionsBefore = probeDb.transactions;
await governedRun(probe, "probe");
const ROWS_PER_RUN = totalChanges.get()!.n - changesBefore;
const TRANSACTIONS_PER_RUN = probeDb.transactions - transactionsBefore;
const probeRun = probe.controlPlane.runs.page({ limit: 2 }).items.find((r) =>
  r.idempotencyKey === "probe"
)!;
const probeAudit = probe.controlPlane.audit.list({ runId: probeRun.id });
/** The sample rows the floor writes again, as stored. */
const RUN_ROW = probeDb.prepare<Record<string, SQLInputValue>>("SELECT * FROM runs WHERE id = ?")
  .get(probeRun.id)!;
const AUDIT_ROWS = probeDb.prepare<Record<string, SQLInputValue>>(
  "SELECT * FROM audit_log WHERE run_id = ? ORDER BY seq",
).all(probeRun.id);

// The floor's plan: [runs insert + 2 audit inserts], then 3 x [runs update + audit insert].
const FLOOR_TRANSACTIONS = 4;
const FLOOR_ROWS = 1 + 3 + AUDIT_ROWS.length;
console.log(
  `one governed run: ${TRANSACTIONS_PER_RUN} BEGIN IMMEDIATE transactions, ${ROWS_PER_RUN} row ` +
    `writes (runs: 1 insert + 3 updates; audit: ${
      probeAudit.map((r) => `${r.action}${r.action === "run.transition" ? ` ${r.outcome}` : ""}`)
        .join(", ")
    })`,
);
if (
  ROWS_PER_RUN !== FLOOR_ROWS || TRANSACTIONS_PER_RUN !== FLOOR_TRANSACTIONS ||
  AUDIT_ROWS.length !== 5
) {
  throw new Error(
    `The floor no longer matches the pipeline: ${ROWS_PER_RUN} rows in ` +
      `${TRANSACTIONS_PER_RUN} transactions, ${AUDIT_ROWS.length} audit records`,
  );
}

// --- the floor: raw node:sqlite, same schema, same rows, same transactions -----------------

interface Floor {
  begin: StatementSync;
  commit: StatementSync;
  insertRun: StatementSync;
  setLease: StatementSync;
  update: StatementSync;
  insertAudit: StatementSync;
  seq: number;
}

function floor(path: string): Floor {
  openDatabase(path).close(); // the package's schema and pragmas on the file
  const raw = new DatabaseSync(path, { timeout: 5000 });
  closers.push(() => raw.close());
  raw.exec(
    `${path === ":memory:" ? "" : "PRAGMA journal_mode = WAL;"}
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;`,
  );
  if (path === ":memory:") {
    // A private in-memory database: migrate this very connection.
    const schema = new Database(":memory:");
    const ddl = schema.prepare<{ sql: string }>(
      "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid",
    ).all();
    schema.close();
    for (const { sql } of ddl) raw.exec(sql);
  }
  const runColumns = Object.keys(RUN_ROW);
  const auditColumns = Object.keys(AUDIT_ROWS[0]!);
  const floor: Floor = {
    begin: raw.prepare("BEGIN IMMEDIATE"),
    commit: raw.prepare("COMMIT"),
    insertRun: raw.prepare(
      `INSERT INTO runs (${runColumns}) VALUES (${runColumns.map(() => "?")})`,
    ),
    setLease: raw.prepare(
      `UPDATE runs SET lease_owner = ?, lease_expires_at = ?, version = version + 1
       WHERE id = ? AND version = ?`,
    ),
    update: raw.prepare(
      `UPDATE runs SET state = ?, version = version + 1, attempt = ?, escalations = ?,
       cost_units = ?, agent_id = ?, approval_id = ?, result = ?, error = ?, lease_owner = ?,
       lease_expires_at = ?, updated_at = ? WHERE id = ? AND version = ?`,
    ),
    insertAudit: raw.prepare(
      `INSERT INTO audit_log (${auditColumns}) VALUES (${auditColumns.map(() => "?")})`,
    ),
    seq: 0,
  };
  // Check the plan once: every statement writes its row.
  const changes = raw.prepare("SELECT total_changes() AS n");
  const before = changes.get()!.n as number;
  floorRun(floor, 0);
  const written = (changes.get()!.n as number) - before;
  if (written !== FLOOR_ROWS) throw new Error(`The floor wrote ${written} rows, not ${FLOOR_ROWS}`);
  return floor;
}

/** The run row as `create` writes it (the sample row is the finished run). */
const QUEUED = {
  state: "queued",
  version: 1,
  attempt: 0,
  agent_id: null,
  result: "null",
  lease_owner: null,
  lease_expires_at: null,
};

function floorRun(f: Floor, n: number): void {
  const id = String(n).padStart(36, "0"); // as long as a UUID
  const key = `floor-${n}`;
  const audit = (i: number) => {
    const row = AUDIT_ROWS[i]!;
    f.insertAudit.run(
      ...Object.values({ ...row, seq: ++f.seq, run_id: id, resource: `run:${id}` }),
    );
  };
  const now = RUN_ROW.created_at as number;
  // submit: the run and its verdict
  f.begin.run();
  f.insertRun.run(...Object.values({ ...RUN_ROW, ...QUEUED, id, idempotency_key: key }));
  audit(0);
  audit(1);
  f.commit.run();
  // claim
  f.begin.run();
  f.setLease.run("w", now + 30_000, id, 1);
  audit(2);
  f.commit.run();
  // start
  f.begin.run();
  f.update.run("running", 1, 0, 0, "noop", null, "null", null, "w", now + 30_000, now, id, 2);
  audit(3);
  f.commit.run();
  // succeed
  f.begin.run();
  f.update.run("succeeded", 1, 0, 0, "noop", null, '"ok"', null, null, null, now, id, 3);
  audit(4);
  f.commit.run();
}

// --- the benchmarks ------------------------------------------------------------------------

for (
  const [group, path] of [
    ["pipeline (:memory:)", ":memory:"],
    ["pipeline (file, WAL, NORMAL)", `${dir}/FILE.db`],
  ] as const
) {
  const f = floor(path.replace("FILE", "floor"));
  const runtime = governed(openDatabase(path.replace("FILE", "governed")));
  let n = 0;
  Deno.bench({
    name: `raw node:sqlite floor: ${FLOOR_ROWS} row writes in ${FLOOR_TRANSACTIONS} transactions`,
    group,
    baseline: true,
    fn() {
      floorRun(f, ++n);
    },
  });
  Deno.bench({
    name: "governed run: submit + wait (no-op agent)",
    group,
    async fn() {
      await governedRun(runtime, `run-${++n}`);
    },
  });
}
