/**
 * The approval rules, pure: who may vote (separation of duties, roles, actor
 * kinds), whether a vote still counts (pending, before the deadline, for the
 * request the approver saw, once per approver), and what it does to the
 * approval (quorum, veto). No I/O: `ApprovalService` reads the approval, asks
 * {@link tallyVote}, and writes what it returns, in one transaction.
 *
 * @module
 */
import type { ActorKind, ErrorCode, Identity } from "../../shared/mod.ts";
import type { Approval, ApprovalDecision, ApprovalState } from "./approval_service.ts";

/** One vote to judge. */
export interface VoteInput {
  readonly approval: Approval;
  readonly identity: Identity;
  readonly decision: ApprovalDecision;
  /** The digest the approver quoted. */
  readonly digest: string;
  readonly comment: string | undefined;
  /** Epoch ms, from the service's clock. */
  readonly now: number;
  /** The actor kinds that may decide at all. */
  readonly approverKinds: readonly ActorKind[];
}

/** What a vote does: refused (with its code), or counted (and maybe ending the approval). */
export type VoteOutcome =
  | { readonly refused: { readonly code: ErrorCode; readonly message: string } }
  | {
    readonly refused?: undefined;
    /** Approving votes after this one. */
    readonly approvals: number;
    /** The state this vote ends the approval in, if it does. */
    readonly ending: Extract<ApprovalState, "approved" | "rejected"> | undefined;
    /** Why it ended, for the approval and the run. */
    readonly reason: string | undefined;
  };

/**
 * Judges one vote. Refusals come in a fixed order: not pending, expired,
 * another request (digest), the requester itself, not an allowed approver,
 * already voted. A counted `reject` is a veto: it ends the approval at once.
 * An `approve` ends it when the approving votes reach the quorum.
 */
export function tallyVote(input: VoteInput): VoteOutcome {
  const { approval, identity, decision, digest, comment, now, approverKinds } = input;
  const refuse = (code: ErrorCode, message: string): VoteOutcome => ({
    refused: { code, message },
  });
  if (approval.state !== "pending") {
    return refuse(
      "ERR_APPROVAL_NOT_PENDING",
      `Cannot decide approval ${approval.id} as it is ${approval.state}`,
    );
  }
  if (now >= approval.deadline) {
    return refuse(
      "ERR_APPROVAL_EXPIRED",
      `Cannot decide approval ${approval.id} as it expired at ${
        new Date(approval.deadline).toISOString()
      }`,
    );
  }
  if (digest !== approval.digest) {
    return refuse(
      "ERR_APPROVAL_DIGEST_MISMATCH",
      `Cannot apply a decision to approval ${approval.id} as it was made for another request`,
    );
  }
  if (identity.subject === approval.requester.subject) {
    return refuse("ERR_APPROVAL_SELF", `Cannot let ${identity.subject} approve their own request`);
  }
  if (
    !approverKinds.includes(identity.actorKind) ||
    !identity.roles.some((role) => approval.spec.approverRoles.includes(role))
  ) {
    return refuse(
      "ERR_APPROVER_NOT_ALLOWED",
      `Cannot let ${identity.subject} decide approval ${approval.id}: it needs a ${
        approverKinds.join(" or ")
      } with one of the roles ${approval.spec.approverRoles.join(", ")}`,
    );
  }
  if (approval.votes.some((vote) => vote.approver.subject === identity.subject)) {
    return refuse(
      "ERR_APPROVAL_DUPLICATE",
      `Cannot count ${identity.subject} twice on approval ${approval.id}`,
    );
  }
  const approvals = approval.votes.filter((vote) => vote.decision === "approve").length +
    (decision === "approve" ? 1 : 0);
  if (decision === "reject") {
    return {
      approvals,
      ending: "rejected",
      reason: `Rejected by ${identity.subject}${comment ? `: ${comment}` : ""}`,
    };
  }
  if (approvals >= approval.spec.quorum) {
    return {
      approvals,
      ending: "approved",
      reason: `Approved by ${approvals} of ${approval.spec.quorum} required approvers`,
    };
  }
  return { approvals, ending: undefined, reason: undefined };
}
