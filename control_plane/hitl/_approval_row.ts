/**
 * The mapping of an approval as a repository reads it ({@link ApprovalRecord})
 * to the service's {@link Approval}, pure.
 *
 * @module
 */
import type { ApprovalRecord } from "../store/port.ts";
import type { ApprovalSpec } from "../governance/policy.ts";
import type {
  Approval,
  ApprovalDecision,
  ApprovalKind,
  ApprovalState,
} from "./approval_service.ts";

/** The approval a repository record holds (the adapters check the enums by constraint). */
export function toApproval(record: ApprovalRecord): Approval {
  return {
    id: record.id,
    runId: record.runId,
    kind: record.kind as ApprovalKind,
    state: record.state as ApprovalState,
    spec: record.spec as unknown as ApprovalSpec,
    subject: record.subject,
    digest: record.digest,
    requester: { subject: record.requester.subject, kind: record.requester.kind },
    traceId: record.traceId,
    reason: record.reason,
    createdAt: record.createdAt,
    deadline: record.deadline,
    decidedAt: record.decidedAt,
    votes: record.votes.map((vote) => ({
      approver: { subject: vote.approver.subject, kind: vote.approver.kind },
      decision: vote.decision as ApprovalDecision,
      comment: vote.comment,
      at: vote.at,
    })),
  };
}
