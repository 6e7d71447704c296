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
export * from "./engine.ts";
export * from "./glob.ts";
export * from "./policy.ts";
export * from "./policy_error.ts";
