/**
 * Governance: policies as data, and a fast, pure {@link PolicyEngine} that
 * decides whether an identity may do an action on a resource (`allow`,
 * `deny` or `require_approval`), explaining which rules matched and under
 * which policy version.
 *
 * @example Load a policy file and decide
 * ```ts
 * import { loadPolicySet, PolicyEngine } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const engine = new PolicyEngine(loadPolicySet(JSON.stringify({
 *   rules: [{ id: "read-boms", effect: "allow", actions: ["bom.read"], resources: ["bom:*"] }],
 * })));
 * const identity = { subject: "u-1", actorKind: "human", roles: [], scopes: [] } as const;
 * assert.equal(engine.decide({ identity, action: "bom.read", resource: "bom:1" }).decision, "allow");
 * assert.equal(engine.decide({ identity, action: "bom.write", resource: "bom:1" }).decision, "deny");
 * ```
 *
 * @module
 */
export {
  PolicyEngine,
  type Verdict,
  VERDICT_CHANGES,
  type VerdictChange,
  type WhatIfResult,
} from "./engine.ts";
export {
  ACTION_SEPARATORS,
  compileGlob,
  type GlobMatcher,
  type GlobOptions,
  RESOURCE_SEPARATORS,
} from "./glob.ts";
export {
  type ApprovalSpec,
  ApprovalSpecSchema,
  CONDITION_OPERATORS,
  type ConditionOperator,
  type ConditionScalar,
  type Decision,
  EXPIRY_ACTIONS,
  type ExpiryAction,
  loadPolicySet,
  parsePolicySet,
  POLICY_EFFECTS,
  POLICY_LIMITS,
  type PolicyCondition,
  PolicyConditionSchema,
  type PolicyEffect,
  type PolicyRequest,
  PolicyRequestSchema,
  type PolicyRule,
  PolicyRuleSchema,
  type PolicySet,
  PolicySetSchema,
  policySetVersion,
  RISK_LEVELS,
  type RiskLevel,
} from "./policy.ts";
export { PolicyError, type PolicyErrorOptions } from "./policy_error.ts";
export {
  diffPolicySets,
  followPolicies,
  type FollowPoliciesOptions,
  type PolicyApplyOptions,
  type PolicyApplyResult,
  type PolicyDiff,
  type PolicyFollower,
  type PolicyFollowerTarget,
  PolicyStore,
  type PolicyStoreOptions,
  type StoredPolicy,
  validatePolicyContent,
} from "./policy_store.ts";
export {
  lintPolicySet,
  POLICY_FINDING_KINDS,
  type PolicyFinding,
  type PolicyFindingKind,
  policySetJsonSchema,
} from "./policy_lint.ts";
