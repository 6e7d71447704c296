/**
 * The hash-chained, append-only audit log over the store port:
 * {@link AuditLog}. It calls the audit repository in transactions; the entry
 * check (`_entry.ts`), the chaining (`_chain.ts`, `hash.ts`) and the chain walk
 * (`_verify_chain.ts`) are pure and live apart, and the SQL is the adapters'.
 *
 * @module
 */
import {
  canonicalJson,
  checkInteger,
  checkText,
  type Clock,
  INPUT_LIMITS,
  PlmError,
  systemClock,
} from "../../shared/mod.ts";
import type { AuditQuery, Store, StoreTx } from "../store/port.ts";
import type { AuditEntryInput, AuditRecord, AuditSink } from "./types.ts";
import { parseEntry, type WritableEntry } from "./_entry.ts";
import { chainAfter, draftOf, sealAfter } from "./_chain.ts";
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

/** Options of an append: the transaction to join. */
export interface AuditAppendOptions {
  /**
   * Write in this transaction (it commits or rolls back with the caller's
   * changes); without it, the append opens its own.
   *
   * @default {undefined}
   */
  tx?: StoreTx;
}

/** Options of a read: the transaction to read in. */
export interface AuditReadOptions {
  /**
   * Read in this transaction (it sees its own writes; no sealing first);
   * without it, the log is sealed as far as it can be, then read.
   *
   * @default {undefined}
   */
  tx?: StoreTx;
}

/** Rows per page when {@link AuditLog.verify} and filtered lists walk the log. */
const PAGE = 1000;

/** Pending records per seal transaction. */
const SEAL_BATCH = 500;

/**
 * The hash-chained, append-only audit log. Each record's hash covers its
 * predecessor's hash, so editing, deleting, inserting or reordering any record
 * breaks the chain from there on, which {@link AuditLog.verify} reports.
 *
 * The hash of a record is
 * `hex(SHA-256(UTF-8(prevHash + canonicalJson(body))))` where `body` is
 * `{ action, actor: { kind, subject }, at, data, outcome, reason, resource,
 * runId, seq, traceId }` (absent optional fields as `null`, `data` `null` when
 * absent) and {@link canonicalJson} sorts keys and drops whitespace. `seq` is
 * hashed so that moving a record is caught; `prevHash` enters as the prefix;
 * `hash` itself is not hashed. {@link computeAuditHash} is that function.
 *
 * How a record gets its place depends on the store (ADR 0008). On SQLite
 * (`"write"` chaining) the writer reads the head and inserts the chained record
 * in its own transaction: writes take turns, so the chain neither forks nor
 * leaves gaps. On PostgreSQL (`"seal"` chaining) the writer inserts an
 * unchained draft in its transaction, and {@link AuditLog.seal}, run by one
 * elected sealer, chains committed drafts in seal order; `list`, `head` and
 * `verify` seal first, so a caller reads its own committed writes.
 *
 * @example Append, list and verify
 * ```ts
 * import { AuditLog, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store, { clock: new FakeClock(1_000) });
 * await audit.append({
 *   actor: { subject: "alice", kind: "human" },
 *   action: "approval.decide",
 *   resource: "approval:a-1",
 *   outcome: "approved",
 *   data: { quorum: 2 },
 * });
 * const [record] = await audit.list({ actionPrefix: "approval." });
 * assert.equal(record?.seq, 1);
 * const result = await audit.verify();
 * assert.deepEqual(result, { ok: true, checked: 1, head: await audit.head(), sealedThrough: 1, pending: 0 });
 * ```
 */
export class AuditLog implements AuditSink {
  #store: Store;
  #clock: Clock;
  #chainingOf: Promise<"write" | "seal"> | undefined;

  /**
   * Creates an audit log on an open store.
   *
   * @param store The store, from `openStore`.
   * @param options The clock.
   */
  constructor(store: Store, options: AuditLogOptions = {}) {
    const { clock = systemClock } = options;
    this.#store = store;
    this.#clock = clock;
  }

  /**
   * Validates and appends one entry, in its own transaction or in the
   * caller's `tx` (then it commits or rolls back with the caller).
   *
   * @param entry What happened.
   * @param options The transaction to join.
   * @returns Once written (committed, without `tx`).
   * @throws {PlmError} `ERR_AUDIT_INVALID_RECORD` when `entry` is malformed.
   *
   * @example Append inside a caller's transaction
   * ```ts
   * import { AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const audit = new AuditLog(store);
   * await store.transaction(async (tx) => {
   *   // ... change some state, then record it in the same transaction
   *   await audit.append({
   *     actor: { subject: "svc", kind: "service" },
   *     action: "run.transition",
   *     resource: "run:r-1",
   *     outcome: "succeeded",
   *     runId: "r-1",
   *   }, { tx });
   * });
   * assert.equal((await audit.head()).seq, 1);
   * ```
   */
  async append(entry: AuditEntryInput, options: AuditAppendOptions = {}): Promise<void> {
    const input = parseEntry(entry, undefined);
    await this.#within(options.tx, (tx) => this.#write(tx, [input]));
  }

  /**
   * Validates every entry, then appends them all in one transaction (or the
   * caller's `tx`): either every entry is stored, consecutively, or none is.
   *
   * @param entries What happened, in order.
   * @param options The transaction to join.
   * @returns Once written.
   * @throws {PlmError} `ERR_AUDIT_INVALID_RECORD` when `entries` is not a list or any entry is
   * malformed (nothing is stored).
   *
   * @example Append a batch
   * ```ts
   * import { AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const audit = new AuditLog(store);
   * const actor = { subject: "cron", kind: "system" } as const;
   * await audit.appendMany([
   *   { actor, action: "lease.expire", resource: "run:r-1", outcome: "requeued" },
   *   { actor, action: "lease.expire", resource: "run:r-2", outcome: "requeued" },
   * ]);
   * const records = await audit.list();
   * assert.deepEqual(records.map((r) => r.seq), [1, 2]);
   * assert.equal(records[1]?.prevHash, records[0]?.hash);
   * ```
   */
  async appendMany(
    entries: readonly AuditEntryInput[],
    options: AuditAppendOptions = {},
  ): Promise<void> {
    if (!Array.isArray(entries)) {
      throw new PlmError("ERR_AUDIT_INVALID_RECORD", "Cannot append entries that are not a list");
    }
    const inputs = entries.map((entry, index) => parseEntry(entry, index));
    if (inputs.length === 0) return;
    await this.#within(options.tx, (tx) => this.#write(tx, inputs));
  }

  /**
   * Chains the records waiting to be sealed (PostgreSQL's `"seal"` chaining),
   * batch after batch, as the elected sealer: each batch takes the head and
   * the oldest sealable drafts in seal order, gives them the next seqs and
   * their hashes, and moves the watermark if no other sealer moved it first.
   * It stops after a batch that was not full, or when another process holds
   * the sealer role. A no-op (0) on SQLite, which chains as it writes, and on
   * a store opened read-only (then `list`, `head` and `verify` read what is
   * sealed, and `verify` reports the rest as `pending`).
   *
   * @returns How many records this call sealed.
   *
   * @example Nothing to seal on SQLite
   * ```ts
   * import { AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const audit = new AuditLog(store);
   * await audit.append({ actor: { subject: "svc", kind: "service" }, action: "demo", resource: "x", outcome: "ok" });
   * assert.equal(await audit.seal(), 0);
   * ```
   */
  async seal(): Promise<number> {
    // A read-only store is never sealed (sealing writes): its readers see what is sealed.
    if (this.#store.readOnly || await this.#chaining() === "write") return 0;
    let sealed = 0;
    for (;;) {
      // One batch per transaction, under the sealer role: the seals are computed from the
      // head read in this transaction and written only if it is still the head (fenced by
      // the watermark), so two sealers can never fork the chain.
      const batch = await this.#store.lead("sealer", async (tx) => {
        const head = await tx.audit.head();
        const pending = await tx.audit.pending(SEAL_BATCH);
        if (pending.length === 0) return { count: 0, full: false };
        const { seals } = sealAfter(head, pending);
        if (!await tx.audit.seal(seals, head)) return { count: 0, full: false };
        return { count: seals.length, full: pending.length === SEAL_BATCH };
      });
      if (batch === undefined) return sealed;
      sealed += batch.count;
      if (!batch.full) return sealed;
    }
  }

  /**
   * Returns the records matching `filter`, oldest first unless `newestFirst`.
   * Without `tx`, it seals first.
   *
   * @param filter Which records, how many, in which order.
   * @param options The transaction to read in.
   * @returns The matching records.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the criterion when `fromSeq` or `toSeq`
   * is not an integer >= 0, `limit` not an integer 1..1,000, or a text criterion not a text.
   *
   * @example The last two records of a run
   * ```ts
   * import { AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const audit = new AuditLog(store);
   * const actor = { subject: "svc", kind: "service" } as const;
   * for (const outcome of ["queued", "running", "succeeded"]) {
   *   await audit.append({ actor, action: "run.transition", resource: "run:r-1", outcome, runId: "r-1" });
   * }
   * const last = await audit.list({ runId: "r-1", newestFirst: true, limit: 2 });
   * assert.deepEqual(last.map((r) => r.outcome), ["succeeded", "running"]);
   * ```
   */
  async list(filter: AuditListFilter = {}, options: AuditReadOptions = {}): Promise<AuditRecord[]> {
    const {
      runId,
      actionPrefix,
      actorSubject,
      fromSeq,
      toSeq,
      limit = INPUT_LIMITS.listLimit,
      newestFirst = false,
    } = filter;
    const query: AuditQuery = {
      ...(runId === undefined ? {} : { runId: checkText("runId", runId) }),
      ...(actorSubject === undefined ? {} : { actor: checkText("actorSubject", actorSubject) }),
      ...(fromSeq === undefined ? {} : { afterSeq: checkInteger("fromSeq", fromSeq) - 1 }),
      ...(actionPrefix === undefined
        ? {}
        : { actionPrefix: checkText("actionPrefix", actionPrefix) }),
      ...(toSeq === undefined ? {} : { throughSeq: checkInteger("toSeq", toSeq) }),
      order: newestFirst ? "desc" : "asc",
      limit: checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit),
    };
    return await this.#reading(options.tx, (tx) => tx.audit.list(query));
  }

  /**
   * Returns the newest sealed record's seq and hash, to keep as a witness for
   * `verify({ expectedHead })`. Without `tx`, it seals first.
   *
   * @param options The transaction to read in.
   * @returns The head; `{ seq: 0, hash: AUDIT_GENESIS_HASH }` when empty.
   *
   * @example Read the head of an empty log
   * ```ts
   * import { AUDIT_GENESIS_HASH, AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * assert.deepEqual(await new AuditLog(store).head(), { seq: 0, hash: AUDIT_GENESIS_HASH });
   * ```
   */
  async head(options: AuditReadOptions = {}): Promise<AuditHead> {
    return await this.#reading(options.tx, async (tx) => {
      const { seq, hash } = await tx.audit.head();
      return { seq, hash };
    });
  }

  /**
   * Seals what can be sealed, then walks the whole sealed chain, oldest first,
   * in pages of 1,000 within one read snapshot, and reports the first record
   * that is missing, out of place, unlinked or altered. With `expectedHead`,
   * and with each of `checkpoints` (signed heads whose signatures
   * `verifyCheckpoint` has checked: the same check), it also reports
   * truncation and rewritten history, naming the checkpoint
   * (`checkpointIndex`). An intact chain whose append-only guards (triggers)
   * are missing or altered is reported as `append_only_disabled`. The result
   * carries the sealed watermark and how many records still wait to be sealed
   * (PostgreSQL: written by transactions still open, or after the walk began).
   *
   * @param options The expected head and the checkpoints, if any.
   * @returns `ok: true` with the count and head, or the first bad seq and why; with the seal state.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `expectedHead.seq` is not an integer >= 0
   * or `expectedHead.hash` not 64 lowercase hex digits, or a checkpoint does not match
   * `AuditCheckpointSchema` (naming `checkpoints[i]`); `ERR_CHECKPOINT_INVALID` when a
   * checkpoint is not one that `verifyCheckpoint` or `signCheckpoint` returned (its signature
   * was never checked).
   *
   * @example Catch truncation with a remembered head
   * ```ts
   * import { AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const audit = new AuditLog(store);
   * const actor = { subject: "svc", kind: "service" } as const;
   * await audit.append({ actor, action: "demo", resource: "x", outcome: "ok" });
   * const witness = await audit.head();
   * assert.equal((await audit.verify({ expectedHead: witness })).ok, true);
   *
   * const claimed = { seq: witness.seq + 1, hash: witness.hash };
   * const result = await audit.verify({ expectedHead: claimed });
   * assert.equal(result.ok ? "ok" : result.problem, "truncated");
   * ```
   */
  async verify(options: AuditVerifyOptions = {}): Promise<AuditVerifyResult> {
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
    await this.seal();
    return await this.#store.read(async (tx) => {
      const { seq: sealedThrough } = await tx.audit.head();
      const pending = await tx.audit.pendingCount();
      const state = { sealedThrough, pending };
      const result = await verifyChain(pagesOf(tx), witnesses);
      if (!result.ok) return { ...result, ...state };
      const missing = await tx.audit.missingGuards();
      if (missing.length === 0) return { ...result, ...state };
      return {
        ...broken(
          result.checked,
          0,
          "append_only_disabled",
          `The log is not append-only: trigger ${missing.join(" and ")} is missing or altered`,
        ),
        ...state,
      };
    });
  }

  /** How the store chains, read once (again after a failed read). */
  #chaining(): Promise<"write" | "seal"> {
    this.#chainingOf ??= this.#store.read((tx) => Promise.resolve(tx.audit.chaining)).catch(
      (err) => {
        this.#chainingOf = undefined;
        throw err;
      },
    );
    return this.#chainingOf;
  }

  /** Runs `fn` in `tx`, or in a transaction of its own. */
  #within<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return tx === undefined ? this.#store.transaction(fn) : fn(tx);
  }

  /** Runs `fn` in `tx`, or seals and then runs it in a read transaction of its own. */
  async #reading<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (tx !== undefined) return await fn(tx);
    await this.seal();
    return await this.#store.read(fn);
  }

  /**
   * Writes checked entries in `tx`: chained after the head it reads
   * (`"write"`: writes take turns, so no other writer moves the head before
   * this transaction commits), or as drafts for the sealer (`"seal"`).
   */
  async #write(tx: StoreTx, inputs: readonly WritableEntry[]): Promise<void> {
    const drafts = inputs.map((input) => draftOf(input, this.#clock.now()));
    if (tx.audit.chaining === "write") {
      await tx.audit.insertChained(chainAfter(await tx.audit.head(), drafts));
    } else {
      await tx.audit.insertPending(drafts);
    }
  }
}

/**
 * The sealed chain, oldest first, in keyset pages (call it inside a read
 * transaction: one snapshot). The walk stops reading at its first problem.
 */
async function* pagesOf(tx: StoreTx): AsyncGenerator<ChainRow[]> {
  for (let after = 0;;) {
    const page = await tx.audit.list({ afterSeq: after, order: "asc", limit: PAGE });
    if (page.length === 0) return;
    yield page.map(toChainRow);
    if (page.length < PAGE) return;
    after = page[page.length - 1]!.seq;
  }
}

/** A record as the walk reads it, `data` as its canonical JSON (the text that was hashed). */
function toChainRow(record: AuditRecord): ChainRow {
  return [
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
    record.hash,
  ];
}
