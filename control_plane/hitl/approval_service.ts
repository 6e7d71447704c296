/**
 * Human approval: {@link ApprovalService} over the store port. The quorum,
 * veto and separation-of-duties rules are pure (`_tally.ts`); the row mapping
 * is `_approval_row.ts`; the SQL is the adapters'.
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
import type { Store, StoreTx } from "../store/port.ts";
import { toApproval } from "./_approval_row.ts";

/**
 * The states of an approval request.
 *
 * @example A new request is pending
 * ```ts
 * import {
 *   APPROVAL_STATES,
 *   ApprovalService,
 *   AuditLog,
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const approvals = new ApprovalService(store, { audit: new AuditLog(store) });
 * const asked = await approvals.request(
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
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const approvals = new ApprovalService(store, { audit: new AuditLog(store) });
 * const asked = await approvals.request(
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
  /**
   * Write in this transaction (it commits or rolls back with the caller's
   * changes); without it, the call opens its own.
   *
   * @default {undefined}
   */
  tx?: StoreTx;
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
  /**
   * Write in this transaction (it commits or rolls back with the caller's
   * changes); without it, the call opens its own.
   *
   * @default {undefined}
   */
  tx?: StoreTx;
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

const DIGEST = /^[0-9a-f]{64}$/;

/**
 * Approval requests with quorum, veto, expiry and replay protection, over
 * the store port. Each approver counts once (a unique key, so two processes
 * deciding at once never double-count, and a decision locks the approval's
 * row, so concurrent decisions are tallied one after the other); the
 * requester can never approve; any
 * rejection ends the request; past its deadline a request becomes `expired`,
 * which is not a rejection. Every step is audited with the approver's identity.
 *
 * @example Two approvers reach a quorum of two
 * ```ts
 * import { ApprovalService, AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const clock = new FakeClock(0);
 * const approvals = new ApprovalService(store, { audit: new AuditLog(store, { clock }), clock });
 * const asked = await approvals.request("run-1", {
 *   approverRoles: ["lead"], quorum: 2, timeoutSeconds: 3600, onExpiry: "deny",
 * }, { requester: { subject: "agent-7", kind: "agent" }, subject: { action: "bom.release" } });
 * const lead = (subject: string) => ({ subject, actorKind: "human" as const, roles: ["lead"], scopes: [] });
 * await approvals.decide(asked.id, "approve", { identity: lead("ann"), digest: asked.digest });
 * const done = await approvals.decide(asked.id, "approve", { identity: lead("bob"), digest: asked.digest });
 * assert.equal(done.state, "approved");
 * ```
 */
export class ApprovalService {
  #store: Store;
  #audit: AuditSink;
  #clock: Clock;
  #generateId: () => string;
  #approverKinds: readonly ActorKind[];

  /**
   * Creates the service on an open store.
   *
   * @param store The store, from `openStore`.
   * @param options Audit sink, clock, id generator, approver kinds.
   */
  constructor(store: Store, options: ApprovalServiceOptions) {
    const {
      audit,
      clock = systemClock,
      generateId = () => crypto.randomUUID(),
      approverKinds = ["human"],
    } = options;
    this.#store = store;
    this.#audit = audit;
    this.#clock = clock;
    this.#generateId = generateId;
    this.#approverKinds = approverKinds;
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
   * import { ApprovalService, AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(store, { audit: new AuditLog(store, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = await approvals.request("run-1", spec, {
   *   requester,
   *   subject: { action: "bom.release", resource: "bom:1" },
   * });
   * assert.equal(asked.state, "pending");
   * assert.equal(asked.deadline, 600_000);
   * assert.match(asked.digest, /^[0-9a-f]{64}$/);
   * await assert.rejects(() => approvals.request("run-2", { ...spec, quorum: 0 }, { requester, subject: null }), {
   *   code: "ERR_INVALID_ARGUMENT",
   * });
   * ```
   */
  async request(
    runId: string,
    spec: ApprovalSpec,
    options: ApprovalRequestOptions,
  ): Promise<Approval> {
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
    return await this.#within(options.tx, async (tx) => {
      await tx.approvals.insert({
        id,
        runId,
        kind,
        spec: checked as unknown as JsonValue,
        subject,
        digest,
        requester: { subject: requester.subject, kind: requester.kind },
        traceId: options.traceId ?? null,
        createdAt: now,
        deadline,
      });
      await this.#audit.append({
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
      }, { tx });
      tx.wake("approvals");
      return await this.#read(tx, id);
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
   * import { ApprovalService, AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(store, { audit: new AuditLog(store, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = await approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * const other = await approvals.request("run-2", spec, { requester, subject: "bom:2" });
   * const ann = { subject: "ann", actorKind: "human", roles: ["cm"], scopes: [] } as const;
   * await assert.rejects(
   *   () => approvals.decide(other.id, "approve", { identity: ann, digest: asked.digest }),
   *   { code: "ERR_APPROVAL_DIGEST_MISMATCH" },
   * );
   * const done = await approvals.decide(asked.id, "approve", { identity: ann, digest: asked.digest });
   * assert.equal(done.state, "approved");
   * assert.equal(done.votes[0]?.approver.subject, "ann");
   * ```
   */
  async decide(
    approvalId: string,
    decision: ApprovalDecision,
    options: ApprovalDecideOptions,
  ): Promise<Approval> {
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
    const outcome = await this.#within(options.tx, async (tx): Promise<
      { approval: Approval } | { refused: PlmError }
    > => {
      // Lock the row first (it stays locked to the end of the transaction), then read it
      // and its votes again: concurrent decisions on one approval are tallied one after
      // the other. The second read matters on PostgreSQL (READ COMMITTED): a statement
      // that waited for the lock sees the locked row's latest version but the votes as of
      // its own start, so only a statement begun after the wait sees the votes committed
      // by the decision it waited for.
      await this.#read(tx, approvalId, true);
      const approval = await this.#read(tx, approvalId);
      const now = this.#clock.now();
      const traceId = options.traceId ?? approval.traceId;
      const trace = traceId === null ? {} : { traceId };
      const refuse = async (code: ErrorCode, message: string) => {
        await this.#audit.append({
          actor: approver,
          action: "approval.decide",
          resource: `approval:${approvalId}`,
          outcome: "refused",
          reason: message,
          runId: approval.runId,
          ...trace,
          data: { code, decision, digest: options.digest, roles: [...identity.roles] },
        }, { tx });
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
      if (judged.refused !== undefined) {
        return await refuse(judged.refused.code, judged.refused.message);
      }
      const { approvals, ending, reason } = judged;
      // The unique key on (approval, approver) still guards two votes racing in.
      const inserted = await tx.approvals.insertVote({
        approvalId,
        approver: approver,
        decision,
        comment: options.comment ?? null,
        digest: options.digest,
        at: now,
      });
      if (!inserted) {
        return await refuse(
          "ERR_APPROVAL_DUPLICATE",
          `Cannot count ${identity.subject} twice on approval ${approvalId}`,
        );
      }
      await this.#audit.append({
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
      }, { tx });
      if (ending !== undefined && reason !== undefined) {
        if (!await tx.approvals.resolve(approvalId, ending, reason, now)) {
          // Cannot happen under the row lock; if it does, the vote is not counted.
          throw new PlmError(
            "ERR_APPROVAL_NOT_PENDING",
            `Cannot decide approval ${approvalId} as it ended meanwhile`,
          );
        }
        await this.#audit.append({
          actor: approver,
          action: `approval.${ending}`,
          resource: `approval:${approvalId}`,
          outcome: ending,
          reason,
          runId: approval.runId,
          ...trace,
        }, { tx });
        tx.wake("approvals");
      }
      return { approval: await this.#read(tx, approvalId) };
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
   * import { ApprovalService, AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(store, { audit: new AuditLog(store, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = await approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * assert.deepEqual(await approvals.get(asked.id), asked);
   * await assert.rejects(() => approvals.get("nope"), { code: "ERR_APPROVAL_NOT_FOUND" });
   * ```
   */
  async get(id: string, options: { tx?: StoreTx } = {}): Promise<Approval> {
    checkText("id", id);
    const { tx } = options;
    return tx === undefined
      ? await this.#store.read((tx) => this.#read(tx, id))
      : await this.#read(tx, id);
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
   * import { ApprovalService, AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const approvals = new ApprovalService(store, { audit: new AuditLog(store) });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 60, onExpiry: "deny" } as const;
   * const requester = { subject: "bot", kind: "agent" } as const;
   * const asked = await approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * assert.deepEqual((await approvals.list({ runId: "run-1", limit: 10 })).map((a) => a.id), [asked.id]);
   * await assert.rejects(() => approvals.list({ limit: 0 }), { code: "ERR_INVALID_ARGUMENT" });
   * ```
   */
  async list(filter: ApprovalFilter = {}, options: { tx?: StoreTx } = {}): Promise<Approval[]> {
    const { state, runId, limit = 100 } = filter;
    if (state !== undefined && !APPROVAL_STATES.includes(state)) {
      throw invalidArgument("state", `unknown approval state ${JSON.stringify(state)}`);
    }
    if (runId !== undefined) checkText("runId", runId);
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const query = {
      ...(state === undefined ? {} : { state }),
      ...(runId === undefined ? {} : { runId }),
      limit,
    };
    const read = async (tx: StoreTx) => (await tx.approvals.list(query)).map(toApproval);
    return options.tx === undefined ? await this.#store.read(read) : await read(options.tx);
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
   * import { ApprovalService, AuditLog, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const approvals = new ApprovalService(store, { audit: new AuditLog(store, { clock }), clock });
   * const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const requester = { subject: "agent-7", kind: "agent" } as const;
   *
   * const asked = await approvals.request("run-1", spec, { requester, subject: "bom:1" });
   * assert.deepEqual(await approvals.expireDue(), []);
   * clock.advance(600_000);
   * const expired = await approvals.expireDue();
   * assert.deepEqual(expired.map((a) => [a.id, a.state]), [[asked.id, "expired"]]);
   * assert.equal((await approvals.get(asked.id)).state, "expired");
   * ```
   */
  async expireDue(
    now?: number,
    options: { actor?: AuditActor; limit?: number; tx?: StoreTx } = {},
  ): Promise<Approval[]> {
    const { limit = INPUT_LIMITS.listLimit } = options;
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const at = now ?? this.#clock.now();
    const actor = options.actor ?? { subject: "system:clock", kind: "system" };
    return await this.#within(options.tx, async (tx) => {
      const expired: Approval[] = [];
      // `due` locks the rows it returns (skipping rows other transactions hold), so two
      // processes expiring at once never expire one approval twice.
      for (const row of await tx.approvals.due(at, limit)) {
        const reason = `Expired at ${new Date(row.deadline).toISOString()} without a decision`;
        if (!await tx.approvals.resolve(row.id, "expired", reason, at)) continue;
        await this.#audit.append({
          actor,
          action: "approval.expired",
          resource: `approval:${row.id}`,
          outcome: "expired",
          reason,
          runId: row.runId,
          ...(row.traceId === null ? {} : { traceId: row.traceId }),
          data: { onExpiry: (row.spec as unknown as ApprovalSpec).onExpiry },
        }, { tx });
        expired.push(await this.#read(tx, row.id));
      }
      if (expired.length > 0) tx.wake("approvals");
      return expired;
    });
  }

  /** Runs `fn` in `tx`, or in a write transaction of its own. */
  #within<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return tx === undefined ? this.#store.transaction(fn) : fn(tx);
  }

  /** The approval, read in `tx` (its row locked to the end of `tx` with `lock`). */
  async #read(tx: StoreTx, id: string, lock = false): Promise<Approval> {
    const record = await tx.approvals.byId(id, lock ? { lock } : {});
    if (record === undefined) {
      throw new PlmError("ERR_APPROVAL_NOT_FOUND", `Cannot find approval ${id}`);
    }
    return toApproval(record);
  }
}
