/** Audit databases on disk for the CLI tests, and the edits a careful attacker makes. */
import { DatabaseSync } from "node:sqlite";
import { FakeClock } from "../../shared/mod.ts";
import { openStore } from "../../control_plane/store/mod.ts";
import { AuditLog } from "../../control_plane/audit/mod.ts";

export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plm_cli_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A database file with `n` audit records. */
export async function seed(path: string, n: number): Promise<void> {
  await using db = await openStore(path);
  const clock = new FakeClock(Date.UTC(2026, 10, 25));
  const audit = new AuditLog(db, { clock });
  for (let i = 1; i <= n; i++) {
    await audit.append({
      actor: { subject: "alice", kind: "human" },
      action: "run.transition",
      resource: `run:r-${i}`,
      outcome: "succeeded",
      runId: `r-${i}`,
      data: { i },
    });
    clock.advance(1_000);
  }
}

/** Edits the file as a careful attacker would: triggers dropped, then put back as they were. */
export function tamper(path: string, sql: string): void {
  using db = new DatabaseSync(path);
  const triggers = db.prepare(
    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'",
  ).all() as { name: string; sql: string }[];
  for (const trigger of triggers) db.exec(`DROP TRIGGER "${trigger.name}"`);
  db.exec(sql);
  for (const trigger of triggers) db.exec(trigger.sql);
}
