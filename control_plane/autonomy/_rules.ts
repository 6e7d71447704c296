/**
 * The pure rules of durable governance state (ADR 0007): they take the rows
 * the repository read and return the decision and the rows to write. No I/O:
 * {@link AutonomyController} and {@link BudgetTracker} read and write through
 * the store port's governance repository inside one transaction, under the
 * agent's lock.
 *
 * @module
 */

/** An agent's stored autonomy state; `version` 0 means no row yet. */
export interface AutonomyState {
  /** The rank of the automatic cap (index in `AUTONOMY_LEVELS`), `null` when none. */
  readonly cap: number | null;
  /** Consecutive `denied`/`failed` outcomes. */
  readonly streak: number;
  /** The row's optimistic version, 0 when there is no row. */
  readonly version: number;
}

/** The state of an agent with no row. */
export const NO_AUTONOMY_STATE: AutonomyState = Object.freeze({ cap: null, streak: 0, version: 0 });

/** What a rule decided: the state to write (none when unchanged) and the level before and after. */
export interface AutonomyStep {
  /** The state to write, `undefined` when nothing changes. */
  readonly next: Omit<AutonomyState, "version"> | undefined;
  /** The agent's level rank before. */
  readonly from: number;
  /** The agent's level rank after. */
  readonly to: number;
}

/** `level` capped by the state's automatic cap. */
export function cappedRank(state: AutonomyState, level: number): number {
  return state.cap === null ? level : Math.min(level, state.cap);
}

/**
 * One outcome: `succeeded` resets the streak; `denied`/`failed` add to it and,
 * on reaching `demoteAfter`, restart it and cap the level one step lower
 * (never below `floor`, nor for an agent already at or under it).
 *
 * @param state The agent's stored state.
 * @param failed Whether the outcome was `denied` or `failed`.
 * @param level The agent's configured level rank.
 * @param rules The drop threshold and the floor rank.
 * @returns The step.
 */
export function decideOutcome(
  state: AutonomyState,
  failed: boolean,
  level: number,
  rules: { readonly demoteAfter: number; readonly floor: number },
): AutonomyStep {
  const from = cappedRank(state, level);
  if (!failed) {
    return { next: state.streak === 0 ? undefined : { cap: state.cap, streak: 0 }, from, to: from };
  }
  const streak = state.streak + 1;
  if (streak < rules.demoteAfter) return { next: { cap: state.cap, streak }, from, to: from };
  if (from <= rules.floor) return { next: { cap: state.cap, streak: 0 }, from, to: from };
  return { next: { cap: from - 1, streak: 0 }, from, to: from - 1 };
}

/**
 * A restore (a human decision): no cap, no streak.
 *
 * @param state The agent's stored state.
 * @param level The agent's configured level rank.
 * @returns The step.
 */
export function decideRestore(state: AutonomyState, level: number): AutonomyStep {
  const from = cappedRank(state, level);
  const unchanged = state.cap === null && state.streak === 0;
  return { next: unchanged ? undefined : { cap: null, streak: 0 }, from, to: level };
}

/** A checked per-agent rate limit. */
export interface RateRule {
  /** The most runs per window. */
  readonly maxRuns: number;
  /** The window length in milliseconds. */
  readonly windowMs: number;
  /** How the window is counted. */
  readonly window: "sliding" | "fixed";
}

/**
 * The time at or before which a run start no longer counts: `now - windowMs`
 * for a sliding window, one before the current window's start for a fixed
 * one. The repository reads the starts after it and prunes the rest.
 *
 * @param rule The rate limit.
 * @param now The time of the check.
 * @returns The cut-off, in epoch milliseconds.
 */
export function windowSince(rule: RateRule, now: number): number {
  return rule.window === "sliding"
    ? now - rule.windowMs
    : Math.floor(now / rule.windowMs) * rule.windowMs - 1;
}

/** Whether one more run fits: when not, how many would be counted and when one frees up. */
export type WindowDecision =
  | { readonly ok: true }
  | { readonly ok: false; readonly counted: number; readonly retryAfterMs: number | undefined };

/**
 * Whether an agent may start one more run; when it may, the caller records a
 * start at `now` (after pruning the starts at or before `since`).
 *
 * @param counted How many of the agent's starts are after `since`.
 * @param freeing When `counted >= maxRuns > 0`: the start that must leave the
 * window before one more fits (the `counted - maxRuns`-th after `since`, from 0).
 * @param rule The rate limit.
 * @param now The time of the check.
 * @param since {@link windowSince} of `rule` and `now`.
 * @returns The decision.
 */
export function decideAgentRun(
  counted: number,
  freeing: number | undefined,
  rule: RateRule,
  now: number,
  since: number,
): WindowDecision {
  if (counted < rule.maxRuns) return { ok: true };
  const retryAfterMs = rule.maxRuns === 0 || freeing === undefined
    ? undefined
    : rule.window === "sliding"
    ? freeing + rule.windowMs - now
    : since + 1 + rule.windowMs - now;
  return { ok: false, counted, retryAfterMs };
}

/**
 * Which start {@link decideAgentRun} needs as `freeing`: its offset among the
 * starts after `since`, oldest first, or `undefined` when none is needed.
 *
 * @param counted How many starts are after `since`.
 * @param rule The rate limit.
 * @returns The offset, or `undefined`.
 */
export function freeingOffset(counted: number, rule: RateRule): number | undefined {
  return rule.maxRuns > 0 && counted >= rule.maxRuns ? counted - rule.maxRuns : undefined;
}
