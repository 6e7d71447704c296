/**
 * Benchmarks of the audit log: `AuditLog.append` against a raw `node:sqlite`
 * insert of the same row in the same transaction mode (file database, WAL,
 * `synchronous = NORMAL`, one `BEGIN IMMEDIATE` per row), and `verify()` over
 * 10,000 records (records per second = 10,000 / time per iteration).
 *
 * ```sh
 * deno bench -A bench/audit_bench.ts
 * ```
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { FakeClock } from "../shared/mod.ts";
import { openStore } from "../control_plane/mod.ts";
import { type AuditEntryInput, AuditLog } from "../control_plane/audit/mod.ts";
import { canonicalJson } from "../shared/mod.ts";

const VERIFY_RECORDS = 10_000;
const dir = Deno.makeTempDirSync({ prefix: "plm_audit_bench_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const ENTRY: AuditEntryInput = {
  actor: { subject: "agent-7", kind: "agent" },
  action: "run.transition",
  resource: "run:r-42",
  outcome: "succeeded",
  reason: "Step 3 of 5 finished",
  runId: "r-42",
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  data: { from: "running", to: "succeeded", attempt: 1, cost: { tokens: 1234, usd: 0.0123 } },
};

// --- append: our AuditLog on its own file --------------------------------------------------
const clock = new FakeClock(Date.UTC(2026, 10, 25));
const appendDb = await openStore(`${dir}/append.db`); // WAL, synchronous NORMAL
const audit = new AuditLog(appendDb, { clock });
await audit.append(ENTRY);
const [sample] = await audit.list({ limit: 1 });
if (sample === undefined) throw new Error("The sample record was not written");

// --- append: the raw baseline on another file with the same schema --------------------------
await (await openStore(`${dir}/raw.db`)).close();
const raw = new DatabaseSync(`${dir}/raw.db`, { timeout: 5000 });
raw.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;");
const rawBegin = raw.prepare("BEGIN IMMEDIATE");
const rawCommit = raw.prepare("COMMIT");
const rawInsert = raw.prepare(
  `INSERT INTO audit_log (seq, at, actor_subject, actor_kind, action, resource, outcome, reason,
     run_id, trace_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
);
const sampleData = canonicalJson(sample.data);
let rawSeq = 0;

Deno.bench({
  name: "raw node:sqlite insert (BEGIN IMMEDIATE per row)",
  group: "append",
  baseline: true,
  fn() {
    rawBegin.run();
    rawInsert.run(
      ++rawSeq,
      sample.at,
      sample.actor.subject,
      sample.actor.kind,
      sample.action,
      sample.resource,
      sample.outcome,
      sample.reason,
      sample.runId,
      sample.traceId,
      sampleData,
      sample.prevHash,
      sample.hash,
    );
    rawCommit.run();
  },
});

Deno.bench({
  name: "AuditLog.append (validate, read head, hash, insert)",
  group: "append",
  async fn() {
    await audit.append(ENTRY);
  },
});

// --- verify: 10,000 records ----------------------------------------------------------------
const verifyDb = await openStore(`${dir}/verify.db`);
const verifyLog = new AuditLog(verifyDb, { clock });
for (let i = 0; i < VERIFY_RECORDS; i += 1_000) {
  await verifyLog.appendMany(
    Array.from({ length: 1_000 }, (_, j) => ({ ...ENTRY, data: { i: i + j, ok: true } })),
  );
}
const verifyRaw = new DatabaseSync(`${dir}/verify.db`, { readOnly: true });
const page = verifyRaw.prepare("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1000");

Deno.bench({
  name: `read every row only, same pages (${VERIFY_RECORDS} records)`,
  group: "verify",
  baseline: true,
  fn() {
    verifyRaw.exec("BEGIN");
    const last = (rows: unknown[]) => (rows.at(-1) as { seq: number }).seq;
    for (let rows = page.all(0); rows.length > 0; rows = page.all(last(rows))) {
      /* read only */
    }
    verifyRaw.exec("COMMIT");
  },
});

Deno.bench({
  name: `AuditLog.verify (${VERIFY_RECORDS} records)`,
  group: "verify",
  async fn() {
    const result = await verifyLog.verify();
    if (!result.ok || result.checked !== VERIFY_RECORDS) throw new Error("Chain broken");
  },
});
