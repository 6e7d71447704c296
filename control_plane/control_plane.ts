/**
 * The {@link ControlPlane} facade: one object that decides, records and keeps
 * every run's state.
 *
 * @module
 */
import { type Clock, type Identity, type JsonValue, systemClock } from "../shared/mod.ts";
import { actorOf, resolveActor } from "./audit/actor.ts";
import { AuditLog } from "./audit/audit_log.ts";
import type { AuditActor } from "./audit/types.ts";
import {
  type AgentRateLimit,
  applyBudget,
  type BudgetDecision,
  BudgetTracker,
  type RunBudget,
  type RunUsage,
} from "./autonomy/budget.ts";
import { AutonomyController } from "./autonomy/controller.ts";
import type { AutonomyVerdict } from "./autonomy/fold.ts";
import type { AutonomyPolicy } from "./autonomy/levels.ts";
import { PolicyEngine, type Verdict } from "./governance/engine.ts";
import type { ApprovalSpec, PolicyRequest, PolicySet, RiskLevel } from "./governance/policy.ts";
import {
  type Approval,
  type ApprovalDecision,
  type ApprovalKind,
  ApprovalService,
} from "./hitl/approval_service.ts";
import { requireIdentity } from "./identity/context.ts";
import { RunStore } from "./runs/run_store.ts";
import type { Run } from "./runs/state_machine.ts";
import type { Database } from "./store/database.ts";
import { currentTraceContext } from "./trace/context.ts";

/**
 * Options for {@link ControlPlane}.
 *
 * @example Policies, budgets, a fake clock and fixed ids
 * ```ts
 * import {
 *   ControlPlane,
 *   type ControlPlaneOptions,
 *   FakeClock,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * let next = 0;
 * const options: ControlPlaneOptions = {
 *   policies: { rules: [{ id: "all", effect: "allow", actions: ["**"] }] },
 *   runBudget: { maxAttempts: 3 },
 *   clock: new FakeClock(1_000),
 *   generateId: () => `id-${++next}`,
 * };
 * using db = openDatabase(":memory:");
 * const cp = new ControlPlane(db, options);
 * const verdict = cp.authorize({
 *   identity: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
 *   action: "bom.read",
 *   resource: "bom:1",
 *   usage: { attempts: 4, escalations: 0, costUnits: 0 },
 * });
 * assert.equal(verdict.decision, "deny");
 * assert.equal(verdict.code, "ERR_BUDGET_EXCEEDED");
 * ```
 */
export interface ControlPlaneOptions {
  /** The policy set (or an engine compiled from one). */
  policies: PolicySet | PolicyEngine;
  /**
   * Autonomy levels per agent; without it, verdicts are not folded. Given as a
   * policy, the controller it builds audits every automatic level change.
   */
  autonomy?: AutonomyPolicy | AutonomyController;
  /** Per-run budget checked by {@link ControlPlane.authorize} when given usage. */
  runBudget?: RunBudget;
  /** Per-agent run rate checked by {@link ControlPlane.authorize} for agent requesters. */
  agentRateLimit?: AgentRateLimit;
  /**
   * The clock of every decision, run and approval.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /** Makes run and approval ids. @default {() => crypto.randomUUID()} */
  generateId?: () => string;
}

/**
 * What {@link ControlPlane.authorize} is asked.
 *
 * @example Ask for a run and find the decision in its audit
 * ```ts
 * import {
 *   type AuthorizeRequest,
 *   ControlPlane,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const cp = new ControlPlane(db, { policies: { rules: [] } });
 * const request: AuthorizeRequest = {
 *   identity: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
 *   action: "bom.delete", resource: "bom:1", runId: "r-1",
 * };
 * assert.equal(cp.authorize(request).decision, "deny"); // no rule allows it
 * assert.equal(cp.audit.list({ runId: "r-1" })[0]?.outcome, "deny");
 * ```
 */
export interface AuthorizeRequest {
  /** Who asks. Defaults to the identity bound to the async context; none fails closed. */
  identity?: Identity;
  /** The dotted action: `bom.update`. */
  action: string;
  /** The resource: `bom:42`. */
  resource: string;
  /**
   * The risk of the action, matched against the rules' `minRisk`.
   *
   * @default {"low"}
   */
  risk?: RiskLevel;
  /** The resource's tenant. */
  tenant?: string;
  /** Attributes for policy conditions. */
  attributes?: { readonly [key: string]: JsonValue };
  /** The run this decision is for (recorded in the audit). */
  runId?: string;
  /** What the run has used, checked against the run budget. */
  usage?: RunUsage;
  /** The trace id; defaults to the bound trace context's. */
  traceId?: string;
}

/**
 * The verdict of {@link ControlPlane.authorize}; `autonomyLevel` is set when autonomy was
 * folded in.
 *
 * @example An agent's verdict carries its autonomy level
 * ```ts
 * import {
 *   ControlPlane,
 *   type ControlPlaneVerdict,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const policies = { rules: [{ id: "edit", effect: "allow" as const, actions: ["bom.*"] }] };
 * const cp = new ControlPlane(db, { policies, autonomy: { defaultLevel: "L3" } });
 * const identity = { subject: "a-1", actorKind: "agent" as const, roles: [], scopes: [] };
 * const v: ControlPlaneVerdict = cp.authorize({ identity, action: "bom.edit", resource: "bom:1" });
 * assert.equal(v.decision, "allow");
 * assert.equal(v.autonomyLevel, "L3");
 * assert.equal(v.notify, true);
 * ```
 */
export type ControlPlaneVerdict = Verdict & Partial<Omit<AutonomyVerdict, keyof Verdict>>;

/**
 * The control plane: governance, autonomy and budgets decide
 * ({@link ControlPlane.authorize}); runs, approvals and the audit log record.
 * Approval outcomes are carried to their run in the same transaction.
 *
 * @example Authorize, then create and approve a run
 * ```ts
 * import { ControlPlane, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const cp = new ControlPlane(db, {
 *   clock: new FakeClock(0),
 *   policies: { rules: [{
 *     id: "release-needs-lead", effect: "require_approval", actions: ["bom.release"],
 *     approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
 *   }] },
 * });
 * const agent = { subject: "agent-7", actorKind: "agent" as const, roles: [], scopes: [] };
 * const verdict = cp.authorize({ identity: agent, action: "bom.release", resource: "bom:1" });
 * assert.equal(verdict.decision, "require_approval");
 * assert.equal(cp.audit.list({ actionPrefix: "policy.decide" }).length, 1);
 * ```
 */
export class ControlPlane {
  /** The hash-chained audit log. */
  readonly audit: AuditLog;
  /** Runs: state, leases, idempotency. */
  readonly runs: RunStore;
  /** Human approvals. */
  readonly approvals: ApprovalService;
  /** Budgets (per run and per agent). */
  readonly budgets: BudgetTracker;
  /** Autonomy levels, when configured. */
  readonly autonomy: AutonomyController | undefined;
  #db: Database;
  #engine: PolicyEngine;
  #clock: Clock;
  #runBudget: RunBudget | undefined;
  #agentRateLimit: AgentRateLimit | undefined;

  /**
   * Creates the control plane on a migrated database.
   *
   * @param db A database from `openDatabase`.
   * @param options Policies, autonomy, budgets, clock, id generator.
   * @throws {PlmError} `ERR_POLICY_INVALID` when the policy set is malformed.
   */
  constructor(db: Database, options: ControlPlaneOptions) {
    const { clock = systemClock, generateId = () => crypto.randomUUID() } = options;
    this.#db = db;
    this.#clock = clock;
    this.#engine = options.policies instanceof PolicyEngine
      ? options.policies
      : new PolicyEngine(options.policies);
    this.audit = new AuditLog(db, { clock });
    this.runs = new RunStore(db, { audit: this.audit, clock, generateId });
    this.approvals = new ApprovalService(db, { audit: this.audit, clock, generateId });
    this.budgets = new BudgetTracker({ clock });
    this.autonomy = options.autonomy === undefined || options.autonomy instanceof AutonomyController
      ? options.autonomy
      : new AutonomyController(options.autonomy, {
        clock,
        onLevelChange: (change) =>
          this.audit.append({
            actor: { subject: "system:autonomy", kind: "system" },
            action: "autonomy.level.changed",
            resource: `agent:${change.agentId}`,
            outcome: change.to,
            reason: change.reason,
            data: { from: change.from, to: change.to, cause: change.cause },
          }),
      });
    this.#runBudget = options.runBudget;
    this.#agentRateLimit = options.agentRateLimit;
  }

  /**
   * Runs `fn` in one store transaction (`BEGIN IMMEDIATE`, or a savepoint when
   * nested), so that several control-plane steps land together or not at all.
   *
   * @param fn Synchronous work on this control plane.
   * @returns What `fn` returns.
   */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn);
  }

  /**
   * Checks a run's usage against the configured run budget.
   *
   * @param usage Attempts, escalations and cost units, counting the step about to be taken.
   * @returns Within budget (always, when no budget is configured), or the exceeded budget.
   */
  checkRunBudget(usage: RunUsage): BudgetDecision {
    return this.#runBudget === undefined
      ? { ok: true }
      : this.budgets.checkRun(usage, this.#runBudget);
  }

  /** The clock every decision, run and approval is stamped with. */
  get clock(): Clock {
    return this.#clock;
  }

  /** The policy engine in force. */
  get policy(): PolicyEngine {
    return this.#engine;
  }

  /**
   * Replaces the policy set; later decisions record the new version.
   *
   * @param policies The new set.
   * @param actor Who changed it (defaults to the bound identity).
   * @throws {PlmError} `ERR_POLICY_INVALID`, `ERR_IDENTITY_REQUIRED`.
   */
  setPolicies(policies: PolicySet, actor?: AuditActor): void {
    const engine = new PolicyEngine(policies);
    const who = resolveActor(actor);
    this.audit.append({
      actor: who,
      action: "policy.updated",
      resource: `policy:${policies.id ?? "default"}`,
      outcome: "updated",
      data: { from: this.#engine.version, to: engine.version, rules: policies.rules.length },
    });
    this.#engine = engine;
  }

  /**
   * Decides whether an identity may do an action: governance, then autonomy
   * (for agent requesters), then budgets. Every decision is audited with the
   * request, so that it can be re-decided later with `PolicyEngine.whatIf`.
   *
   * @param request Who, what, on what, and the run's usage.
   * @returns The verdict.
   * @throws {PlmError} `ERR_IDENTITY_REQUIRED` when no identity is given or bound.
   */
  authorize(request: AuthorizeRequest): ControlPlaneVerdict {
    const identity = requireIdentity(request.identity, {
      field: "request.identity",
      action: "authorize",
    });
    const policyRequest: PolicyRequest = {
      identity,
      action: request.action,
      resource: request.resource,
      ...(request.risk === undefined ? {} : { risk: request.risk }),
      ...(request.tenant === undefined ? {} : { tenant: request.tenant }),
      ...(request.attributes === undefined ? {} : { attributes: request.attributes }),
    };
    let verdict: ControlPlaneVerdict = this.#engine.decide(policyRequest);
    if (this.autonomy !== undefined && identity.actorKind === "agent") {
      verdict = this.autonomy.fold(verdict, identity.subject, request.action);
      if (verdict.decision === "deny") this.autonomy.recordOutcome(identity.subject, "denied");
    }
    if (request.usage !== undefined && this.#runBudget !== undefined) {
      verdict = applyBudget(verdict, this.budgets.checkRun(request.usage, this.#runBudget));
    }
    if (this.#agentRateLimit !== undefined && identity.actorKind === "agent") {
      verdict = applyBudget(
        verdict,
        verdict.decision === "deny"
          ? this.budgets.checkAgentRun(identity.subject, this.#agentRateLimit)
          : this.budgets.consumeAgentRun(identity.subject, this.#agentRateLimit),
      );
    }
    const traceId = request.traceId ?? currentTraceContext()?.traceId;
    this.audit.append({
      actor: actorOf(identity),
      action: "policy.decide",
      resource: request.resource,
      outcome: verdict.decision,
      reason: verdict.reason,
      ...(request.runId === undefined ? {} : { runId: request.runId }),
      ...(traceId === undefined ? {} : { traceId }),
      data: {
        request: {
          action: request.action,
          resource: request.resource,
          risk: request.risk ?? "low",
          tenant: request.tenant ?? null,
          attributes: request.attributes ?? {},
          roles: [...identity.roles],
          actorKind: identity.actorKind,
        },
        matchedRuleIds: [...verdict.matchedRuleIds],
        policyVersion: verdict.policyVersion,
        code: verdict.code ?? null,
        autonomyLevel: verdict.autonomyLevel ?? null,
      },
    });
    return verdict;
  }

  /**
   * Opens an approval for a run and parks the run in `awaiting_approval`, in
   * one transaction.
   *
   * @param runId The run (in `queued` or `escalated`).
   * @param spec Who may approve, quorum, timeout, on-expiry rule.
   * @param options The kind of approval and the actor (defaults to the bound identity).
   * @returns The approval and the parked run.
   */
  requestApproval(
    runId: string,
    spec: ApprovalSpec,
    options: { kind?: ApprovalKind; actor?: AuditActor } = {},
  ): { approval: Approval; run: Run } {
    const actor = resolveActor(options.actor);
    return this.#db.transaction(() => {
      const run = this.runs.get(runId);
      const approval = this.approvals.request(runId, spec, {
        requester: {
          subject: run.requester.subject,
          kind: run.requester.kind as AuditActor["kind"],
        },
        subject: {
          action: run.task.action,
          resource: run.task.resource,
          input: run.task.input,
          risk: run.task.risk,
        },
        kind: options.kind ?? "approval",
        traceId: run.traceparent.slice(3, 35),
      });
      const parked = this.runs.apply(runId, { type: "request_approval", approvalId: approval.id }, {
        actor,
      });
      return { approval, run: parked };
    });
  }

  /**
   * Records an approver's decision and, when it ends the approval, carries the
   * outcome to the run in the same transaction: approved runs go back to
   * `queued`, rejected ones end `rejected` with the approver's reason.
   *
   * @param approvalId The approval.
   * @param decision `approve` or `reject`.
   * @param options The approver's identity (defaults to the bound one), the digest they saw, a comment.
   * @returns The approval and its run after the decision.
   * @throws {PlmError} The codes of `ApprovalService.decide`, and `ERR_IDENTITY_REQUIRED`.
   */
  decideApproval(
    approvalId: string,
    decision: ApprovalDecision,
    options: { identity?: Identity; digest: string; comment?: string },
  ): { approval: Approval; run: Run } {
    const identity = requireIdentity(options.identity, {
      field: "options.identity",
      action: "decide an approval",
    });
    return this.#db.transaction(() => {
      const before = this.approvals.get(approvalId);
      const run = this.runs.get(before.runId);
      const approval = this.approvals.decide(approvalId, decision, {
        identity,
        digest: options.digest,
        ...(options.comment === undefined ? {} : { comment: options.comment }),
        traceId: run.traceparent.slice(3, 35),
      });
      const actor = actorOf(identity);
      if (approval.state === "approved" && run.state === "awaiting_approval") {
        return { approval, run: this.runs.apply(run.id, { type: "approve" }, { actor }) };
      }
      if (approval.state === "rejected" && run.state === "awaiting_approval") {
        const reason = approval.reason ?? "Rejected by an approver";
        return { approval, run: this.runs.apply(run.id, { type: "reject", reason }, { actor }) };
      }
      return { approval, run };
    });
  }

  /**
   * Expires every approval past its deadline and applies its on-expiry rule to
   * the run: `deny` ends the run `expired` (not `rejected`), `escalate` moves
   * it to `escalated` for the next tier.
   *
   * @param now The time to compare deadlines with. Defaults to the clock.
   * @returns The expired approvals with their runs after the change.
   */
  expireApprovals(now?: number): { approval: Approval; run: Run }[] {
    const at = now ?? this.#clock.now();
    const actor: AuditActor = { subject: "system:clock", kind: "system" };
    return this.#db.transaction(() =>
      this.approvals.expireDue(at, { actor }).map((approval) => {
        const run = this.runs.get(approval.runId);
        if (run.state !== "awaiting_approval" || run.approvalId !== approval.id) {
          return { approval, run };
        }
        const reason = approval.reason ?? "The approval expired";
        const next = approval.spec.onExpiry === "escalate"
          ? this.runs.apply(run.id, { type: "escalate", reason }, { actor })
          : this.runs.apply(run.id, { type: "expire", reason }, { actor });
        return { approval, run: next };
      })
    );
  }
}
