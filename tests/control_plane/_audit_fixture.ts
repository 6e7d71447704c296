/** Seeded audit logs and the raw-SQL edits an attacker with write access makes. */
import { canonicalJson, FakeClock } from "../../shared/mod.ts";
import { type Database, openDatabase } from "../../control_plane/store/database.ts";
import { MIGRATIONS, openStore, type Store } from "../../control_plane/store/mod.ts";
import {
  type AuditEntryInput,
  AuditLog,
  type AuditRecord,
  computeAuditHash,
} from "../../control_plane/audit/mod.ts";

export const ALICE = { subject: "alice", kind: "human" } as const;
const BOT = { subject: "agent-7", kind: "agent" } as const;
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

export function entry(i: number, overrides: Partial<AuditEntryInput> = {}): AuditEntryInput {
  return {
    actor: i % 2 === 0 ? ALICE : BOT,
    action: i % 3 === 0 ? "policy.decide" : "run.transition",
    resource: `run:r-${i % 4}`,
    outcome: "succeeded",
    runId: `r-${i % 4}`,
    traceId: TRACE,
    data: { i, tags: ["a", "b"], nested: { z: 1, a: null } },
    ...overrides,
  };
}

/** A seeded log on a temporary SQLite file, and a raw connection to the same file. */
export interface Seeded extends AsyncDisposable {
  /** The store the log is on. */
  store: Store;
  /** A raw connection to the same file: what an attacker with write access holds. */
  db: Database;
  audit: AuditLog;
  clock: FakeClock;
}

/**
 * A log with `n` records on a temporary file (so that a raw connection can
 * tamper with it); the clock starts at 1000 and moves 10 ms per record.
 */
export async function seeded(n: number): Promise<Seeded> {
  const path = await Deno.makeTempFile({ suffix: ".db" });
  await Deno.remove(path);
  const store = await openStore(path);
  const db = openDatabase(path);
  const clock = new FakeClock(1_000);
  const audit = new AuditLog(store, { clock });
  for (let i = 1; i <= n; i++) {
    await audit.append(entry(i));
    clock.advance(10);
  }
  return {
    store,
    db,
    audit,
    clock,
    async [Symbol.asyncDispose]() {
      db.close();
      await store.close();
      for (const suffix of ["", "-wal", "-shm"]) {
        await Deno.remove(path + suffix).catch(() => {});
      }
    },
  };
}

/** What an attacker with write access to the file does first. */
export function dropTriggers(db: Database): void {
  db.exec("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;");
}

/** What a careful attacker does last: put the triggers back as migration 1 wrote them. */
export function restoreTriggers(db: Database): void {
  for (const [sql] of (MIGRATIONS[0]?.sql ?? "").matchAll(/CREATE TRIGGER[\s\S]*?\bEND;/g)) {
    db.exec(sql);
  }
}

/** Writes a record (and optionally recomputes its hash) with raw SQL. */
export function forge(db: Database, record: AuditRecord, rehash: boolean): void {
  const hash = rehash ? computeAuditHash(record) : record.hash;
  db.prepare(
    `INSERT INTO audit_log (seq, at, actor_subject, actor_kind, action, resource, outcome,
       reason, run_id, trace_id, data, prev_hash, hash)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    record.seq,
    record.at,
    record.actor.subject,
    record.actor.kind,
    record.action,
    record.resource,
    record.outcome,
    record.reason,
    record.runId,
    record.traceId,
    canonicalJson(record.data),
    record.prevHash,
    hash,
  );
}

/**
 * Rewrites history from record `fromSeq` on: each record's outcome becomes
 * `denied` and every hash is recomputed, triggers dropped and put back, so the
 * chain alone still verifies.
 */
export async function rewriteFrom(db: Database, audit: AuditLog, fromSeq: number): Promise<void> {
  dropTriggers(db);
  const tail = await audit.list({ fromSeq });
  db.prepare("DELETE FROM audit_log WHERE seq >= ?").run(fromSeq);
  let prevHash = (await audit.head()).hash;
  for (const record of tail) {
    const forged = { ...record, outcome: "denied", prevHash };
    prevHash = computeAuditHash(forged);
    forge(db, forged, true);
  }
  restoreTriggers(db);
}
