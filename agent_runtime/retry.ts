/**
 * Retries, as the `Dispatcher` runs them: the {@link RetryPolicy}
 * (validated once), the pure backoff {@link nextDelay}, and
 * {@link RetryExhaustedError}, which a run records when it gives up.
 *
 * @module
 */
import { PlmError, type Random } from "../control_plane/mod.ts";
import { checkOption } from "../shared/validate.ts";

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

/** One of {@link JITTER_MODES}. */
export type JitterMode = typeof JITTER_MODES[number];

/**
 * The codes never retried unless a policy says otherwise: a cancelled call,
 * a passed run deadline, a refusal by governance, a spent autonomy budget and
 * a bad argument do not get better by trying again.
 *
 * @example The default policy never retries these codes
 * ```ts
 * import { DEFAULT_NON_RETRYABLE_CODES, RetryPolicy } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const policy = new RetryPolicy();
 * assert.deepEqual(policy.nonRetryableCodes, DEFAULT_NON_RETRYABLE_CODES);
 * assert.ok(policy.nonRetryableCodes.includes("ERR_FORBIDDEN"));
 * ```
 */
export const DEFAULT_NON_RETRYABLE_CODES = [
  "ERR_CANCELLED",
  "ERR_DEADLINE_EXCEEDED",
  "ERR_FORBIDDEN",
  "ERR_BUDGET_EXCEEDED",
  "ERR_INVALID_ARGUMENT",
] as const;

/** Options for {@link RetryPolicy}; the defaults follow Temporal's. */
export interface RetryPolicyOptions {
  /**
   * Attempts per escalation step, the first included. A positive integer, or `Infinity`.
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
   * The most attempts a run may make in all, across every escalation step:
   * a positive integer, or `undefined` for no cap beyond `maxAttempts`.
   *
   * @default {undefined}
   */
  retryBudget?: number;
}

/** An attempt count option: a positive integer, or `Infinity` for no limit. */
function checkAttemptCount(name: string, value: number): number {
  return value === Number.POSITIVE_INFINITY ? value : checkOption(name, value, 1);
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
  /** Attempts per escalation step, the first included. */
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
    checkAttemptCount("maxAttempts", maxAttempts);
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
    if (retryBudget !== undefined) checkAttemptCount("retryBudget", retryBudget);
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
export function nextDelay(policy: RetryPolicy, attempt: number, random: Random): number {
  checkOption("attempt", attempt, 1);
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

function unit(random: Random): number {
  const r = random();
  if (!(r >= 0 && r <= 1)) throw new RangeError(`Cannot use random value ${r}: not in [0, 1]`);
  return r;
}

/**
 * Why the `Dispatcher` stops retrying an error that could otherwise be
 * retried within an escalation step: its attempts, or the run's budget, ran out.
 *
 * @example An exhaustion carries one of the reasons
 * ```ts
 * import {
 *   RETRY_STOP_REASONS,
 *   RetryExhaustedError,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const err = new RetryExhaustedError("Cannot retry as the run's budget is spent", {
 *   attempts: 2,
 *   reason: "budget",
 * });
 * assert.ok(RETRY_STOP_REASONS.includes(err.reason));
 * ```
 */
export const RETRY_STOP_REASONS = ["max_attempts", "budget"] as const;

/** One of {@link RETRY_STOP_REASONS}. */
export type RetryStopReason = typeof RETRY_STOP_REASONS[number];

/** Options for {@link RetryExhaustedError}. */
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
 * or the run's budget ran out. Code `ERR_RETRY_EXHAUSTED`; `cause` is the
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
  /** The attempts made in the escalation step. */
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
