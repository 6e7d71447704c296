import assert from "node:assert/strict";
import {
  type Agent,
  defineAgent,
  isPlmError,
  NoAgentError,
  selectAgent,
  type SelectAgentOptions,
  type SelectionOutcome,
  type SelectorState,
} from "../../agent_runtime/mod.ts";

const invoke = () => Promise.resolve(null);

function agent(
  id: string,
  fields: { capabilities?: string[]; tier?: number; costPerRun?: number; maxConcurrency?: number } =
    {},
): Agent {
  return defineAgent({ id, invoke, capabilities: ["bom.read"], maxConcurrency: 4, ...fields });
}

function state(
  inFlight: Record<string, number> = {},
  unavailable: readonly string[] = [],
): SelectorState {
  return {
    inFlight: (id) => inFlight[id] ?? 0,
    isAvailable: (id) => !unavailable.includes(id),
  };
}

const TASK = { capabilities: ["bom.read"] } as const;

function outcomes(
  agents: Agent[],
  s: SelectorState,
  options?: SelectAgentOptions,
): [string, Record<string, SelectionOutcome>] {
  const { agent: chosen, reasons } = selectAgent(TASK, agents, s, options);
  return [chosen.id, Object.fromEntries(reasons.map((r) => [r.agentId, r.outcome]))];
}

function noAgent(fn: () => unknown): NoAgentError {
  try {
    fn();
  } catch (error) {
    assert.ok(isPlmError(error, "ERR_NO_AGENT"), `expected ERR_NO_AGENT, got ${error}`);
    assert.ok(error instanceof NoAgentError);
    return error;
  }
  assert.fail("expected selectAgent() to throw");
}

Deno.test("selectAgent() prefers the lowest tier over cost and load", () => {
  const agents = [
    agent("strong", { tier: 1, costPerRun: 0 }),
    agent("weak", { tier: 0, costPerRun: 9 }),
  ];
  const [id, why] = outcomes(agents, state({ weak: 3 }));
  assert.equal(id, "weak");
  assert.deepEqual(why, { strong: "outranked", weak: "chosen" });
  const { reasons } = selectAgent(TASK, agents, state({ weak: 3 }));
  assert.equal(reasons[0]?.detail, "tier 1 is above tier 0 of weak");
  assert.equal(reasons[1]?.detail, "tier 0, cost 9, load 3/4");
});

Deno.test("selectAgent() prefers the lowest cost within a tier", () => {
  const agents = [agent("dear", { costPerRun: 5 }), agent("cheap", { costPerRun: 1 })];
  const { agent: chosen, reasons } = selectAgent(TASK, agents, state({ cheap: 3 }));
  assert.equal(chosen.id, "cheap");
  assert.equal(reasons[0]?.outcome, "outranked");
  assert.equal(reasons[0]?.detail, "cost 5 is above cost 1 of cheap");
});

Deno.test("selectAgent() prefers the least loaded relative to maxConcurrency", async (t) => {
  await t.step("fewer in flight wins", () => {
    const agents = [agent("busy"), agent("idle")];
    const [id, why] = outcomes(agents, state({ busy: 2, idle: 1 }));
    assert.equal(id, "idle");
    assert.equal(why.busy, "outranked");
  });
  await t.step("load is a ratio: 2/8 beats 1/2", () => {
    const agents = [
      agent("small", { maxConcurrency: 2 }),
      agent("large", { maxConcurrency: 8 }),
    ];
    const { agent: chosen, reasons } = selectAgent(TASK, agents, state({ small: 1, large: 2 }));
    assert.equal(chosen.id, "large");
    assert.equal(reasons[0]?.detail, "load 1/2 is above load 2/8 of large");
  });
});

Deno.test("selectAgent() breaks ties by id, whatever the order of agents", () => {
  const a = agent("a-2");
  const b = agent("a-1");
  const c = agent("a-10");
  for (const order of [[a, b, c], [c, b, a], [b, c, a]]) {
    const { agent: chosen, reasons } = selectAgent(TASK, order, state());
    assert.equal(chosen.id, "a-1");
    const other = reasons.find((r) => r.agentId === "a-2");
    assert.equal(other?.detail, "ties with a-1, which comes first by id");
  }
});

Deno.test("selectAgent() reports one reason per agent, in the order given", () => {
  const agents = [
    agent("no-cap", { capabilities: ["bom.write"], tier: 1 }),
    agent("sick", { tier: 1 }),
    agent("busy", { tier: 1, maxConcurrency: 1 }),
    agent("low", { tier: 0 }),
    agent("mid", { tier: 1 }),
    agent("high", { tier: 2 }),
  ];
  const { agent: chosen, reasons } = selectAgent(TASK, agents, state({ busy: 1 }, ["sick"]), {
    minTier: 1,
  });
  assert.equal(chosen.id, "mid");
  assert.deepEqual(reasons.map((r) => [r.agentId, r.outcome, r.detail]), [
    ["no-cap", "missing_capability", "lacks bom.read"],
    ["sick", "unhealthy", "circuit lets no call through"],
    ["busy", "full", "1 of 1 calls in flight"],
    ["low", "below_min_tier", "tier 0 is below tier 1"],
    ["mid", "chosen", "tier 1, cost 0, load 0/4"],
    ["high", "outranked", "tier 2 is above tier 1 of mid"],
  ]);
});

Deno.test("selectAgent() skips agents below minTier (escalation)", () => {
  const agents = [agent("t0", { tier: 0 }), agent("t1", { tier: 1 }), agent("t2", { tier: 2 })];
  assert.equal(outcomes(agents, state())[0], "t0");
  assert.equal(outcomes(agents, state(), { minTier: 1 })[0], "t1");
  assert.equal(outcomes(agents, state(), { minTier: 2 })[0], "t2");
  const err = noAgent(() => selectAgent(TASK, agents, state(), { minTier: 3 }));
  assert.equal(
    err.message,
    "No agent can take the task: 3 agents with the capabilities are below tier 3",
  );
});

Deno.test("selectAgent() skips unhealthy agents", () => {
  const agents = [agent("a"), agent("b", { costPerRun: 3 })];
  const [id, why] = outcomes(agents, state({}, ["a"]));
  assert.equal(id, "b");
  assert.deepEqual(why, { a: "unhealthy", b: "chosen" });
});

Deno.test("selectAgent() skips full agents", () => {
  const agents = [agent("a", { maxConcurrency: 2 }), agent("b", { costPerRun: 3 })];
  const { agent: chosen, reasons } = selectAgent(TASK, agents, state({ a: 2 }));
  assert.equal(chosen.id, "b");
  assert.deepEqual(reasons[0], { agentId: "a", outcome: "full", detail: "2 of 2 calls in flight" });
});

Deno.test("selectAgent() requires every capability of the task", () => {
  const agents = [
    agent("reader", { capabilities: ["bom.read"] }),
    agent("both", { capabilities: ["bom.write", "bom.read"], costPerRun: 10 }),
  ];
  const { agent: chosen, reasons } = selectAgent(
    { capabilities: ["bom.read", "bom.write"] },
    agents,
    state(),
  );
  assert.equal(chosen.id, "both");
  assert.deepEqual(reasons[0], {
    agentId: "reader",
    outcome: "missing_capability",
    detail: "lacks bom.write",
  });
});

Deno.test("selectAgent() accepts any agent for a task without capabilities", () => {
  const agents = [agent("a", { capabilities: [] })];
  assert.equal(selectAgent({ capabilities: [] }, agents, state()).agent.id, "a");
});

Deno.test("selectAgent() throws ERR_NO_AGENT saying what is missing", async (t) => {
  await t.step("a capability no agent has", () => {
    const err = noAgent(() => selectAgent({ capabilities: ["x"] }, [agent("a")], state()));
    assert.equal(err.message, "No agent has capability x");
    assert.deepEqual(err.reasons.map((r) => r.outcome), ["missing_capability"]);
  });
  await t.step("capabilities spread over agents, none with all", () => {
    const agents = [agent("r", { capabilities: ["r"] }), agent("w", { capabilities: ["w"] })];
    const err = noAgent(() => selectAgent({ capabilities: ["r", "w"] }, agents, state()));
    assert.equal(err.message, "No agent has all of the capabilities r, w");
  });
  await t.step("no agents at all", () => {
    const err = noAgent(() => selectAgent(TASK, [], state()));
    assert.equal(err.message, "No agent is registered");
  });
  await t.step("capable agents unhealthy and full", () => {
    const agents = [
      agent("a"),
      agent("b"),
      agent("c", { maxConcurrency: 1 }),
      agent("d", { capabilities: ["other"] }),
    ];
    const err = noAgent(() => selectAgent(TASK, agents, state({ c: 1 }, ["a", "b"])));
    assert.equal(
      err.message,
      "No agent can take the task: 2 agents with the capabilities are unhealthy, 1 is full",
    );
    assert.deepEqual(err.reasons.map((r) => r.outcome), [
      "unhealthy",
      "unhealthy",
      "full",
      "missing_capability",
    ]);
  });
  await t.step("one capable agent, full", () => {
    const agents = [agent("a", { maxConcurrency: 1 })];
    const err = noAgent(() => selectAgent(TASK, agents, state({ a: 1 })));
    assert.equal(err.message, "No agent can take the task: 1 agent with the capabilities is full");
  });
});

Deno.test("selectAgent() is pure: it calls only the state's readers", () => {
  const calls: string[] = [];
  const s: SelectorState = {
    inFlight: (id) => {
      calls.push(`inFlight:${id}`);
      return 0;
    },
    isAvailable: (id) => {
      calls.push(`isAvailable:${id}`);
      return true;
    },
  };
  const agents = [agent("a"), agent("b")];
  const first = selectAgent(TASK, agents, s);
  const second = selectAgent(TASK, agents, s);
  assert.deepEqual(first, second);
  assert.deepEqual(calls.slice(0, 4), [
    "isAvailable:a",
    "inFlight:a",
    "isAvailable:b",
    "inFlight:b",
  ]);
});

Deno.test("selectAgent() rejects a bad minTier", () => {
  assert.throws(() => selectAgent(TASK, [agent("a")], state(), { minTier: -1 }), RangeError);
  assert.throws(() => selectAgent(TASK, [agent("a")], state(), { minTier: 1.5 }), RangeError);
});

Deno.test("defineAgent() validates its fields", async (t) => {
  await t.step("defaults", () => {
    const a = defineAgent({ id: "a", invoke });
    assert.deepEqual([a.capabilities, a.tier, a.costPerRun, a.maxConcurrency], [[], 0, 0, 1]);
    assert.ok(Object.isFrozen(a));
  });
  await t.step("type errors", () => {
    assert.throws(() => defineAgent({ id: "", invoke }), TypeError);
    assert.throws(() => defineAgent({ id: "a", invoke: 1 as never }), TypeError);
    assert.throws(() => defineAgent({ id: "a", invoke, capabilities: [""] }), TypeError);
    assert.throws(() => defineAgent({ id: "a", invoke, capabilities: ["x", "x"] }), TypeError);
  });
  await t.step("range errors", () => {
    assert.throws(() => defineAgent({ id: "a", invoke, tier: -1 }), RangeError);
    assert.throws(() => defineAgent({ id: "a", invoke, tier: 0.5 }), RangeError);
    assert.throws(() => defineAgent({ id: "a", invoke, costPerRun: -1 }), RangeError);
    assert.throws(() => defineAgent({ id: "a", invoke, costPerRun: Infinity }), RangeError);
    assert.throws(() => defineAgent({ id: "a", invoke, maxConcurrency: 0 }), RangeError);
  });
});

Deno.test("NoAgentError keeps its reasons, and has none when none are given", () => {
  const reasons = [{ agentId: "a-1", outcome: "full" as const, detail: "1 of 1 calls in flight" }];
  assert.deepEqual(new NoAgentError("No agent can take the task", { reasons }).reasons, reasons);
  assert.deepEqual(new NoAgentError("No agent is registered").reasons, []);
});
