/**
 * The policy engine: compiles a policy set into an index once, then decides
 * requests synchronously.
 *
 * @module
 */
import {
  type ActorKind,
  assertNever,
  checkText,
  type ErrorCode,
  invalidArgument,
} from "../../shared/mod.ts";
import { RuleIndex } from "./_rule_index.ts";
import { ACTION_SEPARATORS, compileGlob, type GlobMatcher, RESOURCE_SEPARATORS } from "./glob.ts";
import {
  type ApprovalSpec,
  type ConditionScalar,
  type Decision,
  parsePolicySet,
  POLICY_LIMITS,
  type PolicyCondition,
  type PolicyRequest,
  type PolicyRule,
  type PolicySet,
  policySetVersion,
  RISK_LEVELS,
} from "./policy.ts";

/** The answer of {@link PolicyEngine.decide}. */
export interface Verdict {
  /** What to do. */
  readonly decision: Decision;
  /** The ids of every rule that matched the request, in policy order. */
  readonly matchedRuleIds: readonly string[];
  /** One line explaining the decision. */
  readonly reason: string;
  /** The content version ({@link policySetVersion}) of the set that decided. */
  readonly policyVersion: string;
  /**
   * The approval to open, when the decision is `require_approval`. When
   * several `require_approval` rules match, their specs are merged: the union
   * of `approverRoles` (first-seen order), the largest `quorum`, the smallest
   * `timeoutSeconds`, and `onExpiry: "deny"` if any of them says `deny`.
   */
  readonly approval?: ApprovalSpec;
  /** A stable error code when the decision is `deny`: `ERR_FORBIDDEN`, `ERR_BUDGET_EXCEEDED`. */
  readonly code?: ErrorCode;
}

/**
 * Which parts of two verdicts differ, as reported by {@link PolicyEngine.whatIf}.
 *
 * @example Compare a verdict under two policy sets
 * ```ts
 * import { PolicyEngine, VERDICT_CHANGES } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const engine = new PolicyEngine({ rules: [{ id: "all", effect: "allow", actions: ["**"] }] });
 * const request = {
 *   identity: { subject: "u", actorKind: "human", roles: [], scopes: [] },
 *   action: "bom.read",
 *   resource: "bom:1",
 * } as const;
 * const result = engine.whatIf(request, { rules: [] });
 * assert.deepEqual(result.changes, ["decision", "matchedRuleIds"]);
 * assert.ok(result.changes.every((change) => VERDICT_CHANGES.includes(change)));
 * ```
 */
export const VERDICT_CHANGES = ["decision", "matchedRuleIds", "approval"] as const;

/** One of {@link VERDICT_CHANGES}. */
export type VerdictChange = typeof VERDICT_CHANGES[number];

/** The result of {@link PolicyEngine.whatIf}. */
export interface WhatIfResult {
  /** The verdict under this engine's policy set. */
  readonly current: Verdict;
  /** The verdict under the other policy set. */
  readonly candidate: Verdict;
  /** Whether the decision, the matched rules or the approval spec differ. */
  readonly differs: boolean;
  /** What differs, in {@link VERDICT_CHANGES} order; empty when nothing does. */
  readonly changes: readonly VerdictChange[];
}

interface CompiledRule {
  readonly rule: PolicyRule;
  /** The action patterns; `null` when one of them is `**` (any action). */
  readonly action: GlobMatcher | null;
  readonly resource: GlobMatcher | null;
  readonly actorKinds: ReadonlySet<ActorKind> | null;
  readonly roles: ReadonlySet<string> | null;
  readonly tenants: ReadonlySet<string> | null;
  readonly minRisk: number;
  readonly conditions: readonly PolicyCondition[] | null;
}

const RISK_RANK: ReadonlyMap<string, number> = new Map(RISK_LEVELS.map((level, i) => [level, i]));

/**
 * Decides requests against one policy set. The constructor validates the set
 * and compiles it into an index: each rule is filed under its most selective
 * field (its action patterns in a trie over action segments, its resource
 * prefixes in a trie over resource segments, its roles, its tenants, or an
 * `eq`/`in` condition), with precompiled glob matchers, so `decide` only
 * looks at rules that can match, whatever the shape of the set: 1,000 rules
 * that share one action and differ by resource glob cost about what 10 do.
 *
 * Semantics: default deny; `deny` overrides `require_approval`, which
 * overrides `allow`. Every matching rule is listed in the verdict.
 *
 * @example Decide a request
 * ```ts
 * import { PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const engine = new PolicyEngine({
 *   rules: [
 *     { id: "planners-edit", effect: "allow", actions: ["bom.*"], roles: ["planner"] },
 *     { id: "no-agent-delete", effect: "deny", actions: ["bom.delete"], actorKinds: ["agent"] },
 *   ],
 * });
 * const identity = { subject: "a-1", actorKind: "agent", roles: ["planner"], scopes: [] } as const;
 *
 * const ok = engine.decide({ identity, action: "bom.update", resource: "bom:1" });
 * assert.equal(ok.decision, "allow");
 * assert.deepEqual(ok.matchedRuleIds, ["planners-edit"]);
 *
 * const no = engine.decide({ identity, action: "bom.delete", resource: "bom:1" });
 * assert.equal(no.decision, "deny");
 * assert.equal(no.code, "ERR_FORBIDDEN");
 * assert.deepEqual(no.matchedRuleIds, ["planners-edit", "no-agent-delete"]);
 * assert.equal(no.policyVersion, engine.version);
 * ```
 */
export class PolicyEngine {
  readonly #policySet: PolicySet;
  readonly #version: string;
  readonly #rules: readonly CompiledRule[];
  readonly #index: RuleIndex;

  /**
   * Validates and compiles a policy set.
   *
   * @param policySet The policy set (validated again here).
   * @throws {PolicyError} `ERR_POLICY_INVALID` when the set is invalid.
   */
  constructor(policySet: PolicySet) {
    this.#policySet = parsePolicySet(policySet);
    this.#version = policySetVersion(this.#policySet);
    this.#rules = this.#policySet.rules.map(compileRule);
    this.#index = new RuleIndex(this.#policySet.rules);
  }

  /**
   * The validated, frozen policy set.
   *
   * @example The set cannot be changed behind the engine's back
   * ```ts
   * import { PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const engine = new PolicyEngine({
   *   rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }],
   * });
   * assert.deepEqual(engine.policySet.rules.map((rule) => rule.id), ["read"]);
   * assert.ok(Object.isFrozen(engine.policySet));
   * ```
   */
  get policySet(): PolicySet {
    return this.#policySet;
  }

  /**
   * The content version of the policy set ({@link policySetVersion}).
   *
   * @example Same rules, same version
   * ```ts
   * import { PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const rules = [{ id: "read", effect: "allow", actions: ["bom.read"] }] as const;
   * const a = new PolicyEngine({ rules: [...rules] });
   * const b = new PolicyEngine({ rules: [...rules] });
   * const c = new PolicyEngine({ rules: [{ ...rules[0], actions: ["bom.*"] }] });
   * assert.equal(a.version, b.version);
   * assert.notEqual(a.version, c.version);
   * ```
   */
  get version(): string {
    return this.#version;
  }

  /**
   * Decides a request. Synchronous and pure: the same request always gets
   * the same verdict from the same engine.
   *
   * A request whose `tenant` differs from its identity's tenant is denied
   * before any rule is consulted.
   *
   * @param request Who asks to do what to which resource.
   * @returns The verdict, naming every matching rule.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `request.action` or
   * `request.resource` is not a string or is longer than
   * {@link POLICY_LIMITS} allows (1,024 characters), or `request.risk` is not one of
   * {@link RISK_LEVELS}.
   *
   * @example Require approval for large amounts
   * ```ts
   * import { PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const engine = new PolicyEngine({
   *   rules: [
   *     { id: "edit", effect: "allow", actions: ["bom.update"] },
   *     {
   *       id: "large",
   *       effect: "require_approval",
   *       actions: ["bom.update"],
   *       conditions: [{ attr: "amount", op: "gt", value: 1000 }],
   *       approval: { approverRoles: ["cm"], quorum: 2, timeoutSeconds: 3600, onExpiry: "deny" },
   *     },
   *   ],
   * });
   * const identity = { subject: "u", actorKind: "human", roles: [], scopes: [] } as const;
   * const verdict = engine.decide({
   *   identity,
   *   action: "bom.update",
   *   resource: "bom:7",
   *   attributes: { amount: 5000 },
   * });
   * assert.equal(verdict.decision, "require_approval");
   * assert.equal(verdict.approval?.quorum, 2);
   * const unknownRisk = { identity, action: "bom.update", resource: "bom:7", risk: "extreme" };
   * assert.throws(() => engine.decide(unknownRisk as never), { code: "ERR_INVALID_ARGUMENT" });
   * ```
   */
  decide(request: PolicyRequest): Verdict {
    checkText("request.action", request.action, POLICY_LIMITS.actionLength);
    checkText("request.resource", request.resource, POLICY_LIMITS.resourceLength);
    const risk = RISK_RANK.get(request.risk ?? "low");
    if (risk === undefined) {
      throw invalidArgument("request.risk", `expected one of ${RISK_LEVELS.join(", ")}`);
    }
    const { identity } = request;
    if (
      request.tenant !== undefined && identity.tenant !== undefined &&
      request.tenant !== identity.tenant
    ) {
      return {
        decision: "deny",
        matchedRuleIds: [],
        reason: oneLine(
          `Identity of tenant ${identity.tenant} cannot act in tenant ${request.tenant} (cross-tenant)`,
        ),
        policyVersion: this.#version,
        code: "ERR_FORBIDDEN",
      };
    }
    const tenant = request.tenant ?? identity.tenant;
    const matched: PolicyRule[] = [];
    const { filedByAction } = this.#index;
    for (const index of this.#index.candidates(request, tenant)) {
      const compiled = this.#rules[index]!;
      if (
        !filedByAction[index]! && compiled.action !== null && !compiled.action(request.action)
      ) {
        continue;
      }
      if (matchesRest(compiled, request, tenant, risk)) matched.push(compiled.rule);
    }
    return buildVerdict(matched, request, this.#version);
  }

  /**
   * Re-decides a (recorded) request under another policy set and compares the
   * two verdicts.
   *
   * @param request The request, as recorded (see {@link PolicyRequestSchema}).
   * @param other The policy set or engine to compare with.
   * @returns Both verdicts and what differs between them.
   * @throws {PolicyError} `ERR_POLICY_INVALID` when `other` is an invalid set.
   *
   * @example Preview a stricter policy
   * ```ts
   * import { PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const engine = new PolicyEngine({
   *   rules: [{ id: "all", effect: "allow", actions: ["bom.**"] }],
   * });
   * const request = {
   *   identity: { subject: "a-1", actorKind: "agent", roles: [], scopes: [] },
   *   action: "bom.delete",
   *   resource: "bom:1",
   * } as const;
   * const result = engine.whatIf(request, {
   *   rules: [
   *     { id: "all", effect: "allow", actions: ["bom.**"] },
   *     { id: "no-delete", effect: "deny", actions: ["bom.delete"] },
   *   ],
   * });
   * assert.equal(result.current.decision, "allow");
   * assert.equal(result.candidate.decision, "deny");
   * assert.ok(result.differs);
   * assert.deepEqual(result.changes, ["decision", "matchedRuleIds"]);
   * ```
   */
  whatIf(request: PolicyRequest, other: PolicySet | PolicyEngine): WhatIfResult {
    const otherEngine = other instanceof PolicyEngine ? other : new PolicyEngine(other);
    const current = this.decide(request);
    const candidate = otherEngine.decide(request);
    const changes: VerdictChange[] = [];
    if (current.decision !== candidate.decision) changes.push("decision");
    if (!sameStrings(current.matchedRuleIds, candidate.matchedRuleIds)) {
      changes.push("matchedRuleIds");
    }
    if (!sameApproval(current.approval, candidate.approval)) changes.push("approval");
    return { current, candidate, differs: changes.length > 0, changes };
  }
}

function compileRule(rule: PolicyRule): CompiledRule {
  return {
    rule,
    action: compileAny(rule.actions, ACTION_SEPARATORS),
    resource: rule.resources === undefined ? null : compileAny(rule.resources, RESOURCE_SEPARATORS),
    actorKinds: rule.actorKinds === undefined ? null : new Set(rule.actorKinds),
    roles: rule.roles === undefined ? null : new Set(rule.roles),
    tenants: rule.tenants === undefined ? null : new Set(rule.tenants),
    minRisk: rule.minRisk === undefined ? 0 : RISK_RANK.get(rule.minRisk)!,
    conditions: rule.conditions ?? null,
  };
}

function compileAny(patterns: readonly string[], separators: string): GlobMatcher | null {
  const matchers = patterns.map((p) => compileGlob(p, { separators }));
  if (patterns.some((p) => /^\*{2,}$/.test(p))) return null;
  if (matchers.length === 1) return matchers[0]!;
  return (value) => matchers.some((match) => match(value));
}

function matchesRest(
  compiled: CompiledRule,
  request: PolicyRequest,
  tenant: string | undefined,
  risk: number,
): boolean {
  if (risk < compiled.minRisk) return false;
  const { identity } = request;
  if (compiled.actorKinds !== null && !compiled.actorKinds.has(identity.actorKind)) return false;
  if (compiled.tenants !== null && (tenant === undefined || !compiled.tenants.has(tenant))) {
    return false;
  }
  if (compiled.roles !== null) {
    let any = false;
    for (const role of identity.roles) {
      if (compiled.roles.has(role)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if (compiled.resource !== null && !compiled.resource(request.resource)) return false;
  if (compiled.conditions !== null) {
    for (const condition of compiled.conditions) {
      if (!holds(condition, request.attributes)) return false;
    }
  }
  return true;
}

function holds(
  condition: PolicyCondition,
  attributes: PolicyRequest["attributes"],
): boolean {
  const present = attributes !== undefined && Object.hasOwn(attributes, condition.attr);
  if (condition.op === "exists") return present === (condition.value ?? true);
  if (!present) return false;
  const value = attributes[condition.attr];
  switch (condition.op) {
    case "eq":
      return value === condition.value;
    case "ne":
      return value !== condition.value;
    case "in":
      return condition.value.includes(value as ConditionScalar);
    case "lt":
    case "lte":
    case "gt":
    case "gte": {
      const expected = condition.value;
      if (typeof value !== typeof expected) return false;
      const actual = value as typeof expected;
      if (condition.op === "lt") return actual < expected;
      if (condition.op === "lte") return actual <= expected;
      if (condition.op === "gt") return actual > expected;
      return actual >= expected;
    }
    default:
      return assertNever(condition);
  }
}

function buildVerdict(
  matched: readonly PolicyRule[],
  request: PolicyRequest,
  policyVersion: string,
): Verdict {
  const matchedRuleIds = matched.map((rule) => rule.id);
  if (matched.length === 0) {
    return {
      decision: "deny",
      matchedRuleIds,
      reason: oneLine(`No rule matched ${request.action} on ${request.resource} (default deny)`),
      policyVersion,
      code: "ERR_FORBIDDEN",
    };
  }
  const denies = matched.filter((rule) => rule.effect === "deny");
  if (denies.length > 0) {
    return {
      decision: "deny",
      matchedRuleIds,
      reason: explain("Denied", denies),
      policyVersion,
      code: "ERR_FORBIDDEN",
    };
  }
  const approvals = matched.filter((rule) => rule.effect === "require_approval");
  if (approvals.length > 0) {
    return {
      decision: "require_approval",
      matchedRuleIds,
      reason: explain("Approval required", approvals),
      policyVersion,
      approval: mergeApprovals(approvals.map((rule) => rule.approval!)),
    };
  }
  return { decision: "allow", matchedRuleIds, reason: explain("Allowed", matched), policyVersion };
}

function explain(prefix: string, rules: readonly PolicyRule[]): string {
  const ids = rules.map((rule) => rule.id).join(", ");
  const head = `${prefix} by rule${rules.length === 1 ? "" : "s"} ${ids}`;
  const description = rules[0]!.description;
  return description === undefined || description === ""
    ? head
    : `${head}: ${oneLine(description).trim()}`;
}

/** Collapses line breaks and other whitespace runs, so reasons stay on one line. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, " ");
}

function mergeApprovals(specs: readonly ApprovalSpec[]): ApprovalSpec {
  if (specs.length === 1) return specs[0]!;
  const roles = new Set<string>();
  let quorum = 1;
  let timeoutSeconds = Infinity;
  let deny = false;
  for (const spec of specs) {
    for (const role of spec.approverRoles) roles.add(role);
    quorum = Math.max(quorum, spec.quorum);
    timeoutSeconds = Math.min(timeoutSeconds, spec.timeoutSeconds);
    deny ||= spec.onExpiry === "deny";
  }
  return {
    approverRoles: [...roles],
    quorum,
    timeoutSeconds,
    onExpiry: deny ? "deny" : "escalate",
  };
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

function sameApproval(a: ApprovalSpec | undefined, b: ApprovalSpec | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.quorum === b.quorum && a.timeoutSeconds === b.timeoutSeconds &&
    a.onExpiry === b.onExpiry && sameStrings(a.approverRoles, b.approverRoles);
}
