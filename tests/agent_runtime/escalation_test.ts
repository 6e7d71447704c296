import assert from "node:assert/strict";
import { EscalationLadder } from "../../agent_runtime/mod.ts";

Deno.test("new EscalationLadder() refuses tiers that do not rise, naming the step", async (t) => {
  const cases: [string, number[], RegExp][] = [
    ["a repeated tier", [2, 2], /steps\[1\]\.minTier/],
    ["a falling tier", [3, 1], /steps\[1\]\.minTier/],
    ["a fractional tier", [1.5], /steps\[0\]\.minTier/],
    ["a NaN tier", [NaN], /steps\[0\]\.minTier/],
    ["a negative tier", [-1], /steps\[0\]\.minTier/],
  ];
  for (const [name, tiers, field] of cases) {
    await t.step(name, () => {
      const steps = tiers.map((minTier) => ({ kind: "tier" as const, minTier }));
      assert.throws(
        () => new EscalationLadder(steps),
        (err) => err instanceof RangeError && field.test(err.message),
      );
    });
  }
  assert.equal(new EscalationLadder([{ kind: "tier", minTier: 0 }]).minTier(1), 0);
});
