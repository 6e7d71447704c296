// lintPolicySet: unreachable, shadowed and never-matching rules; and the JSON
// Schema of policy files.
import assert from "node:assert/strict";
import {
  lintPolicySet,
  type PolicyRule,
  type PolicySet,
  policySetJsonSchema,
} from "../../control_plane/mod.ts";

const APPROVAL = {
  approverRoles: ["cm"],
  quorum: 1,
  timeoutSeconds: 60,
  onExpiry: "deny",
} as const;

function kinds(rules: PolicyRule[]): string[] {
  return lintPolicySet({ rules }).map((f) => `${f.kind} ${f.ruleId}${f.by ? ` by ${f.by}` : ""}`);
}

Deno.test("a clean policy set has no findings", () => {
  assert.deepEqual(
    kinds([
      { id: "read", effect: "allow", actions: ["bom.read"] },
      { id: "write", effect: "allow", actions: ["bom.update"], roles: ["planner"] },
      { id: "no-delete", effect: "deny", actions: ["bom.delete"], actorKinds: ["agent"] },
      { id: "big", effect: "require_approval", actions: ["bom.update"], approval: APPROVAL },
      // Narrower first, wider later: the later one is not shadowed.
      { id: "one", effect: "allow", actions: ["part.read"], resources: ["part:1"] },
      { id: "all-parts", effect: "allow", actions: ["part.read"] },
    ]),
    [],
  );
});

Deno.test("a catch-all makes every rule of lower precedence unreachable, whatever the order", () => {
  assert.deepEqual(
    kinds([
      { id: "read", effect: "allow", actions: ["bom.read"] },
      { id: "ask", effect: "require_approval", actions: ["bom.update"], approval: APPROVAL },
      { id: "stop", effect: "deny", actions: ["**"], resources: ["**"] },
      { id: "later", effect: "allow", actions: ["part.read"] },
      { id: "also-deny", effect: "deny", actions: ["bom.delete"] },
    ]),
    [
      "unreachable read by stop",
      "unreachable ask by stop",
      "unreachable later by stop",
      "shadowed also-deny by stop",
    ],
  );
  // A catch-all require_approval hides allow rules only; a scoped "**" is no catch-all.
  assert.deepEqual(
    kinds([
      { id: "ask-all", effect: "require_approval", actions: ["**"], approval: APPROVAL },
      { id: "read", effect: "allow", actions: ["bom.read"] },
      { id: "deny", effect: "deny", actions: ["bom.delete"] },
      { id: "agents", effect: "deny", actions: ["**"], actorKinds: ["agent"] },
    ]),
    ["unreachable read by ask-all"],
  );
});

Deno.test("a rule is shadowed by an earlier one with the same effect and a wider match", () => {
  assert.deepEqual(
    kinds([
      { id: "boms", effect: "allow", actions: ["bom.*"], resources: ["bom:**"] },
      { id: "read", effect: "allow", actions: ["bom.read"], resources: ["bom:1"] },
      { id: "up", effect: "allow", actions: ["bom.up*"], resources: ["bom:1/*"] },
      { id: "deep", effect: "allow", actions: ["bom.x.y"] }, // bom.* stays in one segment
      { id: "any-resource", effect: "allow", actions: ["bom.read"] }, // wider resources
      { id: "roles", effect: "deny", actions: ["bom.delete"], roles: ["a", "b"] },
      { id: "fewer-roles", effect: "deny", actions: ["bom.delete"], roles: ["a"] },
      { id: "more-roles", effect: "deny", actions: ["bom.delete"], roles: ["a", "c"] },
      { id: "risky", effect: "deny", actions: ["po.create"], minRisk: "medium" },
      { id: "riskier", effect: "deny", actions: ["po.create"], minRisk: "high" },
      { id: "less-risky", effect: "deny", actions: ["po.create"], minRisk: "low" },
      {
        id: "cond",
        effect: "deny",
        actions: ["po.pay"],
        conditions: [{ attr: "amount", op: "gt", value: 10 }],
      },
      {
        id: "cond-more",
        effect: "deny",
        actions: ["po.pay"],
        tenants: ["t1"],
        conditions: [
          { attr: "amount", op: "gt", value: 10 },
          { attr: "site", op: "eq", value: "lyon" },
        ],
      },
    ]),
    [
      "shadowed read by boms",
      "shadowed up by boms",
      "shadowed fewer-roles by roles",
      "shadowed riskier by risky",
      "shadowed cond-more by cond",
    ],
  );
});

Deno.test("require_approval rules shadow only with the same approval spec", () => {
  assert.deepEqual(
    kinds([
      { id: "a", effect: "require_approval", actions: ["bom.*"], approval: APPROVAL },
      {
        id: "b",
        effect: "require_approval",
        actions: ["bom.update"],
        approval: { ...APPROVAL, quorum: 2 },
      },
      { id: "c", effect: "require_approval", actions: ["bom.read"], approval: APPROVAL },
    ]),
    ["shadowed c by a"],
  );
});

Deno.test("patterns and conditions that can never match are named by path", () => {
  const set: PolicySet = {
    rules: [
      { id: "dots", effect: "allow", actions: ["bom.read", "bom..read", ".bom", "bom."] },
      { id: "chars", effect: "allow", actions: ["bom:read", "bom read", "bom.*"] },
      {
        id: "absent",
        effect: "deny",
        actions: ["x.a"],
        conditions: [{ attr: "a", op: "exists", value: false }, { attr: "a", op: "ne", value: 1 }],
      },
      {
        id: "eq-in",
        effect: "deny",
        actions: ["x.b"],
        conditions: [{ attr: "a", op: "eq", value: 1 }, { attr: "a", op: "in", value: [2, 3] }],
      },
      {
        id: "eq-ne",
        effect: "deny",
        actions: ["x.c"],
        conditions: [{ attr: "a", op: "eq", value: "v" }, { attr: "a", op: "ne", value: "v" }],
      },
      {
        id: "eq-range",
        effect: "deny",
        actions: ["x.d"],
        conditions: [{ attr: "a", op: "eq", value: 5 }, { attr: "a", op: "gt", value: 5 }],
      },
      {
        id: "range",
        effect: "deny",
        actions: ["x.e"],
        conditions: [{ attr: "a", op: "gte", value: 5 }, { attr: "a", op: "lt", value: 5 }],
      },
      {
        id: "types",
        effect: "deny",
        actions: ["x.f"],
        conditions: [{ attr: "a", op: "gt", value: 5 }, { attr: "a", op: "lt", value: "z" }],
      },
      {
        id: "fine-range",
        effect: "deny",
        actions: ["x.g"],
        conditions: [
          { attr: "a", op: "gte", value: 5 },
          { attr: "a", op: "lte", value: 5 },
          { attr: "b", op: "exists", value: false },
        ],
      },
      { id: "system", effect: "deny", actions: ["x.h"], actorKinds: ["system"], roles: ["admin"] },
      {
        id: "system-ok",
        effect: "deny",
        actions: ["x.i"],
        actorKinds: ["system", "human"],
        roles: ["a"],
      },
    ],
  };
  const findings = lintPolicySet(set);
  assert.deepEqual(
    findings.map((f) => [f.ruleId, f.path.join(".")]),
    [
      ["dots", "rules.0.actions.1"],
      ["dots", "rules.0.actions.2"],
      ["dots", "rules.0.actions.3"],
      ["chars", "rules.1.actions.0"],
      ["chars", "rules.1.actions.1"],
      ["absent", "rules.2.conditions"],
      ["eq-in", "rules.3.conditions"],
      ["eq-ne", "rules.4.conditions"],
      ["eq-range", "rules.5.conditions"],
      ["range", "rules.6.conditions"],
      ["types", "rules.7.conditions"],
      ["system", "rules.9.roles"],
    ],
  );
  assert.ok(findings.every((f) => f.kind === "never_matches"));
  assert.match(findings[3]!.message, /not ":"/);
});

Deno.test("the JSON Schema describes rules and requires approval exactly for require_approval", () => {
  const schema = policySetJsonSchema() as {
    $schema: string;
    required: string[];
    additionalProperties: boolean;
    properties: { rules: { items: Record<string, unknown> } };
  };
  assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.deepEqual(schema.required, ["rules"]);
  assert.equal(schema.additionalProperties, false);
  const rule = schema.properties.rules.items;
  assert.deepEqual(rule.required, ["id", "effect", "actions"]);
  assert.deepEqual(rule.then, { required: ["approval"] });
  assert.deepEqual(rule.else, { not: { required: ["approval"] } });
  assert.ok(!JSON.stringify(schema).includes("readOnly"));
});
