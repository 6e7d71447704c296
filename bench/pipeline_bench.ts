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
  defineAgent,
  type Identity,
  openStore,
  type Store,
  type StoreTx,
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
const closers: (() => void | Promise<void>)[] = [];
globalThis.addEventListener("unload", () => {
  closers.forEach((close) => void close());
  Deno.removeSync(dir, { recursive: true });
});

function governed(db: Store): AgentRuntime {
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

/** A store that counts its write transactions (`BEGIN IMMEDIATE`); joined ones are not new. */
class CountingStore implements Store {
  transactions = 0;
  #store: Store;
  constructor(store: Store) {
    this.#store = store;
  }
  get kind() {
    return this.#store.kind;
  }
  get location() {
    return this.#store.location;
  }
  get readOnly() {
    return this.#store.readOnly;
  }
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    this.transactions++;
    return this.#store.transaction(fn);
  }
  read<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.#store.read(fn);
  }
  lead<T>(role: Parameters<Store["lead"]>[0], fn: (tx: StoreTx) => Promise<T>) {
    this.transactions++;
    return this.#store.lead(role, fn);
  }
  onWake(listener: Parameters<Store["onWake"]>[0]): () => void {
    return this.#store.onWake(listener);
  }
  schemaVersion(): Promise<number> {
    return this.#store.schemaVersion();
  }
  close(): Promise<void> {
    return this.#store.close();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.#store.close();
  }
}

const probePath = `${dir}/probe.db`;
const probeDb = new CountingStore(await openStore(probePath));
const probe = governed(probeDb);
const probeRaw = new DatabaseSync(probePath, { readOnly: true, timeout: 5000 });
closers.push(() => probeRaw.close());
/** Row writes so far: each run row's insert and its updates (one version each), each record. */
const rowWrites = probeRaw.prepare(
  `SELECT (SELECT count(*) + coalesce(sum(version - 1), 0) FROM runs)
     + (SELECT count(*) FROM audit_log) AS n`,
);
const totalChanges = { get: () => rowWrites.get() as { n: number } };
await governedRun(probe, "warm-up");
const changesBefore = totalChanges.get()!.n;
const transactionsBefore = probeDb.transactions;
await governedRun(probe, "probe");
const ROWS_PER_RUN = totalChanges.get()!.n - changesBefore;
const TRANSACTIONS_PER_RUN = probeDb.transactions - transactionsBefore;
const probeRun = (await probe.controlPlane.runs.page({ limit: 2 })).items.find((r) =>
  r.idempotencyKey === "probe"
)!;
const probeAudit = await probe.controlPlane.audit.list({ runId: probeRun.id });
/** The sample rows the floor writes again, as stored. */
const RUN_ROW = probeRaw.prepare("SELECT * FROM runs WHERE id = ?")
  .get(probeRun.id) as Record<string, SQLInputValue>;
const AUDIT_ROWS = probeRaw.prepare("SELECT * FROM audit_log WHERE run_id = ? ORDER BY seq")
  .all(probeRun.id) as Record<string, SQLInputValue>[];

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

async function floor(path: string): Promise<Floor> {
  if (path !== ":memory:") await (await openStore(path)).close(); // the package's schema on the file
  const raw = new DatabaseSync(path, { timeout: 5000 });
  closers.push(() => raw.close());
  raw.exec(
    `${path === ":memory:" ? "" : "PRAGMA journal_mode = WAL;"}
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;`,
  );
  if (path === ":memory:") {
    // A private in-memory database: this very connection gets the probe file's schema.
    const ddl = probeRaw.prepare(
      "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    ).all() as { sql: string }[];
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
      `UPDATE runs SET lease_owner = ?, lease_expires_at = ?, lease_token = lease_token + 1,
       version = version + 1 WHERE id = ? AND version = ?`,
    ),
    update: raw.prepare(
      `UPDATE runs SET state = ?, version = version + 1, attempt = ?, escalations = ?,
       cost_units = ?, agent_id = ?, approval_id = ?, result = ?, error = ?, lease_owner = ?,
       lease_expires_at = ?, updated_at = ? WHERE id = ? AND version = ? AND lease_token = 1`,
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
  lease_token: 0,
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
  const f = await floor(path.replace("FILE", "floor"));
  const runtime = governed(await openStore(path.replace("FILE", "governed")));
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
