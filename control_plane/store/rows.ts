/**
 * The row shapes both adapters read back, and their one mapping to the
 * port's records: the tables hold the same columns on SQLite and PostgreSQL
 * (the PostgreSQL pool parses `bigint` columns as numbers), so a run or an
 * approval is mapped in one place. Internal to the store adapters.
 *
 * @module
 */
import type { ActorKind } from "../../shared/mod.ts";
import type { Run, RunState } from "../runs/state_machine.ts";
import type { ApprovalRecord } from "./port.ts";

/** The columns of `runs`, in the order the adapters write and read them. */
export const RUN_COLUMNS = "id, state, version, task, requester, idempotency_key, " +
  "request_digest, traceparent, tracestate, attempt, escalations, cost_units, agent_id, " +
  "approval_id, result, error, lease_owner, lease_expires_at, lease_token, created_at, updated_at";

/** A row of `runs`, in {@link RUN_COLUMNS} order. */
export interface RunRow {
  id: string;
  state: string;
  version: number;
  task: string;
  requester: string;
  idempotency_key: string | null;
  request_digest: string;
  traceparent: string;
  tracestate: string;
  attempt: number;
  escalations: number;
  cost_units: number;
  agent_id: string | null;
  approval_id: string | null;
  result: string;
  error: string | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
  lease_token: number;
  created_at: number;
  updated_at: number;
}

/** The run a row holds (`task`, `requester`, `result` and `error` are stored as JSON). */
export function runFromRow(row: RunRow): Run {
  return {
    id: row.id,
    state: row.state as RunState,
    version: row.version,
    task: JSON.parse(row.task),
    requester: JSON.parse(row.requester),
    idempotencyKey: row.idempotency_key,
    traceparent: row.traceparent,
    tracestate: row.tracestate,
    attempt: row.attempt,
    escalations: row.escalations,
    costUnits: row.cost_units,
    agentId: row.agent_id,
    approvalId: row.approval_id,
    result: JSON.parse(row.result),
    error: row.error === null ? null : JSON.parse(row.error),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lease: row.lease_owner === null || row.lease_expires_at === null
      ? null
      : { owner: row.lease_owner, token: row.lease_token, expiresAt: row.lease_expires_at },
  };
}

/** A row of `approvals` (without its decisions). */
export interface ApprovalRow {
  id: string;
  run_id: string;
  kind: string;
  state: string;
  spec: string;
  subject: string;
  digest: string;
  requester_subject: string;
  requester_kind: string;
  trace_id: string | null;
  reason: string | null;
  created_at: number;
  deadline: number;
  decided_at: number | null;
}

/** One decision as read back with its approval. */
export interface VoteRow {
  subject: string;
  kind: string;
  decision: string;
  comment: string | null;
  at: number;
}

/** The approval a row holds, with its decisions oldest first (`spec` and `subject` are JSON). */
export function approvalFromRow(row: ApprovalRow, votes: readonly VoteRow[]): ApprovalRecord {
  return {
    id: row.id,
    runId: row.run_id,
    kind: row.kind,
    state: row.state,
    spec: JSON.parse(row.spec),
    subject: JSON.parse(row.subject),
    digest: row.digest,
    requester: { subject: row.requester_subject, kind: row.requester_kind as ActorKind },
    traceId: row.trace_id,
    reason: row.reason,
    createdAt: row.created_at,
    deadline: row.deadline,
    decidedAt: row.decided_at,
    votes: votes.map((vote) => ({
      approver: { subject: vote.subject, kind: vote.kind as ActorKind },
      decision: vote.decision,
      comment: vote.comment,
      at: vote.at,
    })),
  };
}
