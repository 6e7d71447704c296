/**
 * {@link mayDecide}: whether an identity may decide an approval now, by the
 * same rules `ApprovalService.decide` applies (one source: `_tally.ts`).
 *
 * @module
 */
import type { ActorKind, Identity } from "../../shared/mod.ts";
import type { Approval } from "./approval_service.ts";
import { tallyVote } from "./_tally.ts";

/** Options for {@link mayDecide}. */
export interface MayDecideOptions {
  /**
   * The actor kinds that may decide at all (as `ApprovalServiceOptions.approverKinds`).
   *
   * @default {["human"]}
   */
  readonly approverKinds?: readonly ActorKind[];
  /**
   * The time to judge the deadline at, epoch ms.
   *
   * @default {Date.now()}
   */
  readonly now?: number;
}

/**
 * Whether `identity` may decide `approval` now: it is pending and not
 * expired, the identity is of an approver kind with one of the roles the spec
 * names, is not the requester (separation of duties) and has not decided it
 * yet. A decision by this identity (quoting the approval's digest) would be
 * counted, not refused. Use it to show an approver what is theirs to decide
 * (an inbox, `GET /v1/approvals`, `plm approvals list --mine`).
 *
 * @param approval The approval, as `ApprovalService.get` or `list` read it.
 * @param identity Who would decide.
 * @param options The approver kinds and the time.
 * @returns Whether a decision would be counted.
 *
 * @example The requester may not decide its own request; an approver may
 * ```ts
 * import { ApprovalService, AuditLog, mayDecide, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const approvals = new ApprovalService(store, { audit: new AuditLog(store) });
 * const approval = await approvals.request("run-1", {
 *   approverRoles: ["approver"], quorum: 1, timeoutSeconds: 3600, onExpiry: "deny",
 * }, { requester: { subject: "alice", kind: "human" }, subject: { action: "bom.release" } });
 * const alice = { subject: "alice", actorKind: "human" as const, roles: ["approver"], scopes: [] };
 * const bob = { ...alice, subject: "bob" };
 * assert.equal(mayDecide(approval, alice), false);
 * assert.equal(mayDecide(approval, bob), true);
 * assert.equal(mayDecide(approval, { ...bob, roles: [] }), false);
 * ```
 */
export function mayDecide(
  approval: Approval,
  identity: Identity,
  options: MayDecideOptions = {},
): boolean {
  const { approverKinds = ["human"], now = Date.now() } = options;
  return tallyVote({
    approval,
    identity,
    decision: "approve",
    digest: approval.digest,
    comment: undefined,
    now,
    approverKinds,
  }).refused === undefined;
}
