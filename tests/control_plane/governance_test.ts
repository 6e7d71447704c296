import assert from "node:assert/strict";
import { seededRandom } from "../_seeded_random.ts";
import {
  type ActorKind,
  FakeClock,
  type Identity,
  isPlmError,
  type JsonValue,
} from "../../shared/mod.ts";
import { ControlPlane } from "../../control_plane/control_plane.ts";
import { openStore } from "../../control_plane/store/mod.ts";
import {
  type ApprovalSpec,
  compileGlob,
  type ConditionScalar,
  loadPolicySet,
  parsePolicySet,
  POLICY_LIMITS,
  type PolicyCondition,
  type PolicyEffect,
  PolicyEngine,
  PolicyError,
  type PolicyRequest,
  PolicyRequestSchema,
  type PolicyRule,
  type PolicySet,
  policySetVersion,
  RESOURCE_SEPARATORS,
  RISK_LEVELS,
  type RiskLevel,
  type Verdict,
} from "../../control_plane/governance/mod.ts";

const HUMAN: Identity = { subject: "alice", actorKind: "human", roles: ["planner"], scopes: [] };
const AGENT: Identity = { subject: "a-1", actorKind: "agent", roles: ["bot"], scopes: [] };
const APPROVAL: ApprovalSpec = {
  approverRoles: ["cm"],
  quorum: 1,
  timeoutSeconds: 3600,
  onExpiry: "deny",
};

function request(overrides: Partial<PolicyRequest> = {}): PolicyRequest {
  return { identity: HUMAN, action: "bom.update", resource: "bom:1", ...overrides };
}

function rule(id: string, effect: PolicyEffect, extra: Partial<PolicyRule> = {}): PolicyRule {
  return {
    id,
    effect,
    actions: ["**"],
    ...(effect === "require_approval" ? { approval: APPROVAL } : {}),
    ...extra,
  };
}

function decide(rules: readonly PolicyRule[], req: PolicyRequest = request()): Verdict {
  return new PolicyEngine({ rules }).decide(req);
}

function invalid(fn: () => unknown): PolicyError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PolicyError, `expected a PolicyError, got ${String(err)}`);
    assert.equal(err.code, "ERR_POLICY_INVALID");
    return err;
  }
  assert.fail("expected ERR_POLICY_INVALID");
}

// ---------------------------------------------------------------------------
// default deny and precedence

Deno.test("PolicyEngine.decide() denies by default", async (t) => {
  await t.step("with no rules", () => {
    const verdict = decide([]);
    assert.equal(verdict.decision, "deny");
    assert.equal(verdict.code, "ERR_FORBIDDEN");
    assert.deepEqual(verdict.matchedRuleIds, []);
    assert.match(verdict.reason, /default deny/);
  });
  await t.step("on one line, whatever the request holds", () => {
    const verdict = decide([], request({ action: "bom.\nupdate", resource: "bom:1\r\n" }));
    assert.ok(!/[\r\n]/.test(verdict.reason), verdict.reason);
  });
  await t.step("when no rule matches", () => {
    const verdict = decide([rule("other", "allow", { actions: ["part.read"] })]);
    assert.equal(verdict.decision, "deny");
    assert.deepEqual(verdict.matchedRuleIds, []);
    assert.match(verdict.reason, /bom\.update on bom:1/);
  });
});

function subsets<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let mask = 1; mask < 1 << items.length; mask++) {
    out.push(items.filter((_, i) => mask & (1 << i)));
  }
  return out;
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest])
  );
}

Deno.test("PolicyEngine.decide() applies deny > require_approval > allow in every combination", async (t) => {
  const effects: PolicyEffect[] = ["allow", "deny", "require_approval"];
  for (const subset of subsets(effects)) {
    for (const order of permutations(subset)) {
      await t.step(order.join(" + "), () => {
        const verdict = decide(order.map((effect) => rule(`r-${effect}`, effect)));
        const expected: PolicyEffect = order.includes("deny")
          ? "deny"
          : order.includes("require_approval")
          ? "require_approval"
          : "allow";
        assert.equal(verdict.decision, expected);
        assert.deepEqual(verdict.matchedRuleIds, order.map((effect) => `r-${effect}`));
        assert.equal(verdict.code, expected === "deny" ? "ERR_FORBIDDEN" : undefined);
        assert.deepEqual(verdict.approval, expected === "require_approval" ? APPROVAL : undefined);
      });
    }
  }
});

// ---------------------------------------------------------------------------
// globs

Deno.test("compileGlob() matches actions with * within a segment and ** across", async (t) => {
  const cases: [pattern: string, value: string, expected: boolean][] = [
    ["bom.update", "bom.update", true],
    ["bom.update", "bom.updates", false],
    ["bom.update", "xbom.update", false],
    ["bom.*", "bom.update", true],
    ["bom.*", "bom.", true],
    ["bom.*", "bom.update.approve", false],
    ["bom.*", "bom", false],
    ["bom.**", "bom.update", true],
    ["bom.**", "bom.update.approve", true],
    ["bom.**", "bom", false],
    ["bom.**", "bomx.update", false],
    ["*", "bom", true],
    ["*", "bom.update", false],
    ["**", "bom.update.approve", true],
    ["**", "", true],
    ["bom.up*", "bom.update", true],
    ["bom.up*", "bom.up", true],
    ["bom.up*", "bom.up.x", false],
    ["*.update", "bom.update", true],
    ["*.update", "a.bom.update", false],
    ["**.update", "a.bom.update", true],
    ["bom.*.approve", "bom.update.approve", true],
    ["bom.*.approve", "bom.update.x.approve", false],
    ["bom.**.approve", "bom.update.x.approve", true],
    ["b?m.(x)", "b?m.(x)", true],
    ["b?m.(x)", "bam.(x)", false],
    ["a+b.*", "a+b.c", true],
    ["a+b.*", "aab.c", false],
    ["***", "a.b", true],
    ["u*d*e", "update", true],
    ["u*d*e", "ude", true],
    ["u*d*e", "u.d.e", false],
    ["u*d*e", "updat", false],
    ["*t", "part", true],
    ["*t", "a.t", false],
    ["a*a", "a", false],
    ["a*a", "aa", true],
    ["a*b*b", "ab", false],
    ["a*b*b", "abb", true],
    ["*b*", "abc", true],
    ["*b*", "a.bc", false],
    ["bom.**.approve", "bom.approve", false],
    ["u**e", "up.to.date", true],
    ["a**b**c", "a.x.b.y.c", true],
    ["a**b**c", "abc", true],
    ["a**b**c", "a.c", false],
    ["a**b**b", "ab", false],
    ["a**b**b", "a.b.b", true],
    ["**.x.**", "a.x.b", true],
    ["**.x.**", "x.b", false],
    ["bom.**.*", "bom.a.b", true],
    ["bom.**.*", "bom.a", false],
    ["bom.*.**", "bom.a.b.c", true],
  ];
  for (const [pattern, value, expected] of cases) {
    await t.step(`${pattern} vs ${value || "(empty)"}`, () => {
      assert.equal(compileGlob(pattern)(value), expected);
    });
  }
});

Deno.test("compileGlob() splits resources on / and :", async (t) => {
  const cases: [pattern: string, value: string, expected: boolean][] = [
    ["bom:*", "bom:1", true],
    ["bom:*", "bom:1/rev", false],
    ["bom:**", "bom:1/rev", true],
    ["plm/*/42", "plm/parts/42", true],
    ["plm/*/42", "plm/parts:x/42", false],
    ["plm/**", "plm/parts/42", true],
    ["*", "bom.1", true],
    ["*:*", "tenant-a:bom", true],
    ["*:*", "tenant-a:bom/1", false],
    ["plm/p*s/*", "plm/parts/42", true],
    ["plm/p*s/*", "plm/p/s/42", false],
  ];
  for (const [pattern, value, expected] of cases) {
    await t.step(`${pattern} vs ${value}`, () => {
      assert.equal(compileGlob(pattern, { separators: RESOURCE_SEPARATORS })(value), expected);
    });
  }
});

Deno.test("compileGlob() matches a **/* mix against long values without backtracking", async (t) => {
  const pdfs = compileGlob("docs/**.*.*.pdf", { separators: RESOURCE_SEPARATORS });
  const cases: [value: string, expected: boolean][] = [
    [`docs/${".".repeat(1_995)}x`, false],
    [`docs/${"a.".repeat(997)}x`, false],
    [`docs/${"a.".repeat(997)}pdf`, true],
    [`docs/${"a.".repeat(997)}/x.y.z.pdf`, true],
    [`docs/${"a.".repeat(997)}/x.y.pdf`, false],
    [`docs/${"a.".repeat(997)}/x.pdf`, false],
    [`docs/${"a/".repeat(997)}x.y.z.pdf`, true],
  ];
  for (const [value, expected] of cases) {
    await t.step(`${value.slice(0, 12)}... (${value.length} characters)`, () => {
      assert.equal(pdfs(value), expected);
    });
  }
  await t.step("a pattern of 512 characters (17 words of states)", () => {
    const long = compileGlob(`${"a*".repeat(127)}**b*c`, { separators: RESOURCE_SEPARATORS });
    assert.equal(long(`${"a".repeat(127)}/b/c`), false);
    assert.equal(long(`${"a".repeat(127)}/bc`), true);
    assert.equal(long(`${"ax".repeat(127)}bc`), true);
    assert.equal(long("a".repeat(1_024)), false);
  });
});

/** The documented semantics as a regular expression: the reference for short values. */
function globRegExp(pattern: string, separators: string): RegExp {
  const segment = `[^${separators.replace(/[\\\]^-]/g, "\\$&")}]*`;
  const source = pattern.split(/(\*+)/).map((part) =>
    part === ""
      ? ""
      : part === "*"
      ? segment
      : part.startsWith("**")
      ? "[^]*"
      : part.startsWith("*")
      ? segment
      : part.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")
  ).join("");
  return new RegExp(`^${source}$`);
}

Deno.test("compileGlob() agrees with a regular expression on random patterns and values", () => {
  const random = seededRandom(0x61_0b);
  const pick = (alphabet: string): string => alphabet[Math.floor(random() * alphabet.length)]!;
  const text = (alphabet: string, max: number): string =>
    Array.from({ length: Math.floor(random() * (max + 1)) }, () => pick(alphabet)).join("");
  const seen = { match: 0, miss: 0, mixed: 0, long: 0 };
  for (let round = 0; round < 4_000; round++) {
    const separators = round % 2 === 0 ? "." : RESOURCE_SEPARATORS;
    // Every 4th pattern has a literal middle long enough to need several words of states.
    const padding = round % 4 === 3 ? "ab".repeat(10 + Math.floor(random() * 20)) : "";
    const pattern = text("ab.:/**", 6) + padding + text("ab.:/**", 6);
    const expected = globRegExp(pattern, separators);
    const match = compileGlob(pattern, { separators });
    if (/(^|[^*])\*([^*]|$)/.test(pattern) && pattern.includes("**")) seen.mixed++;
    if (padding !== "") seen.long++;
    for (let i = 0; i < 20; i++) {
      const value = random() < 0.5
        ? text("ab.:/", 8) + padding + text("ab.:/", 8)
        : pattern.replace(/\*+/g, () => text("ab.:/", 3));
      const actual = match(value);
      assert.equal(actual, expected.test(value), `${pattern} vs ${value} (${separators})`);
      if (actual) seen.match++;
      else seen.miss++;
    }
  }
  // The generator reaches both answers, the automaton and the multi-word sets.
  for (const [key, count] of Object.entries(seen)) assert.ok(count > 200, `${key}: ${count}`);
});

Deno.test("compileGlob() rejects a pattern that is not a string", () => {
  assert.throws(() => compileGlob(1 as unknown as string), TypeError);
});

Deno.test("PolicyEngine.decide() uses action globs through the index", async (t) => {
  const engine = new PolicyEngine({
    rules: [
      rule("exact", "allow", { actions: ["bom.update"] }),
      rule("one-level", "allow", { actions: ["bom.*"] }),
      rule("any-depth", "allow", { actions: ["bom.**"] }),
      rule("middle", "allow", { actions: ["bom.*.approve"] }),
      rule("suffix", "allow", { actions: ["*.read"] }),
      rule("two", "allow", { actions: ["part.read", "part.write"] }),
      rule("partial", "allow", { actions: ["bom.up*"] }),
      rule("deep-suffix", "allow", { actions: ["**.approve"] }),
      rule("partial-head", "allow", { actions: ["p*t.*"] }),
    ],
  });
  const cases: [action: string, ids: string[]][] = [
    ["bom.update", ["exact", "one-level", "any-depth", "partial"]],
    ["bom.update.approve", ["any-depth", "middle", "deep-suffix"]],
    ["bom.read", ["one-level", "any-depth", "suffix"]],
    ["part.read", ["suffix", "two", "partial-head"]],
    ["part.write", ["two", "partial-head"]],
    ["pt.x", ["partial-head"]],
    ["x.y.z.approve", ["deep-suffix"]],
    ["part", []],
    ["bom", []],
    ["", []],
  ];
  for (const [action, ids] of cases) {
    await t.step(action || "(empty)", () => {
      assert.deepEqual(engine.decide(request({ action })).matchedRuleIds, ids);
    });
  }
});

// ---------------------------------------------------------------------------
// matcher fields

Deno.test("PolicyEngine.decide() matches every rule field", async (t) => {
  const cases: {
    name: string;
    extra: Partial<PolicyRule>;
    matches: Partial<PolicyRequest>[];
    misses: Partial<PolicyRequest>[];
  }[] = [
    {
      name: "actions (any of)",
      extra: { actions: ["bom.read", "bom.update"] },
      matches: [{ action: "bom.read" }, { action: "bom.update" }],
      misses: [{ action: "bom.delete" }],
    },
    {
      name: "resources (any of)",
      extra: { resources: ["bom:*", "plm/parts/**"] },
      matches: [{ resource: "bom:1" }, { resource: "plm/parts/9/rev" }],
      misses: [{ resource: "bom:1/rev" }, { resource: "plm/docs/1" }],
    },
    {
      name: "actorKinds (any of)",
      extra: { actorKinds: ["agent", "service"] },
      matches: [
        { identity: AGENT },
        { identity: { ...HUMAN, actorKind: "service" } },
      ],
      misses: [{ identity: HUMAN }, { identity: { ...HUMAN, actorKind: "system" } }],
    },
    {
      name: "roles (any of)",
      extra: { roles: ["planner", "cm"] },
      matches: [
        { identity: HUMAN },
        { identity: { ...HUMAN, roles: ["viewer", "cm"] } },
      ],
      misses: [{ identity: { ...HUMAN, roles: ["viewer"] } }, {
        identity: { ...HUMAN, roles: [] },
      }],
    },
    {
      name: "tenants (request tenant, else identity tenant)",
      extra: { tenants: ["t1", "t2"] },
      matches: [
        { tenant: "t1" },
        { identity: { ...HUMAN, tenant: "t2" } },
        { identity: { ...HUMAN, tenant: "t1" }, tenant: "t1" },
      ],
      misses: [{}, { tenant: "t3" }, { identity: { ...HUMAN, tenant: "t3" } }],
    },
    {
      name: "minRisk",
      extra: { minRisk: "high" },
      matches: [{ risk: "high" }, { risk: "critical" }],
      misses: [{}, { risk: "low" }, { risk: "medium" }],
    },
    {
      name: "conditions (all of)",
      extra: {
        conditions: [
          { attr: "amount", op: "lte", value: 1000 },
          { attr: "region", op: "eq", value: "eu" },
        ],
      },
      matches: [{ attributes: { amount: 1000, region: "eu" } }],
      misses: [
        { attributes: { amount: 1001, region: "eu" } },
        { attributes: { amount: 5, region: "us" } },
        { attributes: { amount: 5 } },
        {},
      ],
    },
  ];
  for (const { name, extra, matches, misses } of cases) {
    await t.step(name, () => {
      const engine = new PolicyEngine({ rules: [rule("r", "allow", extra)] });
      for (const overrides of matches) {
        assert.equal(
          engine.decide(request(overrides)).decision,
          "allow",
          JSON.stringify(overrides),
        );
      }
      for (const overrides of misses) {
        const verdict = engine.decide(request(overrides));
        assert.equal(verdict.decision, "deny", JSON.stringify(overrides));
        assert.deepEqual(verdict.matchedRuleIds, []);
      }
    });
  }
});

Deno.test("PolicyEngine.decide() checks every minRisk level", async (t) => {
  for (const [ruleIndex, minRisk] of RISK_LEVELS.entries()) {
    await t.step(minRisk, () => {
      const engine = new PolicyEngine({ rules: [rule("r", "allow", { minRisk })] });
      for (const [requestIndex, risk] of RISK_LEVELS.entries()) {
        const expected = requestIndex >= ruleIndex ? "allow" : "deny";
        assert.equal(engine.decide(request({ risk })).decision, expected, risk);
      }
    });
  }
});

Deno.test("PolicyEngine.decide() denies a cross-tenant request before any rule", () => {
  const engine = new PolicyEngine({ rules: [rule("all", "allow")] });
  const verdict = engine.decide(
    request({ identity: { ...HUMAN, tenant: "t1" }, tenant: "t2" }),
  );
  assert.equal(verdict.decision, "deny");
  assert.equal(verdict.code, "ERR_FORBIDDEN");
  assert.deepEqual(verdict.matchedRuleIds, []);
  assert.match(verdict.reason, /tenant t1 cannot act in tenant t2/);
});

Deno.test("PolicyEngine.decide() refuses an action or resource longer than POLICY_LIMITS", async (t) => {
  const engine = new PolicyEngine({ rules: [rule("all", "allow")] });
  const cases: [field: "action" | "resource", max: number][] = [
    ["action", POLICY_LIMITS.actionLength],
    ["resource", POLICY_LIMITS.resourceLength],
  ];
  for (const [field, max] of cases) {
    await t.step(field, () => {
      assert.equal(engine.decide(request({ [field]: "a".repeat(max) })).decision, "allow");
      assert.throws(
        () => engine.decide(request({ [field]: "a".repeat(max + 1) })),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
      );
      assert.throws(
        () => engine.decide(request({ [field]: 42 as unknown as string })),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
      );
    });
  }
});

Deno.test("PolicyEngine.decide() matches a **/* mix against the longest resource", () => {
  const engine = new PolicyEngine({
    rules: [rule("pdfs", "allow", { resources: ["docs/**.*.*.pdf"] })],
  });
  const tail = (end: string) =>
    `docs/${".".repeat(POLICY_LIMITS.resourceLength - 5 - end.length)}${end}`;
  const miss = engine.decide(request({ resource: tail("x") }));
  assert.deepEqual(miss.matchedRuleIds, []);
  const hit = engine.decide(request({ resource: tail("a.b.pdf") }));
  assert.deepEqual(hit.matchedRuleIds, ["pdfs"]);
});

Deno.test("PolicyEngine.decide() rejects an unknown risk level, naming request.risk", () => {
  const engine = new PolicyEngine({ rules: [] });
  assert.throws(
    () => engine.decide(request({ risk: "extreme" as RiskLevel })),
    (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /request\.risk/.test(err.message),
  );
});

// ---------------------------------------------------------------------------
// conditions

Deno.test("PolicyEngine.decide() evaluates every condition operator", async (t) => {
  const cases: {
    condition: PolicyCondition;
    holds: Record<string, JsonValue>[];
    fails: Record<string, JsonValue>[];
  }[] = [
    {
      condition: { attr: "x", op: "eq", value: 5 },
      holds: [{ x: 5 }],
      fails: [{ x: 6 }, { x: "5" }, {}, { x: [5] }],
    },
    {
      condition: { attr: "x", op: "eq", value: null },
      holds: [{ x: null }],
      fails: [{}, { x: 0 }],
    },
    {
      condition: { attr: "x", op: "ne", value: "eu" },
      holds: [{ x: "us" }, { x: 1 }, { x: { eu: true } }],
      fails: [{ x: "eu" }, {}],
    },
    {
      condition: { attr: "x", op: "in", value: ["a", 1, true] },
      holds: [{ x: "a" }, { x: 1 }, { x: true }],
      fails: [{ x: "b" }, { x: "1" }, { x: ["a"] }, {}],
    },
    {
      condition: { attr: "x", op: "lt", value: 10 },
      holds: [{ x: 9 }, { x: -1 }],
      fails: [{ x: 10 }, { x: 11 }, { x: "9" }, {}],
    },
    {
      condition: { attr: "x", op: "lte", value: 10 },
      holds: [{ x: 10 }, { x: 9.5 }],
      fails: [{ x: 10.5 }, { x: null }, {}],
    },
    {
      condition: { attr: "x", op: "gt", value: 10 },
      holds: [{ x: 11 }],
      fails: [{ x: 10 }, { x: true }, {}],
    },
    {
      condition: { attr: "x", op: "gte", value: 10 },
      holds: [{ x: 10 }, { x: 100 }],
      fails: [{ x: 9 }, {}],
    },
    {
      condition: { attr: "x", op: "gte", value: "m" },
      holds: [{ x: "m" }, { x: "z" }],
      fails: [{ x: "a" }, { x: 100 }],
    },
    {
      condition: { attr: "x", op: "exists" },
      holds: [{ x: null }, { x: 0 }, { x: false }],
      fails: [{}, { y: 1 }],
    },
    {
      condition: { attr: "x", op: "exists", value: false },
      holds: [{}, { y: 1 }],
      fails: [{ x: null }],
    },
    {
      condition: { attr: "toString", op: "exists" },
      holds: [{ toString: 1 }],
      fails: [{}],
    },
  ];
  for (const { condition, holds, fails } of cases) {
    await t.step(`${condition.op} ${JSON.stringify(condition.value)}`, () => {
      const engine = new PolicyEngine({ rules: [rule("c", "allow", { conditions: [condition] })] });
      for (const attributes of holds) {
        assert.equal(
          engine.decide(request({ attributes })).decision,
          "allow",
          JSON.stringify(attributes),
        );
      }
      for (const attributes of fails) {
        assert.equal(
          engine.decide(request({ attributes })).decision,
          "deny",
          JSON.stringify(attributes),
        );
      }
    });
  }
  await t.step("without attributes at all", () => {
    const engine = new PolicyEngine({
      rules: [
        rule("absent", "allow", { conditions: [{ attr: "x", op: "exists", value: false }] }),
        rule("eq", "deny", { conditions: [{ attr: "x", op: "eq", value: 1 }] }),
      ],
    });
    assert.deepEqual(engine.decide(request()).matchedRuleIds, ["absent"]);
  });
});

// ---------------------------------------------------------------------------
// explanations and approvals

Deno.test("PolicyEngine.decide() explains with every matched id and a one-line reason", async (t) => {
  const rules: PolicyRule[] = [
    rule("allow-edit", "allow", { actions: ["bom.*"] }),
    rule("never", "deny", { actions: ["part.*"] }),
    rule("big", "require_approval", {
      description: "Large\nchanges need a CM",
      conditions: [{ attr: "amount", op: "gt", value: 100 }],
    }),
    rule("freeze", "deny", { actions: ["bom.update"], resources: ["bom:frozen"] }),
    rule("freeze-2", "deny", { resources: ["bom:frozen"] }),
  ];
  const engine = new PolicyEngine({ rules });
  await t.step("allow", () => {
    const verdict = engine.decide(request());
    assert.equal(verdict.decision, "allow");
    assert.deepEqual(verdict.matchedRuleIds, ["allow-edit"]);
    assert.equal(verdict.reason, "Allowed by rule allow-edit");
  });
  await t.step("require_approval quotes the description on one line", () => {
    const verdict = engine.decide(request({ attributes: { amount: 500 } }));
    assert.equal(verdict.decision, "require_approval");
    assert.deepEqual(verdict.matchedRuleIds, ["allow-edit", "big"]);
    assert.equal(verdict.reason, "Approval required by rule big: Large changes need a CM");
    assert.ok(!verdict.reason.includes("\n"));
  });
  await t.step("deny names every deny rule and lists the overridden ones", () => {
    const verdict = engine.decide(request({ resource: "bom:frozen", attributes: { amount: 500 } }));
    assert.equal(verdict.decision, "deny");
    assert.deepEqual(verdict.matchedRuleIds, ["allow-edit", "big", "freeze", "freeze-2"]);
    assert.equal(verdict.reason, "Denied by rules freeze, freeze-2");
    assert.equal(verdict.approval, undefined);
  });
  await t.step("the verdict carries the policy version", () => {
    assert.equal(engine.decide(request()).policyVersion, policySetVersion({ rules }));
  });
});

Deno.test("PolicyEngine.decide() merges the approvals of several require_approval rules", () => {
  const verdict = decide([
    rule("a", "require_approval", {
      approval: {
        approverRoles: ["cm", "qa"],
        quorum: 1,
        timeoutSeconds: 600,
        onExpiry: "escalate",
      },
    }),
    rule("b", "require_approval", {
      approval: {
        approverRoles: ["qa", "lead"],
        quorum: 3,
        timeoutSeconds: 7200,
        onExpiry: "deny",
      },
    }),
    rule("c", "require_approval", {
      approval: { approverRoles: ["cm"], quorum: 2, timeoutSeconds: 60, onExpiry: "escalate" },
    }),
  ]);
  assert.equal(verdict.decision, "require_approval");
  assert.deepEqual(verdict.approval, {
    approverRoles: ["cm", "qa", "lead"],
    quorum: 3,
    timeoutSeconds: 60,
    onExpiry: "deny",
  });
  assert.equal(verdict.reason, "Approval required by rules a, b, c");
});

Deno.test("PolicyEngine.decide() escalates on expiry only when every merged rule does", () => {
  const spec = {
    approverRoles: ["cm"],
    quorum: 1,
    timeoutSeconds: 60,
    onExpiry: "escalate",
  } as const;
  const verdict = decide([
    rule("a", "require_approval", { approval: spec }),
    rule("b", "require_approval", { approval: spec }),
  ]);
  assert.equal(verdict.approval?.onExpiry, "escalate");
});

Deno.test("PolicyEngine.decide() is pure: same verdict, request untouched", () => {
  const engine = new PolicyEngine({ rules: [rule("r", "allow")] });
  const req = request({ attributes: { amount: 1 } });
  const copy = structuredClone(req);
  assert.deepEqual(engine.decide(req), engine.decide(req));
  assert.deepEqual(req, copy);
});

// ---------------------------------------------------------------------------
// loading and validation

Deno.test("parsePolicySet() refuses bad policies naming the field path", async (t) => {
  const ok = { id: "ok", effect: "allow", actions: ["*"] };
  const cases: { name: string; input: unknown; path: string }[] = [
    {
      name: "bad effect",
      input: { rules: [ok, { ...ok, id: "b" }, { ...ok, id: "c", effect: "permit" }] },
      path: "rules[2].effect",
    },
    {
      name: "missing actions",
      input: { rules: [{ id: "r", effect: "allow" }] },
      path: "rules[0].actions",
    },
    { name: "empty actions", input: { rules: [{ ...ok, actions: [] }] }, path: "rules[0].actions" },
    { name: "empty id", input: { rules: [{ ...ok, id: "" }] }, path: "rules[0].id" },
    { name: "id with a space", input: { rules: [{ ...ok, id: "a b" }] }, path: "rules[0].id" },
    { name: "id with a comma", input: { rules: [{ ...ok, id: "a,b" }] }, path: "rules[0].id" },
    { name: "unknown key", input: { rules: [{ ...ok, efect: "allow" }] }, path: "rules[0]" },
    {
      name: "bad actor kind",
      input: { rules: [{ ...ok, actorKinds: ["robot"] }] },
      path: "rules[0].actorKinds[0]",
    },
    {
      name: "bad risk",
      input: { rules: [{ ...ok, minRisk: "extreme" }] },
      path: "rules[0].minRisk",
    },
    {
      name: "bad condition operator",
      input: { rules: [{ ...ok, conditions: [{ attr: "a", op: "between", value: 1 }] }] },
      path: "rules[0].conditions[0].op",
    },
    {
      name: "bad condition value",
      input: { rules: [{ ...ok, conditions: [{ attr: "a", op: "lt", value: [1] }] }] },
      path: "rules[0].conditions[0].value",
    },
    {
      name: "approval missing for require_approval",
      input: { rules: [{ ...ok, effect: "require_approval" }] },
      path: "rules[0].approval",
    },
    {
      name: "approval on allow",
      input: { rules: [{ ...ok, approval: APPROVAL }] },
      path: "rules[0].approval",
    },
    {
      name: "quorum 0",
      input: {
        rules: [{ ...ok, effect: "require_approval", approval: { ...APPROVAL, quorum: 0 } }],
      },
      path: "rules[0].approval.quorum",
    },
    {
      name: "no approver roles",
      input: {
        rules: [{
          ...ok,
          effect: "require_approval",
          approval: { ...APPROVAL, approverRoles: [] },
        }],
      },
      path: "rules[0].approval.approverRoles",
    },
    {
      name: "bad onExpiry",
      input: {
        rules: [{
          ...ok,
          effect: "require_approval",
          approval: { ...APPROVAL, onExpiry: "allow" },
        }],
      },
      path: "rules[0].approval.onExpiry",
    },
    { name: "rules missing", input: {}, path: "rules" },
    { name: "not an object", input: 42, path: "(root)" },
  ];
  for (const { name, input, path } of cases) {
    await t.step(name, () => {
      const err = invalid(() => parsePolicySet(input));
      assert.ok(err.message.includes(`${path}: `), `${err.message} names ${path}`);
      assert.ok(err.issues.length > 0);
    });
  }
});

Deno.test("parsePolicySet() refuses a pattern longer than POLICY_LIMITS.patternLength", async (t) => {
  const longest = "a".repeat(POLICY_LIMITS.patternLength);
  await t.step("at the limit it loads", () => {
    const set = parsePolicySet({
      rules: [rule("r", "allow", { actions: [longest], resources: [longest] })],
    });
    assert.equal(set.rules.length, 1);
  });
  for (const field of ["actions", "resources"] as const) {
    await t.step(`one more character in ${field}`, () => {
      const err = invalid(() =>
        parsePolicySet({
          rules: [rule("ok", "allow"), rule("long", "allow", { [field]: ["a", `${longest}a`] })],
        })
      );
      assert.deepEqual(err.issues.map((issue) => issue.path), [["rules", 1, field, 1]]);
    });
  }
});

Deno.test("parsePolicySet() refuses an approval timeout that no deadline can hold", async (t) => {
  const gate = (timeoutSeconds: number) =>
    rule("gate", "require_approval", { approval: { ...APPROVAL, timeoutSeconds } });
  for (const timeoutSeconds of [POLICY_LIMITS.approvalTimeoutSeconds + 1, 1e13, 2 ** 53 - 1]) {
    await t.step(`${timeoutSeconds} s`, () => {
      const err = invalid(() => new PolicyEngine({ rules: [gate(timeoutSeconds)] }));
      assert.deepEqual(err.issues.map((issue) => issue.path), [[
        "rules",
        0,
        "approval",
        "timeoutSeconds",
      ]]);
    });
  }
  await t.step("the longest timeout opens an approval with a valid deadline", async () => {
    await using store = await openStore(":memory:");
    const clock = new FakeClock(Date.UTC(2026, 10, 30));
    const cp = new ControlPlane(store, {
      clock,
      policies: { rules: [gate(POLICY_LIMITS.approvalTimeoutSeconds)] },
    });
    const verdict = await cp.authorize({
      identity: AGENT,
      action: "bom.release",
      resource: "bom:1",
    });
    assert.equal(verdict.decision, "require_approval");
    const requester = { subject: AGENT.subject, kind: AGENT.actorKind };
    const approval = await cp.approvals.request("run-1", verdict.approval!, {
      requester,
      subject: "x",
    });
    const deadline = (await cp.approvals.get(approval.id)).deadline;
    assert.equal(new Date(deadline).toISOString(), "2027-11-30T00:00:00.000Z");
    // A spec given straight to the approval service is held to the same bound.
    const tooLong = { ...APPROVAL, timeoutSeconds: POLICY_LIMITS.approvalTimeoutSeconds + 1 };
    await assert.rejects(
      () => cp.approvals.request("run-2", tooLong, { requester, subject: "x" }),
      (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /spec\.timeoutSeconds/.test(err.message),
    );
    assert.deepEqual((await cp.approvals.list()).map((a) => a.runId), ["run-1"]);
  });
});

Deno.test("parsePolicySet() refuses duplicate rule ids", () => {
  const err = invalid(() =>
    parsePolicySet({
      rules: [rule("a", "allow"), rule("b", "deny"), rule("a", "deny")],
    })
  );
  assert.deepEqual(err.issues.map((issue) => issue.path), [["rules", 2, "id"]]);
  assert.match(err.message, /rules\[2\]\.id: Duplicate rule id a/);
});

Deno.test("parsePolicySet() returns a deeply frozen set", () => {
  const set = parsePolicySet({ rules: [rule("a", "allow", { roles: ["x"] })] });
  assert.ok(Object.isFrozen(set));
  assert.ok(Object.isFrozen(set.rules[0]?.roles));
});

Deno.test("loadPolicySet() parses JSON text and refuses bad JSON", async (t) => {
  await t.step("valid text", () => {
    const set = loadPolicySet(JSON.stringify({ id: "p", rules: [rule("a", "allow")] }));
    assert.equal(set.id, "p");
  });
  await t.step("an object", () => {
    assert.equal(loadPolicySet({ rules: [] }).rules.length, 0);
  });
  await t.step("broken JSON", () => {
    const err = invalid(() => loadPolicySet("{ rules: "));
    assert.match(err.message, /^Cannot parse policy JSON/);
    assert.ok(err.cause instanceof SyntaxError);
  });
  await t.step("valid JSON, bad content", () => {
    const err = invalid(() =>
      loadPolicySet('{"rules":[{"id":"a","effect":"maybe","actions":["*"]}]}')
    );
    assert.ok(isPlmError(err, "ERR_POLICY_INVALID"));
    assert.deepEqual(err.issues[0]?.path, ["rules", 0, "effect"]);
  });
});

Deno.test("new PolicyEngine() validates the policy set", () => {
  invalid(() =>
    new PolicyEngine(
      { rules: [{ id: "a", effect: "nope", actions: ["*"] }] } as unknown as PolicySet,
    )
  );
});

Deno.test("PolicyRequestSchema validates recorded requests", () => {
  assert.ok(
    PolicyRequestSchema.safeParse(JSON.parse(JSON.stringify(request({ risk: "high" })))).success,
  );
  assert.ok(!PolicyRequestSchema.safeParse({ ...request(), identity: { subject: "" } }).success);
  assert.ok(!PolicyRequestSchema.safeParse({ ...request(), extra: 1 }).success);
});

// ---------------------------------------------------------------------------
// versions and what-if

function shuffleKeys(value: unknown, flip: boolean): unknown {
  if (Array.isArray(value)) return value.map((item) => shuffleKeys(item, flip));
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value);
  if (flip) entries.reverse();
  return Object.fromEntries(entries.map(([key, child]) => [key, shuffleKeys(child, !flip)]));
}

Deno.test("policySetVersion() changes with content and not with key order", async (t) => {
  const set: PolicySet = {
    id: "p",
    rules: [
      rule("a", "allow", { roles: ["x"], conditions: [{ attr: "n", op: "lt", value: 3 }] }),
      rule("b", "require_approval", { actions: ["bom.*"] }),
    ],
  };
  const version = policySetVersion(set);
  await t.step("is 64 lowercase hex characters", () => {
    assert.match(version, /^[0-9a-f]{64}$/);
  });
  await t.step("ignores key order at every depth", () => {
    assert.equal(policySetVersion(shuffleKeys(set, true) as PolicySet), version);
    assert.equal(policySetVersion(shuffleKeys(set, false) as PolicySet), version);
    assert.equal(new PolicyEngine(shuffleKeys(set, true) as PolicySet).version, version);
  });
  const changes: [string, PolicySet][] = [
    ["set id", { ...set, id: "q" }],
    ["rule order", { ...set, rules: [...set.rules].reverse() }],
    ["an effect", { ...set, rules: [{ ...set.rules[0]!, effect: "deny" }, set.rules[1]!] }],
    ["a role", { ...set, rules: [{ ...set.rules[0]!, roles: ["y"] }, set.rules[1]!] }],
    [
      "a condition value",
      {
        ...set,
        rules: [
          { ...set.rules[0]!, conditions: [{ attr: "n", op: "lt", value: 4 }] },
          set.rules[1]!,
        ],
      },
    ],
    [
      "an approval quorum",
      {
        ...set,
        rules: [set.rules[0]!, { ...set.rules[1]!, approval: { ...APPROVAL, quorum: 2 } }],
      },
    ],
  ];
  for (const [name, changed] of changes) {
    await t.step(`changes with ${name}`, () => {
      assert.notEqual(policySetVersion(changed), version);
      assert.notEqual(new PolicyEngine(changed).decide(request()).policyVersion, version);
    });
  }
});

Deno.test("PolicyEngine.whatIf() re-decides a recorded request under another set", async (t) => {
  const current = new PolicyEngine({ rules: [rule("edit", "allow", { actions: ["bom.*"] })] });
  const recorded = PolicyRequestSchema.parse(JSON.parse(JSON.stringify(request())));
  await t.step("same set: no difference", () => {
    const result = current.whatIf(recorded, current.policySet);
    assert.equal(result.differs, false);
    assert.deepEqual(result.changes, []);
    assert.deepEqual(result.current, result.candidate);
  });
  await t.step("decision changes", () => {
    const result = current.whatIf(recorded, {
      rules: [rule("edit", "allow", { actions: ["bom.*"] }), rule("stop", "deny")],
    });
    assert.equal(result.current.decision, "allow");
    assert.equal(result.candidate.decision, "deny");
    assert.ok(result.differs);
    assert.deepEqual(result.changes, ["decision", "matchedRuleIds"]);
    assert.notEqual(result.current.policyVersion, result.candidate.policyVersion);
  });
  await t.step("only the matched rules change", () => {
    const result = current.whatIf(recorded, {
      rules: [rule("edit", "allow", { actions: ["bom.*"] }), rule("also", "allow")],
    });
    assert.deepEqual(result.changes, ["matchedRuleIds"]);
    assert.ok(result.differs);
  });
  await t.step("only the approval changes", () => {
    const before = new PolicyEngine({ rules: [rule("ask", "require_approval")] });
    const result = before.whatIf(recorded, {
      rules: [rule("ask", "require_approval", { approval: { ...APPROVAL, quorum: 2 } })],
    });
    assert.deepEqual(result.changes, ["approval"]);
  });
  await t.step("accepts an engine", () => {
    const other = new PolicyEngine({ rules: [] });
    assert.equal(current.whatIf(recorded, other).candidate.policyVersion, other.version);
  });
  await t.step("refuses an invalid set", () => {
    invalid(() => current.whatIf(recorded, { rules: [{ id: "" }] } as unknown as PolicySet));
  });
});

// ---------------------------------------------------------------------------
// the index gives the same verdicts as a naive scan

/** A backtracking glob matcher written from the documented semantics, independent of the engine. */
function naiveGlob(pattern: string, value: string, separators: string): boolean {
  if (pattern === "") return value === "";
  if (pattern.startsWith("**")) {
    const rest = pattern.replace(/^\*+/, "");
    for (let i = 0; i <= value.length; i++) {
      if (naiveGlob(rest, value.slice(i), separators)) return true;
    }
    return false;
  }
  if (pattern[0] === "*") {
    const rest = pattern.slice(1);
    for (let i = 0; i <= value.length; i++) {
      if (naiveGlob(rest, value.slice(i), separators)) return true;
      if (i === value.length || separators.includes(value[i]!)) return false;
    }
    return false;
  }
  return value.length > 0 && pattern[0] === value[0] &&
    naiveGlob(pattern.slice(1), value.slice(1), separators);
}

function naiveCondition(
  condition: PolicyCondition,
  attributes: PolicyRequest["attributes"],
): boolean {
  const present = attributes !== undefined && Object.hasOwn(attributes, condition.attr);
  if (condition.op === "exists") return present === (condition.value ?? true);
  if (!present) return false;
  const value = attributes[condition.attr];
  if (condition.op === "eq") return value === condition.value;
  if (condition.op === "ne") return value !== condition.value;
  if (condition.op === "in") return condition.value.some((item) => item === value);
  if (typeof value !== typeof condition.value) return false;
  const [a, b] = [value as number, condition.value as number];
  return condition.op === "lt"
    ? a < b
    : condition.op === "lte"
    ? a <= b
    : condition.op === "gt"
    ? a > b
    : a >= b;
}

function naiveMatches(r: PolicyRule, req: PolicyRequest): boolean {
  const tenant = req.tenant ?? req.identity.tenant;
  return r.actions.some((p) => naiveGlob(p, req.action, ".")) &&
    (r.resources === undefined || r.resources.some((p) => naiveGlob(p, req.resource, "/:"))) &&
    (r.actorKinds === undefined || r.actorKinds.includes(req.identity.actorKind)) &&
    (r.roles === undefined || r.roles.some((role) => req.identity.roles.includes(role))) &&
    (r.tenants === undefined || (tenant !== undefined && r.tenants.includes(tenant))) &&
    (r.minRisk === undefined ||
      RISK_LEVELS.indexOf(req.risk ?? "low") >= RISK_LEVELS.indexOf(r.minRisk)) &&
    (r.conditions ?? []).every((c) => naiveCondition(c, req.attributes));
}

function naiveDecide(
  set: PolicySet,
  req: PolicyRequest,
): Pick<Verdict, "decision" | "matchedRuleIds" | "approval"> {
  if (
    req.tenant !== undefined && req.identity.tenant !== undefined &&
    req.tenant !== req.identity.tenant
  ) {
    return { decision: "deny", matchedRuleIds: [] };
  }
  const matched = set.rules.filter((r) => naiveMatches(r, req));
  const ids = matched.map((r) => r.id);
  if (matched.some((r) => r.effect === "deny")) return { decision: "deny", matchedRuleIds: ids };
  const approvals = matched.filter((r) => r.effect === "require_approval").map((r) => r.approval!);
  if (approvals.length > 0) {
    return {
      decision: "require_approval",
      matchedRuleIds: ids,
      approval: {
        approverRoles: [...new Set(approvals.flatMap((a) => a.approverRoles))],
        quorum: Math.max(...approvals.map((a) => a.quorum)),
        timeoutSeconds: Math.min(...approvals.map((a) => a.timeoutSeconds)),
        onExpiry: approvals.some((a) => a.onExpiry === "deny") ? "deny" : "escalate",
      },
    };
  }
  return { decision: matched.length > 0 ? "allow" : "deny", matchedRuleIds: ids };
}

function randomPolicy(random: () => number): { set: PolicySet; requests: PolicyRequest[] } {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const maybe = <T>(p: number, make: () => T): T | undefined => (random() < p ? make() : undefined);
  const some = <T>(items: readonly T[]): T[] => {
    const out = items.filter(() => random() < 0.4);
    return out.length > 0 ? out : [pick(items)];
  };
  const heads = ["bom", "part", "run", "*", "b*", "*t", "**"];
  const verbs = ["read", "update", "delete", "*", "up*", "u*d*e", "*e", "**", "u**e"];
  const tails = ["approve", "x", "*", "**", "a*e"];
  const actionPattern = (): string => {
    if (random() < 0.05) return "**";
    const segments = [pick(heads), pick(verbs)];
    if (random() < 0.3) segments.push(pick(tails));
    return segments.join(".");
  };
  const resourcePatterns = [
    "bom:*",
    "bom:**",
    "plm/**",
    "plm/*/1",
    "*:1",
    "**",
    "bom:1",
    "plm/parts/2:rev",
  ];
  const roles = ["a", "b", "c"];
  const tenants = ["t1", "t2"];
  const conditionPool: PolicyCondition[] = [
    { attr: "amount", op: "lt", value: 50 },
    { attr: "amount", op: "gte", value: 20 },
    { attr: "amount", op: "in", value: [10, 30] },
    { attr: "region", op: "eq", value: "eu" },
    { attr: "region", op: "ne", value: "eu" },
    { attr: "region", op: "exists" },
    { attr: "region", op: "exists", value: false },
    { attr: "flag", op: "eq", value: true },
  ];
  const ruleCount = Math.floor(random() * 40);
  const rules: PolicyRule[] = [];
  for (let i = 0; i < ruleCount; i++) {
    const effect = pick<PolicyEffect>(["allow", "allow", "deny", "require_approval"]);
    const fields: Record<string, unknown> = {
      id: `r${i}`,
      effect,
      actions: Array.from({ length: 1 + Math.floor(random() * 2) }, actionPattern),
      resources: maybe(0.4, () => some(resourcePatterns)),
      actorKinds: maybe(0.3, () => some<ActorKind>(["human", "agent", "service", "system"])),
      roles: maybe(0.3, () => some(roles)),
      tenants: maybe(0.2, () => some(tenants)),
      minRisk: maybe(0.3, () => pick(RISK_LEVELS)),
      conditions: maybe(0.3, () => some(conditionPool)),
      approval: effect === "require_approval"
        ? {
          approverRoles: some(["cm", "qa", "lead"]),
          quorum: 1 + Math.floor(random() * 3),
          timeoutSeconds: pick([60, 600, 3600]),
          onExpiry: pick(["deny", "escalate"] as const),
        }
        : undefined,
    };
    for (const key of Object.keys(fields)) if (fields[key] === undefined) delete fields[key];
    rules.push(fields as unknown as PolicyRule);
  }
  const actions = [
    "bom.read",
    "bom.update",
    "bom.delete",
    "bom.update.approve",
    "bom.update.x.approve",
    "part.read",
    "part.update.x",
    "run.delete",
    "bom",
    "brief.up",
    "other.thing",
    "",
  ];
  const resources = ["bom:1", "bom:2/rev", "plm/parts/1", "plm/parts/2:rev", "x:1", "plm"];
  const requests: PolicyRequest[] = [];
  for (let i = 0; i < 40; i++) {
    const identityTenant = maybe(0.5, () => pick(tenants));
    const identity: Identity = {
      subject: "s",
      actorKind: pick<ActorKind>(["human", "agent", "service", "system"]),
      roles: roles.filter(() => random() < 0.4),
      scopes: [],
      ...(identityTenant === undefined ? {} : { tenant: identityTenant }),
    };
    const attributes: Record<string, JsonValue> = {};
    if (random() < 0.7) attributes.amount = pick([5, 10, 20, 30, 50, 80]);
    if (random() < 0.5) attributes.region = pick<ConditionScalar>(["eu", "us", null]);
    if (random() < 0.3) attributes.flag = random() < 0.5;
    const tenant = maybe(0.3, () => pick(tenants));
    const risk = maybe(0.7, () => pick(RISK_LEVELS));
    requests.push({
      identity,
      action: pick(actions),
      resource: pick(resources),
      ...(tenant === undefined ? {} : { tenant }),
      ...(risk === undefined ? {} : { risk }),
      ...(random() < 0.8 ? { attributes } : {}),
    });
  }
  return { set: { rules }, requests };
}

/**
 * Many rules on one shared action (or `**`), told apart by resource prefix,
 * role, tenant or an `eq`/`in` condition: the index files them under those
 * fields instead of the action.
 */
function sharedActionPolicy(random: () => number): { set: PolicySet; requests: PolicyRequest[] } {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const n = 1 + Math.floor(random() * 60);
  const team = () => `t${Math.floor(random() * 12)}`;
  const rules: PolicyRule[] = [];
  for (let i = 0; i < n; i++) {
    const effect = pick<PolicyEffect>(["allow", "allow", "allow", "deny", "require_approval"]);
    const fields: Record<string, unknown> = {
      id: `r${i}`,
      effect,
      actions: [pick(["doc.read", "doc.read", "**", "doc.**", "**.read", "doc.*"])],
      ...(effect === "require_approval" ? { approval: APPROVAL } : {}),
    };
    const shape = pick(["resource", "role", "tenant", "condition", "mixed"]);
    if (shape === "resource" || shape === "mixed") {
      fields.resources = [
        pick([
          `docs/${team()}/**`,
          `docs/${team()}/*`,
          `docs/${team()}/a`,
          `docs:${team()}/**.pdf`,
        ]),
      ];
    }
    if (shape === "role" || shape === "mixed") fields.roles = [team(), team()];
    if (shape === "tenant" || (shape === "mixed" && random() < 0.5)) fields.tenants = [team()];
    if (shape === "condition" || (shape === "mixed" && random() < 0.5)) {
      fields.conditions = [
        random() < 0.5
          ? { attr: "plant", op: "eq", value: pick([team(), 7, null, true]) }
          : { attr: "plant", op: "in", value: [team(), team(), 7] },
      ];
    }
    rules.push(fields as unknown as PolicyRule);
  }
  const requests: PolicyRequest[] = [];
  for (let i = 0; i < 30; i++) {
    const tenant = random() < 0.7 ? team() : undefined;
    requests.push({
      identity: {
        subject: "s",
        actorKind: "human",
        roles: random() < 0.8 ? [team(), team()] : [],
        scopes: [],
      },
      action: pick(["doc.read", "doc.write", "doc.read.x", "x.read"]),
      resource: pick([
        `docs/${team()}/a`,
        `docs/${team()}/b/c`,
        `docs:${team()}/x.pdf`,
        `docs/${team()}`,
        "docs",
      ]),
      ...(tenant === undefined ? {} : { tenant }),
      ...(random() < 0.8
        ? { attributes: { plant: pick<JsonValue>([team(), 7, "7", null, true, [7]]) } }
        : {}),
    });
  }
  return { set: { rules }, requests };
}

Deno.test("PolicyEngine.decide() gives the same verdicts as a naive scan when rules share an action", () => {
  const random = seededRandom(0x5a4ed);
  const decisions = new Set<string>();
  for (let round = 0; round < 300; round++) {
    const { set, requests } = sharedActionPolicy(random);
    const engine = new PolicyEngine(set);
    for (const req of requests) {
      const actual = engine.decide(req);
      const expected = naiveDecide(set, req);
      const context = `round ${round}: ${JSON.stringify(req)}`;
      assert.deepEqual(actual.matchedRuleIds, expected.matchedRuleIds, context);
      assert.equal(actual.decision, expected.decision, context);
      if (actual.matchedRuleIds.length > 0) decisions.add(actual.decision);
    }
  }
  assert.deepEqual([...decisions].sort(), ["allow", "deny", "require_approval"]);
});

Deno.test("PolicyEngine.decide() gives the same verdicts as a naive scan on random policy sets", () => {
  const random = seededRandom(0x5eed);
  let compared = 0;
  const seen = new Set<string>();
  for (let round = 0; round < 300; round++) {
    const { set, requests } = randomPolicy(random);
    const engine = new PolicyEngine(set);
    for (const req of requests) {
      const actual = engine.decide(req);
      const expected = naiveDecide(set, req);
      const context = `round ${round}: ${JSON.stringify(req)}`;
      assert.equal(actual.decision, expected.decision, context);
      assert.deepEqual(actual.matchedRuleIds, expected.matchedRuleIds, context);
      assert.deepEqual(actual.approval, expected.approval, context);
      seen.add(
        `${actual.decision}/${
          actual.matchedRuleIds.length > 1 ? "many" : actual.matchedRuleIds.length
        }`,
      );
      compared++;
    }
  }
  assert.equal(compared, 300 * 40);
  // The generator exercises every decision, with none, one and several matches.
  for (
    const key of [
      "deny/0",
      "deny/1",
      "deny/many",
      "allow/1",
      "allow/many",
      "require_approval/1",
      "require_approval/many",
    ]
  ) {
    assert.ok(seen.has(key), `random sets produced ${key}`);
  }
});

Deno.test("PolicyRequestSchema refuses attributes JSON cannot carry exactly", () => {
  const identity = { subject: "a-1", actorKind: "agent", roles: [], scopes: [] };
  const base = { identity, action: "bom.update", resource: "bom:1" };
  assert.equal(
    PolicyRequestSchema.safeParse({ ...base, attributes: { amount: 250 } }).success,
    true,
  );
  for (const bad of [NaN, 10n, new Date(0), "\ud800"]) {
    assert.equal(PolicyRequestSchema.safeParse({ ...base, attributes: { x: bad } }).success, false);
  }
});

Deno.test("PolicyError keeps its issues and cause, and has no issues when none are given", () => {
  const issues = [{ path: ["rules", 1, "id"], message: "Duplicate rule id r1" }];
  const cause = new SyntaxError("Unexpected token");
  const err = new PolicyError("ERR_POLICY_INVALID", "Invalid policy set", { issues, cause });
  assert.deepEqual(err.issues, issues);
  assert.equal(err.cause, cause);
  assert.deepEqual(new PolicyError("ERR_POLICY_INVALID", "Invalid policy set").issues, []);
});
