/**
 * Budgets: per run (attempts, escalations, cost units, checked against the
 * usage the run records) and per agent (runs per time window, kept in the
 * store so that every process shares one window), with an injected clock.
 *
 * @module
 */
import { z } from "zod";
import { type Clock, parseArgument, type Schema, systemClock } from "../../shared/mod.ts";
import { checkOption } from "../../shared/validate.ts";
import type { Verdict } from "../governance/mod.ts";
import type { Store, StoreTx } from "../store/port.ts";
import { decideAgentRun, freeingOffset, type RateRule, windowSince } from "./_rules.ts";

/**
 * Every budget that can be exceeded; named in the reason of a budget denial.
 *
 * @example A denial names the exceeded budget
 * ```ts
 * import { BUDGET_KINDS, BudgetTracker, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const result = new BudgetTracker(store).checkRun(
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

/** One of {@link BUDGET_KINDS}. */
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
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * assert.deepEqual(RATE_WINDOWS, ["sliding", "fixed"]);
 * const clock = new FakeClock(0);
 * const budgets = new BudgetTracker(store, { clock });
 * const limit = { maxRuns: 1, windowMs: 60_000, window: "fixed" } as const;
 * assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
 * assert.equal((await budgets.consumeAgentRun("a-1", limit)).ok, false);
 * clock.advance(60_000); // a new window starts
 * assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
 * ```
 */
export const RATE_WINDOWS = ["sliding", "fixed"] as const;

/** One of {@link RATE_WINDOWS}. */
export type RateWindow = typeof RATE_WINDOWS[number];

/** What a run has used. */
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

/** The most a run may use; absent fields are unlimited. */
export interface RunBudget {
  /** The most attempts, a non-negative integer. */
  readonly maxAttempts?: number;
  /** The most escalations, a non-negative integer. */
  readonly maxEscalations?: number;
  /** The most cost units, a non-negative number. */
  readonly maxCostUnits?: number;
}

/** How many runs an agent may start per window. */
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

/** A budget check that passed. */
export interface BudgetWithin {
  /** Within budget. */
  readonly ok: true;
}

/** A budget check that failed: a denial with code `ERR_BUDGET_EXCEEDED`. */
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

/** The result of a budget check. */
export type BudgetDecision = BudgetWithin | BudgetExceeded;

/** Options for {@link BudgetTracker}. */
export interface BudgetTrackerOptions {
  /**
   * The clock used for agent run windows.
   *
   * @default {systemClock}
   */
  readonly clock?: Clock;
}

const WITHIN: BudgetWithin = Object.freeze({ ok: true });

/**
 * Checks budgets. A budget is exceeded when usage goes over its limit
 * (`used > limit`): with `maxAttempts: 3`, a run's third attempt is within
 * budget and its fourth is refused. A run's usage is what the run records
 * (its `attempt`, `escalations` and `costUnits`); an agent's run starts live
 * in the store (`agent_run_starts`, ADR 0007), so every connection
 * and process on it counts in one window, and a restart changes nothing.
 *
 * @example Refuse the fourth attempt of a run, and an agent's third run a minute
 * ```ts
 * import { BudgetTracker, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const budgets = new BudgetTracker(store, { clock: new FakeClock(0) });
 * const limits = { maxAttempts: 3 };
 * assert.ok(budgets.checkRun({ attempts: 3, escalations: 0, costUnits: 0 }, limits).ok);
 * const fourth = budgets.checkRun({ attempts: 4, escalations: 0, costUnits: 0 }, limits);
 * assert.equal(fourth.ok ? undefined : fourth.budget, "attempts");
 *
 * const rate = { maxRuns: 2, windowMs: 60_000 };
 * assert.ok((await budgets.consumeAgentRun("a-1", rate)).ok);
 * assert.ok((await budgets.consumeAgentRun("a-1", rate)).ok);
 * assert.equal((await budgets.consumeAgentRun("a-1", rate)).ok, false);
 * // Another tracker on the same store (another process, or after a restart) shares the window.
 * assert.equal((await new BudgetTracker(store, { clock: new FakeClock(0) }).consumeAgentRun("a-1", rate)).ok, false);
 * ```
 */
export class BudgetTracker {
  readonly #clock: Clock;
  readonly #store: Store;

  /**
   * Creates a tracker on an open store.
   *
   * @param store The store holding the agents' run windows (from `openStore`).
   * @param options The clock.
   */
  constructor(store: Store, options?: BudgetTrackerOptions) {
    const { clock = systemClock } = options ?? {};
    this.#clock = clock;
    this.#store = store;
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
   * import { BudgetTracker, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const budgets = new BudgetTracker(store);
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
    return checkUsage(validateUsage(usage, "usage"), validateLimits(limits));
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
   * import { BudgetTracker, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const budgets = new BudgetTracker(store, { clock: new FakeClock(0) });
   * assert.ok((await budgets.checkAgentRun("a-1", { maxRuns: 1 })).ok);
   * assert.ok((await budgets.checkAgentRun("a-1", { maxRuns: 1 })).ok);
   * ```
   */
  async checkAgentRun(
    agentId: string,
    limit: AgentRateLimit,
    options: { tx?: StoreTx } = {},
  ): Promise<BudgetDecision> {
    return await this.#agentRun(agentId, limit, false, options.tx);
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
   * @throws {PlmError} `ERR_STORE_BUSY` when another connection holds the write lock past
   * the busy timeout.
   *
   * @example Two runs per minute
   * ```ts
   * import { BudgetTracker, FakeClock, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const budgets = new BudgetTracker(store, { clock });
   * const limit = { maxRuns: 2, windowMs: 60_000 };
   * assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
   * clock.advance(10_000);
   * assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
   * const third = await budgets.consumeAgentRun("a-1", limit);
   * assert.equal(third.ok, false);
   * if (!third.ok) assert.equal(third.retryAfterMs, 50_000);
   * clock.advance(50_000);
   * assert.ok((await budgets.consumeAgentRun("a-1", limit)).ok);
   * ```
   */
  async consumeAgentRun(
    agentId: string,
    limit: AgentRateLimit,
    options: { tx?: StoreTx } = {},
  ): Promise<BudgetDecision> {
    return await this.#agentRun(agentId, limit, true, options.tx);
  }

  #agentRun(
    agentId: string,
    limit: AgentRateLimit,
    record: boolean,
    joined: StoreTx | undefined,
  ): Promise<BudgetDecision> {
    const { maxRuns, windowMs = 60_000, window = "sliding" } = limit;
    checkOption("maxRuns", maxRuns, 0);
    checkOption("windowMs", windowMs, 1);
    if (window !== "sliding" && window !== "fixed") {
      throw new RangeError(`Unknown rate window: ${String(window)}`);
    }
    const rule: RateRule = { maxRuns, windowMs, window };
    const decide = async (tx: StoreTx): Promise<BudgetDecision> => {
      // A consume is read-modify-write under the agent's lock: on PostgreSQL, two processes
      // starting runs of one agent take turns, so the window is never over-filled.
      if (record) await tx.governance.lockAgent(agentId);
      const now = this.#clock.now();
      const since = Math.trunc(windowSince(rule, now));
      const counted = await tx.governance.countStarts(agentId, since);
      const offset = freeingOffset(counted, rule);
      const freeing = offset === undefined
        ? undefined
        : await tx.governance.nthStart(agentId, since, offset);
      const decision = decideAgentRun(counted, freeing, rule, now, since);
      if (!decision.ok) {
        const { counted, retryAfterMs } = decision;
        return exceeded(
          "agentRuns",
          maxRuns,
          counted + 1,
          `Budget agentRuns exceeded for agent ${agentId}: ${counted} of at most ${maxRuns} runs in the ${window} window of ${windowMs} ms` +
            (retryAfterMs === undefined ? "" : `; retry in ${retryAfterMs} ms`),
          retryAfterMs,
        );
      }
      if (record) {
        await tx.governance.pruneStarts(agentId, since);
        await tx.governance.insertStart(agentId, Math.trunc(now));
      }
      return WITHIN;
    };
    // A check only reads (its two reads in one snapshot); a consume reads and writes in a
    // write transaction.
    if (joined !== undefined) return decide(joined);
    return record ? this.#store.transaction(decide) : this.#store.read(decide);
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
 * import { applyBudget, BudgetTracker, type Verdict, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const verdict: Verdict = {
 *   decision: "allow",
 *   matchedRuleIds: ["r1"],
 *   reason: "Allowed by rule r1",
 *   policyVersion: "v1",
 * };
 * const budget = new BudgetTracker(store).checkRun(
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

function checkUsage(usage: RunUsage, limits: RunBudget): BudgetDecision {
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
        `Budget ${budget} exceeded: ${used} of at most ${limit}`,
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
