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
export * from "./audit_log.ts";
export * from "./entry_schema.ts";
export { AUDIT_GENESIS_HASH, type AuditHashInput, computeAuditHash } from "./hash.ts";
export * from "./verify.ts";
export * from "./actor.ts";
export * from "./types.ts";
export * from "./checkpoint.ts";
