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
export {
  type Approval,
  APPROVAL_KINDS,
  APPROVAL_STATES,
  type ApprovalDecideOptions,
  type ApprovalDecision,
  type ApprovalFilter,
  type ApprovalKind,
  type ApprovalRequestOptions,
  ApprovalService,
  type ApprovalServiceOptions,
  type ApprovalState,
  type ApprovalVote,
} from "./approval_service.ts";
export { mayDecide, type MayDecideOptions } from "./may_decide.ts";
