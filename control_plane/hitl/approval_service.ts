/**
 * Human approval: {@link ApprovalService} on the SQLite store.
 *
 * @module
 */
import {
  type ActorKind,
  checkInteger,
  checkText,
  type Clock,
  digestJson,
  type ErrorCode,
  type Identity,
  INPUT_LIMITS,
  invalidArgument,
  type JsonValue,
  parseArgument,
  PlmError,
  systemClock,
} from "../../shared/mod.ts";
import { actorOf } from "../audit/actor.ts";
import { tallyVote } from "./_tally.ts";
import type { AuditActor, AuditSink } from "../audit/types.ts";
import { type ApprovalSpec, ApprovalSpecSchema } from "../governance/policy.ts";
import { requireIdentity } from "../identity/context.ts";
import type { Database, Statement } from "../store/database.ts";

/**
 * The states of an approval request.
 *
 * @example A new request is pending
 * ```ts
 * import {
 *   APPROVAL_STATES,
 *   ApprovalService,
 *   AuditLog,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const approvals = new ApprovalService(db, { audit: new AuditLog(db) });
 * const asked = approvals.request(
 *   "run-1",
 *   { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 60, onExpiry: "deny" },
 *   { requester: { subject: "agent-7", kind: "agent" }, subject: { action: "bom.release" } },
 * );
 * assert.equal(asked.state, APPROVAL_STATES[0]);
 * ```
 */
export const APPROVAL_STATES = ["pending", "approved", "rejected", "expired"] as const;

/** One of {@link APPROVAL_STATES}. */
export type ApprovalState = typeof APPROVAL_STATES[number];

/**
 * Why an approval was asked: a policy said so, or the escalation ladder's human tier.
 *
 * @example Ask a human as the escalation ladder's last tier
 * ```ts
 * import {
 *   APPROVAL_KINDS,
 *   ApprovalService,
 *   AuditLog,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const approvals = new ApprovalService(db, { audit: new AuditLog(db) });
 * const asked = approvals.request(
 *   "run-1",
 *   { approverRoles: ["oncall"], quorum: 1, timeoutSeconds: 60, onExpiry: "deny" },
 *   { requester: { subject: "svc", kind: "service" }, subject: "stuck", kind: "escalation" },
 * );
 * assert.ok(APPROVAL_KINDS.includes(asked.kind));
 * assert.equal(asked.kind, "escalation");
 * ```
 */
export const APPROVAL_KINDS = ["approval", "escalation"] as const;

/** One of {@link APPROVAL_KINDS}. */
export type ApprovalKind = typeof APPROVAL_KINDS[number];

/** What an approver can say. */
export type ApprovalDecision = "approve" | "reject";

/** One approver's recorded decision. */
export interface ApprovalVote {
  /** Who decided. */
  readonly approver: AuditActor;
  /** What they said. */
  readonly decision: ApprovalDecision;
  /** Their comment, or `null`. */
  readonly comment: string | null;
  /** When, epoch ms. */
  readonly at: number;
}

/** An approval request and its decisions so far. */
export interface Approval {
  /** The approval id. */
  readonly id: string;
  /** The run that waits for it. */
  readonly runId: string;
  /** Policy approval or escalation tier. */
  readonly kind: ApprovalKind;
  /** The current state. */
  readonly state: ApprovalState;
  /** Who may approve, how many, until when, and what happens on expiry. */
  readonly spec: ApprovalSpec;
  /** What is being approved (action, resource, input...), as shown to approvers. */
  readonly subject: JsonValue;
  /** SHA-256 of the exact request; a decision must quote it. */
  readonly digest: string;
  /** Who asked; never allowed to approve. */
  readonly requester: AuditActor;
  /** The run's trace id, carried into every audit record of the approval, or `null`. */
  readonly traceId: string | null;
  /** Why it ended (the veto's comment, the expiry), or `null`. */
  readonly reason: string | null;
  /** When it was asked, epoch ms. */
  readonly createdAt: number;
  /** When it expires, epoch ms. */
  readonly deadline: number;
  /** When it ended, or `null`. */
  readonly decidedAt: number | null;
  /** Every decision so far, oldest first. */
  readonly votes: readonly ApprovalVote[];
}

/** Options for {@link ApprovalService}. */
export interface ApprovalServiceOptions {
  /** Where every step is recorded. */
  audit: AuditSink;
  /**
   * The clock that stamps requests, decisions and deadlines.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Makes approval ids.
   *
   * @default {() => crypto.randomUUID()}
   */
  generateId?: () => string;
  /**
   * The actor kinds allowed to approve. Human-in-the-loop means humans: an
   * agent does not approve another agent's work unless you say so.
   *
   * @default {["human"]}
   */
  approverKinds?: readonly ActorKind[];
}

/** Options of {@link ApprovalService.request}. */
export interface ApprovalRequestOptions {
  /** Who asks; they can never approve it. */
  requester: AuditActor;
  /** What is being approved, shown to approvers and bound into the digest. */
  subject: JsonValue;
  /**
   * A policy approval or the escalation ladder's human tier.
   *
   * @default {"approval"}
   */
  kind?: ApprovalKind;
  /** The run's trace id, for this and every later audit record of the approval. */
  traceId?: string;
}

/** Options of {@link ApprovalService.decide}. */
export interface ApprovalDecideOptions {
  /**
   * The authenticated approver.
   *
   * @default {the identity bound to the async context}
   */
  identity?: Identity;
  /** The digest of the request the approver saw ({@link Approval.digest}). */
  digest: string;
  /** Why. A rejection's comment goes back to the run. */
  comment?: string;
  /**
   * The run's trace id, for the audit record.
   *
   * @default {the trace id given at request}
   */
  traceId?: string;
}

/** A filter for {@link ApprovalService.list}. */
export interface ApprovalFilter {
  /** Only in this state. */
  state?: ApprovalState;
  /** Only for this run. */
  runId?: string;
  /**
   * At most this many, oldest first: an integer 1..1,000.
   *
   * @default {100}
   */
  limit?: number;
}

interface ApprovalRow {
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

interface VoteRow {
  approver_subject: string;
  approver_kind: string;
  decision: string;
  comment: string | null;
  at: number;
}

const DIGEST = /^[0-9a-f]{64}$/;

const COLUMNS = "id, run_id, kind, state, spec, subject, digest, requester_subject, " +
  "requester_kind, trace_id, reason, created_at, deadline, decided_at";

/**
 * Approval requests with quorum, veto, expiry and replay protection, on the
 * SQLite store. Each approver counts once (a primary key, so two processes
 * deciding at once never double-count); the requester can never approve; any
 * rejection ends the request; past its deadline a request becomes `expired`,
 * which is not a rejection. Every step is audited with the approver's identity.
 *
 * @example Two approvers reach a quorum of two
 * ```ts
 * import { ApprovalService, AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const clock = new FakeClock(0);
 * const approvals = new ApprovalService(db, { audit: new AuditLog(db, { clock }), clock });
 * const asked = approvals.request("run-1", {
 *   approverRoles: ["lead"], quorum: 2, timeoutSeconds: 3600, onExpiry: "deny",
 * }, { requester: { subject: "agent-7", kind: "agent" }, subject: { action: "bom.release" } });
 * const lead = (subject: string) => ({ subject, actorKind: "human" as const, roles: ["lead"], scopes: [] });
 * approvals.decide(asked.id, "approve", { identity: lead("ann"), digest: asked.digest });
 * const done = approvals.decide(asked.id, "approve", { identity: lead("bob"), digest: asked.digest });
 * assert.equal(done.state, "approved");
 * ```
 */
export class ApprovalService {
  #db: Database;
  #audit: AuditSink;
  #clock: Clock;
  #generateId: () => string;
  #approverKinds: readonly ActorKind[];
  #insert: Statement;
  #byId: Statement<ApprovalRow>;
  #votes: Statement<VoteRow>;
  #vote: Statement;
  #resolve: Statement;
  #due: Statement<ApprovalRow>;

  /**
   * Creates the service on a migrated database.
   *
   * @param db A database from `openDatabase`.
   * @param options Audit sink, clock, id generator, approver kinds.
   */
  constructor(db: Database, options: ApprovalServiceOptions) {
    const {
      audit,
      clock = systemClock,
      generateId = () => crypto.randomUUID(),
      approverKinds = ["human"],
    } = options;
    this.#db = db;
    this.#audit = audit;
    this.#clock = clock;
    this.#generateId = generateId;
    this.#approverKinds = approverKinds;
    this.#insert = db.prepare(
      `INSERT INTO approvals (${COLUMNS}) VALUES (${COLUMNS.replace(/\w+/g, "?")})`,
    );
    this.#byId = db.prepare<ApprovalRow>(`SELECT ${COLUMNS} FROM approvals WHERE id = ?`);
    this.#votes = db.prepare<VoteRow>(
      `SELECT approver_subject, approver_kind, decision, comment, at FROM approval_decisions
       WHERE approval_id = ? ORDER BY at, rowid`,
    );
    this.#vote = db.prepare(
      `INSERT INTO approval_decisions
       (approval_id, approver_subject, approver_kind, decision, comment, digest, at)
       VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    this.#resolve = db.prepare(
      `UPDATE approvals SET state = ?, reason = ?, decided_at = ? WHERE id = ? AND state = 'pending'`,
    );
    this.#due = db.prepare<ApprovalRow>(
      `SELECT ${COLUMNS} FROM approvals WHERE state = 'pending' AND deadline <= ?
       ORDER BY deadline LIMIT ?`,
    );
  }

  /**
   * Opens an approval request for a run.
   *
   * @param runId The run that waits.
   * @param spec Approver roles, quorum, timeout, on-expiry rule.
   * @param options Requester, subject, kind, trace id.
   * @returns The pending approval, with the digest approvers must quote.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the bad field of `spec`, or the path
   * when `subject` is not JSON or out of bounds (see `canonicalJson`);
   * `ERR_AUDIT_INVALID_RECORD` when `runId`, `requester` or `traceId` cannot go into an
   * audit record (nothing is stored then).
   *
   * @example Ask a change manager to approve a release
   * ```ts
   * import { ApprovalService, AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(db, { audit: new AuditLog(db, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = approvals.request("run-1", spec, {
   *   requester,
   *   subject: { action: "bom.release", resource: "bom:1" },
   * });
   * assert.equal(asked.state, "pending");
   * assert.equal(asked.deadline, 600_000);
   * assert.match(asked.digest, /^[0-9a-f]{64}$/);
   * assert.throws(() => approvals.request("run-2", { ...spec, quorum: 0 }, { requester, subject: null }), {
   *   code: "ERR_INVALID_ARGUMENT",
   * });
   * ```
   */
  request(runId: string, spec: ApprovalSpec, options: ApprovalRequestOptions): Approval {
    const checked = parseArgument(ApprovalSpecSchema, spec, "spec");
    const { requester, subject, kind = "approval" } = options;
    const now = this.#clock.now();
    const id = this.#generateId();
    const deadline = now + checked.timeoutSeconds * 1000;
    const digest = digestJson({
      id,
      runId,
      kind,
      spec: checked as unknown as JsonValue,
      subject,
      requester: { ...requester },
      deadline,
    });
    return this.#db.transaction(() => {
      this.#insert.run(
        id,
        runId,
        kind,
        "pending",
        JSON.stringify(checked),
        JSON.stringify(subject),
        digest,
        requester.subject,
        requester.kind,
        options.traceId ?? null,
        null,
        now,
        deadline,
        null,
      );
      this.#audit.append({
        actor: requester,
        action: "approval.requested",
        resource: `approval:${id}`,
        outcome: "pending",
        runId,
        ...(options.traceId === undefined ? {} : { traceId: options.traceId }),
        data: {
          kind,
          approverRoles: [...checked.approverRoles],
          quorum: checked.quorum,
          deadline,
          onExpiry: checked.onExpiry,
          digest,
        },
      });
      return this.get(id);
    });
  }

  /**
   * Records one approver's decision. A rejection ends the request at once
   * (veto); the quorum-th distinct approval ends it `approved`.
   *
   * A refused attempt (decided or expired request, wrong digest, the requester
   * itself, a missing role or kind, a second vote) leaves an `approval.decide`
   * record with outcome `refused`, the reason and `data.code`, committed
   * although the call throws. Inside a caller's transaction the record is part
   * of it, so it is kept only if the caller commits.
   *
   * @param approvalId The approval.
   * @param decision `approve` or `reject`.
   * @param options The approver's identity, the digest they saw, a comment.
   * @returns The approval after the decision.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `approvalId`, `decision`, `digest`
   * (64 lowercase hex), `comment` (at most `INPUT_LIMITS.reasonLength`) or `options.identity`,
   * before anything is read; `ERR_IDENTITY_REQUIRED` when no identity is given or bound;
   * `ERR_APPROVAL_NOT_FOUND`, `ERR_APPROVAL_NOT_PENDING`, `ERR_APPROVAL_EXPIRED` (past the
   * deadline: see {@link ApprovalService.expireDue}),
   * `ERR_APPROVAL_DIGEST_MISMATCH` (a decision replayed onto another request),
   * `ERR_APPROVAL_SELF`, `ERR_APPROVER_NOT_ALLOWED`, `ERR_APPROVAL_DUPLICATE`.
   *
   * @example Approve with the digest; a replayed digest is refused and audited
   * ```ts
   * import { ApprovalService, AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(db, { audit: new AuditLog(db, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * const other = approvals.request("run-2", spec, { requester, subject: "bom:2" });
   * const ann = { subject: "ann", actorKind: "human", roles: ["cm"], scopes: [] } as const;
   * assert.throws(
   *   () => approvals.decide(other.id, "approve", { identity: ann, digest: asked.digest }),
   *   { code: "ERR_APPROVAL_DIGEST_MISMATCH" },
   * );
   * const done = approvals.decide(asked.id, "approve", { identity: ann, digest: asked.digest });
   * assert.equal(done.state, "approved");
   * assert.equal(done.votes[0]?.approver.subject, "ann");
   * ```
   */
  decide(approvalId: string, decision: ApprovalDecision, options: ApprovalDecideOptions): Approval {
    checkText("approvalId", approvalId);
    if (decision !== "approve" && decision !== "reject") {
      throw invalidArgument("decision", 'expected "approve" or "reject"');
    }
    if (typeof options?.digest !== "string" || !DIGEST.test(options.digest)) {
      throw invalidArgument("digest", "expected 64 lowercase hex characters");
    }
    if (options.comment !== undefined) {
      checkText("comment", options.comment, INPUT_LIMITS.reasonLength);
    }
    const identity = requireIdentity(options.identity, {
      field: "options.identity",
      action: "decide an approval",
    });
    const approver = actorOf(identity);
    // A refusal is audited and committed, then thrown: the transaction returns it rather
    // than throwing, so that the refusal record is not rolled back with the decision.
    const outcome = this.#db.transaction((): { approval: Approval } | { refused: PlmError } => {
      const approval = this.get(approvalId);
      const now = this.#clock.now();
      const traceId = options.traceId ?? approval.traceId;
      const trace = traceId === null ? {} : { traceId };
      const refuse = (code: ErrorCode, message: string) => {
        this.#audit.append({
          actor: approver,
          action: "approval.decide",
          resource: `approval:${approvalId}`,
          outcome: "refused",
          reason: message,
          runId: approval.runId,
          ...trace,
          data: { code, decision, digest: options.digest, roles: [...identity.roles] },
        });
        return { refused: new PlmError(code, message) };
      };
      const judged = tallyVote({
        approval,
        identity,
        decision,
        digest: options.digest,
        comment: options.comment,
        now,
        approverKinds: this.#approverKinds,
      });
      if (judged.refused !== undefined) return refuse(judged.refused.code, judged.refused.message);
      const { approvals, ending, reason } = judged;
      // The unique key on (approval, approver) still guards two votes racing in.
      const inserted = this.#vote.run(
        approvalId,
        identity.subject,
        identity.actorKind,
        decision,
        options.comment ?? null,
        options.digest,
        now,
      );
      if (Number(inserted.changes) !== 1) {
        return refuse(
          "ERR_APPROVAL_DUPLICATE",
          `Cannot count ${identity.subject} twice on approval ${approvalId}`,
        );
      }
      this.#audit.append({
        actor: approver,
        action: "approval.decided",
        resource: `approval:${approvalId}`,
        outcome: decision === "approve" ? "approved" : "rejected",
        ...(options.comment === undefined ? {} : { reason: options.comment }),
        runId: approval.runId,
        ...trace,
        data: {
          approvals,
          quorum: approval.spec.quorum,
          digest: options.digest,
          roles: [...identity.roles],
        },
      });
      if (ending !== undefined && reason !== undefined) {
        this.#resolve.run(ending, reason, now, approvalId);
        this.#audit.append({
          actor: approver,
          action: `approval.${ending}`,
          resource: `approval:${approvalId}`,
          outcome: ending,
          reason,
          runId: approval.runId,
          ...trace,
        });
      }
      return { approval: this.get(approvalId) };
    });
    if ("refused" in outcome) throw outcome.refused;
    return outcome.approval;
  }

  /**
   * The approval with this id.
   *
   * @param id The approval id.
   * @returns The approval and its votes.
   * @throws {PlmError} `ERR_APPROVAL_NOT_FOUND`.
   *
   * @example Read an approval back
   * ```ts
   * import { ApprovalService, AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(db, { audit: new AuditLog(db, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * assert.deepEqual(approvals.get(asked.id), asked);
   * assert.throws(() => approvals.get("nope"), { code: "ERR_APPROVAL_NOT_FOUND" });
   * ```
   */
  get(id: string): Approval {
    const row = this.#byId.get(id);
    if (row === undefined) {
      throw new PlmError("ERR_APPROVAL_NOT_FOUND", `Cannot find approval ${id}`);
    }
    return this.#fromRow(row);
  }

  /**
   * Approvals matching a filter, oldest first.
   *
   * @param filter State, run, limit.
   * @returns The approvals.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `state`, `runId` or `limit` when it is
   * not valid.
   *
   * @example The approvals of one run
   * ```ts
   * import { ApprovalService, AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const approvals = new ApprovalService(db, { audit: new AuditLog(db) });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 60, onExpiry: "deny" } as const;
   * const requester = { subject: "bot", kind: "agent" } as const;
   * const asked = approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * assert.deepEqual(approvals.list({ runId: "run-1", limit: 10 }).map((a) => a.id), [asked.id]);
   * assert.throws(() => approvals.list({ limit: 0 }), { code: "ERR_INVALID_ARGUMENT" });
   * ```
   */
  list(filter: ApprovalFilter = {}): Approval[] {
    const { state, runId, limit = 100 } = filter;
    const where: string[] = [];
    const params: string[] = [];
    if (state !== undefined) {
      if (!APPROVAL_STATES.includes(state)) {
        throw invalidArgument("state", `unknown approval state ${JSON.stringify(state)}`);
      }
      where.push("state = ?");
      params.push(state);
    }
    if (runId !== undefined) {
      where.push("run_id = ?");
      params.push(checkText("runId", runId));
    }
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const sql = `SELECT ${COLUMNS} FROM approvals ${
      where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""
    } ORDER BY created_at, id LIMIT ?`;
    return this.#db.prepare<ApprovalRow>(sql).all(...params, limit).map((row) =>
      this.#fromRow(row)
    );
  }

  /**
   * Marks every pending approval whose deadline has passed as `expired` (never
   * a rejection) and audits it. The caller applies each one's `onExpiry` rule.
   *
   * @param now The time to compare deadlines with. Defaults to the clock.
   * @param options The audit actor (default: the system clock as `system`) and a limit
   * (1..1,000, default 1,000).
   * @returns The approvals that expired now.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `limit` when it is not valid.
   *
   * @example Expire an unanswered request at its deadline
   * ```ts
   * import { ApprovalService, AuditLog, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(db, { audit: new AuditLog(db, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * assert.deepEqual(approvals.expireDue(), []);
   * clock.advance(600_000);
   * const expired = approvals.expireDue();
   * assert.deepEqual(expired.map((a) => [a.id, a.state]), [[asked.id, "expired"]]);
   * assert.equal(approvals.get(asked.id).state, "expired");
   * ```
   */
  expireDue(now?: number, options: { actor?: AuditActor; limit?: number } = {}): Approval[] {
    const { limit = INPUT_LIMITS.listLimit } = options;
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const at = now ?? this.#clock.now();
    const actor = options.actor ?? { subject: "system:clock", kind: "system" };
    return this.#db.transaction(() =>
      this.#due.all(at, limit).map((row) => {
        const reason = `Expired at ${new Date(row.deadline).toISOString()} without a decision`;
        this.#resolve.run("expired", reason, at, row.id);
        this.#audit.append({
          actor,
          action: "approval.expired",
          resource: `approval:${row.id}`,
          outcome: "expired",
          reason,
          runId: row.run_id,
          ...(row.trace_id === null ? {} : { traceId: row.trace_id }),
          data: { onExpiry: (JSON.parse(row.spec) as ApprovalSpec).onExpiry },
        });
        return this.get(row.id);
      })
    );
  }

  #fromRow(row: ApprovalRow): Approval {
    return {
      id: row.id,
      runId: row.run_id,
      kind: row.kind as ApprovalKind,
      state: row.state as ApprovalState,
      spec: JSON.parse(row.spec),
      subject: JSON.parse(row.subject),
      digest: row.digest,
      requester: { subject: row.requester_subject, kind: row.requester_kind as ActorKind },
      traceId: row.trace_id,
      reason: row.reason,
      createdAt: row.created_at,
      deadline: row.deadline,
      decidedAt: row.decided_at,
      votes: this.#votes.all(row.id).map((v) => ({
        approver: { subject: v.approver_subject, kind: v.approver_kind as ActorKind },
        decision: v.decision as ApprovalDecision,
        comment: v.comment,
        at: v.at,
      })),
    };
  }
}
