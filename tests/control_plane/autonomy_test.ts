import assert from "node:assert/strict";
import { FakeClock } from "../../shared/mod.ts";
import {
  type ApprovalSpec,
  PolicyError,
  type Verdict,
} from "../../control_plane/governance/mod.ts";
import {
  applyBudget,
  AUTONOMY_LEVELS,
  AutonomyController,
  type AutonomyLevel,
  type AutonomyLevelChange,
  type AutonomyPolicy,
  type BudgetDecision,
  type BudgetExceeded,
  BudgetTracker,
  compareAutonomyLevels,
  DEFAULT_AUTONOMY_APPROVAL,
  foldAutonomy,
  parseAutonomyPolicy,
} from "../../control_plane/autonomy/mod.ts";
import { openStore, type Store, type StoreTx } from "../../control_plane/store/mod.ts";

const SPEC: ApprovalSpec = {
  approverRoles: ["cm"],
  quorum: 2,
  timeoutSeconds: 600,
  onExpiry: "escalate",
};

const VERDICTS: Record<Verdict["decision"], Verdict> = {
  allow: {
    decision: "allow",
    matchedRuleIds: ["a"],
    reason: "Allowed by rule a",
    policyVersion: "v1",
  },
  deny: {
    decision: "deny",
    matchedRuleIds: ["a", "d"],
    reason: "Denied by rule d",
    policyVersion: "v1",
    code: "ERR_FORBIDDEN",
  },
  require_approval: {
    decision: "require_approval",
    matchedRuleIds: ["q"],
    reason: "Approval required by rule q",
    policyVersion: "v1",
    approval: SPEC,
  },
};

/** A fresh in-memory store (the state of one controller or tracker). */
function memory(): Promise<Store> {
  return openStore(":memory:");
}

function exceededOf(result: BudgetDecision): BudgetExceeded {
  assert.equal(result.ok, false, "expected the budget to be exceeded");
  return result as BudgetExceeded;
}

// ---------------------------------------------------------------------------
// foldAutonomy

Deno.test("foldAutonomy() folds every level into every decision", async (t) => {
  const expected: Record<
    AutonomyLevel,
    Record<Verdict["decision"], [Verdict["decision"], boolean, boolean]>
  > = {
    // [decision, notify, suggestOnly]
    L0: {
      allow: ["deny", false, false],
      require_approval: ["deny", false, false],
      deny: ["deny", false, false],
    },
    L1: {
      allow: ["require_approval", false, true],
      require_approval: ["require_approval", false, true],
      deny: ["deny", false, false],
    },
    L2: {
      allow: ["require_approval", false, false],
      require_approval: ["require_approval", false, false],
      deny: ["deny", false, false],
    },
    L3: {
      allow: ["allow", true, false],
      require_approval: ["require_approval", true, false],
      deny: ["deny", false, false],
    },
    L4: {
      allow: ["allow", false, false],
      require_approval: ["require_approval", false, false],
      deny: ["deny", false, false],
    },
  };
  for (const level of AUTONOMY_LEVELS) {
    for (const [input, verdict] of Object.entries(VERDICTS)) {
      await t.step(`${level} + ${input}`, () => {
        const before = structuredClone(verdict);
        const folded = foldAutonomy(verdict, level);
        const [decision, notify, suggestOnly] = expected[level][verdict.decision];
        assert.equal(folded.decision, decision);
        assert.equal(folded.notify, notify);
        assert.equal(folded.suggestOnly, suggestOnly);
        assert.equal(folded.autonomyLevel, level);
        assert.deepEqual(folded.matchedRuleIds, verdict.matchedRuleIds);
        assert.equal(folded.policyVersion, verdict.policyVersion);
        assert.ok(folded.reason.startsWith(verdict.reason), folded.reason);
        assert.deepEqual(verdict, before, "the input verdict is unchanged");
        if (decision === "deny") {
          assert.equal(folded.code, "ERR_FORBIDDEN");
          assert.equal(folded.approval, undefined);
        } else {
          assert.equal(folded.code, undefined);
        }
        if (decision === "require_approval") {
          // A policy approval is kept; an autonomy one uses the default spec.
          assert.deepEqual(
            folded.approval,
            verdict.decision === "require_approval" ? SPEC : DEFAULT_AUTONOMY_APPROVAL,
          );
        }
      });
    }
  }
});

Deno.test("foldAutonomy() explains why autonomy changed the decision", async (t) => {
  await t.step("L0 never executes", () => {
    assert.match(
      foldAutonomy(VERDICTS.allow, "L0").reason,
      /autonomy L0 \(manual\) never executes/,
    );
  });
  await t.step("L2 requires approval", () => {
    assert.match(
      foldAutonomy(VERDICTS.allow, "L2").reason,
      /autonomy L2 \(act with approval\) requires approval/,
    );
  });
  await t.step("deny keeps its reason", () => {
    assert.equal(foldAutonomy(VERDICTS.deny, "L0").reason, VERDICTS.deny.reason);
  });
});

Deno.test("foldAutonomy() uses the given approval spec", () => {
  const folded = foldAutonomy(VERDICTS.allow, "L1", { approval: SPEC });
  assert.deepEqual(folded.approval, SPEC);
});

Deno.test("foldAutonomy() rejects an unknown level", () => {
  assert.throws(() => foldAutonomy(VERDICTS.allow, "L5" as AutonomyLevel), TypeError);
});

Deno.test("compareAutonomyLevels() orders L0 to L4", () => {
  const shuffled: AutonomyLevel[] = ["L3", "L0", "L4", "L1", "L2"];
  assert.deepEqual(shuffled.sort(compareAutonomyLevels), [...AUTONOMY_LEVELS]);
  assert.equal(compareAutonomyLevels("L2", "L2"), 0);
});

// ---------------------------------------------------------------------------
// autonomy policy and levels

const POLICY: AutonomyPolicy = {
  defaultLevel: "L1",
  agents: {
    "a-1": {
      level: "L3",
      actions: [
        { pattern: "bom.delete", level: "L0" },
        { pattern: "bom.*", level: "L4" },
        { pattern: "bom.update", level: "L2" },
        { pattern: "part.**", level: "L2" },
      ],
    },
    "a-2": { level: "L4" },
  },
};

Deno.test("AutonomyController.levelFor() resolves per agent and per action pattern", async (t) => {
  const autonomy = new AutonomyController(await memory(), POLICY);
  const cases: [agent: string, action: string, level: AutonomyLevel][] = [
    ["a-1", "bom.delete", "L0"],
    ["a-1", "bom.update", "L4"], // the first matching pattern wins
    ["a-1", "part.rev.release", "L2"],
    ["a-1", "run.start", "L3"],
    ["a-2", "bom.delete", "L4"],
    ["unknown", "bom.read", "L1"],
    ["__proto__", "bom.read", "L1"],
  ];
  for (const [agent, action, level] of cases) {
    await t.step(`${agent} ${action}`, async () => {
      assert.equal(await autonomy.levelFor(agent, action), level);
    });
  }
  await t.step("levelOf() gives the agent's own level", async () => {
    assert.equal(await autonomy.levelOf("a-1"), "L3");
    assert.equal(await autonomy.levelOf("nobody"), "L1");
  });
});

Deno.test("AutonomyController.fold() records the resolved level", async () => {
  const autonomy = new AutonomyController(await memory(), POLICY, { approval: SPEC });
  const deleted = await autonomy.fold(VERDICTS.allow, "a-1", "bom.delete");
  assert.equal(deleted.decision, "deny");
  assert.equal(deleted.autonomyLevel, "L0");
  const updated = await autonomy.fold(VERDICTS.allow, "a-1", "part.update");
  assert.equal(updated.decision, "require_approval");
  assert.deepEqual(updated.approval, SPEC);
});

Deno.test("parseAutonomyPolicy() refuses bad policies naming the field path", async (t) => {
  const cases: [name: string, input: unknown, path: string][] = [
    ["bad default", { defaultLevel: "L5" }, "defaultLevel"],
    ["bad agent level", { defaultLevel: "L1", agents: { a: { level: "high" } } }, "agents.a.level"],
    [
      "bad action level",
      { defaultLevel: "L1", agents: { a: { level: "L1", actions: [{ pattern: "x", level: 3 }] } } },
      "agents.a.actions[0].level",
    ],
    [
      "empty pattern",
      {
        defaultLevel: "L1",
        agents: { a: { level: "L1", actions: [{ pattern: "", level: "L1" }] } },
      },
      "agents.a.actions[0].pattern",
    ],
    [
      "pattern longer than POLICY_LIMITS.patternLength",
      {
        defaultLevel: "L1",
        agents: { a: { level: "L1", actions: [{ pattern: "a".repeat(513), level: "L1" }] } },
      },
      "agents.a.actions[0].pattern",
    ],
    ["unknown key", { defaultLevel: "L1", levels: {} }, "(root)"],
  ];
  for (const [name, input, path] of cases) {
    await t.step(name, () => {
      assert.throws(
        () => parseAutonomyPolicy(input),
        (err) =>
          err instanceof PolicyError && err.code === "ERR_POLICY_INVALID" &&
          err.message.includes(`${path}: `),
      );
    });
  }
  await using store = await memory();
  await t.step("the constructor validates too", () => {
    assert.throws(
      () => new AutonomyController(store, { defaultLevel: "L9" } as unknown as AutonomyPolicy),
      (err) => err instanceof PolicyError && err.code === "ERR_POLICY_INVALID",
    );
  });
});

Deno.test("new AutonomyController() rejects bad options", async (t) => {
  await using store = await memory();
  const bad: [string, () => unknown][] = [
    ["demoteAfter 0", () => new AutonomyController(store, POLICY, { demoteAfter: 0 })],
    ["demoteAfter 1.5", () => new AutonomyController(store, POLICY, { demoteAfter: 1.5 })],
    [
      "demoteAfter 2 ** 53 (not a safe integer)",
      () => new AutonomyController(store, POLICY, { demoteAfter: 2 ** 53 }),
    ],
    [
      "unknown floor",
      () => new AutonomyController(store, POLICY, { floor: "L7" as AutonomyLevel }),
    ],
    [
      "invalid approval",
      () => new AutonomyController(store, POLICY, { approval: { ...SPEC, quorum: 0 } }),
    ],
  ];
  for (const [name, make] of bad) {
    await t.step(name, () => assert.throws(make, RangeError));
  }
});

// ---------------------------------------------------------------------------
// automatic level drop

Deno.test("AutonomyController.recordOutcome() drops the level after N denials or failures", async (t) => {
  await t.step("one step per N consecutive outcomes, mixing denied and failed", async () => {
    const clock = new FakeClock(1_000);
    const changes: AutonomyLevelChange[] = [];
    const autonomy = new AutonomyController(await memory(), POLICY, {
      clock,
      demoteAfter: 3,
      onLevelChange: (change) => changes.push(change),
    });
    assert.equal(await autonomy.recordOutcome("a-2", "denied"), "L4");
    assert.equal(await autonomy.recordOutcome("a-2", "failed"), "L4");
    assert.equal(await autonomy.consecutiveFailures("a-2"), 2);
    clock.advance(500);
    assert.equal(await autonomy.recordOutcome("a-2", "denied"), "L3");
    assert.equal(await autonomy.consecutiveFailures("a-2"), 0);
    assert.deepEqual(changes, [{
      agentId: "a-2",
      from: "L4",
      to: "L3",
      cause: "demoted",
      reason: "Agent a-2 dropped from L4 to L3 after 3 consecutive denials or failures",
      at: 1_500,
    }]);
    for (let i = 0; i < 3; i++) await autonomy.recordOutcome("a-2", "failed");
    assert.equal(await autonomy.levelOf("a-2"), "L2");
    assert.equal(changes.length, 2);
  });
  await t.step("a success resets the count", async () => {
    const autonomy = new AutonomyController(await memory(), POLICY, { demoteAfter: 2 });
    await autonomy.recordOutcome("a-2", "failed");
    await autonomy.recordOutcome("a-2", "succeeded");
    assert.equal(await autonomy.consecutiveFailures("a-2"), 0);
    assert.equal(await autonomy.recordOutcome("a-2", "denied"), "L4");
    assert.equal(await autonomy.recordOutcome("a-2", "denied"), "L3");
  });
  await t.step("never below the floor", async () => {
    const changes: AutonomyLevelChange[] = [];
    const autonomy = new AutonomyController(await memory(), POLICY, {
      demoteAfter: 1,
      floor: "L2",
      onLevelChange: (change) => changes.push(change),
    });
    for (let i = 0; i < 10; i++) await autonomy.recordOutcome("a-2", "failed");
    assert.equal(await autonomy.levelOf("a-2"), "L2");
    assert.deepEqual(changes.map((c) => c.to), ["L3", "L2"]);
  });
  await t.step("the default floor is L1", async () => {
    const autonomy = new AutonomyController(await memory(), { defaultLevel: "L4" }, {
      demoteAfter: 1,
    });
    for (let i = 0; i < 10; i++) await autonomy.recordOutcome("x", "failed");
    assert.equal(await autonomy.levelOf("x"), "L1");
  });
  await t.step("an agent configured below the floor is not dropped", async () => {
    const changes: AutonomyLevelChange[] = [];
    const autonomy = new AutonomyController(await memory(), { defaultLevel: "L0" }, {
      demoteAfter: 1,
      onLevelChange: (change) => changes.push(change),
    });
    assert.equal(await autonomy.recordOutcome("x", "failed"), "L0");
    assert.deepEqual(changes, []);
  });
  await t.step("the drop caps per-action levels", async () => {
    const autonomy = new AutonomyController(await memory(), POLICY, { demoteAfter: 1 });
    assert.equal(await autonomy.levelFor("a-1", "bom.read"), "L4");
    await autonomy.recordOutcome("a-1", "failed"); // a-1: L3 -> L2
    assert.equal(await autonomy.levelOf("a-1"), "L2");
    assert.equal(await autonomy.levelFor("a-1", "bom.read"), "L2");
    assert.equal(await autonomy.levelFor("a-1", "bom.delete"), "L0");
    assert.equal(
      (await autonomy.fold(VERDICTS.allow, "a-1", "bom.read")).decision,
      "require_approval",
    );
  });
  await t.step("agents are counted separately", async () => {
    const autonomy = new AutonomyController(await memory(), POLICY, { demoteAfter: 2 });
    await autonomy.recordOutcome("a-1", "failed");
    await autonomy.recordOutcome("a-2", "failed");
    assert.equal(await autonomy.levelOf("a-1"), "L3");
    assert.equal(await autonomy.levelOf("a-2"), "L4");
  });
  await t.step("rejects an unknown outcome", async () => {
    const autonomy = new AutonomyController(await memory(), POLICY);
    await assert.rejects(() => autonomy.recordOutcome("a-1", "crashed" as "failed"), RangeError);
  });
});

Deno.test("AutonomyController.restore() lifts drops and reports the change", async () => {
  const clock = new FakeClock(0);
  const changes: AutonomyLevelChange[] = [];
  const autonomy = new AutonomyController(await memory(), POLICY, {
    clock,
    demoteAfter: 1,
    onLevelChange: (change) => changes.push(change),
  });
  await autonomy.recordOutcome("a-2", "failed");
  await autonomy.recordOutcome("a-2", "failed");
  clock.set(9_000);
  assert.equal(await autonomy.restore("a-2"), "L4");
  assert.deepEqual(changes.at(-1), {
    agentId: "a-2",
    from: "L2",
    to: "L4",
    cause: "restored",
    reason: "Agent a-2 restored from L2 to L4",
    at: 9_000,
  });
  assert.equal(await autonomy.restore("a-2"), "L4");
  assert.equal(changes.length, 3, "restoring an undropped agent reports nothing");
});

// ---------------------------------------------------------------------------
// budgets

Deno.test("BudgetTracker.checkRun() checks each run budget", async (t) => {
  const budgets = new BudgetTracker(await memory());
  const usage = { attempts: 3, escalations: 1, costUnits: 9.5 };
  await t.step("at the limits is within budget", () => {
    assert.deepEqual(
      budgets.checkRun(usage, { maxAttempts: 3, maxEscalations: 1, maxCostUnits: 9.5 }),
      { ok: true },
    );
    assert.ok(budgets.checkRun(usage, {}).ok);
  });
  const cases: [
    name: string,
    limits: Parameters<BudgetTracker["checkRun"]>[1],
    budget: string,
    limit: number,
    used: number,
  ][] = [
    ["attempts", { maxAttempts: 2 }, "attempts", 2, 3],
    ["escalations", { maxEscalations: 0 }, "escalations", 0, 1],
    ["costUnits", { maxCostUnits: 9 }, "costUnits", 9, 9.5],
    ["attempts first", { maxAttempts: 2, maxEscalations: 0, maxCostUnits: 1 }, "attempts", 2, 3],
  ];
  for (const [name, limits, budget, limit, used] of cases) {
    await t.step(name, () => {
      const result = exceededOf(budgets.checkRun(usage, limits));
      assert.equal(result.decision, "deny");
      assert.equal(result.code, "ERR_BUDGET_EXCEEDED");
      assert.equal(result.budget, budget);
      assert.equal(result.limit, limit);
      assert.equal(result.used, used);
      assert.equal(result.reason, `Budget ${budget} exceeded: ${used} of at most ${limit}`);
    });
  }
  await t.step("rejects invalid figures", () => {
    assert.throws(() => budgets.checkRun(usage, { maxAttempts: -1 }), RangeError);
    assert.throws(() => budgets.checkRun(usage, { maxAttempts: 1.5 }), RangeError);
    assert.throws(() => budgets.checkRun(usage, { maxCostUnits: Infinity }), RangeError);
    assert.throws(() => budgets.checkRun({ ...usage, costUnits: NaN }, {}), {
      code: "ERR_INVALID_ARGUMENT",
    });
    assert.throws(() => budgets.checkRun({ ...usage, attempts: -1 }, {}), {
      code: "ERR_INVALID_ARGUMENT",
    });
  });
});

Deno.test("BudgetTracker.consumeAgentRun() limits runs per sliding window", async () => {
  const clock = new FakeClock(1_000);
  const budgets = new BudgetTracker(await memory(), { clock });
  const limit = { maxRuns: 2, windowMs: 1_000 };
  assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok); // t=1000
  clock.advance(400);
  assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok); // t=1400
  clock.advance(100);
  const refused = exceededOf(await budgets.consumeAgentRun("a-1", limit)); // t=1500
  assert.equal(refused.budget, "agentRuns");
  assert.equal(refused.code, "ERR_BUDGET_EXCEEDED");
  assert.equal(refused.retryAfterMs, 500);
  assert.equal(
    refused.reason,
    "Budget agentRuns exceeded for agent a-1: 2 of at most 2 runs in the sliding window of 1000 ms; retry in 500 ms",
  );
  assert.ok((await budgets.consumeAgentRun("a-2", limit)).ok, "other agents have their own window");
  clock.advance(499); // t=1999: the run at 1000 is still inside (1000 > 1999 - 1000)
  assert.equal((await budgets.consumeAgentRun("a-1", limit)).ok, false);
  clock.advance(1); // t=2000: it left the window
  assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
  assert.equal(exceededOf(await budgets.consumeAgentRun("a-1", limit)).retryAfterMs, 400);
});

Deno.test("BudgetTracker.consumeAgentRun() limits runs per fixed window", async () => {
  const clock = new FakeClock(60_000 * 11 - 1); // 1 ms before a window boundary
  const budgets = new BudgetTracker(await memory(), { clock });
  const limit = { maxRuns: 1, window: "fixed" } as const;
  assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
  const refused = exceededOf(await budgets.consumeAgentRun("a-1", limit));
  assert.equal(refused.retryAfterMs, 1);
  assert.match(refused.reason, /fixed window of 60000 ms/);
  clock.advance(1); // a new window starts: a sliding window would still refuse
  assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
  assert.equal((await budgets.consumeAgentRun("a-1", limit)).ok, false);
});

Deno.test("BudgetTracker keeps agent run windows across a restart on the same file", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "plm_budget_test_" });
  const path = `${dir}/plm.store`;
  /** A tracker on a fresh connection, as after a restart, at time `now`. */
  const restart = async (now: number) => {
    const store = await openStore(path);
    return { store, budgets: new BudgetTracker(store, { clock: new FakeClock(now) }) };
  };
  /** The run starts the store holds for `agentId`. */
  const rows = (store: Store, agentId: string) =>
    store.read((tx) => tx.governance.countStarts(agentId, -1));
  try {
    await t.step("sliding", async () => {
      const limit = { maxRuns: 2, windowMs: 1_000, window: "sliding" } as const;
      const first = await restart(1_000);
      assert.ok((await first.budgets.consumeAgentRun("a-s", limit)).ok);
      await first.store.close();
      const second = await restart(1_400);
      assert.ok((await second.budgets.consumeAgentRun("a-s", limit)).ok);
      await second.store.close();
      const third = await restart(1_999);
      assert.equal(exceededOf(await third.budgets.consumeAgentRun("a-s", limit)).retryAfterMs, 1);
      await third.store.close();
      const fourth = await restart(2_000); // the start at 1000 left the window
      assert.ok((await fourth.budgets.consumeAgentRun("a-s", limit)).ok);
      assert.equal(
        exceededOf(await fourth.budgets.consumeAgentRun("a-s", limit)).retryAfterMs,
        400,
      );
      await fourth.store.close();
    });
    await t.step("fixed", async () => {
      const limit = { maxRuns: 2, windowMs: 1_000, window: "fixed" } as const;
      const first = await restart(100);
      assert.ok((await first.budgets.consumeAgentRun("a-f", limit)).ok);
      assert.ok((await first.budgets.consumeAgentRun("a-f", limit)).ok);
      await first.store.close();
      const second = await restart(950);
      assert.equal(exceededOf(await second.budgets.consumeAgentRun("a-f", limit)).retryAfterMs, 50);
      await second.store.close();
      const third = await restart(1_000); // a new window
      assert.ok((await third.budgets.consumeAgentRun("a-f", limit)).ok);
      assert.ok((await third.budgets.consumeAgentRun("a-f", limit)).ok);
      assert.equal((await third.budgets.consumeAgentRun("a-f", limit)).ok, false);
      await third.store.close();
    });
    await t.step("every write prunes the agent's starts to its window", async () => {
      const limit = { maxRuns: 3, windowMs: 10 };
      const { store } = await restart(0);
      const clock = new FakeClock(0);
      const ticking = new BudgetTracker(store, { clock });
      for (let i = 0; i < 200; i++) {
        await ticking.consumeAgentRun("a-p", limit);
        clock.advance(1);
      }
      assert.equal(await rows(store, "a-p"), 3);
      // The earlier steps' agents keep their last window's two starts each.
      assert.deepEqual([await rows(store, "a-s"), await rows(store, "a-f")], [2, 2]);
      await store.close();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AutonomyController keeps drops and streaks in the database it is given", async () => {
  await using store = await openStore(":memory:");
  const changes: AutonomyLevelChange[] = [];
  const first = new AutonomyController(store, { defaultLevel: "L4" }, {
    demoteAfter: 2,
    onLevelChange: (change) => changes.push(change),
  });
  await first.recordOutcome("a-1", "failed");
  const second = new AutonomyController(store, { defaultLevel: "L4" }, { demoteAfter: 2 });
  assert.equal(await second.consecutiveFailures("a-1"), 1, "a second controller sees the streak");
  assert.equal(await second.recordOutcome("a-1", "denied"), "L3");
  assert.equal(await first.levelOf("a-1"), "L3", "and the first one sees the drop");
  assert.equal(changes.length, 0, "the drop is reported by the controller that made it");
  const row = await store.read((tx) => tx.governance.autonomy("a-1"));
  assert.deepEqual({ ...row }, { capLevel: "L3", streak: 0, version: 2 });
  assert.equal(await first.restore("a-1"), "L4");
  assert.equal(await second.levelOf("a-1"), "L4");
  await assert.rejects(
    store.transaction(async (tx: StoreTx) => {
      await first.recordOutcome("a-1", "failed", { tx });
      assert.equal(await first.recordOutcome("a-1", "failed", { tx }), "L3");
      throw new Error("The caller's next step failed");
    }),
    /next step failed/,
  );
  assert.deepEqual([await first.levelOf("a-1"), await first.consecutiveFailures("a-1")], ["L4", 0]);
});

Deno.test("BudgetTracker.checkAgentRun() does not record", async () => {
  const budgets = new BudgetTracker(await memory(), { clock: new FakeClock(0) });
  const limit = { maxRuns: 1 };
  for (let i = 0; i < 3; i++) assert.ok((await budgets.checkAgentRun("a-1", limit)).ok);
  assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
  assert.equal((await budgets.checkAgentRun("a-1", limit)).ok, false);
});

Deno.test("BudgetTracker.consumeAgentRun() with maxRuns 0 always refuses, without retry time", async () => {
  const budgets = new BudgetTracker(await memory(), { clock: new FakeClock(0) });
  const refused = exceededOf(await budgets.consumeAgentRun("a-1", { maxRuns: 0 }));
  assert.equal(refused.retryAfterMs, undefined);
  assert.ok(!refused.reason.includes("retry"));
});

Deno.test("BudgetTracker.consumeAgentRun() rejects invalid limits", async (t) => {
  const budgets = new BudgetTracker(await memory(), { clock: new FakeClock(0) });
  const bad = [
    { maxRuns: -1 },
    { maxRuns: 1.5 },
    { maxRuns: 1, windowMs: 0 },
    { maxRuns: 1, window: "rolling" as "fixed" },
  ];
  for (const limit of bad) {
    await t.step(JSON.stringify(limit), async () => {
      await assert.rejects(() => budgets.consumeAgentRun("a-1", limit), RangeError);
    });
  }
});

Deno.test("applyBudget() turns an exceeded budget into a deny", async (t) => {
  const budgets = new BudgetTracker(await memory());
  const over = budgets.checkRun({ attempts: 2, escalations: 0, costUnits: 0 }, { maxAttempts: 1 });
  const within = budgets.checkRun({ attempts: 1, escalations: 0, costUnits: 0 }, {
    maxAttempts: 1,
  });
  await t.step("allow becomes deny", () => {
    const verdict = applyBudget(VERDICTS.allow, over);
    assert.equal(verdict.decision, "deny");
    assert.equal(verdict.code, "ERR_BUDGET_EXCEEDED");
    assert.match(verdict.reason, /Budget attempts exceeded/);
    assert.deepEqual(verdict.matchedRuleIds, ["a"]);
    assert.equal(verdict.policyVersion, "v1");
  });
  await t.step("require_approval becomes deny without an approval", () => {
    const verdict = applyBudget(VERDICTS.require_approval, over);
    assert.equal(verdict.decision, "deny");
    assert.equal(verdict.approval, undefined);
    assert.ok(!("approval" in verdict));
  });
  await t.step("a policy deny is kept", () => {
    assert.equal(applyBudget(VERDICTS.deny, over), VERDICTS.deny);
  });
  await t.step("within budget changes nothing", () => {
    assert.equal(applyBudget(VERDICTS.allow, within), VERDICTS.allow);
  });
  await t.step("autonomy fields are kept", () => {
    const verdict = applyBudget(foldAutonomy(VERDICTS.allow, "L3"), over);
    assert.equal(verdict.decision, "deny");
    assert.equal(verdict.autonomyLevel, "L3");
  });
});
