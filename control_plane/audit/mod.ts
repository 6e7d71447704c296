/**
 * The hash-chained, append-only audit log: {@link AuditLog} appends records
 * whose SHA-256 hash covers the previous record's hash, lists them, and
 * verifies the chain end to end.
 *
 * @example Append and verify
 * ```ts
 * import { AuditLog, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store, { clock: new FakeClock(0) });
 * await audit.append({
 *   actor: { subject: "agent-7", kind: "agent" },
 *   action: "tool.invoke",
 *   resource: "tool:search",
 *   outcome: "succeeded",
 * });
 * const result = await audit.verify();
 * assert.equal(result.ok, true);
 * assert.equal(result.checked, 1);
 * ```
 *
 * @module
 */
export {
  type AuditAppendOptions,
  type AuditListFilter,
  AuditLog,
  type AuditLogOptions,
  type AuditReadOptions,
} from "./audit_log.ts";
export { AuditEntryInputSchema } from "./entry_schema.ts";
export { AUDIT_GENESIS_HASH, type AuditHashInput, computeAuditHash } from "./hash.ts";
export {
  AUDIT_CHAIN_PROBLEMS,
  type AuditChainProblem,
  type AuditChainResult,
  type AuditHead,
  type AuditSealState,
  type AuditVerifyOptions,
  type AuditVerifyResult,
} from "./verify.ts";
export { actorOf, resolveActor } from "./actor.ts";
export {
  type AuditActor,
  type AuditEntryInput,
  type AuditRecord,
  type AuditSink,
} from "./types.ts";
export {
  type AuditCheckpoint,
  AuditCheckpointSchema,
  CHECKPOINT_PROBLEMS,
  type CheckpointKey,
  type CheckpointKeyOptions,
  type CheckpointKeyPair,
  type CheckpointProblem,
  type CheckpointSignOptions,
  type CheckpointVerifyResult,
  generateCheckpointKeys,
  importCheckpointPrivateKey,
  importCheckpointPublicKey,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
} from "./checkpoint.ts";
