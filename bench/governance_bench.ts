/**
 * `PolicyEngine.decide` against Cedar (`@cedar-policy/cedar-wasm`, nodejs
 * build) in its fastest mode: the policy set is preparsed once
 * (`preparsePolicySet`), then each request goes through
 * `statefulIsAuthorized`, with the request's data in `context` (no entity
 * store to search) and only the principal entity, for its roles.
 *
 * Equivalent rule sets of 10, 100 and 1,000 rules in five shapes (rule i):
 *
 * | shape | ours | Cedar |
 * | --- | --- | --- |
 * | literal actions (the index's best case) | `actions: ["bom.update.i"], roles: ["role-i"]` | `action == Action::"bom.update.i"` when `principal.roles.contains("role-i")` |
 * | shared action, resource globs | `actions: ["doc.read"], resources: ["docs/team-i/**"]` | `action == Action::"doc.read"` when `context.path like "docs/team-i/*"` |
 * | `**` actions | `actions: ["**"], roles: ["team-i"]` | any action, when `principal.roles.contains("team-i")` |
 * | `**` inside actions | `actions: ["plm.**.step-i"]` | any action, when `context.action like "plm.*.step-i"` |
 * | conditions | `actions: ["po.approve"]`, `plant eq "plant-i"`, `amount lte 10000` | `action == Action::"po.approve"` when `context.plant == "plant-i" && context.amount <= 10000` |
 * | mix | rule i takes the shape i mod 5 of the five above | the same |
 *
 * Cedar's `like` wildcard `*` crosses every character, as our `**` does.
 * Each request targets the last rule (i = N - 1), so both engines must find
 * it among N; the mix's last rule is a conditions rule at every size. Both
 * engines must agree on every request before anything is timed.
 *
 * The adversarial group matches a `**`/`*` mix (`docs/**.*.*.pdf`, and a
 * 123-character pattern with 60 stars) against resources of 1,024
 * characters, the longest a request may carry, with Cedar's `like` on the
 * same strings (without `/`, where both wildcards mean the same).
 *
 * Run with `deno bench -A bench/governance_bench.ts`.
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

/** One rule in both languages, and a request it allows in both. */
interface Shape {
  readonly rule: (i: number) => { readonly ours: PolicyRule; readonly cedar: string };
  readonly request: (i: number) => {
    readonly ours: PolicyRequest;
    readonly cedar: Omit<cedar.StatefulAuthorizationCall, "preparsedPolicySetId">;
  };
}

function identity(roles: string[]): Identity {
  return { subject: "alice", actorKind: "human", roles, scopes: [] };
}

function cedarRequest(
  action: string,
  roles: string[],
  context: cedar.Context,
): Omit<cedar.StatefulAuthorizationCall, "preparsedPolicySetId"> {
  return {
    principal: { type: "User", id: "alice" },
    action: { type: "Action", id: action },
    resource: { type: "Resource", id: "r" },
    context,
    entities: [{ uid: { type: "User", id: "alice" }, attrs: { roles }, parents: [] }],
  };
}

const literal: Shape = {
  rule: (i) => ({
    ours: { id: `r-${i}`, effect: "allow", actions: [`bom.update.${i}`], roles: [`role-${i}`] },
    cedar: `permit(principal, action == Action::"bom.update.${i}", resource) ` +
      `when { principal.roles.contains("role-${i}") };`,
  }),
  request: (i) => ({
    ours: { identity: identity([`role-${i}`]), action: `bom.update.${i}`, resource: "bom:b1" },
    cedar: cedarRequest(`bom.update.${i}`, [`role-${i}`], {}),
  }),
};

const resourceGlobs: Shape = {
  rule: (i) => ({
    ours: {
      id: `r-${i}`,
      effect: "allow",
      actions: ["doc.read"],
      resources: [`docs/team-${i}/**`],
    },
    cedar: `permit(principal, action == Action::"doc.read", resource) ` +
      `when { context.path like "docs/team-${i}/*" };`,
  }),
  request: (i) => {
    const path = `docs/team-${i}/specs/gearbox-rev-7.pdf`;
    return {
      ours: { identity: identity(["staff"]), action: "doc.read", resource: path },
      cedar: cedarRequest("doc.read", ["staff"], { path }),
    };
  },
};

const anyAction: Shape = {
  rule: (i) => ({
    ours: { id: `r-${i}`, effect: "allow", actions: ["**"], roles: [`team-${i}`] },
    cedar: `permit(principal, action, resource) when { principal.roles.contains("team-${i}") };`,
  }),
  request: (i) => ({
    ours: { identity: identity([`team-${i}`]), action: "bom.release", resource: "bom:b1" },
    cedar: cedarRequest("bom.release", [`team-${i}`], {}),
  }),
};

const conditions: Shape = {
  rule: (i) => ({
    ours: {
      id: `r-${i}`,
      effect: "allow",
      actions: ["po.approve"],
      conditions: [
        { attr: "plant", op: "eq", value: `plant-${i}` },
        { attr: "amount", op: "lte", value: 10_000 },
      ],
    },
    cedar: `permit(principal, action == Action::"po.approve", resource) ` +
      `when { context.plant == "plant-${i}" && context.amount <= 10000 };`,
  }),
  request: (i) => {
    const attributes = { plant: `plant-${i}`, amount: 2_500 };
    return {
      ours: { identity: identity(["buyer"]), action: "po.approve", resource: "po:7", attributes },
      cedar: cedarRequest("po.approve", ["buyer"], attributes),
    };
  },
};

const deepActions: Shape = {
  rule: (i) => ({
    ours: { id: `r-${i}`, effect: "allow", actions: [`plm.**.step-${i}`] },
    cedar: `permit(principal, action, resource) when { context.action like "plm.*.step-${i}" };`,
  }),
  request: (i) => {
    const action = `plm.bom.release.step-${i}`;
    return {
      ours: { identity: identity(["staff"]), action, resource: "bom:b1" },
      cedar: cedarRequest(action, ["staff"], { action }),
    };
  },
};

const MIX = [literal, anyAction, resourceGlobs, deepActions, conditions] as const;
const mix: Shape = {
  rule: (i) => MIX[i % MIX.length]!.rule(i),
  request: (i) => MIX[i % MIX.length]!.request(i),
};

const SHAPES: readonly [name: string, shape: Shape][] = [
  ["literal actions", literal],
  ["shared action, resource globs", resourceGlobs],
  ["** actions", anyAction],
  ["plm.**.step-N actions", deepActions],
  ["conditions", conditions],
  ["mix", mix],
];

let cedarSets = 0;
function preparse(policies: readonly string[]): string {
  const id = `set-${cedarSets++}`;
  const staticPolicies = Object.fromEntries(policies.map((text, i) => [`p${i}`, text]));
  const parsed = cedar.preparsePolicySet(id, { staticPolicies });
  if (parsed.type !== "success") {
    throw new Error(`Cedar refused the policies: ${JSON.stringify(parsed)}`);
  }
  return id;
}

/** Both engines' verdicts must agree (and name the expected rule) before timing. */
function agree(
  engine: PolicyEngine,
  request: PolicyRequest,
  call: cedar.StatefulAuthorizationCall,
  expected: "allow" | "deny",
  ruleIndex: number | undefined,
): void {
  const ours = engine.decide(request);
  const theirs = cedar.statefulIsAuthorized(call);
  const ok = ours.decision === expected && theirs.type === "success" &&
    theirs.response.decision === expected &&
    (ruleIndex === undefined
      ? ours.matchedRuleIds.length === 0 && theirs.response.diagnostics.reason.length === 0
      : ours.matchedRuleIds.join() === `r-${ruleIndex}` &&
        theirs.response.diagnostics.reason.join() === `p${ruleIndex}`);
  if (!ok) throw new Error(`Engines disagree: ${JSON.stringify({ ours, theirs })}`);
}

for (const [name, shape] of SHAPES) {
  for (const n of SIZES) {
    const rules = Array.from({ length: n }, (_, i) => shape.rule(i));
    const engine = new PolicyEngine({ id: `bench-${n}`, rules: rules.map((rule) => rule.ours) });
    const { ours: request, cedar: call } = shape.request(n - 1);
    const theirs = { ...call, preparsedPolicySetId: preparse(rules.map((rule) => rule.cedar)) };
    agree(engine, request, theirs, "allow", n - 1);

    const group = `${name}, ${n} rules`;
    Deno.bench({
      name: `cedar-wasm statefulIsAuthorized (${group})`,
      group,
      baseline: true,
      fn: () => {
        cedar.statefulIsAuthorized(theirs);
      },
    });
    Deno.bench({
      name: `PolicyEngine.decide (${group})`,
      group,
      fn: () => {
        engine.decide(request);
      },
    });
    Deno.bench({
      name: `PolicyEngine.decide scaling (${group})`,
      group: `PolicyEngine scaling, ${name}`,
      baseline: n === SIZES[0],
      fn: () => {
        engine.decide(request);
      },
    });
  }
}

// Adversarial: a `**`/`*` mix against the longest resources a request may carry.
const LONGEST = 1_024;
const ADVERSARIAL: readonly [name: string, pattern: string, like: string, resource: string][] = [
  [
    "docs/**.*.*.pdf, 1,024 dots (no match)",
    "docs/**.*.*.pdf",
    "docs/*.*.*.pdf",
    `docs/${".".repeat(LONGEST - 6)}x`,
  ],
  [
    "docs/**.*.*.pdf, 1,024 characters of a. (match)",
    "docs/**.*.*.pdf",
    "docs/*.*.*.pdf",
    `docs/${"a.".repeat((LONGEST - 8) / 2)}pdf`,
  ],
  [
    "docs/**(.*)x60.pdf, 1,024 dots (no match)",
    `docs/**${".*".repeat(60)}.pdf`,
    `docs/*${".*".repeat(60)}.pdf`,
    `docs/${".".repeat(LONGEST - 6)}x`,
  ],
];
for (const [name, pattern, like, resource] of ADVERSARIAL) {
  const matches = !resource.endsWith("x");
  const engine = new PolicyEngine({
    rules: [{ id: "r-0", effect: "allow", actions: ["doc.read"], resources: [pattern] }],
  });
  const request = { identity: identity(["staff"]), action: "doc.read", resource };
  const call = {
    ...cedarRequest("doc.read", ["staff"], { path: resource }),
    preparsedPolicySetId: preparse([
      `permit(principal, action == Action::"doc.read", resource) when { context.path like "${like}" };`,
    ]),
  };
  if (resource.length !== LONGEST) throw new Error(`${name}: ${resource.length} characters`);
  agree(engine, request, call, matches ? "allow" : "deny", matches ? 0 : undefined);
  Deno.bench({
    name: `cedar-wasm statefulIsAuthorized (adversarial ${name})`,
    group: `adversarial ${name}`,
    baseline: true,
    fn: () => {
      cedar.statefulIsAuthorized(call);
    },
  });
  Deno.bench({
    name: `PolicyEngine.decide (adversarial ${name})`,
    group: `adversarial ${name}`,
    fn: () => {
      engine.decide(request);
    },
  });
}
