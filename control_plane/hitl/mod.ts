/**
 * Human approval (human in the loop): {@link ApprovalService}.
 *
 * @example The approval states
 * ```ts
 * import { APPROVAL_STATES } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(APPROVAL_STATES, ["pending", "approved", "rejected", "expired"]);
 * ```
 *
 * @module
 */
export * from "./approval_service.ts";
