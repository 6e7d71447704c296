/**
 * `PolicyEngine.decide` against Cedar (`@cedar-policy/cedar-wasm`, nodejs
 * build) in its fastest mode: the policy set is preparsed once
 * (`preparsePolicySet`), then each request goes through
 * `statefulIsAuthorized`.
 *
 * Equivalent rule sets of size N: rule i allows action `bom.update.i` to
 * principals holding role `role-i`.
 *
 * - ours:  `{ id: "r-i", effect: "allow", actions: ["bom.update.i"], roles: ["role-i"] }`
 * - Cedar: `permit(principal, action == Action::"bom.update.i", resource)
 *           when { principal.roles.contains("role-i") };`
 *
 * The request targets the last rule (`i = N - 1`), so both engines must find
 * it among N. Run with `deno bench -A bench/governance_bench.ts`.
 *
 * @module
 */
import * as cedar from "@cedar-policy/cedar-wasm/nodejs";
import {
  type Identity,
  PolicyEngine,
  type PolicyRequest,
  type PolicyRule,
} from "../control_plane/mod.ts";

const SIZES = [10, 100, 1_000] as const;

function ourEngine(n: number): PolicyEngine {
  const rules: PolicyRule[] = Array.from({ length: n }, (_, i) => ({
    id: `r-${i}`,
    effect: "allow",
    actions: [`bom.update.${i}`],
    roles: [`role-${i}`],
  }));
  return new PolicyEngine({ id: `bench-${n}`, rules });
}

function ourRequest(n: number): PolicyRequest {
  const identity: Identity = {
    subject: "alice",
    actorKind: "human",
    roles: [`role-${n - 1}`],
    scopes: [],
  };
  return { identity, action: `bom.update.${n - 1}`, resource: "bom:b1" };
}

function cedarPolicySet(n: number): string {
  const id = `bench-${n}`;
  const staticPolicies: Record<string, string> = {};
  for (let i = 0; i < n; i++) {
    staticPolicies[`p${i}`] = `permit(principal, action == Action::"bom.update.${i}", resource) ` +
      `when { principal.roles.contains("role-${i}") };`;
  }
  const parsed = cedar.preparsePolicySet(id, { staticPolicies });
  if (parsed.type !== "success") {
    throw new Error(`Cedar refused the policies: ${JSON.stringify(parsed)}`);
  }
  return id;
}

function cedarCall(n: number, policySetId: string): cedar.StatefulAuthorizationCall {
  return {
    principal: { type: "User", id: "alice" },
    action: { type: "Action", id: `bom.update.${n - 1}` },
    resource: { type: "Bom", id: "b1" },
    context: {},
    preparsedPolicySetId: policySetId,
    entities: [{
      uid: { type: "User", id: "alice" },
      attrs: { roles: [`role-${n - 1}`] },
      parents: [],
    }],
  };
}

for (const n of SIZES) {
  const engine = ourEngine(n);
  const request = ourRequest(n);
  const call = cedarCall(n, cedarPolicySet(n));

  // Both engines must agree before we time them.
  const ours = engine.decide(request);
  const theirs = cedar.statefulIsAuthorized(call);
  if (
    ours.decision !== "allow" || ours.matchedRuleIds[0] !== `r-${n - 1}` ||
    theirs.type !== "success" || theirs.response.decision !== "allow" ||
    theirs.response.diagnostics.reason[0] !== `p${n - 1}`
  ) {
    throw new Error(`Engines disagree at ${n} rules: ${JSON.stringify({ ours, theirs })}`);
  }

  const group = `${n} rules`;
  Deno.bench({
    name: `cedar-wasm statefulIsAuthorized (${n} rules)`,
    group,
    baseline: true,
    fn: () => {
      cedar.statefulIsAuthorized(call);
    },
  });
  Deno.bench({
    name: `PolicyEngine.decide (${n} rules)`,
    group,
    fn: () => {
      engine.decide(request);
    },
  });
  Deno.bench({
    name: `PolicyEngine.decide scaling (${n} rules)`,
    group: "PolicyEngine scaling",
    baseline: n === SIZES[0],
    fn: () => {
      engine.decide(request);
    },
  });
}

// Wildcards, for the record. `bom.*.N` patterns are indexed through a `*`
// edge; `bom.**.N` patterns cannot be told apart by the trie (a `**` may span
// any number of segments), so each one is tested: the index's worst case.
for (const [label, pattern] of [["*", "bom.*"], ["**", "bom.**"]] as const) {
  const rules: PolicyRule[] = Array.from({ length: 1_000 }, (_, i) => ({
    id: `g-${i}`,
    effect: "allow",
    actions: [`${pattern}.${i}`],
    roles: [`role-${i}`],
  }));
  const engine = new PolicyEngine({ rules });
  const request = ourRequest(1_000);
  if (engine.decide(request).decision !== "allow") throw new Error(`${label} rules do not allow`);
  Deno.bench({
    name: `PolicyEngine.decide (1000 rules "${pattern}.N")`,
    group: "PolicyEngine wildcards",
    baseline: label === "*",
    fn: () => {
      engine.decide(request);
    },
  });
}
