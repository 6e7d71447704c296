/**
 * Lint of a policy set for its authors ({@link lintPolicySet}): rules that
 * can never decide, rules another rule already covers, and rules or patterns
 * that can never match. And the published JSON Schema of policy files
 * ({@link policySetJsonSchema}).
 *
 * @module
 */
import { z } from "zod";
import { canonicalJson, type JsonValue } from "../../shared/mod.ts";
import { ACTION_SEPARATORS, compileGlob, RESOURCE_SEPARATORS } from "./glob.ts";
import {
  type ConditionScalar,
  type PolicyCondition,
  type PolicyEffect,
  type PolicyRule,
  type PolicySet,
  PolicySetSchema,
  RISK_LEVELS,
} from "./policy.ts";

/**
 * What {@link lintPolicySet} finds:
 *
 * - `unreachable`: a catch-all rule (any action, resource, actor, role,
 *   tenant, risk, no conditions) whose effect overrides this rule's, so this
 *   rule can never change a decision (`deny` overrides `require_approval`,
 *   which overrides `allow`, whatever the order);
 * - `shadowed`: an earlier rule with the same effect (and the same approval
 *   spec) matches everything this one matches, so this one changes nothing;
 * - `never_matches`: the rule, or one of its patterns, can match no request
 *   (an action pattern no dotted action fits, contradictory conditions, roles
 *   required of the system actor, which has none).
 *
 * @example Every finding has one of these kinds
 * ```ts
 * import { lintPolicySet, POLICY_FINDING_KINDS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const findings = lintPolicySet({ rules: [{ id: "r", effect: "allow", actions: ["bom..read"] }] });
 * assert.ok(findings.every((f) => POLICY_FINDING_KINDS.includes(f.kind)));
 * ```
 */
export const POLICY_FINDING_KINDS = ["unreachable", "shadowed", "never_matches"] as const;

/** One of {@link POLICY_FINDING_KINDS}. */
export type PolicyFindingKind = typeof POLICY_FINDING_KINDS[number];

/** One problem {@link lintPolicySet} found. */
export interface PolicyFinding {
  /** What kind of problem. */
  readonly kind: PolicyFindingKind;
  /** The rule it is about. */
  readonly ruleId: string;
  /** The path of the field in the policy file: `["rules", 3, "actions", 0]`. */
  readonly path: readonly (string | number)[];
  /** One sentence for the author. */
  readonly message: string;
  /** The rule that makes this one unreachable or shadowed, if any. */
  readonly by?: string;
}

const PRECEDENCE: Readonly<Record<PolicyEffect, number>> = {
  allow: 0,
  require_approval: 1,
  deny: 2,
};

/** What a task action is: dotted words of letters, digits, `_` and `-` (`runs/task.ts`). */
const ACTION_SEGMENT_CHARS = /^[A-Za-z0-9_*-]*$/;

/**
 * Finds rules that can never decide, rules an earlier rule already covers,
 * and rules or patterns that can never match. Pure; the set is not
 * validated again (pass one from `loadPolicySet`).
 *
 * @param policySet A validated policy set.
 * @returns The findings, in rule order; empty when there is nothing to say.
 *
 * @example A catch-all deny, a shadowed allow, and a pattern that never matches
 * ```ts
 * import { lintPolicySet } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const findings = lintPolicySet({
 *   rules: [
 *     { id: "boms", effect: "allow", actions: ["bom.*"] },
 *     { id: "bom-read", effect: "allow", actions: ["bom.read"], resources: ["bom:1"] },
 *     { id: "typo", effect: "allow", actions: ["bom:read"] },
 *   ],
 * });
 * assert.deepEqual(findings.map((f) => [f.kind, f.ruleId]), [
 *   ["shadowed", "bom-read"],
 *   ["never_matches", "typo"],
 * ]);
 * ```
 */
export function lintPolicySet(policySet: PolicySet): PolicyFinding[] {
  const findings: PolicyFinding[] = [];
  const rules = policySet.rules;
  const catchAlls = rules.filter(isCatchAll);
  rules.forEach((rule, index) => {
    const own: PolicyFinding[] = [];
    const at = (...rest: (string | number)[]) => ["rules", index, ...rest];
    // Patterns and conditions that can never match.
    rule.actions.forEach((pattern, i) => {
      const problem = actionPatternProblem(pattern);
      if (problem !== undefined) {
        own.push({
          kind: "never_matches",
          ruleId: rule.id,
          path: at("actions", i),
          message: `Action pattern ${JSON.stringify(pattern)} can never match: ${problem}`,
        });
      }
    });
    const contradiction = conditionsContradiction(rule.conditions ?? []);
    if (contradiction !== undefined) {
      own.push({
        kind: "never_matches",
        ruleId: rule.id,
        path: at("conditions"),
        message: `The conditions can never all hold: ${contradiction}`,
      });
    }
    if (
      rule.actorKinds !== undefined && rule.actorKinds.every((kind) => kind === "system") &&
      rule.roles !== undefined
    ) {
      own.push({
        kind: "never_matches",
        ruleId: rule.id,
        path: at("roles"),
        message: "The rule can never match: it requires roles of the system actor, which has none",
      });
    }
    // A catch-all whose effect overrides this rule's.
    const overriding = catchAlls.find((c) =>
      c !== rule && PRECEDENCE[c.effect] > PRECEDENCE[rule.effect]
    );
    if (overriding !== undefined) {
      own.push({
        kind: "unreachable",
        ruleId: rule.id,
        path: at("effect"),
        message:
          `The rule can never decide: catch-all rule ${overriding.id} (${overriding.effect}) ` +
          `matches every request and overrides ${rule.effect}`,
        by: overriding.id,
      });
    } else {
      const wider = rules.slice(0, index).find((earlier) => shadows(earlier, rule));
      if (wider !== undefined) {
        own.push({
          kind: "shadowed",
          ruleId: rule.id,
          path: at(),
          message: `The rule changes nothing: earlier rule ${wider.id} has the same effect ` +
            `(${rule.effect}) and matches every request it matches`,
          by: wider.id,
        });
      }
    }
    findings.push(...own);
  });
  return findings;
}

function isCatchAll(rule: PolicyRule): boolean {
  return rule.actions.some(isAnything) &&
    (rule.resources === undefined || rule.resources.some(isAnything)) &&
    rule.actorKinds === undefined && rule.roles === undefined && rule.tenants === undefined &&
    (rule.minRisk === undefined || rule.minRisk === RISK_LEVELS[0]) &&
    rule.conditions === undefined;
}

function isAnything(pattern: string): boolean {
  return /^\*+$/.test(pattern) && pattern.length >= 2;
}

/** Why no dotted action can match `pattern`, or `undefined` when one can. */
function actionPatternProblem(pattern: string): string | undefined {
  for (const segment of pattern.split(ACTION_SEPARATORS)) {
    if (segment === "") {
      return "an action has no empty segment (no leading, trailing or double dot)";
    }
    if (!ACTION_SEGMENT_CHARS.test(segment)) {
      const bad = [...segment].find((c) => !ACTION_SEGMENT_CHARS.test(c)) ?? "";
      return `an action holds only letters, digits, _, - and dots, not ${JSON.stringify(bad)}`;
    }
  }
  return undefined;
}

/** Whether every request `later` matches is matched by `earlier`, with the same outcome. */
function shadows(earlier: PolicyRule, later: PolicyRule): boolean {
  if (earlier.effect !== later.effect) return false;
  if (
    earlier.effect === "require_approval" &&
    canonicalJson(earlier.approval as unknown as JsonValue) !==
      canonicalJson(later.approval as unknown as JsonValue)
  ) {
    return false;
  }
  return patternsCover(earlier.actions, later.actions, ACTION_SEPARATORS) &&
    (earlier.resources === undefined ||
      (later.resources === undefined
        ? earlier.resources.some(isAnything)
        : patternsCover(earlier.resources, later.resources, RESOURCE_SEPARATORS))) &&
    setCovers(earlier.actorKinds, later.actorKinds) &&
    setCovers(earlier.roles, later.roles) &&
    setCovers(earlier.tenants, later.tenants) &&
    riskRank(earlier.minRisk) <= riskRank(later.minRisk) &&
    (earlier.conditions ?? []).every((c) =>
      (later.conditions ?? []).some((d) => canonicalJson(c as never) === canonicalJson(d as never))
    );
}

function riskRank(risk: string | undefined): number {
  return risk === undefined ? 0 : RISK_LEVELS.indexOf(risk as typeof RISK_LEVELS[number]);
}

/** Absent means "any": `wide` covers `narrow` when every value `narrow` allows, `wide` allows. */
function setCovers(wide: readonly string[] | undefined, narrow: readonly string[] | undefined) {
  if (wide === undefined) return true;
  if (narrow === undefined) return false;
  return narrow.every((value) => wide.includes(value));
}

function patternsCover(wide: readonly string[], narrow: readonly string[], separators: string) {
  return narrow.every((n) => wide.some((w) => globCovers(w, n, separators)));
}

/** Whether every value `narrow` matches, `wide` matches (conservative: `false` when unsure). */
function globCovers(wide: string, narrow: string, separators: string): boolean {
  if (wide === narrow || isAnything(wide)) return true;
  if (!narrow.includes("*")) return compileGlob(wide, { separators })(narrow);
  const firstStar = wide.indexOf("*");
  const prefix = wide.slice(0, firstStar);
  const rest = wide.slice(firstStar);
  if (!narrow.startsWith(prefix)) return false;
  if (isAnything(rest)) return true; // `bom.**` covers anything that starts with `bom.`
  if (rest === "*") {
    // `bom.*` covers `bom.up*`: the rest stays within one segment.
    const tail = narrow.slice(prefix.length);
    return !tail.includes("**") && ![...separators].some((s) => tail.includes(s));
  }
  return false;
}

/** Why `conditions` can never all hold, or `undefined`. */
function conditionsContradiction(conditions: readonly PolicyCondition[]): string | undefined {
  const byAttr = new Map<string, PolicyCondition[]>();
  for (const c of conditions) byAttr.set(c.attr, [...(byAttr.get(c.attr) ?? []), c]);
  for (const [attr, list] of byAttr) {
    const absent = list.find((c) => c.op === "exists" && c.value === false);
    if (absent !== undefined && list.length > 1) {
      return `${attr} must be absent, but another condition tests its value`;
    }
    const equals = list.filter((c) => c.op === "eq").map((c) => c.value as ConditionScalar);
    if (new Set(equals.map((v) => JSON.stringify(v))).size > 1) {
      return `${attr} cannot equal both ${equals.map((v) => JSON.stringify(v)).join(" and ")}`;
    }
    const eq = list.find((c) => c.op === "eq");
    if (eq !== undefined) {
      const value = eq.value as ConditionScalar;
      for (const c of list) {
        if (c.op === "ne" && c.value === value) {
          return `${attr} cannot equal and not equal ${JSON.stringify(value)}`;
        }
        if (c.op === "in" && !(c.value as readonly ConditionScalar[]).includes(value)) {
          return `${attr} equals ${JSON.stringify(value)}, which is not in ${
            JSON.stringify(c.value)
          }`;
        }
        if (isComparison(c) && !compare(value, c.op, c.value)) {
          return `${attr} equals ${JSON.stringify(value)}, which is not ${c.op} ${
            JSON.stringify(c.value)
          }`;
        }
      }
    }
    const comparisons = list.filter(isComparison);
    if (new Set(comparisons.map((c) => typeof c.value)).size > 1) {
      return `${attr} is compared with both a number and a string`;
    }
    for (const low of comparisons.filter((c) => c.op === "gt" || c.op === "gte")) {
      for (const high of comparisons.filter((c) => c.op === "lt" || c.op === "lte")) {
        const strict = low.op === "gt" || high.op === "lt";
        if (low.value > high.value || (strict && low.value === high.value)) {
          return `no ${attr} is ${low.op} ${JSON.stringify(low.value)} and ${high.op} ${
            JSON.stringify(high.value)
          }`;
        }
      }
    }
  }
  return undefined;
}

type Comparison = Extract<PolicyCondition, { op: "lt" | "lte" | "gt" | "gte" }>;

function isComparison(c: PolicyCondition): c is Comparison {
  return c.op === "lt" || c.op === "lte" || c.op === "gt" || c.op === "gte";
}

function compare(value: ConditionScalar, op: Comparison["op"], bound: number | string): boolean {
  if (typeof value !== typeof bound) return false;
  const v = value as number | string;
  switch (op) {
    case "lt":
      return v < bound;
    case "lte":
      return v <= bound;
    case "gt":
      return v > bound;
    case "gte":
      return v >= bound;
  }
}

/**
 * The JSON Schema (draft 2020-12) of policy files, generated from
 * `PolicySetSchema` (`z.toJSONSchema`), with the rule that `approval` is
 * required exactly when `effect` is `require_approval`. Published as
 * `docs/policy.schema.json` (`plm policy schema` prints it); editors use it
 * to complete and check policy files. Duplicate rule ids are checked by the
 * loader only.
 *
 * @returns The schema, as a JSON value.
 *
 * @example The schema names the effects
 * ```ts
 * import { policySetJsonSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const schema = policySetJsonSchema() as Record<string, unknown>;
 * assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
 * assert.match(JSON.stringify(schema), /"require_approval"/);
 * ```
 */
export function policySetJsonSchema(): JsonValue {
  const generated = z.toJSONSchema(PolicySetSchema as unknown as z.ZodType, {
    io: "input",
    unrepresentable: "throw",
  }) as Record<string, unknown>;
  const cleaned = clean(generated) as Record<string, unknown>;
  const { $schema, properties, ...rest } = cleaned;
  return {
    $schema: $schema as string,
    title: "plm-engine-core policy set",
    description: "A policy file: rules that allow, deny or require approval of actions on " +
      "resources. Default deny; deny overrides require_approval, which overrides allow.",
    ...(rest as Record<string, JsonValue>),
    properties: {
      $schema: { type: "string", description: "This schema's location, for editors; not stored" },
      ...(properties as Record<string, JsonValue>),
    },
  };
}

/** Drops `readOnly` (zod's mark of `.readonly()`) and adds the approval rule to rule objects. */
function clean(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clean);
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (key !== "readOnly") out[key] = clean(item);
  }
  const properties = out.properties as Record<string, unknown> | undefined;
  if (properties?.effect !== undefined && properties.approval !== undefined) {
    out.if = { properties: { effect: { const: "require_approval" } }, required: ["effect"] };
    out.then = { required: ["approval"] };
    out.else = { not: { required: ["approval"] } };
  }
  return out;
}
