/**
 * The {@link ControlPlane} facade: one object that decides, records and keeps
 * every run's state.
 *
 * @module
 */
import { z } from "zod";
import {
  checkText,
  type Clock,
  type Identity,
  INPUT_LIMITS,
  type JsonValue,
  parseArgument,
  PlmError,
  systemClock,
} from "../shared/mod.ts";
import { textSchema } from "../shared/validate.ts";
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
  RunUsageSchema,
} from "./autonomy/budget.ts";
import { AutonomyController, type AutonomyControllerOptions } from "./autonomy/controller.ts";
import type { AutonomyVerdict } from "./autonomy/fold.ts";
import type { AutonomyLevel, AutonomyPolicy } from "./autonomy/levels.ts";
import { PolicyEngine, type Verdict } from "./governance/engine.ts";
import {
  type ApprovalSpec,
  type Decision,
  POLICY_LIMITS,
  type PolicyRequest,
  type PolicyRule,
  type PolicySet,
  RISK_LEVELS,
  type RiskLevel,
} from "./governance/policy.ts";
import {
  type Approval,
  type ApprovalDecision,
  type ApprovalKind,
  ApprovalService,
} from "./hitl/approval_service.ts";
import { requireIdentity } from "./identity/context.ts";
import { RunStore } from "./runs/run_store.ts";
import type { LeaseHold, Run } from "./runs/state_machine.ts";
import { TaskAttributesSchema } from "./runs/task.ts";
import type { Store, StoreTx } from "./store/port.ts";
import { currentTraceContext } from "./trace/context.ts";

/** Options for {@link ControlPlane}. */
export interface ControlPlaneOptions {
  /** The policy set (or an engine compiled from one). */
  policies: PolicySet | PolicyEngine;
  /**
   * Autonomy levels per agent; without it, verdicts are not folded. Given as a
   * policy, the controller it builds audits every automatic level change (in the
   * transaction that stores it). A controller given here must be on the same
   * store, so that its drops commit with the decisions that cause them.
   */
  autonomy?: AutonomyPolicy | AutonomyController;
  /**
   * How the controller built from an `autonomy` policy demotes: after how many
   * failures, down to which floor, with which approval spec (ignored when
   * `autonomy` is a controller, which has its own).
   *
   * @default {{}} (the controller's defaults)
   */
  autonomyOptions?: Pick<AutonomyControllerOptions, "demoteAfter" | "floor" | "approval">;
  /** Per-run budget checked by {@link ControlPlane.authorize} when given usage. */
  runBudget?: RunBudget;
  /**
   * Per-agent run rate checked by {@link ControlPlane.authorize} for agent requesters,
   * counted in the store: every control plane on it shares one window per agent.
   */
  agentRateLimit?: AgentRateLimit;
  /**
   * The clock of every decision, run and approval.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Makes run and approval ids.
   *
   * @default {() => crypto.randomUUID()}
   */
  generateId?: () => string;
  /**
   * Delivers the notification of an autonomy `L3` ("act and notify") verdict, after the
   * decision and its `autonomy.notify` audit record are committed: after `authorize`'s own
   * transaction, or, for `authorize(request, { tx })` inside {@link ControlPlane.transaction},
   * once that transaction commits (never when it rolls back). A `tx` from a raw
   * `store.transaction` delivers nothing (its commit is not seen here): the audit record
   * stays the notification. An error it throws (or a promise it rejects) is reported to
   * `console.error` and changes nothing.
   *
   * @default {undefined} (the audit record is the only notification)
   */
  onNotify?: (notification: AutonomyNotification) => void | Promise<void>;
}

/** What {@link ControlPlane.authorize} is asked. */
export interface AuthorizeRequest {
  /**
   * Who asks; with none given and none bound, the request fails closed.
   *
   * @default {the identity bound to the async context}
   */
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
  /**
   * The trace id.
   *
   * @default {the bound trace context's trace id}
   */
  traceId?: string;
}

/**
 * The contract of an {@link AuthorizeRequest}, checked before anything is
 * decided, consumed or written (`identity` is checked by `requireIdentity`).
 */
const authorizeRequestSchema: z.ZodType<
  Omit<AuthorizeRequest, "identity"> & { identity?: unknown }
> = z.strictObject({
  identity: z.unknown().exactOptional(),
  action: textSchema({ max: POLICY_LIMITS.actionLength }),
  resource: textSchema({ max: POLICY_LIMITS.resourceLength }),
  risk: z.enum(RISK_LEVELS).exactOptional(),
  tenant: textSchema().exactOptional(),
  attributes: (TaskAttributesSchema as unknown as z.ZodType<AuthorizeAttributes>).exactOptional(),
  runId: textSchema().exactOptional(),
  usage: (RunUsageSchema as unknown as z.ZodType<RunUsage>).exactOptional(),
  traceId: z.string().regex(/^[0-9a-f]{32}$/, "Expected 32 lowercase hex digits")
    .exactOptional(),
});

type AuthorizeAttributes = { readonly [key: string]: JsonValue };

/**
 * The verdict of {@link ControlPlane.authorize}; `autonomyLevel` is set when autonomy was
 * folded in.
 */
export type ControlPlaneVerdict = Verdict & Partial<Omit<AutonomyVerdict, keyof Verdict>>;

/**
 * What {@link ControlPlaneOptions.onNotify} receives when an agent at autonomy `L3`
 * ("act and notify") is allowed to act (or to act once approved).
 */
export interface AutonomyNotification {
  /** The agent that acts (the requester's subject). */
  readonly agentId: string;
  /** The action it takes. */
  readonly action: string;
  /** What it acts on. */
  readonly resource: string;
  /** `allow`, or `require_approval` when a policy still asks a human first. */
  readonly decision: Decision;
  /** The level that asked for the notification (`L3`). */
  readonly autonomyLevel: AutonomyLevel;
  /** The verdict's reason. */
  readonly reason: string;
  /** The run, when the decision was for one, else `null`. */
  readonly runId: string | null;
  /** The trace id in force, or `null`. */
  readonly traceId: string | null;
  /** When it was decided, epoch ms. */
  readonly at: number;
}

/**
 * How a run's agent works: `act` carries the task out; `suggest` (autonomy `L1`) only
 * proposes, and the run ends `suggested` for a human to carry the suggestion out.
 */
export type RunMode = "act" | "suggest";

/**
 * The built-in rules every cancel ({@link ControlPlane.authorizeCancel}) is decided with,
 * after the rules of the policy set in force: a requester may cancel its own runs
 * (`run-cancel-own`), a `run-admin` any run (`run-cancel-admin`). A policy rule with the
 * same id replaces a built-in one; other rules add to them (an `allow` on `run.cancel`
 * extends who may cancel, a `deny` overrides both).
 *
 * @example Read the built-in cancel rules
 * ```ts
 * import { DEFAULT_CANCEL_RULES } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(DEFAULT_CANCEL_RULES.map((rule) => rule.id), [
 *   "run-cancel-own",
 *   "run-cancel-admin",
 * ]);
 * ```
 */
export const DEFAULT_CANCEL_RULES: readonly PolicyRule[] = Object.freeze(
  [
    Object.freeze({
      id: "run-cancel-own",
      description: "A requester may cancel its own runs",
      effect: "allow",
      actions: Object.freeze(["run.cancel"]),
      conditions: Object.freeze([Object.freeze({ attr: "ownRun", op: "eq", value: true })]),
    }),
    Object.freeze({
      id: "run-cancel-admin",
      description: "A run-admin may cancel any run",
      effect: "allow",
      actions: Object.freeze(["run.cancel"]),
      roles: Object.freeze(["run-admin"]),
    }),
  ] as const satisfies readonly PolicyRule[],
);

/** Options of {@link ControlPlane.authorizeCancel}. */
export interface CancelRunOptions {
  /**
   * Who cancels; with none given and none bound, the request fails closed.
   *
   * @default {the identity bound to the async context}
   */
  identity?: Identity;
  /**
   * Why, for the run and the audit: safe text of at most `INPUT_LIMITS.reasonLength`.
   *
   * @default {"Cancelled"}
   */
  reason?: string;
  /**
   * Read the run and write the audit record in this transaction (then a
   * refusal's record commits only if the caller's transaction does).
   *
   * @default {undefined} (the refusal's record commits on its own, then it throws)
   */
  tx?: StoreTx;
}

/**
 * An allowed cancel, as returned by {@link ControlPlane.authorizeCancel}: the run as it was
 * decided on, and who cancels it why, for the `cancel` transition.
 */
export interface CancelAuthorization {
  /** The run, as read for the decision. */
  readonly run: Run;
  /** Who cancels, for the transition's audit record. */
  readonly actor: AuditActor;
  /** The checked reason. */
  readonly reason: string;
}

/**
 * The control plane: governance, autonomy and budgets decide
 * ({@link ControlPlane.authorize}); runs, approvals and the audit log record.
 * Approval outcomes are carried to their run in the same transaction.
 *
 * @example Authorize, then create and approve a run
 * ```ts
 * import { ControlPlane, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const cp = new ControlPlane(store, {
 *   clock: new FakeClock(0),
 *   policies: { rules: [{
 *     id: "release-needs-lead", effect: "require_approval", actions: ["bom.release"],
 *     approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
 *   }] },
 * });
 * const agent = { subject: "agent-7", actorKind: "agent" as const, roles: [], scopes: [] };
 * const verdict = await cp.authorize({ identity: agent, action: "bom.release", resource: "bom:1" });
 * assert.equal(verdict.decision, "require_approval");
 * assert.equal((await cp.audit.list({ actionPrefix: "policy.decide" })).length, 1);
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
  #store: Store;
  #engine: PolicyEngine;
  #cancelEngine: PolicyEngine;
  #clock: Clock;
  #runBudget: RunBudget | undefined;
  #agentRateLimit: AgentRateLimit | undefined;
  #onNotify: ((notification: AutonomyNotification) => void | Promise<void>) | undefined;
  /** Notifications decided in an open transaction, delivered once it commits. */
  /** Notifications waiting for their transaction to commit, with their audit record's hash. */
  /** The notifications of each open {@link ControlPlane.transaction}, delivered at its commit. */
  #outboxes = new WeakMap<StoreTx, AutonomyNotification[]>();

  /**
   * Creates the control plane on an open store.
   *
   * @param store The store, from `openStore`.
   * @param options Policies, autonomy, budgets, clock, id generator.
   * @throws {PlmError} `ERR_POLICY_INVALID` when the policy set is malformed.
   */
  constructor(store: Store, options: ControlPlaneOptions) {
    const { clock = systemClock, generateId = () => crypto.randomUUID() } = options;
    this.#store = store;
    this.#clock = clock;
    this.#engine = options.policies instanceof PolicyEngine
      ? options.policies
      : new PolicyEngine(options.policies);
    this.#cancelEngine = cancelEngine(this.#engine.policySet);
    this.#onNotify = options.onNotify;
    this.audit = new AuditLog(store, { clock });
    this.runs = new RunStore(store, { audit: this.audit, clock, generateId });
    this.approvals = new ApprovalService(store, { audit: this.audit, clock, generateId });
    this.budgets = new BudgetTracker(store, { clock });
    this.autonomy = options.autonomy === undefined || options.autonomy instanceof AutonomyController
      ? options.autonomy
      : new AutonomyController(store, options.autonomy, {
        ...options.autonomyOptions,
        clock,
        onLevelChange: (change, tx) =>
          this.audit.append({
            actor: { subject: "system:autonomy", kind: "system" },
            action: "autonomy.level.changed",
            resource: `agent:${change.agentId}`,
            outcome: change.to,
            reason: change.reason,
            data: { from: change.from, to: change.to, cause: change.cause },
          }, { tx }),
      });
    this.#runBudget = options.runBudget;
    this.#agentRateLimit = options.agentRateLimit;
  }

  /**
   * Runs `fn` in one store transaction, so that several control-plane steps
   * land together or not at all: pass `tx` to each call inside. Notifications
   * decided inside are delivered once it commits, and dropped if it rolls back.
   *
   * @param fn Work on this control plane, each call given `{ tx }`.
   * @returns What `fn` resolves to.
   * @throws {unknown} Whatever `fn` throws, after rolling back everything it wrote.
   *
   * @example Two runs land together or not at all
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import type { StoreTx } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { clock: new FakeClock(0), policies: { rules: [] } });
   * const create = async (resource: string, tx: StoreTx) =>
   *   (await cp.runs.create({
   *     task: { action: "bom.read", resource, capabilities: [], input: null, risk: "low",
   *       attributes: {} },
   *     requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   }, { tx })).run.id;
   * await assert.rejects(
   *   cp.transaction(async (tx) => {
   *     await create("bom:1", tx);
   *     throw new Error("Second step failed");
   *   }),
   * );
   * assert.deepEqual((await cp.runs.page()).items, []);
   * const ids = await cp.transaction(async (tx) => [await create("bom:1", tx), await create("bom:2", tx)]);
   * assert.equal((await cp.runs.page()).items.length, ids.length);
   * ```
   */
  async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    const outbox: AutonomyNotification[] = [];
    const result = await this.#store.transaction(async (tx) => {
      this.#outboxes.set(tx, outbox);
      try {
        return await fn(tx);
      } finally {
        this.#outboxes.delete(tx);
      }
    });
    // Committed: only now may the notifications decided inside leave.
    this.#deliver(outbox);
    return result;
  }

  /**
   * Checks a run's usage against the configured run budget.
   *
   * @param usage Attempts, escalations and cost units, counting the step about to be taken.
   * @returns Within budget (always, when no budget is configured), or the exceeded budget.
   *
   * @example A fourth attempt exceeds a budget of three
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { policies: { rules: [] }, runBudget: { maxAttempts: 3 } });
   * assert.equal(cp.checkRunBudget({ attempts: 3, escalations: 0, costUnits: 0 }).ok, true);
   * const over = cp.checkRunBudget({ attempts: 4, escalations: 0, costUnits: 0 });
   * assert.equal(over.ok, false);
   * assert.equal(over.ok ? undefined : over.budget, "attempts");
   * ```
   */
  checkRunBudget(usage: RunUsage): BudgetDecision {
    return this.#runBudget === undefined
      ? { ok: true }
      : this.budgets.checkRun(usage, this.#runBudget);
  }

  /**
   * The store the control plane works on: a worker elects its reaper and
   * sealer with `store.lead` and listens for wake-up hints with `store.onWake`.
   *
   * @example Lead the reaper role on the control plane's store
   * ```ts
   * import { ControlPlane, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { policies: { rules: [] } });
   * assert.equal(cp.store, store);
   * const reclaimed = await cp.store.lead("reaper", (tx) => cp.runs.reclaimExpired(undefined, {
   *   actor: { subject: "reaper", kind: "service" },
   *   tx,
   * }));
   * assert.deepEqual(reclaimed, []); // SQLite: this process always leads
   * ```
   */
  get store(): Store {
    return this.#store;
  }

  /**
   * The clock every decision, run and approval is stamped with.
   *
   * @example Share the control plane's clock
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { clock: new FakeClock(5_000), policies: { rules: [] } });
   * assert.equal(cp.clock.now(), 5_000);
   * ```
   */
  get clock(): Clock {
    return this.#clock;
  }

  /**
   * The policy engine in force.
   *
   * @example Ask the engine without auditing
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, {
   *   policies: { rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] },
   * });
   * const identity = { subject: "u", actorKind: "human", roles: [], scopes: [] } as const;
   * const verdict = cp.policy.decide({ identity, action: "bom.read", resource: "bom:1" });
   * assert.equal(verdict.decision, "allow");
   * assert.equal(verdict.policyVersion, cp.policy.version);
   * assert.deepEqual(await cp.audit.list(), []);
   * ```
   */
  get policy(): PolicyEngine {
    return this.#engine;
  }

  /**
   * Replaces the policy set; later decisions record the new version.
   *
   * @param policies The new set.
   * @param actor Who changed it (defaults to the bound identity).
   * @throws {PlmError} `ERR_POLICY_INVALID`, `ERR_IDENTITY_REQUIRED`.
   *
   * @example Tighten the policy at run time, audited
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, {
   *   policies: { rules: [{ id: "read", effect: "allow", actions: ["bom.*"] }] },
   * });
   * const before = cp.policy.version;
   * await cp.setPolicies(
   *   { rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] },
   *   { subject: "ops", kind: "human" },
   * );
   * assert.notEqual(cp.policy.version, before);
   * const [record] = await cp.audit.list({ actionPrefix: "policy.updated" });
   * assert.equal(record?.actor.subject, "ops");
   * ```
   */
  async setPolicies(
    policies: PolicySet,
    actor?: AuditActor,
    options: { tx?: StoreTx } = {},
  ): Promise<void> {
    const engine = new PolicyEngine(policies);
    const cancels = cancelEngine(engine.policySet);
    const who = resolveActor(actor);
    await this.audit.append({
      actor: who,
      action: "policy.updated",
      resource: `policy:${policies.id ?? "default"}`,
      outcome: "updated",
      data: { from: this.#engine.version, to: engine.version, rules: policies.rules.length },
    }, options);
    this.#engine = engine;
    this.#cancelEngine = cancels;
  }

  /**
   * Decides whether an identity may do an action: governance, then autonomy
   * (for agent requesters), then budgets. Every decision is audited with the
   * request, so that it can be re-decided later with `PolicyEngine.whatIf`. The
   * state it changes (an agent's automatic drop, a slot of its run window, both
   * shared through the store) and its audit records commit in one transaction
   * (its own, or the caller's `tx`): a rollback undoes all of them.
   *
   * @param request Who, what, on what, and the run's usage.
   * @param options The transaction to join (from {@link ControlPlane.transaction}, for its
   * notifications to be delivered at its commit).
   * @returns The verdict.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the bad field of `request`, before
   * anything is consumed or written; `ERR_IDENTITY_REQUIRED` when no identity is given or bound.
   *
   * @example Allow reads, deny by default, and audit both
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, {
   *   policies: { rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] },
   * });
   * const identity = { subject: "agent-7", actorKind: "agent", roles: [], scopes: [] } as const;
   * const read = await cp.authorize({ identity, action: "bom.read", resource: "bom:1" });
   * const drop = await cp.authorize({ identity, action: "bom.delete", resource: "bom:1" });
   * assert.deepEqual([read.decision, drop.decision], ["allow", "deny"]);
   * const outcomes = (await cp.audit.list({ actionPrefix: "policy.decide" })).map((r) => r.outcome);
   * assert.deepEqual(outcomes, ["allow", "deny"]);
   * ```
   */
  async authorize(
    request: AuthorizeRequest,
    options: { tx?: StoreTx } = {},
  ): Promise<ControlPlaneVerdict> {
    // The whole request is checked first: a bad one consumes no rate slot and writes nothing.
    const checked = parseArgument(authorizeRequestSchema, request, "request");
    const identity = requireIdentity(checked.identity as Identity | undefined, {
      field: "request.identity",
      action: "authorize",
    });
    const policyRequest: PolicyRequest = {
      identity,
      action: checked.action,
      resource: checked.resource,
      ...(checked.risk === undefined ? {} : { risk: checked.risk }),
      ...(checked.tenant === undefined ? {} : { tenant: checked.tenant }),
      ...(checked.attributes === undefined ? {} : { attributes: checked.attributes }),
    };
    const decide = async (tx: StoreTx): Promise<ControlPlaneVerdict> => {
      const inTx = { tx };
      let verdict: ControlPlaneVerdict = this.#engine.decide(policyRequest);
      if (this.autonomy !== undefined && identity.actorKind === "agent") {
        verdict = await this.autonomy.fold(verdict, identity.subject, checked.action, inTx);
        if (verdict.decision === "deny") {
          await this.autonomy.recordOutcome(identity.subject, "denied", inTx);
        }
      }
      if (checked.usage !== undefined && this.#runBudget !== undefined) {
        verdict = applyBudget(verdict, this.budgets.checkRun(checked.usage, this.#runBudget));
      }
      if (this.#agentRateLimit !== undefined && identity.actorKind === "agent") {
        verdict = applyBudget(
          verdict,
          verdict.decision === "deny"
            ? await this.budgets.checkAgentRun(identity.subject, this.#agentRateLimit, inTx)
            : await this.budgets.consumeAgentRun(identity.subject, this.#agentRateLimit, inTx),
        );
      }
      const traceId = checked.traceId ?? currentTraceContext()?.traceId;
      const where = {
        ...(checked.runId === undefined ? {} : { runId: checked.runId }),
        ...(traceId === undefined ? {} : { traceId }),
      };
      await this.audit.append({
        actor: actorOf(identity),
        action: "policy.decide",
        resource: checked.resource,
        outcome: verdict.decision,
        reason: verdict.reason,
        ...where,
        data: decisionData(policyRequest, verdict),
      }, inTx);
      if (verdict.notify === true && verdict.decision !== "deny") {
        await this.#notify(tx, identity, policyRequest, verdict, where);
      }
      return verdict;
    };
    // One transaction: the decision's state changes (a drop, a rate slot) and its audit
    // records commit together or not at all.
    return options.tx === undefined ? await this.transaction(decide) : await decide(options.tx);
  }

  /**
   * Decides whether an identity may cancel a run, and audits the decision as a
   * `run.cancel` record on `run:<id>` (outcome `allowed` or `denied`, with the
   * reason and the request, as `policy.decide` records are). The policy request is
   * action `run.cancel` on the run's task resource (so resource globs and tenants
   * apply as to the task), risk `low`, with the attributes `ownRun` (the identity
   * is the run's requester: same subject and same tenant), `runState`, `runAction`, `runRisk` and `requester`.
   * It is decided by the policy set in force plus {@link DEFAULT_CANCEL_RULES}; a
   * `require_approval` verdict is a refusal (a cancel does not wait). Autonomy and
   * budgets do not apply. Whoever applies the `cancel` transition records
   * `actor` as its actor.
   *
   * @param runId The run.
   * @param options Who cancels (defaults to the bound identity) and why.
   * @returns The run, the cancelling actor and the checked reason.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `runId` or `reason`;
   * `ERR_IDENTITY_REQUIRED` when no identity is given or bound; `ERR_RUN_NOT_FOUND`;
   * `ERR_FORBIDDEN` when the cancel is not allowed (after auditing the refusal).
   *
   * @example A requester cancels its own run; another identity may not
   * ```ts
   * import { ControlPlane, isPlmError, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { policies: { rules: [] } });
   * const alice = { subject: "alice", actorKind: "human" as const, roles: [], scopes: [] };
   * const { run } = await cp.runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: alice,
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const mallory = { ...alice, subject: "mallory" };
   * await assert.rejects(() => cp.authorizeCancel(run.id, { identity: mallory }), (err) =>
   *   isPlmError(err, "ERR_FORBIDDEN"));
   * assert.equal((await cp.authorizeCancel(run.id, { identity: alice })).actor.subject, "alice");
   * const outcomes = (await cp.audit.list({ actionPrefix: "run.cancel" })).map((r) => r.outcome);
   * assert.deepEqual(outcomes, ["denied", "allowed"]);
   * ```
   */
  async authorizeCancel(
    runId: string,
    options: CancelRunOptions = {},
  ): Promise<CancelAuthorization> {
    checkText("runId", runId);
    const reason = options.reason === undefined
      ? "Cancelled"
      : checkText("reason", options.reason, INPUT_LIMITS.reasonLength);
    const identity = requireIdentity(options.identity, { action: "cancel a run" });
    const inTx = options.tx === undefined ? {} : { tx: options.tx };
    const run = await this.runs.get(runId, inTx);
    const request: PolicyRequest = {
      identity,
      action: "run.cancel",
      resource: run.task.resource,
      ...(run.requester.tenant === undefined ? {} : { tenant: run.requester.tenant }),
      attributes: {
        // The same subject in another tenant (or without one) is someone else.
        ownRun: identity.subject === run.requester.subject &&
          (identity.tenant ?? null) === (run.requester.tenant ?? null),
        runState: run.state,
        runAction: run.task.action,
        runRisk: run.task.risk,
        requester: run.requester.subject,
      },
    };
    const verdict = this.#cancelEngine.decide(request);
    const allowed = verdict.decision === "allow";
    const why = allowed || verdict.decision === "deny"
      ? verdict.reason
      : `${verdict.reason}; a cancel does not wait for an approval`;
    const actor = actorOf(identity);
    await this.audit.append({
      actor,
      action: "run.cancel",
      resource: `run:${run.id}`,
      outcome: allowed ? "allowed" : "denied",
      reason: why,
      runId: run.id,
      traceId: run.traceparent.slice(3, 35),
      data: { ...decisionData(request, verdict), cancelReason: reason },
    }, inTx);
    if (!allowed) {
      throw new PlmError(
        "ERR_FORBIDDEN",
        `Cannot let ${identity.subject} cancel run ${run.id}: ${why}`,
      );
    }
    return { run, actor, reason };
  }

  /**
   * How a run's agent works: `suggest` when the run's approval was opened for a
   * suggest-only verdict (autonomy `L1`), else `act`. The mode is bound into the
   * approval's subject (and so its digest): approvers see that they let the agent
   * suggest, not act.
   *
   * @param run The run.
   * @param options The transaction to read in.
   * @returns `act` or `suggest`.
   * @throws {PlmError} `ERR_APPROVAL_NOT_FOUND` when the run names an approval that is gone.
   *
   * @example A run without an approval acts
   * ```ts
   * import { ControlPlane, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { policies: { rules: [] } });
   * const { run } = await cp.runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * assert.equal(await cp.runMode(run), "act");
   * ```
   */
  async runMode(run: Run, options: { tx?: StoreTx } = {}): Promise<RunMode> {
    if (run.approvalId === null) return "act";
    const { subject } = await this.approvals.get(run.approvalId, options);
    const suggest = typeof subject === "object" && subject !== null && !Array.isArray(subject) &&
      (subject as { readonly [key: string]: JsonValue }).mode === "suggest";
    return suggest ? "suggest" : "act";
  }

  /**
   * Opens an approval for a run and parks the run in `awaiting_approval`, in
   * one transaction.
   *
   * @param runId The run (in `queued` or `escalated`).
   * @param spec Who may approve, quorum, timeout, on-expiry rule.
   * @param options The kind of approval, the actor (defaults to the bound identity) and
   * the run's mode ({@link RunMode}; defaults to the mode of the run's previous approval,
   * so an escalation keeps a suggest-only run suggest-only), the lease held (the parking
   * is fenced by it, as `RunStore.apply` is) and the transaction to join.
   * @returns The approval and the parked run.
   * @throws {PlmError} `ERR_IDENTITY_REQUIRED` without an actor given or an identity bound;
   * `ERR_RUN_NOT_FOUND`; `ERR_RUN_ILLEGAL_TRANSITION` when the run cannot wait for an
   * approval, `ERR_RUN_LEASE_LOST` when `lease` is no longer the run's (nothing is written
   * then); the codes of `ApprovalService.request`.
   * @throws {RangeError} When `spec` is malformed (see `ApprovalService.request`).
   *
   * @example Park a run until a lead approves it
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await cp.runs.create({
   *   task: { action: "bom.release", resource: "bom:1", capabilities: [], input: null,
   *     risk: "high", attributes: {} },
   *   requester: { subject: "agent-7", actorKind: "agent", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const spec = { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const { approval, run: parked } = await cp.requestApproval(run.id, spec, { actor: worker });
   * assert.equal(parked.state, "awaiting_approval");
   * assert.equal(parked.approvalId, approval.id);
   * assert.equal(approval.deadline, 600_000);
   * ```
   */
  requestApproval(
    runId: string,
    spec: ApprovalSpec,
    options: {
      kind?: ApprovalKind;
      actor?: AuditActor;
      mode?: RunMode;
      lease?: LeaseHold;
      tx?: StoreTx;
    } = {},
  ): Promise<{ approval: Approval; run: Run }> {
    const actor = resolveActor(options.actor);
    return this.#within(options.tx, async (tx) => {
      const run = await this.runs.get(runId, { tx });
      const mode = options.mode ?? await this.runMode(run, { tx });
      const approval = await this.approvals.request(runId, spec, {
        requester: {
          subject: run.requester.subject,
          kind: run.requester.kind as AuditActor["kind"],
        },
        subject: {
          action: run.task.action,
          resource: run.task.resource,
          input: run.task.input,
          risk: run.task.risk,
          ...(mode === "suggest" ? { mode } : {}),
        },
        kind: options.kind ?? "approval",
        traceId: run.traceparent.slice(3, 35),
        tx,
      });
      const parked = await this.runs.apply(
        runId,
        { type: "request_approval", approvalId: approval.id },
        { actor, tx, ...(options.lease === undefined ? {} : { lease: options.lease }) },
      );
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
   * A refused attempt leaves its `approval.decide` audit record (outcome `refused`),
   * committed although the call throws.
   *
   * @returns The approval and its run after the decision.
   * @throws {PlmError} The codes of `ApprovalService.decide` (`ERR_INVALID_ARGUMENT` for
   * a malformed id, decision, digest or comment), and `ERR_IDENTITY_REQUIRED`.
   *
   * @example The lead approves and the run goes back to the queue
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await cp.runs.create({
   *   task: { action: "bom.release", resource: "bom:1", capabilities: [], input: null,
   *     risk: "high", attributes: {} },
   *   requester: { subject: "agent-7", actorKind: "agent", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const spec = { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * const { approval } = await cp.requestApproval(run.id, spec, { actor: worker });
   * const lead = { subject: "ann", actorKind: "human", roles: ["lead"], scopes: [] } as const;
   * const decided = await cp.decideApproval(approval.id, "approve", {
   *   identity: lead,
   *   digest: approval.digest,
   *   comment: "Checked the BOM",
   * });
   * assert.equal(decided.approval.state, "approved");
   * assert.equal(decided.run.state, "queued");
   * ```
   */
  async decideApproval(
    approvalId: string,
    decision: ApprovalDecision,
    options: { identity?: Identity; digest: string; comment?: string; tx?: StoreTx },
  ): Promise<{ approval: Approval; run: Run }> {
    const identity = requireIdentity(options.identity, {
      field: "options.identity",
      action: "decide an approval",
    });
    // The decision comes first, so that a refusal (whose audit record `decide` wrote)
    // is committed with this otherwise empty transaction and thrown after it.
    const outcome = await this.#within(options.tx, async (tx): Promise<
      { approval: Approval; run: Run } | { refused: unknown }
    > => {
      let approval: Approval;
      try {
        approval = await this.approvals.decide(approvalId, decision, {
          identity,
          digest: options.digest,
          ...(options.comment === undefined ? {} : { comment: options.comment }),
          tx,
        });
      } catch (err) {
        return { refused: err };
      }
      const run = await this.runs.get(approval.runId, { tx });
      const actor = actorOf(identity);
      if (approval.state === "approved" && run.state === "awaiting_approval") {
        return { approval, run: await this.runs.apply(run.id, { type: "approve" }, { actor, tx }) };
      }
      if (approval.state === "rejected" && run.state === "awaiting_approval") {
        const reason = approval.reason ?? "Rejected by an approver";
        const rejected = await this.runs.apply(run.id, { type: "reject", reason }, { actor, tx });
        return { approval, run: rejected };
      }
      return { approval, run };
    });
    if ("refused" in outcome) throw outcome.refused;
    return outcome;
  }

  /**
   * Expires every approval past its deadline and applies its on-expiry rule to
   * the run: `deny` ends the run `expired` (not `rejected`), `escalate` moves
   * it to `escalated` for the next tier.
   *
   * @param now The time to compare deadlines with. Defaults to the clock.
   * @returns The expired approvals with their runs after the change.
   *
   * @example An unanswered approval expires its run
   * ```ts
   * import { ControlPlane, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await cp.runs.create({
   *   task: { action: "bom.release", resource: "bom:1", capabilities: [], input: null,
   *     risk: "high", attributes: {} },
   *   requester: { subject: "agent-7", actorKind: "agent", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const spec = { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" } as const;
   * await cp.requestApproval(run.id, spec, { actor: worker });
   * assert.deepEqual(await cp.expireApprovals(), []);
   * clock.advance(600_000);
   * const [expired] = await cp.expireApprovals();
   * assert.equal(expired?.approval.state, "expired");
   * assert.equal(expired?.run.state, "expired");
   * ```
   */
  async expireApprovals(
    now?: number,
    options: { tx?: StoreTx } = {},
  ): Promise<{ approval: Approval; run: Run }[]> {
    const at = now ?? this.#clock.now();
    const actor: AuditActor = { subject: "system:clock", kind: "system" };
    return await this.#within(options.tx, async (tx) => {
      const done: { approval: Approval; run: Run }[] = [];
      for (const approval of await this.approvals.expireDue(at, { actor, tx })) {
        const run = await this.runs.get(approval.runId, { tx });
        if (run.state !== "awaiting_approval" || run.approvalId !== approval.id) {
          done.push({ approval, run });
          continue;
        }
        const reason = approval.reason ?? "The approval expired";
        const event = approval.spec.onExpiry === "escalate"
          ? { type: "escalate" as const, reason }
          : { type: "expire" as const, reason };
        done.push({ approval, run: await this.runs.apply(run.id, event, { actor, tx }) });
      }
      return done;
    });
  }

  /** Runs `fn` in `tx`, or in a {@link ControlPlane.transaction} of its own. */
  #within<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return tx === undefined ? this.transaction(fn) : fn(tx);
  }

  /**
   * Audits an `L3` verdict's notification in `tx` and queues it for
   * `onNotify` until `tx` commits (a `tx` not opened by
   * {@link ControlPlane.transaction} has no queue: nothing is delivered).
   */
  async #notify(
    tx: StoreTx,
    identity: Identity,
    request: PolicyRequest,
    verdict: ControlPlaneVerdict,
    where: { runId?: string; traceId?: string },
  ): Promise<void> {
    const level = verdict.autonomyLevel ?? "L3";
    await this.audit.append({
      actor: actorOf(identity),
      action: "autonomy.notify",
      resource: request.resource,
      outcome: "notified",
      reason: verdict.reason,
      ...where,
      data: { action: request.action, decision: verdict.decision, level },
    }, { tx });
    if (this.#onNotify === undefined) return;
    this.#outboxes.get(tx)?.push({
      agentId: identity.subject,
      action: request.action,
      resource: request.resource,
      decision: verdict.decision,
      autonomyLevel: level,
      reason: verdict.reason,
      runId: where.runId ?? null,
      traceId: where.traceId ?? null,
      at: Math.trunc(this.#clock.now()),
    });
  }

  /** Hands committed notifications to `onNotify`; the hook's failures change nothing. */
  #deliver(outbox: readonly AutonomyNotification[]): void {
    const hook = this.#onNotify;
    if (hook === undefined) return;
    const report = (notification: AutonomyNotification, err: unknown) =>
      console.error(
        `plm: notification of ${notification.agentId}'s ${notification.action} failed:`,
        err,
      );
    for (const notification of outbox) {
      try {
        const pending = hook(notification);
        if (pending instanceof Promise) pending.catch((err) => report(notification, err));
      } catch (err) {
        report(notification, err);
      }
    }
  }
}

/** The engine cancels are decided with: the set's rules, then the built-ins it does not replace. */
function cancelEngine(policies: PolicySet): PolicyEngine {
  const ids = new Set(policies.rules.map((rule) => rule.id));
  return new PolicyEngine({
    ...policies,
    rules: [...policies.rules, ...DEFAULT_CANCEL_RULES.filter((rule) => !ids.has(rule.id))],
  });
}

/** The audit data of a decision: enough to re-decide it with `PolicyEngine.whatIf`. */
function decisionData(
  request: PolicyRequest,
  verdict: ControlPlaneVerdict,
): { readonly [key: string]: JsonValue } {
  return {
    request: {
      action: request.action,
      resource: request.resource,
      risk: request.risk ?? "low",
      tenant: request.tenant ?? null,
      attributes: request.attributes ?? {},
      roles: [...request.identity.roles],
      actorKind: request.identity.actorKind,
    },
    matchedRuleIds: [...verdict.matchedRuleIds],
    policyVersion: verdict.policyVersion,
    code: verdict.code ?? null,
    autonomyLevel: verdict.autonomyLevel ?? null,
  };
}
