/**
 * The `runs` table's columns and the mapping of its rows to {@link Run}s.
 *
 * @module
 */
import type { Run, RunState } from "./state_machine.ts";

/** A row of `runs`, in {@link COLUMNS} order. */
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
  created_at: number;
  updated_at: number;
}

/** The columns of `runs`, in the order the store writes them. */
export const COLUMNS = "id, state, version, task, requester, idempotency_key, request_digest, " +
  "traceparent, tracestate, attempt, escalations, cost_units, agent_id, approval_id, result, " +
  "error, lease_owner, lease_expires_at, created_at, updated_at";

/** The run a row holds (`task`, `requester`, `result` and `error` are stored as JSON). */
export function fromRow(row: RunRow): Run {
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
      : { owner: row.lease_owner, expiresAt: row.lease_expires_at },
  };
}
