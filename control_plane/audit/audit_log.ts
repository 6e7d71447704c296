/**
 * The hash-chained, append-only audit log on the SQLite store:
 * {@link AuditLog}, and {@link computeAuditHash} for checking records outside
 * this package.
 *
 * @module
 */
import { z } from "zod";
import {
  ACTOR_KINDS,
  type ActorKind,
  canonicalJson,
  checkInteger,
  checkText,
  type Clock,
  formatIssues,
  INPUT_LIMITS,
  invalidArgument,
  type JsonValue,
  parseArgument,
  PlmError,
  type Schema,
  sha256Hex,
  systemClock,
} from "../../shared/mod.ts";
import { jsonSchema, textSchema } from "../../shared/validate.ts";
import { type Database, MIGRATIONS, type Statement } from "../store/mod.ts";
import type { AuditEntryInput, AuditRecord, AuditSink } from "./types.ts";
import { type AuditCheckpoint, AuditCheckpointSchema } from "./checkpoint.ts";
import { checkHead } from "./_head.ts";

/** The most characters of an audit record's `resource` and `reason`. */
const AUDIT_TEXT_LIMIT = 8_192;

/**
 * The `prevHash` of the first record: 64 zeros.
 *
 * @example The first record points at the genesis hash
 * ```ts
 * import {
 *   AUDIT_GENESIS_HASH,
 *   AuditLog,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const audit = new AuditLog(db);
 * assert.deepEqual(audit.head(), { seq: 0, hash: AUDIT_GENESIS_HASH });
 * const first = audit.append({
 *   actor: { subject: "svc", kind: "service" },
 *   action: "run.create",
 *   resource: "run:r-1",
 *   outcome: "queued",
 * });
 * assert.equal(first.prevHash, AUDIT_GENESIS_HASH);
 * ```
 */
export const AUDIT_GENESIS_HASH: string = "0".repeat(64);

/** The fields of an audit entry but `data`, shared by both entry schemas below. */
const entryFields = {
  actor: z.strictObject({
    subject: textSchema(),
    kind: z.enum(ACTOR_KINDS),
  }),
  action: z.string().max(INPUT_LIMITS.textLength).regex(/^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/),
  resource: textSchema({ max: AUDIT_TEXT_LIMIT }),
  outcome: textSchema(),
  reason: textSchema({ min: 0, max: AUDIT_TEXT_LIMIT }).exactOptional(),
  runId: textSchema().exactOptional(),
  traceId: z.string().regex(/^[0-9a-f]{32}$/).exactOptional(),
};

/**
 * Zod schema of {@link AuditEntryInput}; unknown keys are rejected.
 *
 * - `actor.subject`, `outcome`, `runId`: non-empty texts of at most 1,024 characters,
 *   `resource` and `reason` of at most 8,192 (no U+0000, no lone surrogates: they are
 *   stored byte for byte as they are hashed);
 * - `actor.kind`: one of `ACTOR_KINDS`;
 * - `action`: dotted words of letters, digits, `_` and `-` (`run.transition`);
 * - `traceId`: a W3C trace id, 32 lowercase hex digits;
 * - `data`: any JSON value that `canonicalJson` accepts (finite numbers, plain objects
 *   and arrays, at most 32 deep).
 *
 * @example Validate an entry
 * ```ts
 * import { AuditEntryInputSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const ok = AuditEntryInputSchema.safeParse({
 *   actor: { subject: "alice", kind: "human" },
 *   action: "run.transition",
 *   resource: "run:r-1",
 *   outcome: "succeeded",
 * });
 * assert.ok(ok.success);
 * assert.equal(AuditEntryInputSchema.safeParse({ action: "x" }).success, false);
 * ```
 */
export const AuditEntryInputSchema: Schema<AuditEntryInput> = z.strictObject({
  ...entryFields,
  data: jsonSchema().exactOptional(),
});

/**
 * An entry as {@link AuditLog} writes it: the fields checked as
 * {@link AuditEntryInputSchema} checks them, and `data` checked by computing
 * its canonical JSON, the text that is hashed and stored (computed once).
 */
const writableEntrySchema = z.strictObject({ ...entryFields, data: z.unknown().exactOptional() })
  .transform((entry, ctx) => {
    try {
      const dataJson = canonicalJson((entry.data ?? null) as JsonValue, { field: "it" });
      return { entry: entry as AuditEntryInput, dataJson };
    } catch (err) {
      ctx.addIssue({ code: "custom", path: ["data"], message: (err as Error).message });
      return z.NEVER;
    }
  });

/**
 * The position and hash of the newest record: `{ seq: 0, hash: AUDIT_GENESIS_HASH }` when empty.
 */
export interface AuditHead {
  /** The newest record's `seq`, or 0. */
  readonly seq: number;
  /** The newest record's `hash`, or {@link AUDIT_GENESIS_HASH}. */
  readonly hash: string;
}

/**
 * Every way {@link AuditLog.verify} can find the chain broken.
 *
 * @example Catch a truncated log
 * ```ts
 * import {
 *   AUDIT_CHAIN_PROBLEMS,
 *   AuditLog,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const audit = new AuditLog(db);
 * const result = audit.verify({ expectedHead: { seq: 3, hash: "a".repeat(64) } });
 * assert.equal(result.ok, false);
 * if (!result.ok) {
 *   assert.ok(AUDIT_CHAIN_PROBLEMS.includes(result.problem));
 *   assert.equal(result.problem, "truncated");
 * }
 * ```
 */
export const AUDIT_CHAIN_PROBLEMS = [
  /** A seq is missing or out of place (a record was deleted or inserted). */
  "seq_gap",
  /** A record does not point at its predecessor's hash. */
  "prev_hash_mismatch",
  /** A record's content does not match its hash (it was edited or moved). */
  "hash_mismatch",
  /** The log ends before the expected head. */
  "truncated",
  /** The record at the expected head's seq has another hash (history rewritten). */
  "head_mismatch",
  /**
   * The chain is intact but the triggers that refuse `UPDATE` and `DELETE` are
   * missing or altered: the log is no longer append-only (`firstBadSeq` is 0).
   */
  "append_only_disabled",
] as const;

/** One of {@link AUDIT_CHAIN_PROBLEMS}. */
export type AuditChainProblem = typeof AUDIT_CHAIN_PROBLEMS[number];

/** What {@link AuditLog.verify} found. */
export type AuditVerifyResult =
  | {
    /** The chain is intact. */
    readonly ok: true;
    /** How many records were checked. */
    readonly checked: number;
    /** The newest record checked. */
    readonly head: AuditHead;
  }
  | {
    /** The chain is broken. */
    readonly ok: false;
    /** How many records were valid before the first bad one. */
    readonly checked: number;
    /** The seq of the first bad (or first missing) record; 0 for `append_only_disabled`. */
    readonly firstBadSeq: number;
    /** What is wrong, as a stable code. */
    readonly problem: AuditChainProblem;
    /** What is wrong, in words. */
    readonly reason: string;
    /**
     * For `truncated` and `head_mismatch` against a checkpoint: its index in
     * `options.checkpoints` (absent when the expected head failed).
     */
    readonly checkpointIndex?: number;
  };

/** Options for {@link AuditLog.verify}. */
export interface AuditVerifyOptions {
  /**
   * A head recorded earlier (for example by an external witness). When given,
   * the log must reach `expectedHead.seq` and hold `expectedHead.hash` there,
   * which catches truncation and wholesale rewrites of the chain.
   *
   * @default {undefined}
   */
  expectedHead?: AuditHead;
  /**
   * Checkpoints whose signatures were checked with `verifyCheckpoint`: each is
   * an expected head, so the log must reach each one's `seq` with its `hash`.
   *
   * @default {[]}
   */
  checkpoints?: readonly AuditCheckpoint[];
}

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

/** The fields {@link computeAuditHash} reads: a record without its `hash`. */
export type AuditHashInput = Omit<AuditRecord, "hash">;

/** A row of `audit_log` as an array, in {@link COLUMNS} order. */
type AuditRowArray = [
  seq: number,
  at: number,
  actorSubject: string,
  actorKind: string,
  action: string,
  resource: string,
  outcome: string,
  reason: string | null,
  runId: string | null,
  traceId: string | null,
  data: string,
  prevHash: string,
  hash: string,
];

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
  #pageStmt: Statement<AuditRowArray>;
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
    this.#pageStmt = db.prepare<AuditRowArray>(
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
   * `AuditCheckpointSchema` (naming `checkpoints[i]`).
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
    const { expectedHead, checkpoints = [] } = options;
    const witnesses: Witness[] = [];
    if (expectedHead !== undefined) {
      checkHead("expectedHead", expectedHead);
      witnesses.push({ seq: expectedHead.seq, hash: expectedHead.hash });
    }
    if (!Array.isArray(checkpoints)) throw invalidArgument("checkpoints", "expected a list");
    checkpoints.forEach((checkpoint, index) => {
      const { seq, hash } = parseArgument(
        AuditCheckpointSchema,
        checkpoint,
        `checkpoints[${index}]`,
      );
      witnesses.push({ seq, hash, checkpointIndex: index });
    });
    // Stable: at one seq, the expected head is checked before the checkpoints.
    witnesses.sort((a, b) => a.seq - b.seq);
    return this.#db.readTransaction(() => this.#verify(witnesses));
  }

  /**
   * Walks the chain; `witnesses` (sorted by seq) are the heads it must pass
   * through. Chain problems are reported first, then the lowest witness that
   * the log does not reach or that names another hash.
   */
  #verify(witnesses: readonly Witness[]): AuditVerifyResult {
    let checked = 0;
    let prevHash = AUDIT_GENESIS_HASH;
    // The hash the log holds at each witness's seq, filled in as the walk passes it.
    const found = new Map<number, string>([[0, AUDIT_GENESIS_HASH]]);
    let next = 0;
    while (witnesses[next]?.seq === 0) next++;
    // Keyset pages of arrays inside one read snapshot: bounded memory, and much
    // cheaper per row than node:sqlite's iterate() with objects.
    for (let page = this.#pageStmt.all(0); page.length > 0; page = this.#pageStmt.all(checked)) {
      for (const row of page) {
        const seq = row[0];
        const expected = checked + 1;
        if (seq !== expected) {
          return broken(
            checked,
            Math.min(expected, seq),
            "seq_gap",
            seq > expected
              ? `Record ${expected} is missing (the next one is ${seq})`
              : `Record ${seq} is out of place (expected ${expected})`,
          );
        }
        if (row[11] !== prevHash) {
          return broken(
            checked,
            seq,
            "prev_hash_mismatch",
            `Record ${seq} does not link to record ${seq - 1} (prevHash mismatch)`,
          );
        }
        const hash = row[12];
        if (
          chainHash(
            prevHash,
            seq,
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            row[10],
          ) !== hash
        ) {
          return broken(
            checked,
            seq,
            "hash_mismatch",
            `Record ${seq} has been altered (hash mismatch)`,
          );
        }
        if (seq === witnesses[next]?.seq) {
          found.set(seq, hash);
          while (witnesses[next]?.seq === seq) next++;
        }
        prevHash = hash;
        checked = seq;
      }
      if (page.length < VERIFY_PAGE) break;
    }
    for (const witness of witnesses) {
      const what = witness.checkpointIndex === undefined
        ? "the expected head"
        : `checkpoint ${witness.checkpointIndex}`;
      const hashThere = found.get(witness.seq);
      if (hashThere === undefined) {
        return broken(
          checked,
          checked + 1,
          "truncated",
          `The log ends at record ${checked} but ${what} is record ${witness.seq}`,
          witness.checkpointIndex,
        );
      }
      if (hashThere !== witness.hash) {
        return broken(
          checked,
          witness.seq,
          "head_mismatch",
          `Record ${witness.seq} differs from ${what} (history rewritten)`,
          witness.checkpointIndex,
        );
      }
    }
    const missing = this.#missingTriggers();
    if (missing.length > 0) {
      return broken(
        checked,
        0,
        "append_only_disabled",
        `The log is not append-only: trigger ${missing.join(" and ")} is missing or altered`,
      );
    }
    return { ok: true, checked, head: { seq: checked, hash: prevHash } };
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

/**
 * Computes a record's hash as {@link AuditLog} does:
 * `hex(SHA-256(UTF-8(prevHash + canonicalJson({ action, actor: { kind, subject },
 * at, data, outcome, reason, resource, runId, seq, traceId }))))`.
 *
 * @param record A record without its hash (a stored record works too).
 * @returns 64 lowercase hex digits.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the path when `record.data` is not
 * JSON or out of bounds (see `canonicalJson`: a BigInt, NaN, a Date, a cycle, too deep).
 *
 * @example Recompute a stored record's hash
 * ```ts
 * import { AuditLog, computeAuditHash, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const record = new AuditLog(db).append({
 *   actor: { subject: "bob", kind: "human" },
 *   action: "policy.decide",
 *   resource: "run:r-9",
 *   outcome: "denied",
 *   reason: "Outside business hours",
 * });
 * assert.equal(computeAuditHash(record), record.hash);
 * const notJson = { ...record, data: { amount: 10n } } as unknown as typeof record;
 * assert.throws(() => computeAuditHash(notJson), { code: "ERR_INVALID_ARGUMENT" });
 * ```
 */
export function computeAuditHash(record: AuditHashInput): string {
  return chainHash(
    record.prevHash,
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
    canonicalJson(record.data, { field: "record.data" }),
  );
}

/**
 * The canonical body built by concatenation (keys in sorted order), with the
 * stored canonical `data` text used as it is: no JSON parse on the verify path.
 */
function chainHash(
  prevHash: string,
  seq: number,
  at: number,
  actorSubject: string,
  actorKind: string,
  action: string,
  resource: string,
  outcome: string,
  reason: string | null,
  runId: string | null,
  traceId: string | null,
  dataJson: string,
): string {
  const body = `{"action":${JSON.stringify(action)},"actor":{"kind":${
    JSON.stringify(actorKind)
  },"subject":${JSON.stringify(actorSubject)}},"at":${
    JSON.stringify(at)
  },"data":${dataJson},"outcome":${JSON.stringify(outcome)},"reason":${
    reason === null ? "null" : JSON.stringify(reason)
  },"resource":${JSON.stringify(resource)},"runId":${
    runId === null ? "null" : JSON.stringify(runId)
  },"seq":${JSON.stringify(seq)},"traceId":${traceId === null ? "null" : JSON.stringify(traceId)}}`;
  return sha256Hex(prevHash + body);
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

type WritableEntry = z.output<typeof writableEntrySchema>;

function parseEntry(entry: unknown, index: number | undefined): WritableEntry {
  const result = writableEntrySchema.safeParse(entry);
  if (result.success) return result.data;
  const which = index === undefined ? "an audit entry" : `audit entry ${index}`;
  throw new PlmError(
    "ERR_AUDIT_INVALID_RECORD",
    `Cannot append ${which} as it is invalid: ${formatIssues(result.error.issues)}`,
  );
}

function collapse(sql: string): string {
  return sql.replace(/\s+/g, " ").trim();
}

/** A head the chain must pass through: the expected head or a checkpoint. */
interface Witness {
  readonly seq: number;
  readonly hash: string;
  /** The checkpoint's index in `options.checkpoints`; absent for `expectedHead`. */
  readonly checkpointIndex?: number;
}

function broken(
  checked: number,
  firstBadSeq: number,
  problem: AuditChainProblem,
  reason: string,
  checkpointIndex?: number,
): AuditVerifyResult {
  return checkpointIndex === undefined
    ? { ok: false, checked, firstBadSeq, problem, reason }
    : { ok: false, checked, firstBadSeq, problem, reason, checkpointIndex };
}
