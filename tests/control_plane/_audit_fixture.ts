/** Seeded audit logs and the raw-SQL edits an attacker with write access makes. */
import { canonicalJson, FakeClock } from "../../shared/mod.ts";
import { type Database, MIGRATIONS, openDatabase } from "../../control_plane/store/mod.ts";
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

/** An in-memory log with `n` records; the clock starts at 1000 and moves 10 ms per record. */
export function seeded(n: number): { db: Database; audit: AuditLog; clock: FakeClock } {
  const db = openDatabase(":memory:");
  const clock = new FakeClock(1_000);
  const audit = new AuditLog(db, { clock });
  for (let i = 1; i <= n; i++) {
    audit.append(entry(i));
    clock.advance(10);
  }
  return { db, audit, clock };
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
export function rewriteFrom(db: Database, audit: AuditLog, fromSeq: number): void {
  dropTriggers(db);
  const tail = audit.list({ fromSeq });
  db.prepare("DELETE FROM audit_log WHERE seq >= ?").run(fromSeq);
  let prevHash = audit.head().hash;
  for (const record of tail) {
    const forged = { ...record, outcome: "denied", prevHash };
    prevHash = computeAuditHash(forged);
    forge(db, forged, true);
  }
  restoreTriggers(db);
}
