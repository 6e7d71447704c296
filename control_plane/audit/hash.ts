/**
 * The audit hash, the one definition of it: {@link computeAuditHash} for a
 * record, and the chain's first link, {@link AUDIT_GENESIS_HASH}. `AuditLog`
 * stamps records with it, its verifier checks them with it, and
 * `tools/verify_audit.ts` and docs/AUDIT.md describe the same function.
 *
 * @module
 */
import { canonicalJson, sha256Hex } from "../../shared/mod.ts";
import type { AuditRecord } from "./types.ts";

/**
 * The `prevHash` of the first record: 64 zeros.
 *
 * @example The first record points at the genesis hash
 * ```ts
 * import {
 *   AUDIT_GENESIS_HASH,
 *   AuditLog,
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store);
 * assert.deepEqual(await audit.head(), { seq: 0, hash: AUDIT_GENESIS_HASH });
 * await audit.append({
 *   actor: { subject: "svc", kind: "service" },
 *   action: "run.create",
 *   resource: "run:r-1",
 *   outcome: "queued",
 * });
 * const [first] = await audit.list();
 * assert.equal(first?.prevHash, AUDIT_GENESIS_HASH);
 * ```
 */
export const AUDIT_GENESIS_HASH: string = "0".repeat(64);

/** The fields {@link computeAuditHash} reads: a record without its `hash`. */
export type AuditHashInput = Omit<AuditRecord, "hash">;

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
 * import { AuditLog, computeAuditHash, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store);
 * await audit.append({
 *   actor: { subject: "bob", kind: "human" },
 *   action: "policy.decide",
 *   resource: "run:r-9",
 *   outcome: "denied",
 *   reason: "Outside business hours",
 * });
 * const [record] = await audit.list();
 * if (record === undefined) throw new Error("no record");
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
 * {@link computeAuditHash} over a record's fields, `data` given as its
 * canonical JSON text (as stored): the canonical body is built by
 * concatenation (keys in sorted order), so neither appending nor verifying
 * parses or re-serialises `data`. Internal to the audit folder.
 */
export function chainHash(
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
