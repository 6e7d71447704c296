/**
 * Autonomy: levels `L0` (manual) to `L4` (autonomous) per agent and action,
 * folded into governance verdicts; run and agent budgets; automatic level
 * drops after repeated denials or failures. Drops, failure streaks and agent
 * run windows live in the database (ADR 0007), shared by every process on it.
 *
 * @example Govern an agent end to end
 * ```ts
 * import {
 *   applyBudget,
 *   AutonomyController,
 *   BudgetTracker,
 *   FakeClock,
 *   PolicyEngine,
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const clock = new FakeClock(0);
 * const engine = new PolicyEngine({
 *   rules: [{ id: "agents-edit", effect: "allow", actions: ["bom.*"], actorKinds: ["agent"] }],
 * });
 * const autonomy = new AutonomyController(
 *   store,
 *   { defaultLevel: "L2", agents: { "a-1": { level: "L3" } } },
 *   { clock },
 * );
 * const budgets = new BudgetTracker(store, { clock });
 * const identity = { subject: "a-1", actorKind: "agent", roles: [], scopes: [] } as const;
 *
 * const verdict = engine.decide({ identity, action: "bom.update", resource: "bom:1" });
 * const folded = await autonomy.fold(verdict, identity.subject, "bom.update");
 * const final = applyBudget(folded, await budgets.consumeAgentRun(identity.subject, { maxRuns: 10 }));
 * assert.equal(final.decision, "allow");
 * assert.equal(final.notify, true);
 * assert.equal(final.autonomyLevel, "L3");
 * ```
 *
 * @module
 */
export * from "./budget.ts";
export * from "./controller.ts";
export * from "./fold.ts";
export * from "./levels.ts";
