/**
 * Retries: {@link RetryPolicy} (validated once), the pure {@link nextDelay}
 * and {@link shouldRetry}, a run-level {@link RetryBudget}, and the
 * {@link retry} wrapper that throws {@link RetryExhaustedError}.
 *
 * @module
 */
import { assertNever, type Clock, PlmError, systemClock } from "../control_plane/mod.ts";

/**
 * How a backoff delay is randomised, with `base = min(maxDelayMs,
 * initialDelayMs * backoffCoefficient ** (attempt - 1))`:
 *
 * - `full`: `random() * base`, anywhere in `[0, base]`;
 * - `equal`: `base / 2 + random() * base / 2`, in `[base / 2, base]`;
 * - `none`: exactly `base`.
 *
 * @example Every mode is a valid policy jitter
 * ```ts
 * import { JITTER_MODES, RetryPolicy } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(JITTER_MODES, ["full", "equal", "none"]);
 * for (const jitter of JITTER_MODES) {
 *   assert.equal(new RetryPolicy({ jitter }).jitter, jitter);
 * }
 * ```
 */
export const JITTER_MODES = ["full", "equal", "none"] as const;

/**
 * One of {@link JITTER_MODES}.
 *
 * @example Equal jitter keeps at least half the delay
 * ```ts
 * import {
 *   type JitterMode,
 *   nextDelay,
 *   RetryPolicy,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const jitter: JitterMode = "equal";
 * const policy = new RetryPolicy({ initialDelayMs: 100, jitter });
 * assert.equal(policy.jitter, "equal");
 * assert.equal(nextDelay(policy, 1, () => 0), 50);
 * assert.equal(nextDelay(policy, 1, () => 1), 100);
 * ```
 */
export type JitterMode = typeof JITTER_MODES[number];

/**
 * The codes never retried unless a policy says otherwise: a cancelled call,
 * a passed run deadline, a refusal by governance, a spent autonomy budget and
 * a bad argument do not get better by trying again.
 *
 * @example The default policy never retries these codes
 * ```ts
 * import {
 *   DEFAULT_NON_RETRYABLE_CODES,
 *   PlmError,
 *   RetryPolicy,
 *   shouldRetry,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const policy = new RetryPolicy();
 * assert.deepEqual(policy.nonRetryableCodes, DEFAULT_NON_RETRYABLE_CODES);
 * assert.ok(!shouldRetry(policy, new PlmError("ERR_FORBIDDEN", "Denied by policy"), 1));
 * ```
 */
export const DEFAULT_NON_RETRYABLE_CODES = [
  "ERR_CANCELLED",
  "ERR_DEADLINE_EXCEEDED",
  "ERR_FORBIDDEN",
  "ERR_BUDGET_EXCEEDED",
  "ERR_INVALID_ARGUMENT",
] as const;

/**
 * Options for {@link RetryPolicy}; the defaults follow Temporal's.
 *
 * @example Stop after two attempts
 * ```ts
 * import {
 *   FakeClock,
 *   retry,
 *   RetryExhaustedError,
 *   RetryPolicy,
 *   type RetryPolicyOptions,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const options: RetryPolicyOptions = { maxAttempts: 2, initialDelayMs: 10, jitter: "none" };
 * const clock = new FakeClock();
 * const sleep = (ms: number) => Promise.resolve(clock.advance(ms));
 * let calls = 0;
 * const flaky = () => Promise.reject(new Error(`flaky #${++calls}`));
 * await assert.rejects(
 *   retry(flaky, new RetryPolicy(options), { clock, sleep }),
 *   (err) => err instanceof RetryExhaustedError && err.reason === "max_attempts",
 * );
 * assert.equal(calls, 2);
 * assert.equal(clock.now(), 10);
 * ```
 */
export interface RetryPolicyOptions {
  /**
   * Attempts per {@link retry} call, the first included. A positive integer, or `Infinity`.
   *
   * @default {3}
   */
  maxAttempts?: number;
  /**
   * The delay after the first failed attempt, in milliseconds. Finite, not negative.
   *
   * @default {1_000}
   */
  initialDelayMs?: number;
  /**
   * The factor each further delay grows by. Finite, at least 1.
   *
   * @default {2}
   */
  backoffCoefficient?: number;
  /**
   * The longest delay, jitter and `Retry-After` included. Finite, at least `initialDelayMs`.
   *
   * @default {100 * initialDelayMs}
   */
  maxDelayMs?: number;
  /**
   * How delays are randomised; see {@link JITTER_MODES}.
   *
   * @default {"full"}
   */
  jitter?: JitterMode;
  /**
   * Error codes never retried. Replaces the defaults when given.
   *
   * @default {DEFAULT_NON_RETRYABLE_CODES}
   */
  nonRetryableCodes?: readonly string[];
  /**
   * The most attempts a run may make in all, across every {@link retry} call
   * of every escalation step: a positive integer, or `undefined` for no cap
   * beyond `maxAttempts`. Give each run one `new RetryBudget(policy.retryBudget)`
   * and pass it to each `retry` call as `budget`.
   *
   * @default {undefined}
   */
  retryBudget?: number;
}

function isAttemptCount(value: number): boolean {
  return value === Number.POSITIVE_INFINITY || (Number.isSafeInteger(value) && value >= 1);
}

/**
 * When and how often to retry. Every field is checked once, here; the
 * instance is frozen.
 *
 * @example Temporal's defaults, and a custom policy
 * ```ts
 * import { RetryPolicy } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const defaults = new RetryPolicy();
 * assert.equal(defaults.maxAttempts, 3);
 * assert.equal(defaults.maxDelayMs, 100_000);
 * const quick = new RetryPolicy({ initialDelayMs: 10, maxAttempts: 5, jitter: "none" });
 * assert.equal(quick.maxDelayMs, 1_000);
 * assert.throws(() => new RetryPolicy({ backoffCoefficient: 0.5 }), RangeError);
 * ```
 */
export class RetryPolicy {
  /** Attempts per {@link retry} call, the first included. */
  readonly maxAttempts: number;
  /** The delay after the first failed attempt, in milliseconds. */
  readonly initialDelayMs: number;
  /** The factor each further delay grows by. */
  readonly backoffCoefficient: number;
  /** The longest delay, in milliseconds. */
  readonly maxDelayMs: number;
  /** How delays are randomised. */
  readonly jitter: JitterMode;
  /** Error codes never retried. */
  readonly nonRetryableCodes: readonly string[];
  /** The most attempts a run may make in all, or `undefined`. */
  readonly retryBudget: number | undefined;

  /**
   * Creates a policy.
   *
   * @param options The limits, the backoff and the codes never retried.
   * @throws {RangeError} When a number is out of range.
   * @throws {TypeError} When `jitter` is unknown or `nonRetryableCodes` is not
   * an array of strings.
   */
  constructor(options?: RetryPolicyOptions) {
    const {
      maxAttempts = 3,
      initialDelayMs = 1_000,
      backoffCoefficient = 2,
      jitter = "full",
      nonRetryableCodes = DEFAULT_NON_RETRYABLE_CODES,
      retryBudget,
    } = options ?? {};
    if (!isAttemptCount(maxAttempts)) {
      throw new RangeError(
        `Cannot use maxAttempts ${maxAttempts}: it must be a positive integer or Infinity`,
      );
    }
    if (!Number.isFinite(initialDelayMs) || initialDelayMs < 0) {
      throw new RangeError(
        `Cannot use initialDelayMs ${initialDelayMs}: it must be finite and not negative`,
      );
    }
    if (!Number.isFinite(backoffCoefficient) || backoffCoefficient < 1) {
      throw new RangeError(
        `Cannot use backoffCoefficient ${backoffCoefficient}: it must be finite and at least 1`,
      );
    }
    const maxDelayMs = options?.maxDelayMs ?? 100 * initialDelayMs;
    if (!Number.isFinite(maxDelayMs) || maxDelayMs < initialDelayMs) {
      throw new RangeError(
        `Cannot use maxDelayMs ${maxDelayMs}: it must be finite and at least initialDelayMs ${initialDelayMs}`,
      );
    }
    if (!(JITTER_MODES as readonly unknown[]).includes(jitter)) {
      throw new TypeError(
        `Cannot use jitter ${String(jitter)}: it must be one of ${JITTER_MODES.join(", ")}`,
      );
    }
    if (
      !Array.isArray(nonRetryableCodes) ||
      !nonRetryableCodes.every((code) => typeof code === "string")
    ) {
      throw new TypeError("Cannot use nonRetryableCodes: it must be an array of strings");
    }
    if (retryBudget !== undefined && !isAttemptCount(retryBudget)) {
      throw new RangeError(
        `Cannot use retryBudget ${retryBudget}: it must be a positive integer or Infinity`,
      );
    }
    this.maxAttempts = maxAttempts;
    this.initialDelayMs = initialDelayMs;
    this.backoffCoefficient = backoffCoefficient;
    this.maxDelayMs = maxDelayMs;
    this.jitter = jitter;
    this.nonRetryableCodes = Object.freeze([...nonRetryableCodes]);
    this.retryBudget = retryBudget;
    Object.freeze(this);
  }
}

/**
 * The attempts a run may still make, shared by every {@link retry} call of
 * the run (each escalation step included): each attempt takes one, the first
 * too. A counter, not a token bucket: it caps one run's attempts; it does not
 * meter the retry rate of the whole system.
 *
 * @example Share a budget of 4 attempts between two steps
 * ```ts
 * import { RetryBudget } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const budget = new RetryBudget(4);
 * assert.ok(budget.tryConsume());
 * assert.ok(budget.tryConsume());
 * assert.equal(budget.remaining, 2);
 * ```
 */
export class RetryBudget {
  /** The attempts the run may make in all. */
  readonly maxAttempts: number;
  #used = 0;

  /**
   * Creates a budget.
   *
   * @param maxAttempts A positive integer, or `Infinity`; usually `policy.retryBudget ?? Infinity`.
   * @throws {RangeError} When `maxAttempts` is out of range.
   */
  constructor(maxAttempts: number) {
    if (!isAttemptCount(maxAttempts)) {
      throw new RangeError(
        `Cannot use a retry budget of ${maxAttempts}: it must be a positive integer or Infinity`,
      );
    }
    this.maxAttempts = maxAttempts;
  }

  /** The attempts made so far. */
  get used(): number {
    return this.#used;
  }

  /** The attempts left. */
  get remaining(): number {
    return this.maxAttempts - this.#used;
  }

  /**
   * Takes one attempt from the budget.
   *
   * @returns `false` when the budget is spent (nothing is taken).
   */
  tryConsume(): boolean {
    if (this.#used >= this.maxAttempts) return false;
    this.#used++;
    return true;
  }
}

/**
 * The delay before the attempt after `attempt`, in milliseconds: `base =
 * min(maxDelayMs, initialDelayMs * backoffCoefficient ** (attempt - 1))`, then
 * jittered (see {@link JITTER_MODES}). Never above `maxDelayMs`. Pure.
 *
 * @param policy The policy.
 * @param attempt The attempt that just failed, 1-based.
 * @param random Returns a number in `[0, 1]`.
 * @returns The delay.
 * @throws {RangeError} When `attempt` is not a positive integer or `random()`
 * is outside `[0, 1]`.
 *
 * @example Exponential backoff without jitter
 * ```ts
 * import { nextDelay, RetryPolicy } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const policy = new RetryPolicy({ initialDelayMs: 100, maxDelayMs: 500, jitter: "none" });
 * const delays = [1, 2, 3, 4].map((n) => nextDelay(policy, n, () => 0.5));
 * assert.deepEqual(delays, [100, 200, 400, 500]);
 * ```
 */
export function nextDelay(policy: RetryPolicy, attempt: number, random: () => number): number {
  if (!Number.isSafeInteger(attempt) || attempt < 1) {
    throw new RangeError(`Cannot compute the delay after attempt ${attempt}`);
  }
  const { initialDelayMs, maxDelayMs } = policy;
  const grown = initialDelayMs === 0
    ? 0
    : initialDelayMs * policy.backoffCoefficient ** (attempt - 1);
  const base = grown < maxDelayMs ? grown : maxDelayMs;
  switch (policy.jitter) {
    case "none":
      return base;
    case "full":
      return unit(random) * base;
    case "equal":
      return base / 2 + unit(random) * base / 2;
    default:
      throw new TypeError(`Cannot apply jitter ${String(policy.jitter)}`);
  }
}

function unit(random: () => number): number {
  const r = random();
  if (!(r >= 0 && r <= 1)) throw new RangeError(`Cannot use random value ${r}: not in [0, 1]`);
  return r;
}

/**
 * The stable code of anything thrown: its `code` when that is a string,
 * else `ERR_AGENT_FAILED`. Retry and escalation branch on this, not on classes.
 *
 * @param error Anything caught.
 * @returns The code.
 *
 * @example Read codes
 * ```ts
 * import { errorCode, PlmError } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errorCode(new PlmError("ERR_TIMEOUT", "Slow")), "ERR_TIMEOUT");
 * assert.equal(errorCode(new Error("boom")), "ERR_AGENT_FAILED");
 * ```
 */
export function errorCode(error: unknown): string {
  const code = typeof error === "object" && error !== null
    ? (error as { code?: unknown }).code
    : undefined;
  return typeof code === "string" ? code : "ERR_AGENT_FAILED";
}

/**
 * Why {@link retry} stops retrying an error that could otherwise be retried.
 *
 * @example An exhaustion carries one of the reasons
 * ```ts
 * import {
 *   RETRY_STOP_REASONS,
 *   RetryExhaustedError,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const err = new RetryExhaustedError("Cannot retry past the deadline", {
 *   attempts: 2,
 *   reason: "deadline",
 * });
 * assert.ok(RETRY_STOP_REASONS.includes(err.reason));
 * ```
 */
export const RETRY_STOP_REASONS = ["max_attempts", "budget", "deadline"] as const;

/**
 * One of {@link RETRY_STOP_REASONS}.
 *
 * @example A spent budget stops retrying
 * ```ts
 * import {
 *   retry,
 *   RetryBudget,
 *   RetryExhaustedError,
 *   RetryPolicy,
 *   type RetryStopReason,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const budget = new RetryBudget(1);
 * const policy = new RetryPolicy({ maxAttempts: 5 });
 * const error = await retry(() => Promise.reject(new Error("flaky")), policy, { budget })
 *   .catch((err: unknown) => err);
 * assert.ok(error instanceof RetryExhaustedError);
 * const reason: RetryStopReason = error.reason;
 * assert.equal(reason, "budget");
 * ```
 */
export type RetryStopReason = typeof RETRY_STOP_REASONS[number];

type Verdict = null | "non_retryable" | RetryStopReason;

function verdict(
  policy: RetryPolicy,
  error: unknown,
  attempt: number,
  budget: RetryBudget | undefined,
): Verdict {
  if (policy.nonRetryableCodes.includes(errorCode(error))) return "non_retryable";
  if (
    typeof error === "object" && error !== null &&
    (error as { retryable?: unknown }).retryable === false
  ) return "non_retryable";
  if (attempt >= policy.maxAttempts) return "max_attempts";
  if (budget !== undefined && budget.remaining <= 0) return "budget";
  return null;
}

/**
 * Whether to make another attempt after `error` ended attempt `attempt`:
 * not when the error's code (see {@link errorCode}) is in
 * `policy.nonRetryableCodes`, nor when it says `retryable: false`, nor when
 * `attempt` reached `maxAttempts`, nor when `budget` is spent. Pure.
 *
 * @param policy The policy.
 * @param error What the attempt threw.
 * @param attempt The attempt that failed, 1-based.
 * @param budget The run's budget, when it has one.
 * @returns `true` to retry.
 *
 * @example Decide by code
 * ```ts
 * import { AgentError, RetryPolicy, shouldRetry } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const policy = new RetryPolicy({ maxAttempts: 3 });
 * assert.ok(shouldRetry(policy, new Error("flaky"), 1));
 * assert.ok(!shouldRetry(policy, new Error("flaky"), 3));
 * const fatal = new AgentError("ERR_AGENT_FAILED", "Bad input", { retryable: false });
 * assert.ok(!shouldRetry(policy, fatal, 1));
 * ```
 */
export function shouldRetry(
  policy: RetryPolicy,
  error: unknown,
  attempt: number,
  budget?: RetryBudget,
): boolean {
  return verdict(policy, error, attempt, budget) === null;
}

/**
 * Options for {@link RetryExhaustedError}.
 *
 * @example Say what ran out, and what failed last
 * ```ts
 * import {
 *   errorCode,
 *   RetryExhaustedError,
 *   type RetryExhaustedErrorOptions,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const last = new Error("flaky");
 * const options: RetryExhaustedErrorOptions = { cause: last, attempts: 4, reason: "budget" };
 * const err = new RetryExhaustedError("Cannot retry as the budget is spent", options);
 * assert.equal(err.attempts, 4);
 * assert.equal(err.reason, "budget");
 * assert.equal(err.cause, last);
 * assert.equal(errorCode(err), "ERR_RETRY_EXHAUSTED");
 * ```
 */
export interface RetryExhaustedErrorOptions {
  /** The error of the last attempt, if one was made. */
  cause?: unknown;
  /** The attempts made. */
  attempts: number;
  /** Why retrying stopped. */
  reason: RetryStopReason;
}

/**
 * Retrying stopped while the last error was still retryable: attempts,
 * budget or deadline ran out. Code `ERR_RETRY_EXHAUSTED`; `cause` is the
 * last attempt's error.
 *
 * @example Inspect an exhaustion
 * ```ts
 * import { RetryExhaustedError } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const last = new Error("flaky");
 * const err = new RetryExhaustedError("Cannot retry after 3 attempts", {
 *   cause: last,
 *   attempts: 3,
 *   reason: "max_attempts",
 * });
 * assert.equal(err.code, "ERR_RETRY_EXHAUSTED");
 * assert.equal(err.name, "RetryExhaustedError");
 * assert.equal(err.cause, last);
 * ```
 */
export class RetryExhaustedError extends PlmError {
  /** The attempts made by the {@link retry} call. */
  readonly attempts: number;
  /** Why retrying stopped. */
  readonly reason: RetryStopReason;

  /**
   * Creates the error.
   *
   * @param message A sentence-case message without a trailing period.
   * @param options The last error, the attempts and the reason.
   */
  constructor(message: string, options: RetryExhaustedErrorOptions) {
    super("ERR_RETRY_EXHAUSTED", message, { cause: options.cause });
    this.name = "RetryExhaustedError";
    this.attempts = options.attempts;
    this.reason = options.reason;
  }
}

/**
 * What {@link RetryOptions.onRetry} is told before each wait.
 *
 * @example Record each retry and its delay
 * ```ts
 * import {
 *   FakeClock,
 *   retry,
 *   type RetryEvent,
 *   RetryPolicy,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock();
 * const sleep = (ms: number) => Promise.resolve(clock.advance(ms));
 * const events: RetryEvent[] = [];
 * const policy = new RetryPolicy({ initialDelayMs: 100, jitter: "none" });
 * const result = await retry((attempt) => {
 *   return attempt < 3 ? Promise.reject(new Error(`flaky #${attempt}`)) : Promise.resolve("ok");
 * }, policy, { clock, sleep, onRetry: (event) => events.push(event) });
 * assert.equal(result, "ok");
 * assert.deepEqual(events.map((e) => [e.attempt, e.delayMs]), [[1, 100], [2, 200]]);
 * assert.equal((events[1]?.error as Error).message, "flaky #2");
 * ```
 */
export interface RetryEvent {
  /** The attempt that failed. */
  readonly attempt: number;
  /** What it threw. */
  readonly error: unknown;
  /** How long {@link retry} waits before the next attempt. */
  readonly delayMs: number;
}

/**
 * Options for {@link retry}.
 *
 * @example Give up when the next wait would pass the deadline
 * ```ts
 * import {
 *   FakeClock,
 *   retry,
 *   RetryExhaustedError,
 *   type RetryOptions,
 *   RetryPolicy,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock();
 * const options: RetryOptions = {
 *   clock,
 *   sleep: (ms) => Promise.resolve(clock.advance(ms)),
 *   deadline: 250,
 * };
 * const policy = new RetryPolicy({ maxAttempts: 10, initialDelayMs: 100, jitter: "none" });
 * const error = await retry(() => Promise.reject(new Error("flaky")), policy, options)
 *   .catch((err: unknown) => err);
 * assert.ok(error instanceof RetryExhaustedError);
 * assert.equal(error.reason, "deadline");
 * assert.equal(error.attempts, 2); // waits 100 ms, then 200 ms would end at 300
 * assert.equal(clock.now(), 100);
 * ```
 */
export interface RetryOptions {
  /**
   * The time source for `deadline`.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Returns a number in `[0, 1]` for the jitter.
   *
   * @default {Math.random}
   */
  random?: () => number;
  /**
   * Waits `ms` milliseconds; rejects when `signal` aborts. Tests pass one
   * that advances a `FakeClock` and resolves at once.
   *
   * @default {a `setTimeout` sleep}
   */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * Stops retrying (and waiting) when aborted.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The run's attempt budget, shared with its other `retry` calls.
   *
   * @default {undefined}
   */
  budget?: RetryBudget;
  /**
   * Epoch milliseconds by `clock`: no retry is made whose wait would end at
   * or after it.
   *
   * @default {undefined}
   */
  deadline?: number;
  /**
   * Called before each wait (to record a `retrying` transition, say).
   *
   * @default {undefined}
   */
  onRetry?: (event: RetryEvent) => void;
}

function realSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(id);
      reject(signal?.reason);
    };
    const id = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function retryAfterOf(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const after = (error as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof after === "number" && after >= 0 && after < Number.POSITIVE_INFINITY
    ? after
    : undefined;
}

function cancelled(signal: AbortSignal, attempts: number): PlmError {
  return new PlmError(
    "ERR_CANCELLED",
    `Cannot retry further as it was cancelled after ${attempts} attempts`,
    {
      cause: signal.reason,
    },
  );
}

function exhausted(
  reason: RetryStopReason,
  attempts: number,
  cause: unknown,
  policy: RetryPolicy,
  budget: RetryBudget | undefined,
): RetryExhaustedError {
  let why: string;
  switch (reason) {
    case "max_attempts":
      why = `the policy allows ${policy.maxAttempts}`;
      break;
    case "budget":
      why = `the run's budget of ${budget?.maxAttempts} attempts is spent`;
      break;
    case "deadline":
      why = "the next attempt would start after the deadline";
      break;
    default:
      return assertNever(reason);
  }
  return new RetryExhaustedError(`Cannot retry after ${attempts} attempts as ${why}`, {
    cause,
    attempts,
    reason,
  });
}

/**
 * Calls `fn` until it succeeds, retrying failures as `policy` says.
 *
 * - Before each attempt: stops with `ERR_CANCELLED` when `signal` is aborted,
 *   and takes one attempt from `budget` (none left: `RetryExhaustedError`).
 * - After a failure: an error that is not retryable (its code is in
 *   `nonRetryableCodes`, or it says `retryable: false`) is rethrown as is;
 *   when attempts, budget or deadline run out, a {@link RetryExhaustedError}
 *   is thrown with the failure as `cause`; otherwise `retry` waits
 *   {@link nextDelay} (or the error's `retryAfterMs` when longer, both capped
 *   at `maxDelayMs`) through `sleep`, and tries again.
 *
 * @typeParam T The result of `fn`.
 * @param fn One attempt; gets the attempt number, 1-based.
 * @param policy The policy.
 * @param options Clock, random, sleep, signal, budget, deadline and hook.
 * @returns What the first successful attempt resolves to.
 * @throws {RetryExhaustedError} `ERR_RETRY_EXHAUSTED` when attempts, budget or deadline run out.
 * @throws {PlmError} `ERR_CANCELLED` when `signal` aborts.
 * @throws {Error} The error of an attempt that is not retryable, as is.
 *
 * @example Retry a flaky call with a fake sleeper
 * ```ts
 * import { FakeClock, retry, RetryPolicy } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock();
 * const sleep = (ms: number) => {
 *   clock.advance(ms);
 *   return Promise.resolve();
 * };
 * const policy = new RetryPolicy({ initialDelayMs: 100, jitter: "none" });
 * const result = await retry((attempt) => {
 *   if (attempt < 3) return Promise.reject(new Error("flaky"));
 *   return Promise.resolve("ok");
 * }, policy, { clock, sleep });
 * assert.equal(result, "ok");
 * assert.equal(clock.now(), 300); // 100 + 200
 * ```
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  options?: RetryOptions,
): Promise<T> {
  const {
    clock = systemClock,
    random = Math.random,
    sleep = realSleep,
    signal,
    budget,
    deadline,
    onRetry,
  } = options ?? {};
  let lastError: unknown;
  for (let attempt = 1;; attempt++) {
    if (signal?.aborted) throw cancelled(signal, attempt - 1);
    if (budget !== undefined && !budget.tryConsume()) {
      throw exhausted("budget", attempt - 1, lastError, policy, budget);
    }
    try {
      return await fn(attempt);
    } catch (error) {
      lastError = error;
    }
    if (signal?.aborted) throw cancelled(signal, attempt);
    const stop = verdict(policy, lastError, attempt, budget);
    if (stop === "non_retryable") throw lastError;
    if (stop !== null) throw exhausted(stop, attempt, lastError, policy, budget);
    let delayMs = nextDelay(policy, attempt, random);
    const after = retryAfterOf(lastError);
    if (after !== undefined && after > delayMs) {
      delayMs = after < policy.maxDelayMs ? after : policy.maxDelayMs;
    }
    if (deadline !== undefined && clock.now() + delayMs >= deadline) {
      throw exhausted("deadline", attempt, lastError, policy, budget);
    }
    onRetry?.({ attempt, error: lastError, delayMs });
    try {
      await sleep(delayMs, signal);
    } catch (error) {
      if (signal?.aborted) throw cancelled(signal, attempt);
      throw error;
    }
  }
}
