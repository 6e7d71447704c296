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
export {
  type AgentRateLimit,
  applyBudget,
  BUDGET_KINDS,
  type BudgetDecision,
  type BudgetExceeded,
  type BudgetKind,
  BudgetTracker,
  type BudgetTrackerOptions,
  type BudgetWithin,
  RATE_WINDOWS,
  type RateWindow,
  type RunBudget,
  type RunUsage,
  RunUsageSchema,
} from "./budget.ts";
export {
  AUTONOMY_CHANGE_CAUSES,
  AUTONOMY_OUTCOMES,
  type AutonomyCallOptions,
  type AutonomyChangeCause,
  AutonomyController,
  type AutonomyControllerOptions,
  type AutonomyLevelChange,
  type AutonomyOutcome,
} from "./controller.ts";
export {
  type AutonomyVerdict,
  DEFAULT_AUTONOMY_APPROVAL,
  foldAutonomy,
  type FoldAutonomyOptions,
} from "./fold.ts";
export {
  type AgentAutonomy,
  AUTONOMY_LEVEL_NAMES,
  AUTONOMY_LEVELS,
  type AutonomyActionLevel,
  type AutonomyLevel,
  AutonomyLevelSchema,
  type AutonomyPolicy,
  AutonomyPolicySchema,
  compareAutonomyLevels,
  parseAutonomyPolicy,
} from "./levels.ts";
