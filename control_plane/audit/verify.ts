/**
 * What `AuditLog.verify` takes and finds: the {@link AuditHead} a chain must
 * reach, the {@link AUDIT_CHAIN_PROBLEMS} it can report, and the
 * {@link AuditVerifyResult}.
 *
 * @module
 */
import type { AuditCheckpoint } from "./checkpoint.ts";

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
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store);
 * const result = await audit.verify({ expectedHead: { seq: 3, hash: "a".repeat(64) } });
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

/** What the chain walk found, before the store's seal state is added. */
export type AuditChainResult =
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

/** The seal state {@link AuditLog.verify} reports beside the walk. */
export interface AuditSealState {
  /** The sealed watermark: the last record chained (and so verified); 0 when none. */
  readonly sealedThrough: number;
  /** How many records wait to be sealed (always 0 on SQLite, which chains as it writes). */
  readonly pending: number;
}

/** What {@link AuditLog.verify} found: the walk's result and the seal state. */
export type AuditVerifyResult = AuditChainResult & AuditSealState;

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
