/**
 * Budgets: per run (attempts, escalations, cost units) and per agent (runs
 * per time window), tracked in memory with an injected clock.
 *
 * @module
 */
import { z } from "zod";
import { type Clock, parseArgument, type Schema, systemClock } from "../../shared/mod.ts";
import { checkOption } from "../../shared/validate.ts";
import type { Verdict } from "../governance/mod.ts";

/**
 * Every budget that can be exceeded; named in the reason of a budget denial.
 *
 * @example A denial names the exceeded budget
 * ```ts
 * import { BUDGET_KINDS, BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const result = new BudgetTracker().checkRun(
 *   { attempts: 1, escalations: 2, costUnits: 0 },
 *   { maxEscalations: 1 },
 * );
 * assert.equal(result.ok, false);
 * if (!result.ok) {
 *   assert.ok(BUDGET_KINDS.includes(result.budget));
 *   assert.equal(result.budget, "escalations");
 * }
 * ```
 */
export const BUDGET_KINDS = ["attempts", "escalations", "costUnits", "agentRuns"] as const;

/**
 * One of {@link BUDGET_KINDS}.
 *
 * @example Name the budget an agent ran out of
 * ```ts
 * import { type BudgetKind, BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const result = new BudgetTracker().checkAgentRun("a-1", { maxRuns: 0 });
 * const kind: BudgetKind | undefined = result.ok ? undefined : result.budget;
 * assert.equal(kind, "agentRuns");
 * ```
 */
export type BudgetKind = typeof BUDGET_KINDS[number];

/**
 * How an agent's run window is counted: `sliding` counts runs in the last
 * `windowMs` milliseconds; `fixed` counts runs since the start of the current
 * window (`floor(now / windowMs) * windowMs`). Use one limit per agent: runs
 * outside the window of the latest check are forgotten.
 *
 * @example Count an agent's runs in a fixed window
 * ```ts
 * import {
 *   BudgetTracker,
 *   FakeClock,
 *   RATE_WINDOWS,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(RATE_WINDOWS, ["sliding", "fixed"]);
 * const clock = new FakeClock(0);
 * const budgets = new BudgetTracker({ clock });
 * const limit = { maxRuns: 1, windowMs: 60_000, window: "fixed" } as const;
 * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
 * assert.equal(budgets.consumeAgentRun("a-1", limit).ok, false);
 * clock.advance(60_000); // a new window starts
 * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
 * ```
 */
export const RATE_WINDOWS = ["sliding", "fixed"] as const;

/**
 * One of {@link RATE_WINDOWS}.
 *
 * @example A sliding window frees runs one by one
 * ```ts
 * import { BudgetTracker, type RateWindow } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock(0);
 * const budgets = new BudgetTracker({ clock });
 * const window: RateWindow = "sliding";
 * const limit = { maxRuns: 1, windowMs: 1_000, window };
 * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
 * clock.advance(400);
 * const second = budgets.consumeAgentRun("a-1", limit);
 * assert.equal(second.ok ? 0 : second.retryAfterMs, 600);
 * ```
 */
export type RateWindow = typeof RATE_WINDOWS[number];

/**
 * What a run has used.
 *
 * @example Check a run's usage against a budget
 * ```ts
 * import { BudgetTracker, type RunUsage } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const budgets = new BudgetTracker();
 * budgets.consumeRun("r-1", { attempts: 2, costUnits: 10 }, {});
 * const usage: RunUsage = budgets.runUsage("r-1");
 * assert.deepEqual(usage, { attempts: 2, escalations: 0, costUnits: 10 });
 * assert.ok(budgets.checkRun(usage, { maxAttempts: 2 }).ok);
 * assert.equal(budgets.checkRun({ ...usage, attempts: 3 }, { maxAttempts: 2 }).ok, false);
 * ```
 */
export interface RunUsage {
  /** Attempts started. */
  readonly attempts: number;
  /** Escalations made. */
  readonly escalations: number;
  /** Cost units spent (tokens, money, ...: the caller's unit). */
  readonly costUnits: number;
}

/**
 * Zod schema of {@link RunUsage}: `attempts` and `escalations` non-negative
 * integers, `costUnits` a non-negative finite number; unknown keys are refused.
 *
 * @example Refuse a NaN cost
 * ```ts
 * import { RunUsageSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(RunUsageSchema.safeParse({ attempts: 1, escalations: 0, costUnits: 2.5 }).success);
 * assert.equal(RunUsageSchema.safeParse({ attempts: 1, escalations: 0, costUnits: NaN }).success, false);
 * ```
 */
export const RunUsageSchema: Schema<RunUsage> = z.strictObject({
  attempts: z.int().min(0),
  escalations: z.int().min(0),
  costUnits: z.number().min(0),
}).readonly();

/**
 * The most a run may use; absent fields are unlimited.
 *
 * @example Allow a single attempt per run
 * ```ts
 * import { BudgetTracker, type RunBudget } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const budget: RunBudget = { maxAttempts: 1 };
 * const budgets = new BudgetTracker();
 * assert.ok(budgets.consumeRun("r-1", { attempts: 1 }, budget).ok);
 * const second = budgets.consumeRun("r-1", { attempts: 1 }, budget);
 * assert.equal(second.ok ? undefined : second.budget, "attempts");
 * ```
 */
export interface RunBudget {
  /** The most attempts, a non-negative integer. */
  readonly maxAttempts?: number;
  /** The most escalations, a non-negative integer. */
  readonly maxEscalations?: number;
  /** The most cost units, a non-negative number. */
  readonly maxCostUnits?: number;
}

/**
 * How many runs an agent may start per window.
 *
 * @example Two runs per hour
 * ```ts
 * import { type AgentRateLimit, BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock(0);
 * const budgets = new BudgetTracker({ clock });
 * const limit: AgentRateLimit = { maxRuns: 2, windowMs: 3_600_000 };
 * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
 * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
 * assert.equal(budgets.consumeAgentRun("a-1", limit).ok, false);
 * clock.advance(3_600_000);
 * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
 * ```
 */
export interface AgentRateLimit {
  /** The most runs per window, a non-negative integer. */
  readonly maxRuns: number;
  /**
   * The window length in milliseconds, a positive integer.
   *
   * @default {60000}
   */
  readonly windowMs?: number;
  /**
   * How the window is counted.
   *
   * @default {"sliding"}
   */
  readonly window?: RateWindow;
}

/**
 * A budget check that passed.
 *
 * @example A recorded attempt within budget
 * ```ts
 * import { type BudgetWithin, BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const budgets = new BudgetTracker();
 * const result = budgets.consumeRun("r-1", { attempts: 1 }, { maxAttempts: 1 });
 * assert.ok(result.ok);
 * const within: BudgetWithin = result;
 * assert.deepEqual(within, { ok: true });
 * assert.equal(budgets.runUsage("r-1").attempts, 1);
 * ```
 */
export interface BudgetWithin {
  /** Within budget. */
  readonly ok: true;
}

/**
 * A budget check that failed: a denial with code `ERR_BUDGET_EXCEEDED`.
 *
 * @example Read the limit and usage of a refusal
 * ```ts
 * import { type BudgetExceeded, BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const result = new BudgetTracker().checkRun(
 *   { attempts: 1, escalations: 0, costUnits: 7.5 },
 *   { maxCostUnits: 5 },
 * );
 * assert.ok(!result.ok);
 * const exceeded: BudgetExceeded = result;
 * assert.equal(exceeded.code, "ERR_BUDGET_EXCEEDED");
 * assert.deepEqual([exceeded.budget, exceeded.limit, exceeded.used], ["costUnits", 5, 7.5]);
 * ```
 */
export interface BudgetExceeded {
  /** Over budget. */
  readonly ok: false;
  /** Always `deny`. */
  readonly decision: "deny";
  /** Always `ERR_BUDGET_EXCEEDED`. */
  readonly code: "ERR_BUDGET_EXCEEDED";
  /** The budget that was exceeded (the first one, in {@link BUDGET_KINDS} order). */
  readonly budget: BudgetKind;
  /** The limit of that budget. */
  readonly limit: number;
  /** The usage that would exceed it. */
  readonly used: number;
  /** One line naming the budget. */
  readonly reason: string;
  /** For `agentRuns`: milliseconds until a run frees up. */
  readonly retryAfterMs?: number;
}

/**
 * The result of a budget check.
 *
 * @example Apply a budget check to a verdict
 * ```ts
 * import {
 *   applyBudget,
 *   type BudgetDecision,
 *   BudgetTracker,
 *   type Verdict,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const allow: Verdict = {
 *   decision: "allow", matchedRuleIds: [], reason: "Allowed", policyVersion: "v1",
 * };
 * const within: BudgetDecision = new BudgetTracker().checkAgentRun("a-1", { maxRuns: 1 });
 * const over: BudgetDecision = new BudgetTracker().checkAgentRun("a-1", { maxRuns: 0 });
 * assert.equal(applyBudget(allow, within).decision, "allow");
 * assert.equal(applyBudget(allow, over).code, "ERR_BUDGET_EXCEEDED");
 * ```
 */
export type BudgetDecision = BudgetWithin | BudgetExceeded;

/**
 * Options for {@link BudgetTracker}.
 *
 * @example Drive agent run windows with a fake clock
 * ```ts
 * import {
 *   BudgetTracker,
 *   type BudgetTrackerOptions,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock(0);
 * const options: BudgetTrackerOptions = { clock };
 * const budgets = new BudgetTracker(options);
 * const limit = { maxRuns: 1, windowMs: 1_000 };
 * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
 * assert.equal(budgets.checkAgentRun("a-1", limit).ok, false);
 * clock.advance(1_000);
 * assert.ok(budgets.checkAgentRun("a-1", limit).ok);
 * ```
 */
export interface BudgetTrackerOptions {
  /**
   * The clock used for agent run windows.
   *
   * @default {systemClock}
   */
  readonly clock?: Clock;
}

const ZERO_USAGE: RunUsage = Object.freeze({ attempts: 0, escalations: 0, costUnits: 0 });
const WITHIN: BudgetWithin = Object.freeze({ ok: true });

/**
 * Tracks budgets in memory. A budget is exceeded when usage goes over its
 * limit (`used > limit`): with `maxAttempts: 3`, three attempts are
 * consumed and the fourth is refused.
 *
 * @example Refuse the fourth attempt of a run
 * ```ts
 * import { BudgetTracker, FakeClock } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const budgets = new BudgetTracker({ clock: new FakeClock(0) });
 * const limits = { maxAttempts: 3 };
 * for (let i = 0; i < 3; i++) assert.ok(budgets.consumeRun("r-1", { attempts: 1 }, limits).ok);
 * const fourth = budgets.consumeRun("r-1", { attempts: 1 }, limits);
 * assert.equal(fourth.ok, false);
 * if (!fourth.ok) assert.equal(fourth.budget, "attempts");
 * assert.equal(budgets.runUsage("r-1").attempts, 3);
 * ```
 */
export class BudgetTracker {
  readonly #clock: Clock;
  readonly #runs = new Map<string, RunUsage>();
  readonly #agentRuns = new Map<string, number[]>();

  /**
   * Creates an empty tracker.
   *
   * @param options The clock.
   */
  constructor(options?: BudgetTrackerOptions) {
    const { clock = systemClock } = options ?? {};
    this.#clock = clock;
  }

  /**
   * Checks usage against a run budget, without recording anything. Pass the
   * usage including what is about to be spent.
   *
   * @param usage The usage to check.
   * @param limits The run budget.
   * @returns Within budget, or the first exceeded budget (attempts, then
   * escalations, then cost units).
   * @throws {RangeError} When a limit is negative or not finite, or a count is not an integer.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the field when `usage` does not match
   * {@link RunUsageSchema}.
   *
   * @example Check cost units
   * ```ts
   * import { BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const budgets = new BudgetTracker();
   * const usage = { attempts: 1, escalations: 0, costUnits: 120 };
   * const result = budgets.checkRun(usage, { maxCostUnits: 100 });
   * assert.equal(result.ok, false);
   * if (!result.ok) {
   *   assert.equal(result.code, "ERR_BUDGET_EXCEEDED");
   *   assert.match(result.reason, /costUnits/);
   * }
   * ```
   */
  checkRun(usage: RunUsage, limits: RunBudget): BudgetDecision {
    return checkUsage(validateUsage(usage, "usage"), validateLimits(limits), undefined);
  }

  /**
   * Adds `delta` to a run's recorded usage when the total stays within
   * budget; otherwise records nothing and reports the exceeded budget.
   *
   * @param runId The run.
   * @param delta What is about to be spent; absent fields count as 0.
   * @param limits The run budget.
   * @returns Within budget (and recorded), or the first exceeded budget.
   * @throws {RangeError} When a limit is negative or not finite, or a count is not an integer.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the field when `delta` does not match
   * {@link RunUsageSchema}.
   *
   * @example Escalations are limited too
   * ```ts
   * import { BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const budgets = new BudgetTracker();
   * assert.ok(budgets.consumeRun("r-1", { escalations: 1 }, { maxEscalations: 1 }).ok);
   * assert.equal(budgets.consumeRun("r-1", { escalations: 1 }, { maxEscalations: 1 }).ok, false);
   * ```
   */
  consumeRun(runId: string, delta: Partial<RunUsage>, limits: RunBudget): BudgetDecision {
    const checkedLimits = validateLimits(limits);
    const add = validateUsage({ ...ZERO_USAGE, ...delta }, "delta");
    const current = this.runUsage(runId);
    const next: RunUsage = {
      attempts: current.attempts + add.attempts,
      escalations: current.escalations + add.escalations,
      costUnits: current.costUnits + add.costUnits,
    };
    const result = checkUsage(next, checkedLimits, runId);
    if (result.ok) this.#runs.set(runId, Object.freeze(next));
    return result;
  }

  /**
   * A run's recorded usage (zeros for an unknown run).
   *
   * @param runId The run.
   * @returns The usage recorded by {@link BudgetTracker.consumeRun}.
   *
   * @example Read usage
   * ```ts
   * import { BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const budgets = new BudgetTracker();
   * budgets.consumeRun("r-1", { costUnits: 2.5 }, {});
   * assert.deepEqual(budgets.runUsage("r-1"), { attempts: 0, escalations: 0, costUnits: 2.5 });
   * ```
   */
  runUsage(runId: string): RunUsage {
    return this.#runs.get(runId) ?? ZERO_USAGE;
  }

  /**
   * Forgets a finished run's usage.
   *
   * @param runId The run.
   * @returns Whether the run was known.
   *
   * @example Forget a run
   * ```ts
   * import { BudgetTracker } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const budgets = new BudgetTracker();
   * budgets.consumeRun("r-1", { attempts: 1 }, {});
   * assert.ok(budgets.forgetRun("r-1"));
   * assert.equal(budgets.runUsage("r-1").attempts, 0);
   * ```
   */
  forgetRun(runId: string): boolean {
    return this.#runs.delete(runId);
  }

  /**
   * Whether an agent may start one more run now, without recording it.
   *
   * @param agentId The agent.
   * @param limit Runs per window.
   * @returns Within budget, or `agentRuns` exceeded with `retryAfterMs`.
   * @throws {RangeError} When the limit is invalid.
   *
   * @example Check before deciding
   * ```ts
   * import { BudgetTracker, FakeClock } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const budgets = new BudgetTracker({ clock: new FakeClock(0) });
   * assert.ok(budgets.checkAgentRun("a-1", { maxRuns: 1 }).ok);
   * assert.ok(budgets.checkAgentRun("a-1", { maxRuns: 1 }).ok);
   * ```
   */
  checkAgentRun(agentId: string, limit: AgentRateLimit): BudgetDecision {
    return this.#agentRun(agentId, limit, false);
  }

  /**
   * Records the start of a run for an agent when the window has room;
   * otherwise records nothing and reports `agentRuns` exceeded.
   *
   * @param agentId The agent.
   * @param limit Runs per window.
   * @returns Within budget (and recorded), or `agentRuns` exceeded with
   * `retryAfterMs`.
   * @throws {RangeError} When the limit is invalid.
   *
   * @example Two runs per minute
   * ```ts
   * import { BudgetTracker, FakeClock } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const budgets = new BudgetTracker({ clock });
   * const limit = { maxRuns: 2, windowMs: 60_000 };
   * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
   * clock.advance(10_000);
   * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
   * const third = budgets.consumeAgentRun("a-1", limit);
   * assert.equal(third.ok, false);
   * if (!third.ok) assert.equal(third.retryAfterMs, 50_000);
   * clock.advance(50_000);
   * assert.ok(budgets.consumeAgentRun("a-1", limit).ok);
   * ```
   */
  consumeAgentRun(agentId: string, limit: AgentRateLimit): BudgetDecision {
    return this.#agentRun(agentId, limit, true);
  }

  #agentRun(agentId: string, limit: AgentRateLimit, record: boolean): BudgetDecision {
    const { maxRuns, windowMs = 60_000, window = "sliding" } = limit;
    checkOption("maxRuns", maxRuns, 0);
    checkOption("windowMs", windowMs, 1);
    if (window !== "sliding" && window !== "fixed") {
      throw new RangeError(`Unknown rate window: ${String(window)}`);
    }
    const now = this.#clock.now();
    // Runs started after `since` count; older ones are dropped.
    const since = window === "sliding" ? now - windowMs : Math.floor(now / windowMs) * windowMs - 1;
    const counted = (this.#agentRuns.get(agentId) ?? []).filter((t) => t > since);
    if (counted.length >= maxRuns) {
      this.#store(agentId, counted);
      // The run that must leave the window before one more fits (none when maxRuns is 0).
      const freeing = [...counted].sort((a, b) => a - b)[counted.length - maxRuns];
      const retryAfterMs = maxRuns === 0 || freeing === undefined
        ? undefined
        : window === "sliding"
        ? freeing + windowMs - now
        : since + 1 + windowMs - now;
      return exceeded(
        "agentRuns",
        maxRuns,
        counted.length + 1,
        `Budget agentRuns exceeded for agent ${agentId}: ${counted.length} of at most ${maxRuns} runs in the ${window} window of ${windowMs} ms` +
          (retryAfterMs === undefined ? "" : `; retry in ${retryAfterMs} ms`),
        retryAfterMs,
      );
    }
    if (record) counted.push(now);
    this.#store(agentId, counted);
    return WITHIN;
  }

  #store(agentId: string, starts: number[]): void {
    if (starts.length === 0) this.#agentRuns.delete(agentId);
    else this.#agentRuns.set(agentId, starts);
  }
}

/**
 * Applies a budget check to a verdict: an exceeded budget turns `allow` and
 * `require_approval` into `deny` with code `ERR_BUDGET_EXCEEDED` and the
 * budget's reason (dropping `approval`). A `deny` verdict, or a check within
 * budget, returns the verdict unchanged. Other fields (matched rules, policy
 * version, autonomy level) are kept.
 *
 * @param verdict The verdict so far.
 * @param budget The budget check.
 * @returns The resulting verdict.
 *
 * @example Deny an allowed action over budget
 * ```ts
 * import { applyBudget, BudgetTracker, type Verdict } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const verdict: Verdict = {
 *   decision: "allow",
 *   matchedRuleIds: ["r1"],
 *   reason: "Allowed by rule r1",
 *   policyVersion: "v1",
 * };
 * const budget = new BudgetTracker().checkRun(
 *   { attempts: 4, escalations: 0, costUnits: 0 },
 *   { maxAttempts: 3 },
 * );
 * const denied = applyBudget(verdict, budget);
 * assert.equal(denied.decision, "deny");
 * assert.equal(denied.code, "ERR_BUDGET_EXCEEDED");
 * assert.deepEqual(denied.matchedRuleIds, ["r1"]);
 * ```
 */
export function applyBudget<V extends Verdict>(verdict: V, budget: BudgetDecision): V {
  if (budget.ok || verdict.decision === "deny") return verdict;
  const { approval: _dropped, ...rest } = verdict;
  const denied: Verdict = {
    ...rest,
    decision: "deny",
    code: "ERR_BUDGET_EXCEEDED",
    reason: budget.reason,
  };
  return denied as V;
}

function validateLimits(limits: RunBudget): RunBudget {
  const { maxAttempts, maxEscalations, maxCostUnits } = limits;
  if (maxAttempts !== undefined) checkOption("maxAttempts", maxAttempts, 0);
  if (maxEscalations !== undefined) checkOption("maxEscalations", maxEscalations, 0);
  if (maxCostUnits !== undefined) checkAmount(maxCostUnits, "maxCostUnits");
  return limits;
}

function validateUsage(usage: RunUsage, what: string): RunUsage {
  return parseArgument(RunUsageSchema, usage, what);
}

function checkAmount(value: number, name: string): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`Cannot use ${name} ${value}: expected a non-negative finite number`);
  }
}

function checkUsage(
  usage: RunUsage,
  limits: RunBudget,
  runId: string | undefined,
): BudgetDecision {
  const where = runId === undefined ? "" : ` for run ${runId}`;
  const pairs: readonly [BudgetKind, number, number | undefined][] = [
    ["attempts", usage.attempts, limits.maxAttempts],
    ["escalations", usage.escalations, limits.maxEscalations],
    ["costUnits", usage.costUnits, limits.maxCostUnits],
  ];
  for (const [budget, used, limit] of pairs) {
    if (limit !== undefined && used > limit) {
      return exceeded(
        budget,
        limit,
        used,
        `Budget ${budget} exceeded${where}: ${used} of at most ${limit}`,
      );
    }
  }
  return WITHIN;
}

function exceeded(
  budget: BudgetKind,
  limit: number,
  used: number,
  reason: string,
  retryAfterMs?: number,
): BudgetExceeded {
  const base = {
    ok: false,
    decision: "deny",
    code: "ERR_BUDGET_EXCEEDED",
    budget,
    limit,
    used,
    reason,
  } as const;
  return retryAfterMs === undefined ? base : { ...base, retryAfterMs };
}
