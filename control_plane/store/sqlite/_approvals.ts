/**
 * The SQLite repository of approvals and their decisions.
 *
 * @module
 */
import type {
  ApprovalInsert,
  ApprovalQuery,
  ApprovalRecord,
  ApprovalRepository,
  VoteInsert,
} from "../port.ts";
import { changes, type TxScope } from "./_sql.ts";
import { approvalFromRow, type ApprovalRow, type VoteRow } from "../rows.ts";

const COLUMNS = "id, run_id, kind, state, spec, subject, digest, requester_subject, " +
  "requester_kind, trace_id, reason, created_at, deadline, decided_at";

const INSERT = `INSERT INTO approvals (${COLUMNS}) VALUES (${COLUMNS.replace(/\w+/g, "?")})`;
const BY_ID = `SELECT ${COLUMNS} FROM approvals WHERE id = ?`;
const VOTES = `SELECT approver_subject AS subject, approver_kind AS kind, decision, comment, at
  FROM approval_decisions WHERE approval_id = ? ORDER BY at, rowid`;
const VOTE = `INSERT INTO approval_decisions
  (approval_id, approver_subject, approver_kind, decision, comment, digest, at)
  VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`;
const RESOLVE =
  "UPDATE approvals SET state = ?, reason = ?, decided_at = ? WHERE id = ? AND state = 'pending'";
const DUE = `SELECT ${COLUMNS} FROM approvals WHERE state = 'pending' AND deadline <= ?
  ORDER BY deadline, id LIMIT ?`;

/** {@link ApprovalRepository} on SQLite. Rows need no locks: write transactions take turns. */
export class SqliteApprovalRepository implements ApprovalRepository {
  readonly #scope: TxScope;

  constructor(scope: TxScope) {
    this.#scope = scope;
  }

  insert(approval: ApprovalInsert): Promise<void> {
    this.#scope.use().get(INSERT).run(
      approval.id,
      approval.runId,
      approval.kind,
      "pending",
      JSON.stringify(approval.spec),
      JSON.stringify(approval.subject),
      approval.digest,
      approval.requester.subject,
      approval.requester.kind,
      approval.traceId,
      null,
      approval.createdAt,
      approval.deadline,
      null,
    );
    return Promise.resolve();
  }

  byId(id: string, _options?: { lock?: boolean }): Promise<ApprovalRecord | undefined> {
    const sql = this.#scope.use();
    const row = sql.get<ApprovalRow>(BY_ID).get(id);
    return Promise.resolve(row === undefined ? undefined : fromRow(sql, row));
  }

  insertVote(vote: VoteInsert): Promise<boolean> {
    const inserted = this.#scope.use().get(VOTE).run(
      vote.approvalId,
      vote.approver.subject,
      vote.approver.kind,
      vote.decision,
      vote.comment,
      vote.digest,
      vote.at,
    );
    return Promise.resolve(changes(inserted) === 1);
  }

  resolve(id: string, state: string, reason: string, at: number): Promise<boolean> {
    const changed = this.#scope.use().get(RESOLVE).run(state, reason, at, id);
    return Promise.resolve(changes(changed) === 1);
  }

  due(now: number, limit: number): Promise<ApprovalRecord[]> {
    const sql = this.#scope.use();
    const rows = sql.get<ApprovalRow>(DUE).all(now, limit);
    return Promise.resolve(rows.map((row) => fromRow(sql, row)));
  }

  list(query: ApprovalQuery): Promise<ApprovalRecord[]> {
    const sql = this.#scope.use();
    const where: string[] = [];
    const params: string[] = [];
    if (query.state !== undefined) {
      where.push("state = ?");
      params.push(query.state);
    }
    if (query.runId !== undefined) {
      where.push("run_id = ?");
      params.push(query.runId);
    }
    const text = `SELECT ${COLUMNS} FROM approvals${
      where.length > 0 ? ` WHERE ${where.join(" AND ")}` : ""
    } ORDER BY created_at, id LIMIT ?`;
    const rows = sql.get<ApprovalRow>(text).all(...params, query.limit);
    return Promise.resolve(rows.map((row) => fromRow(sql, row)));
  }
}

/** The approval a row holds, with its votes read in the same transaction. */
function fromRow(sql: TxScope, row: ApprovalRow): ApprovalRecord {
  return approvalFromRow(row, sql.get<VoteRow>(VOTES).all(row.id));
}
