/**
 * The SQLite repository of the audit log, with `"write"` chaining: write
 * transactions take turns, so a writer reads the head and inserts the next
 * records itself.
 *
 * @module
 */
import { type ActorKind, type JsonValue, PlmError } from "../../../shared/mod.ts";
import type { AuditRecord } from "../../audit/types.ts";
import type {
  AuditDraft,
  AuditQuery,
  AuditRepository,
  AuditSeal,
  PendingAudit,
  SealedHead,
} from "../port.ts";
import { MIGRATIONS } from "../migrations.ts";
import type { SqlValue } from "../database.ts";
import type { TxScope } from "./_sql.ts";

/** A row of `audit_log`, in {@link COLUMNS} order. */
interface AuditRow {
  seq: number;
  at: number;
  actor_subject: string;
  actor_kind: string;
  action: string;
  resource: string;
  outcome: string;
  reason: string | null;
  run_id: string | null;
  trace_id: string | null;
  /** Canonical JSON of the record's `data`. */
  data: string;
  prev_hash: string;
  hash: string;
}

const COLUMNS = "seq, at, actor_subject, actor_kind, action, resource, outcome, reason, " +
  "run_id, trace_id, data, prev_hash, hash";
const HEAD = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
const INSERT = `INSERT INTO audit_log (${COLUMNS}) VALUES (${COLUMNS.replace(/\w+/g, "?")})`;
const TRIGGERS =
  "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'audit_log'";
/** The head of an empty chain. */
const GENESIS: SealedHead = Object.freeze({ seq: 0, hash: "0".repeat(64) });

/**
 * The append-only triggers as migration 1 creates them, by name, whitespace
 * collapsed: {@link SqliteAuditRepository.missingGuards} requires exactly these.
 */
const APPEND_ONLY_TRIGGERS: ReadonlyMap<string, string> = new Map(
  [...(MIGRATIONS[0]?.sql ?? "").matchAll(/CREATE TRIGGER (audit_log_no_\w+)[\s\S]*?\bEND;/g)].map(
    (m) => [m[1]!, collapse(m[0].slice(0, -1))],
  ),
);

/** {@link AuditRepository} on SQLite (`"write"` chaining). */
export class SqliteAuditRepository implements AuditRepository {
  readonly chaining = "write" as const;
  readonly #scope: TxScope;

  constructor(scope: TxScope) {
    this.#scope = scope;
  }

  head(): Promise<SealedHead> {
    const row = this.#scope.use().get<{ seq: number; hash: string }>(HEAD).get();
    return Promise.resolve(row === undefined ? GENESIS : { seq: row.seq, hash: row.hash });
  }

  insertChained(records: readonly (AuditRecord & { dataJson: string })[]): Promise<void> {
    const insert = this.#scope.use().get(INSERT);
    for (const record of records) {
      insert.run(
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
        record.dataJson,
        record.prevHash,
        record.hash,
      );
    }
    return Promise.resolve();
  }

  insertPending(_drafts: readonly AuditDraft[]): Promise<void> {
    return Promise.reject(sealOnly("insertPending"));
  }

  pending(_limit: number): Promise<PendingAudit[]> {
    return Promise.reject(sealOnly("pending"));
  }

  seal(_seals: readonly AuditSeal[], _expected: SealedHead): Promise<boolean> {
    return Promise.reject(sealOnly("seal"));
  }

  pendingCount(): Promise<number> {
    this.#scope.use();
    return Promise.resolve(0);
  }

  list(query: AuditQuery): Promise<AuditRecord[]> {
    const sql = this.#scope.use();
    const where: string[] = [];
    const params: SqlValue[] = [];
    const filter = (condition: string, value: SqlValue | undefined) => {
      if (value === undefined) return;
      where.push(condition);
      params.push(value);
    };
    filter("seq > ?", query.afterSeq);
    filter("run_id = ?", query.runId);
    filter("actor_subject = ?", query.actor);
    filter("action = ?", query.action);
    if (query.actionPrefix !== undefined) {
      where.push("substr(action, 1, ?) = ?");
      params.push(query.actionPrefix.length, query.actionPrefix);
    }
    filter("seq <= ?", query.throughSeq);
    filter("resource = ?", query.resource);
    filter("at >= ?", query.since);
    const text = `SELECT ${COLUMNS} FROM audit_log${
      where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""
    } ORDER BY seq${query.order === "desc" ? " DESC" : ""} LIMIT ?`;
    const rows = sql.get<AuditRow>(text).all(...params, query.limit);
    return Promise.resolve(rows.map(toRecord));
  }

  missingGuards(): Promise<string[]> {
    const rows = this.#scope.use().get<{ name: string; sql: string | null }>(TRIGGERS).all();
    const found = new Map(rows.map((row) => [row.name, collapse(row.sql ?? "")]));
    return Promise.resolve(
      [...APPEND_ONLY_TRIGGERS].filter(([name, sql]) => found.get(name) !== sql).map(([name]) =>
        name
      ),
    );
  }
}

function sealOnly(method: string): PlmError {
  return new PlmError(
    "ERR_INTERNAL",
    `Cannot call audit.${method}() on SQLite as its audit chaining is "write"`,
  );
}

function toRecord(row: AuditRow): AuditRecord {
  return {
    seq: row.seq,
    at: row.at,
    actor: { subject: row.actor_subject, kind: row.actor_kind as ActorKind },
    action: row.action,
    resource: row.resource,
    outcome: row.outcome,
    reason: row.reason,
    runId: row.run_id,
    traceId: row.trace_id,
    data: JSON.parse(row.data) as JsonValue,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

function collapse(sql: string): string {
  return sql.replace(/\s+/g, " ").trim();
}
