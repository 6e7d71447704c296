/**
 * Policies as data: the shapes of policy sets, rules, conditions, approval
 * specs and requests, their zod schemas, and loading with precise errors.
 *
 * @module
 */
import { z } from "zod";
import {
  ACTOR_KINDS,
  type ActorKind,
  digestJson,
  formatIssues,
  type Identity,
  IdentitySchema,
  INPUT_LIMITS,
  type JsonValue,
  type Schema,
  type SchemaIssue,
} from "../../shared/mod.ts";
import { jsonSchema } from "../../shared/validate.ts";
import { PolicyError } from "./policy_error.ts";

/**
 * Every effect a rule can have, which is also every decision a verdict can
 * carry. Precedence: `deny` overrides `require_approval`, which overrides
 * `allow`; no matching rule means `deny`.
 *
 * @example No matching rule means deny
 * ```ts
 * import { POLICY_EFFECTS, PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const engine = new PolicyEngine({
 *   rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }],
 * });
 * const identity = { subject: "u", actorKind: "human", roles: [], scopes: [] } as const;
 * const verdict = engine.decide({ identity, action: "bom.delete", resource: "bom:1" });
 * assert.ok(POLICY_EFFECTS.includes(verdict.decision));
 * assert.equal(verdict.decision, "deny");
 * ```
 */
export const POLICY_EFFECTS = ["allow", "deny", "require_approval"] as const;

/** One of {@link POLICY_EFFECTS}. */
export type PolicyEffect = typeof POLICY_EFFECTS[number];

/** The decision of a verdict: one of {@link POLICY_EFFECTS}. */
export type Decision = PolicyEffect;

/**
 * Bounds of policies and requests, checked when a policy set loads
 * ({@link parsePolicySet}) and when a request is decided
 * ({@link PolicyEngine.decide}), so no match and no approval deadline can fail
 * or slow down later:
 *
 * - `patternLength`: the most characters (UTF-16 code units) of one action or
 *   resource glob in a rule;
 * - `actionLength`, `resourceLength`: the most characters of a request's
 *   action and resource;
 * - `approvalTimeoutSeconds`: the longest approval `timeoutSeconds`, 365
 *   days, so every deadline is a valid date and a safe integer of
 *   milliseconds.
 *
 * @example A pattern one character too long is refused when the set loads
 * ```ts
 * import { parsePolicySet, POLICY_LIMITS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const pattern = "a".repeat(POLICY_LIMITS.patternLength);
 * const rules = (actions: string[]) => ({ rules: [{ id: "r", effect: "allow", actions }] });
 * assert.equal(parsePolicySet(rules([pattern])).rules.length, 1);
 * assert.throws(() => parsePolicySet(rules([`${pattern}a`])), { code: "ERR_POLICY_INVALID" });
 * assert.equal(POLICY_LIMITS.approvalTimeoutSeconds, 365 * 24 * 3600);
 * ```
 */
export const POLICY_LIMITS = {
  patternLength: 512,
  actionLength: INPUT_LIMITS.textLength,
  resourceLength: INPUT_LIMITS.textLength,
  approvalTimeoutSeconds: 31_536_000,
} as const;

/**
 * Risk levels of a request, from lowest to highest.
 *
 * @example A rule applies from its `minRisk` up
 * ```ts
 * import { PolicyEngine, RISK_LEVELS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const engine = new PolicyEngine({
 *   rules: [{ id: "risky", effect: "allow", actions: ["bom.update"], minRisk: "high" }],
 * });
 * const identity = { subject: "u", actorKind: "human", roles: [], scopes: [] } as const;
 * const decisions = RISK_LEVELS.map((risk) =>
 *   engine.decide({ identity, action: "bom.update", resource: "bom:1", risk }).decision
 * );
 * assert.deepEqual(decisions, ["deny", "deny", "allow", "allow"]);
 * ```
 */
export const RISK_LEVELS = ["low", "medium", "high", "critical"] as const;

/** One of {@link RISK_LEVELS}. */
export type RiskLevel = typeof RISK_LEVELS[number];

/**
 * Operators of a {@link PolicyCondition}.
 *
 * @example Test a request attribute
 * ```ts
 * import { CONDITION_OPERATORS, PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(CONDITION_OPERATORS.includes("lte"));
 * const engine = new PolicyEngine({
 *   rules: [{
 *     id: "small",
 *     effect: "allow",
 *     actions: ["po.create"],
 *     conditions: [{ attr: "amount", op: "lte", value: 1000 }],
 *   }],
 * });
 * const identity = { subject: "u", actorKind: "human", roles: [], scopes: [] } as const;
 * const ask = (amount: number) =>
 *   engine.decide({ identity, action: "po.create", resource: "po:1", attributes: { amount } });
 * assert.equal(ask(500).decision, "allow");
 * assert.equal(ask(5000).decision, "deny");
 * ```
 */
export const CONDITION_OPERATORS = ["eq", "ne", "in", "lt", "lte", "gt", "gte", "exists"] as const;

/** One of {@link CONDITION_OPERATORS}. */
export type ConditionOperator = typeof CONDITION_OPERATORS[number];

/**
 * What happens when an approval request expires without a decision.
 *
 * @example Every expiry action is a valid `onExpiry`
 * ```ts
 * import { ApprovalSpecSchema, EXPIRY_ACTIONS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * for (const onExpiry of EXPIRY_ACTIONS) {
 *   const spec = { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 60, onExpiry };
 *   assert.ok(ApprovalSpecSchema.safeParse(spec).success);
 * }
 * assert.ok(
 *   !ApprovalSpecSchema.safeParse({
 *     approverRoles: ["cm"],
 *     quorum: 1,
 *     timeoutSeconds: 60,
 *     onExpiry: "approve",
 *   }).success,
 * );
 * ```
 */
export const EXPIRY_ACTIONS = ["deny", "escalate"] as const;

/** One of {@link EXPIRY_ACTIONS}. */
export type ExpiryAction = typeof EXPIRY_ACTIONS[number];

/** A value a condition compares with. */
export type ConditionScalar = string | number | boolean | null;

/**
 * A test on one request attribute (`request.attributes[attr]`, top-level key
 * only). When the attribute is absent, every operator is false except
 * `exists` with `value: false`.
 *
 * - `eq` / `ne`: strict equality with a scalar (`ne` is true for objects and arrays).
 * - `in`: the attribute strictly equals one of the listed scalars.
 * - `lt` / `lte` / `gt` / `gte`: numbers with numbers, strings with strings
 *   (code-unit order); false when the types differ.
 * - `exists`: the attribute is present (`value` defaults to `true`; `false`
 *   tests absence).
 */
export type PolicyCondition =
  | {
    readonly attr: string;
    readonly op: "eq" | "ne";
    readonly value: ConditionScalar;
  }
  | {
    readonly attr: string;
    readonly op: "in";
    readonly value: readonly ConditionScalar[];
  }
  | {
    readonly attr: string;
    readonly op: "lt" | "lte" | "gt" | "gte";
    readonly value: number | string;
  }
  | {
    readonly attr: string;
    readonly op: "exists";
    readonly value?: boolean;
  };

/**
 * Who may approve, how many of them, until when, and what happens on expiry.
 * Required on `require_approval` rules and refused on the others.
 */
export interface ApprovalSpec {
  /** Roles allowed to approve (any of them); never empty. */
  readonly approverRoles: readonly string[];
  /** How many distinct approvers must approve; at least 1. */
  readonly quorum: number;
  /**
   * Seconds until the request expires; an integer from 1 to
   * `POLICY_LIMITS.approvalTimeoutSeconds` (365 days).
   */
  readonly timeoutSeconds: number;
  /** What happens on expiry: `deny`, or `escalate` to the next tier. */
  readonly onExpiry: ExpiryAction;
}

/**
 * One rule of a {@link PolicySet}. A rule matches a request when every field
 * it sets matches (fields left out match anything); list fields match when
 * any entry matches.
 *
 * Globs follow {@link compileGlob}: in `actions`, segments are separated by
 * `.`; in `resources` by `/` or `:`. A single `*` stays within a segment;
 * `**` crosses segments. Each glob has at most `POLICY_LIMITS.patternLength`
 * (512) characters and matches in time linear in the request.
 */
export interface PolicyRule {
  /** Unique within the set, without whitespace or commas; named in verdicts. */
  readonly id: string;
  /** A human description, quoted in the reason of the verdict it decides. */
  readonly description?: string;
  /** What the rule decides when it matches. */
  readonly effect: PolicyEffect;
  /**
   * Action globs (any of): `bom.update`, `bom.*`, `bom.**`, `**`; each at
   * most `POLICY_LIMITS.patternLength` (512) characters.
   */
  readonly actions: readonly string[];
  /**
   * Resource globs (any of): `bom:*`, `plm/parts/**`; each at most
   * `POLICY_LIMITS.patternLength` (512) characters. Absent: any resource.
   */
  readonly resources?: readonly string[];
  /** Actor kinds (any of). Absent: any actor kind. */
  readonly actorKinds?: readonly ActorKind[];
  /** Roles; the identity needs at least one of them. Absent: any roles. */
  readonly roles?: readonly string[];
  /** Tenants (any of) the request must be in. Absent: any tenant, or none. */
  readonly tenants?: readonly string[];
  /** The lowest request risk the rule applies to. Absent: any risk. */
  readonly minRisk?: RiskLevel;
  /** Conditions on request attributes; all must hold. */
  readonly conditions?: readonly PolicyCondition[];
  /** The approval spec; required exactly when `effect` is `require_approval`. */
  readonly approval?: ApprovalSpec;
}

/** A versioned set of rules; the order of rules is the order of `matchedRuleIds`. */
export interface PolicySet {
  /** A name for the set, for humans and logs. */
  readonly id?: string;
  /** A human description. */
  readonly description?: string;
  /** The rules; ids are unique. An empty list denies everything. */
  readonly rules: readonly PolicyRule[];
}

/** What is asked of governance: may this identity do this action on this resource? */
export interface PolicyRequest {
  /** Who asks. */
  readonly identity: Identity;
  /**
   * The dotted action, such as `bom.update`; at most
   * `POLICY_LIMITS.actionLength` (1,024) characters.
   */
  readonly action: string;
  /**
   * The resource, such as `bom:123` or `plm/parts/42`; at most
   * `POLICY_LIMITS.resourceLength` (1,024) characters.
   */
  readonly resource: string;
  /**
   * The risk of the action, matched against `minRisk`.
   *
   * @default {"low"}
   */
  readonly risk?: RiskLevel;
  /**
   * The tenant the resource belongs to. When absent, the identity's tenant is
   * used. When both are set and differ, the request is denied before any rule
   * is consulted.
   */
  readonly tenant?: string;
  /** Attributes that conditions test, such as `{ amount: 250 }`. */
  readonly attributes?: { readonly [name: string]: JsonValue };
}

const nonEmptyString = z.string().min(1);
const nonEmptyStrings = z.array(nonEmptyString).min(1).readonly();
const patterns = z.array(
  nonEmptyString.max(
    POLICY_LIMITS.patternLength,
    `Expected a pattern of at most ${POLICY_LIMITS.patternLength} characters`,
  ),
).min(1).readonly();
const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()], {
  error: "Expected a string, number, boolean or null",
});
const comparable = z.union([z.string(), z.number()], { error: "Expected a string or number" });

const conditionSchema = z.discriminatedUnion("op", [
  z.strictObject({ attr: nonEmptyString, op: z.literal(["eq", "ne"]), value: scalar }).readonly(),
  z.strictObject({
    attr: nonEmptyString,
    op: z.literal("in"),
    value: z.array(scalar).min(1).readonly(),
  })
    .readonly(),
  z.strictObject({
    attr: nonEmptyString,
    op: z.literal(["lt", "lte", "gt", "gte"]),
    value: comparable,
  }).readonly(),
  z.strictObject({
    attr: nonEmptyString,
    op: z.literal("exists"),
    value: z.boolean().exactOptional(),
  })
    .readonly(),
]);

const approvalSchema = z.strictObject({
  approverRoles: nonEmptyStrings,
  quorum: z.number().int().min(1),
  timeoutSeconds: z.number().int().positive().max(
    POLICY_LIMITS.approvalTimeoutSeconds,
    `Expected at most ${POLICY_LIMITS.approvalTimeoutSeconds} seconds (365 days)`,
  ),
  onExpiry: z.enum(EXPIRY_ACTIONS),
}).readonly();

const ruleSchema = z.strictObject({
  id: z.string().regex(/^[^\s,]+$/, "Expected a non-empty id without whitespace or commas"),
  description: z.string().exactOptional(),
  effect: z.enum(POLICY_EFFECTS),
  actions: patterns,
  resources: patterns.exactOptional(),
  actorKinds: z.array(z.enum(ACTOR_KINDS)).min(1).readonly().exactOptional(),
  roles: nonEmptyStrings.exactOptional(),
  tenants: nonEmptyStrings.exactOptional(),
  minRisk: z.enum(RISK_LEVELS).exactOptional(),
  conditions: z.array(conditionSchema).min(1).readonly().exactOptional(),
  approval: approvalSchema.exactOptional(),
}).readonly().superRefine((rule, ctx) => {
  if (rule.effect === "require_approval" && rule.approval === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["approval"],
      message: "Required when effect is require_approval",
    });
  } else if (rule.effect !== "require_approval" && rule.approval !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["approval"],
      message: `Not allowed when effect is ${rule.effect}`,
    });
  }
});

const policySetSchema = z.strictObject({
  id: nonEmptyString.exactOptional(),
  description: z.string().exactOptional(),
  rules: z.array(ruleSchema).readonly(),
}).readonly().superRefine((set, ctx) => {
  const seen = new Set<string>();
  set.rules.forEach((rule, index) => {
    if (seen.has(rule.id)) {
      ctx.addIssue({
        code: "custom",
        path: ["rules", index, "id"],
        message: `Duplicate rule id ${rule.id}`,
      });
    }
    seen.add(rule.id);
  });
});

/**
 * Zod schema of {@link PolicyCondition}.
 *
 * @example Validate a condition
 * ```ts
 * import { PolicyConditionSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(PolicyConditionSchema.safeParse({ attr: "amount", op: "lte", value: 1000 }).success);
 * assert.ok(!PolicyConditionSchema.safeParse({ attr: "amount", op: "between" }).success);
 * ```
 */
export const PolicyConditionSchema: Schema<PolicyCondition> = conditionSchema;

/**
 * Zod schema of {@link ApprovalSpec}.
 *
 * @example Validate an approval spec
 * ```ts
 * import { ApprovalSpecSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const spec = { approverRoles: ["cm"], quorum: 2, timeoutSeconds: 3600, onExpiry: "deny" };
 * assert.ok(ApprovalSpecSchema.safeParse(spec).success);
 * assert.ok(!ApprovalSpecSchema.safeParse({ ...spec, quorum: 0 }).success);
 * ```
 */
export const ApprovalSpecSchema: Schema<ApprovalSpec> = approvalSchema;

/**
 * Zod schema of {@link PolicyRule}; unknown keys are rejected, and `approval`
 * is required exactly for `require_approval`.
 *
 * @example Validate a rule
 * ```ts
 * import { PolicyRuleSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(PolicyRuleSchema.safeParse({ id: "r1", effect: "allow", actions: ["bom.*"] }).success);
 * assert.ok(!PolicyRuleSchema.safeParse({ id: "r2", effect: "require_approval", actions: ["*"] }).success);
 * ```
 */
export const PolicyRuleSchema: Schema<PolicyRule> = ruleSchema;

/**
 * Zod schema of {@link PolicySet}; refuses duplicate rule ids.
 *
 * @example Validate a policy set
 * ```ts
 * import { PolicySetSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const rule = { id: "r1", effect: "allow", actions: ["bom.read"] };
 * assert.ok(PolicySetSchema.safeParse({ rules: [rule] }).success);
 * assert.ok(!PolicySetSchema.safeParse({ rules: [rule, rule] }).success);
 * ```
 */
export const PolicySetSchema: Schema<PolicySet> = policySetSchema;

/**
 * Zod schema of {@link PolicyRequest}, for requests read back from records
 * (for example before {@link PolicyEngine.whatIf}).
 *
 * @example Validate a recorded request
 * ```ts
 * import { PolicyRequestSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const request = PolicyRequestSchema.parse({
 *   identity: { subject: "a-1", actorKind: "agent", roles: ["planner"], scopes: [] },
 *   action: "bom.update",
 *   resource: "bom:1",
 *   risk: "high",
 *   attributes: { amount: 250 },
 * });
 * assert.equal(request.risk, "high");
 * assert.ok(!PolicyRequestSchema.safeParse({ ...request, risk: "extreme" }).success);
 * ```
 */
export const PolicyRequestSchema: Schema<PolicyRequest> = z.strictObject({
  identity: IdentitySchema as unknown as z.ZodType<Identity>,
  action: z.string().max(POLICY_LIMITS.actionLength),
  resource: z.string().max(POLICY_LIMITS.resourceLength),
  risk: z.enum(RISK_LEVELS).exactOptional(),
  tenant: nonEmptyString.exactOptional(),
  attributes: z.record(z.string(), jsonSchema()).readonly().exactOptional(),
}).readonly();

/**
 * Validates a policy set given as an object (TS literal or parsed JSON).
 * The result is deeply frozen.
 *
 * @param input The candidate policy set.
 * @returns The validated policy set.
 * @throws {PolicyError} `ERR_POLICY_INVALID` naming the path of every bad
 * field (`rules[2].effect: Invalid option: ...`), with the same problems in
 * `issues`; duplicate rule ids are refused.
 *
 * @example Parse a policy set
 * ```ts
 * import { parsePolicySet } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const set = parsePolicySet({
 *   id: "plm",
 *   rules: [
 *     { id: "read", effect: "allow", actions: ["bom.read"] },
 *     {
 *       id: "big-change",
 *       effect: "require_approval",
 *       actions: ["bom.update"],
 *       conditions: [{ attr: "amount", op: "gt", value: 1000 }],
 *       approval: { approverRoles: ["cm"], quorum: 1, timeoutSeconds: 3600, onExpiry: "deny" },
 *     },
 *   ],
 * });
 * assert.equal(set.rules.length, 2);
 * assert.ok(Object.isFrozen(set.rules[0]));
 * ```
 */
export function parsePolicySet(input: unknown): PolicySet {
  const result = policySetSchema.safeParse(input);
  if (!result.success) {
    const issues: SchemaIssue[] = result.error.issues.map((issue) => ({
      path: issue.path,
      message: issue.message,
    }));
    throw new PolicyError("ERR_POLICY_INVALID", `Invalid policy set: ${formatIssues(issues)}`, {
      issues,
    });
  }
  return deepFreeze(result.data);
}

/**
 * Loads a policy set from JSON text, or validates an object as
 * {@link parsePolicySet} does.
 *
 * @param source JSON text, or an already parsed object.
 * @returns The validated, deeply frozen policy set.
 * @throws {PolicyError} `ERR_POLICY_INVALID` when the text is not JSON or the
 * content is invalid; the message names the bad fields.
 *
 * @example Load a policy file's text
 * ```ts
 * import { loadPolicySet, PolicyError } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const set = loadPolicySet('{"rules":[{"id":"r1","effect":"allow","actions":["bom.*"]}]}');
 * assert.equal(set.rules[0]?.id, "r1");
 *
 * assert.throws(
 *   () => loadPolicySet('{"rules":[{"id":"r1","effect":"maybe","actions":["*"]}]}'),
 *   (err) => err instanceof PolicyError && err.message.includes("rules[0].effect"),
 * );
 * ```
 */
export function loadPolicySet(source: unknown): PolicySet {
  if (typeof source !== "string") return parsePolicySet(source);
  let input: unknown;
  try {
    input = JSON.parse(source);
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new PolicyError("ERR_POLICY_INVALID", `Cannot parse policy JSON: ${message}`, {
      issues: [{ path: [], message }],
      cause,
    });
  }
  return parsePolicySet(input);
}

/**
 * The content version of a policy set: the lowercase hex SHA-256 of its
 * canonical JSON (keys sorted, no whitespace). Key order does not change it;
 * any change of content, including rule order, does.
 *
 * @param policySet A validated policy set.
 * @returns 64 lowercase hex characters.
 *
 * @example Key order does not matter
 * ```ts
 * import { policySetVersion } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const a = policySetVersion({ rules: [{ id: "r", effect: "allow", actions: ["*"] }] });
 * const b = policySetVersion({ rules: [{ actions: ["*"], effect: "allow", id: "r" }] });
 * const c = policySetVersion({ rules: [{ id: "r", effect: "deny", actions: ["*"] }] });
 * assert.equal(a, b);
 * assert.notEqual(a, c);
 * assert.match(a, /^[0-9a-f]{64}$/);
 * ```
 */
export function policySetVersion(policySet: PolicySet): string {
  return digestJson(policySet as unknown as JsonValue, { field: "policySet" });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
