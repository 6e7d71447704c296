/**
 * The hash-chained, append-only audit log on the SQLite store:
 * {@link AuditLog}. It holds the SQL, the row mapping and the transactions;
 * the entry check (`_entry.ts`), the hash (`hash.ts`) and the chain walk
 * (`_verify_chain.ts`) are pure and live apart.
 *
 * @module
 */
import {
  type ActorKind,
  checkInteger,
  checkText,
  type Clock,
  INPUT_LIMITS,
  type JsonValue,
  PlmError,
  systemClock,
} from "../../shared/mod.ts";
import { type Database, MIGRATIONS, type Statement } from "../store/mod.ts";
import type { AuditEntryInput, AuditRecord, AuditSink } from "./types.ts";
import { parseEntry, type WritableEntry } from "./_entry.ts";
import { AUDIT_GENESIS_HASH, chainHash } from "./hash.ts";
import type { AuditHead, AuditVerifyOptions, AuditVerifyResult } from "./verify.ts";
import { broken, type ChainRow, verifyChain, witnessesOf } from "./_verify_chain.ts";
import { VERIFIED_CHECKPOINTS } from "./_verified.ts";

/** Which records {@link AuditLog.list} returns; criteria combine with AND. */
export interface AuditListFilter {
  /**
   * Only records of this run.
   *
   * @default {undefined}
   */
  runId?: string;
  /**
   * Only records whose action starts with this literal text (`"run."`).
   *
   * @default {undefined}
   */
  actionPrefix?: string;
  /**
   * Only records of this actor subject.
   *
   * @default {undefined}
   */
  actorSubject?: string;
  /**
   * Only records with `seq >= fromSeq`.
   *
   * @default {undefined}
   */
  fromSeq?: number;
  /**
   * Only records with `seq <= toSeq`.
   *
   * @default {undefined}
   */
  toSeq?: number;
  /**
   * At most this many records: an integer 1..`INPUT_LIMITS.listLimit` (1,000).
   * For more, page with `fromSeq` (`plm audit export` does).
   *
   * @default {1000}
   */
  limit?: number;
  /**
   * Newest (highest seq) first; with `limit`, the newest records.
   *
   * @default {false}
   */
  newestFirst?: boolean;
}

/** Options for {@link AuditLog}. */
export interface AuditLogOptions {
  /**
   * Stamps each record's `at` (truncated to whole milliseconds).
   *
   * @default {systemClock}
   */
  clock?: Clock;
}

/** A row of `audit_log`. */
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

const COLUMNS =
  "seq, at, actor_subject, actor_kind, action, resource, outcome, reason, run_id, trace_id, data, prev_hash, hash";
/**
 * The append-only triggers as migration 1 creates them, by name, whitespace
 * collapsed: {@link AuditLog.verify} requires exactly these.
 */
const APPEND_ONLY_TRIGGERS: ReadonlyMap<string, string> = new Map(
  [...(MIGRATIONS[0]?.sql ?? "").matchAll(/CREATE TRIGGER (audit_log_no_\w+)[\s\S]*?\bEND;/g)].map(
    (m) => [m[1]!, collapse(m[0].slice(0, -1))],
  ),
);

/** Rows per page when {@link AuditLog.verify} streams the table. */
const VERIFY_PAGE = 1000;

/**
 * The hash-chained, append-only audit log, stored in the `audit_log` table
 * (migration 1). Each record's hash covers its predecessor's hash, so editing,
 * deleting, inserting or reordering any record breaks the chain from there on,
 * which {@link AuditLog.verify} reports.
 *
 * The hash of a record is
 * `hex(SHA-256(UTF-8(prevHash + canonicalJson(body))))` where `body` is
 * `{ action, actor: { kind, subject }, at, data, outcome, reason, resource,
 * runId, seq, traceId }` (absent optional fields as `null`, `data` `null` when
 * absent) and {@link canonicalJson} sorts keys and drops whitespace. `seq` is
 * hashed so that moving a record is caught; `prevHash` enters as the prefix;
 * `hash` itself is not hashed. {@link computeAuditHash} is that function.
 *
 * Appends are safe across connections and processes sharing one file: each
 * one reads the head and inserts under the write lock (`BEGIN IMMEDIATE`, or a
 * savepoint inside the caller's transaction), and `seq` is the primary key, so
 * the chain neither forks nor leaves gaps. The table's triggers refuse
 * `UPDATE` and `DELETE` with `ERR_AUDIT_APPEND_ONLY`.
 *
 * @example Append, list and verify
 * ```ts
 * import { AuditLog, FakeClock, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const audit = new AuditLog(db, { clock: new FakeClock(1_000) });
 * const record = audit.append({
 *   actor: { subject: "alice", kind: "human" },
 *   action: "approval.decide",
 *   resource: "approval:a-1",
 *   outcome: "approved",
 *   data: { quorum: 2 },
 * });
 * assert.equal(record.seq, 1);
 * assert.equal(audit.list({ actionPrefix: "approval." }).length, 1);
 * assert.deepEqual(audit.verify(), { ok: true, checked: 1, head: audit.head() });
 * ```
 */
export class AuditLog implements AuditSink {
  #db: Database;
  #clock: Clock;
  #headStmt: Statement<{ seq: number; hash: string }>;
  #insertStmt: Statement;
  #pageStmt: Statement<ChainRow>;
  #triggersStmt: Statement<{ name: string; sql: string | null }>;
  #listStmts = new Map<string, Statement<AuditRow>>();

  /**
   * Creates an audit log on an open, migrated database.
   *
   * @param db The database, from `openDatabase`.
   * @param options The clock.
   * @throws {Error} When the database has no `audit_log` table.
   */
  constructor(db: Database, options: AuditLogOptions = {}) {
    const { clock = systemClock } = options;
    this.#db = db;
    this.#clock = clock;
    this.#headStmt = db.prepare("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
    this.#insertStmt = db.prepare(
      `INSERT INTO audit_log (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#pageStmt = db.prepare<ChainRow>(
      `SELECT ${COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ${VERIFY_PAGE}`,
      { returnArrays: true },
    );
    this.#triggersStmt = db.prepare(
      "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'",
    );
  }

  /**
   * Validates and appends one entry at the head of the chain, in its own
   * `BEGIN IMMEDIATE` transaction, or in a savepoint of the caller's
   * transaction (then it commits or rolls back with the caller).
   *
   * @param entry What happened.
   * @returns The stored record.
   * @throws {PlmError} `ERR_AUDIT_INVALID_RECORD` when `entry` is malformed.
   *
   * @example Append inside a caller's transaction
   * ```ts
   * import { AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const audit = new AuditLog(db);
   * db.transaction(() => {
   *   // ... change some state, then record it in the same transaction
   *   audit.append({
   *     actor: { subject: "svc", kind: "service" },
   *     action: "run.transition",
   *     resource: "run:r-1",
   *     outcome: "succeeded",
   *     runId: "r-1",
   *   });
   * });
   * assert.equal(audit.head().seq, 1);
   * ```
   */
  append(entry: AuditEntryInput): AuditRecord {
    const input = parseEntry(entry, undefined);
    return this.#db.transaction(() => this.#write(input, this.#readHead()));
  }

  /**
   * Validates every entry, then appends them all in one transaction: either
   * every entry is stored, consecutively, or none is.
   *
   * @param entries What happened, in order.
   * @returns The stored records, in order.
   * @throws {PlmError} `ERR_AUDIT_INVALID_RECORD` when `entries` is not a list or any entry is
   * malformed (nothing is stored).
   *
   * @example Append a batch
   * ```ts
   * import { AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const audit = new AuditLog(db);
   * const actor = { subject: "cron", kind: "system" } as const;
   * const records = audit.appendMany([
   *   { actor, action: "lease.expire", resource: "run:r-1", outcome: "requeued" },
   *   { actor, action: "lease.expire", resource: "run:r-2", outcome: "requeued" },
   * ]);
   * assert.deepEqual(records.map((r) => r.seq), [1, 2]);
   * assert.equal(records[1]?.prevHash, records[0]?.hash);
   * ```
   */
  appendMany(entries: readonly AuditEntryInput[]): AuditRecord[] {
    if (!Array.isArray(entries)) {
      throw new PlmError("ERR_AUDIT_INVALID_RECORD", "Cannot append entries that are not a list");
    }
    const inputs = entries.map((entry, index) => parseEntry(entry, index));
    if (inputs.length === 0) return [];
    return this.#db.transaction(() => {
      let head = this.#readHead();
      return inputs.map((input) => {
        const record = this.#write(input, head);
        head = record;
        return record;
      });
    });
  }

  /**
   * Returns the records matching `filter`, oldest first unless `newestFirst`.
   *
   * @param filter Which records, how many, in which order.
   * @returns The matching records.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the criterion when `fromSeq` or `toSeq`
   * is not an integer >= 0, `limit` not an integer 1..1,000, or a text criterion not a text.
   *
   * @example The last two records of a run
   * ```ts
   * import { AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const audit = new AuditLog(db);
   * const actor = { subject: "svc", kind: "service" } as const;
   * for (const outcome of ["queued", "running", "succeeded"]) {
   *   audit.append({ actor, action: "run.transition", resource: "run:r-1", outcome, runId: "r-1" });
   * }
   * const last = audit.list({ runId: "r-1", newestFirst: true, limit: 2 });
   * assert.deepEqual(last.map((r) => r.outcome), ["succeeded", "running"]);
   * ```
   */
  list(filter: AuditListFilter = {}): AuditRecord[] {
    const {
      runId,
      actionPrefix,
      actorSubject,
      fromSeq,
      toSeq,
      limit = INPUT_LIMITS.listLimit,
      newestFirst = false,
    } = filter;
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (runId !== undefined) {
      where.push("run_id = ?");
      params.push(checkText("runId", runId));
    }
    if (actionPrefix !== undefined) {
      where.push("action GLOB ?");
      params.push(checkText("actionPrefix", actionPrefix).replace(/[*?[]/g, "[$&]") + "*");
    }
    if (actorSubject !== undefined) {
      where.push("actor_subject = ?");
      params.push(checkText("actorSubject", actorSubject));
    }
    if (fromSeq !== undefined) {
      where.push("seq >= ?");
      params.push(checkInteger("fromSeq", fromSeq));
    }
    if (toSeq !== undefined) {
      where.push("seq <= ?");
      params.push(checkInteger("toSeq", toSeq));
    }
    let sql = `SELECT ${COLUMNS} FROM audit_log`;
    if (where.length > 0) sql += ` WHERE ${where.join(" AND ")}`;
    sql += newestFirst ? " ORDER BY seq DESC" : " ORDER BY seq";
    sql += " LIMIT ?";
    params.push(checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit));
    let stmt = this.#listStmts.get(sql);
    if (stmt === undefined) {
      stmt = this.#db.prepare<AuditRow>(sql);
      this.#listStmts.set(sql, stmt);
    }
    return stmt.all(...params).map(toRecord);
  }

  /**
   * Returns the newest record's seq and hash, to keep as a witness for
   * `verify({ expectedHead })`.
   *
   * @returns The head; `{ seq: 0, hash: AUDIT_GENESIS_HASH }` when empty.
   *
   * @example Read the head of an empty log
   * ```ts
   * import { AUDIT_GENESIS_HASH, AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * assert.deepEqual(new AuditLog(db).head(), { seq: 0, hash: AUDIT_GENESIS_HASH });
   * ```
   */
  head(): AuditHead {
    return this.#readHead();
  }

  /**
   * Walks the whole chain, oldest first, streaming rows in pages of 1000 within
   * one read snapshot (`BEGIN DEFERRED`: writers are not blocked meanwhile), and
   * reports the first record that is missing, out of place,
   * unlinked or altered. With `expectedHead`, and with each of `checkpoints`
   * (signed heads whose signatures `verifyCheckpoint` has checked: the same
   * check), it also reports truncation and rewritten history, naming the
   * checkpoint (`checkpointIndex`). An intact chain whose append-only triggers
   * are missing or altered is reported as `append_only_disabled`.
   *
   * @param options The expected head and the checkpoints, if any.
   * @returns `ok: true` with the count and head, or the first bad seq and why.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `expectedHead.seq` is not an integer >= 0
   * or `expectedHead.hash` not 64 lowercase hex digits, or a checkpoint does not match
   * `AuditCheckpointSchema` (naming `checkpoints[i]`); `ERR_CHECKPOINT_INVALID` when a
   * checkpoint is not one that `verifyCheckpoint` or `signCheckpoint` returned (its signature
   * was never checked).
   *
   * @example Catch truncation with a remembered head
   * ```ts
   * import { AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const audit = new AuditLog(db);
   * const actor = { subject: "svc", kind: "service" } as const;
   * audit.append({ actor, action: "demo", resource: "x", outcome: "ok" });
   * const witness = audit.head();
   * assert.equal(audit.verify({ expectedHead: witness }).ok, true);
   *
   * const claimed = { seq: witness.seq + 1, hash: witness.hash };
   * const result = audit.verify({ expectedHead: claimed });
   * assert.equal(result.ok ? "ok" : result.problem, "truncated");
   * ```
   */
  verify(options: AuditVerifyOptions = {}): AuditVerifyResult {
    const witnesses = witnessesOf(options);
    // A checkpoint is trusted only as `verifyCheckpoint` (or `signCheckpoint`) returned it.
    options.checkpoints?.forEach((checkpoint, index) => {
      if (!VERIFIED_CHECKPOINTS.has(checkpoint)) {
        throw new PlmError(
          "ERR_CHECKPOINT_INVALID",
          `Cannot trust checkpoints[${index}]: pass the checkpoint verifyCheckpoint returned`,
        );
      }
    });
    return this.#db.readTransaction(() => {
      const result = verifyChain(this.#pages(), witnesses);
      if (!result.ok) return result;
      const missing = this.#missingTriggers();
      if (missing.length === 0) return result;
      return broken(
        result.checked,
        0,
        "append_only_disabled",
        `The log is not append-only: trigger ${missing.join(" and ")} is missing or altered`,
      );
    });
  }

  /**
   * The whole table, oldest first, in keyset pages of arrays (call it inside a
   * read transaction: one snapshot). Bounded memory, and much cheaper per row
   * than node:sqlite's iterate() with objects. The walk stops reading at its
   * first problem.
   */
  *#pages(): Generator<ChainRow[]> {
    for (let page = this.#pageStmt.all(0); page.length > 0;) {
      yield page;
      if (page.length < VERIFY_PAGE) return;
      page = this.#pageStmt.all(page[page.length - 1]![0]);
    }
  }

  #missingTriggers(): string[] {
    const found = new Map(this.#triggersStmt.all().map((t) => [t.name, collapse(t.sql ?? "")]));
    return [...APPEND_ONLY_TRIGGERS].filter(([name, sql]) => found.get(name) !== sql).map(([n]) =>
      n
    );
  }

  #readHead(): AuditHead {
    const row = this.#headStmt.get();
    return row === undefined
      ? { seq: 0, hash: AUDIT_GENESIS_HASH }
      : { seq: row.seq, hash: row.hash };
  }

  #write({ entry: input, dataJson }: WritableEntry, head: AuditHead): AuditRecord {
    const now = this.#clock.now();
    const at = Math.trunc(now);
    if (!Number.isSafeInteger(at)) {
      throw new PlmError("ERR_INTERNAL", `Cannot stamp an audit record with the time ${now}`);
    }
    const data = input.data ?? null;
    const row: AuditRow = {
      seq: head.seq + 1,
      at,
      actor_subject: input.actor.subject,
      actor_kind: input.actor.kind,
      action: input.action,
      resource: input.resource,
      outcome: input.outcome,
      reason: input.reason ?? null,
      run_id: input.runId ?? null,
      trace_id: input.traceId ?? null,
      data: dataJson,
      prev_hash: head.hash,
      hash: "",
    };
    row.hash = chainHash(
      row.prev_hash,
      row.seq,
      row.at,
      row.actor_subject,
      row.actor_kind,
      row.action,
      row.resource,
      row.outcome,
      row.reason,
      row.run_id,
      row.trace_id,
      row.data,
    );
    this.#insertStmt.run(
      row.seq,
      row.at,
      row.actor_subject,
      row.actor_kind,
      row.action,
      row.resource,
      row.outcome,
      row.reason,
      row.run_id,
      row.trace_id,
      row.data,
      row.prev_hash,
      row.hash,
    );
    return {
      seq: row.seq,
      at,
      actor: { subject: row.actor_subject, kind: input.actor.kind },
      action: row.action,
      resource: row.resource,
      outcome: row.outcome,
      reason: row.reason,
      runId: row.run_id,
      traceId: row.trace_id,
      data,
      prevHash: row.prev_hash,
      hash: row.hash,
    };
  }
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
