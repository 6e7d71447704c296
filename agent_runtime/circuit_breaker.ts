/**
 * A per-agent circuit breaker: {@link CircuitBreaker}, and
 * {@link CircuitBreakers} to keep one per agent id.
 *
 * @module
 */
import { type Clock, PlmError, systemClock } from "../control_plane/mod.ts";
import { checkOption } from "../shared/validate.ts";

/**
 * The states of a circuit breaker:
 *
 * - `closed`: calls go through; consecutive failures are counted;
 * - `open`: calls are refused until the cool-down has passed;
 * - `half_open`: a few trial calls go through; a success closes the circuit,
 *   a failure opens it again.
 *
 * @example A new breaker starts closed
 * ```ts
 * import { CIRCUIT_STATES, CircuitBreaker } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const breaker = new CircuitBreaker();
 * assert.ok(CIRCUIT_STATES.includes(breaker.state));
 * assert.equal(breaker.state, "closed");
 * ```
 */
export const CIRCUIT_STATES = ["closed", "open", "half_open"] as const;

/** One of {@link CIRCUIT_STATES}. */
export type CircuitState = typeof CIRCUIT_STATES[number];

/** Options for {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /**
   * Consecutive failures, in `closed`, that open the circuit. A positive integer.
   *
   * @default {5}
   */
  failureThreshold?: number;
  /**
   * How long the circuit stays `open` before it lets a trial call through, in
   * milliseconds by `clock`. A non-negative finite number.
   *
   * @default {30_000}
   */
  cooldownMs?: number;
  /**
   * How many trial calls may be in flight at once in `half_open`. A positive integer.
   *
   * @default {1}
   */
  halfOpenMaxCalls?: number;
  /**
   * The time source of the cool-down.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Called on every change of state, synchronously, after the change.
   *
   * @default {undefined}
   */
  onStateChange?: (from: CircuitState, to: CircuitState) => void;
}

/** Options for {@link CircuitOpenError}. */
export interface CircuitOpenErrorOptions {
  /** How long until the circuit lets a trial call through, in milliseconds. */
  retryAfterMs?: number;
}

/**
 * A call was refused because the circuit is open (or half-open with every
 * trial slot taken). Code `ERR_CIRCUIT_OPEN`; retryable, after `retryAfterMs`.
 *
 * @example Read when to come back
 * ```ts
 * import { CircuitOpenError } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const err = new CircuitOpenError("Circuit is open", { retryAfterMs: 1_000 });
 * assert.equal(err.code, "ERR_CIRCUIT_OPEN");
 * assert.equal(err.name, "CircuitOpenError");
 * assert.equal(err.retryAfterMs, 1_000);
 * ```
 */
export class CircuitOpenError extends PlmError {
  /** Always `true`: the circuit will let calls through again. */
  readonly retryable: boolean = true;
  /** How long until a trial call may go through, in milliseconds, when known. */
  readonly retryAfterMs: number | undefined;

  /**
   * Creates the error.
   *
   * @param message A sentence-case message without a trailing period.
   * @param options How long until a trial call may go through.
   */
  constructor(message: string, options?: CircuitOpenErrorOptions) {
    super("ERR_CIRCUIT_OPEN", message);
    this.name = "CircuitOpenError";
    this.retryAfterMs = options?.retryAfterMs;
  }
}

function checkOptions(options: CircuitBreakerOptions): Required<
  Omit<CircuitBreakerOptions, "onStateChange">
> {
  const {
    failureThreshold = 5,
    cooldownMs = 30_000,
    halfOpenMaxCalls = 1,
    clock = systemClock,
  } = options;
  checkOption("failureThreshold", failureThreshold, 1);
  checkOption("halfOpenMaxCalls", halfOpenMaxCalls, 1);
  if (!Number.isFinite(cooldownMs) || cooldownMs < 0) {
    throw new RangeError(`Cannot use cooldownMs ${cooldownMs}: it must be finite and not negative`);
  }
  if (typeof clock?.now !== "function") {
    throw new TypeError("Cannot use a clock without a now() method");
  }
  return { failureThreshold, cooldownMs, halfOpenMaxCalls, clock };
}

/**
 * Stops calling an agent that keeps failing. `failureThreshold` consecutive
 * failures open the circuit; after `cooldownMs` (by the injected clock) it
 * turns `half_open` and lets up to `halfOpenMaxCalls` trial calls through; a
 * success closes it, a failure opens it again for another cool-down.
 *
 * Use {@link CircuitBreaker.execute}, or the parts: {@link CircuitBreaker.tryAcquire}
 * before a call, then {@link CircuitBreaker.recordSuccess},
 * {@link CircuitBreaker.recordFailure} or {@link CircuitBreaker.release}.
 * The move from `open` to `half_open` happens when the state is next read.
 * Results recorded while `open` (calls that started before it opened) change
 * nothing.
 *
 * @example Open after failures, try again after the cool-down
 * ```ts
 * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock();
 * const changes: string[] = [];
 * const breaker = new CircuitBreaker({
 *   failureThreshold: 2,
 *   cooldownMs: 1_000,
 *   clock,
 *   onStateChange: (from, to) => changes.push(`${from}->${to}`),
 * });
 * breaker.recordFailure();
 * breaker.recordFailure();
 * assert.equal(breaker.state, "open");
 * assert.equal(breaker.tryAcquire(), false);
 * clock.advance(1_000);
 * assert.equal(breaker.tryAcquire(), true); // the trial call
 * breaker.recordSuccess();
 * assert.deepEqual(changes, ["closed->open", "open->half_open", "half_open->closed"]);
 * ```
 */
export class CircuitBreaker {
  readonly #failureThreshold: number;
  readonly #cooldownMs: number;
  readonly #halfOpenMaxCalls: number;
  readonly #clock: Clock;
  readonly #onStateChange: ((from: CircuitState, to: CircuitState) => void) | undefined;
  #state: CircuitState = "closed";
  #failures = 0;
  #openedAt = 0;
  #trials = 0;

  /**
   * Creates a closed circuit breaker.
   *
   * @param options Threshold, cool-down, trial calls, clock and hook.
   * @throws {RangeError} When a number option is out of range.
   * @throws {TypeError} When `clock` has no `now()`.
   */
  constructor(options?: CircuitBreakerOptions) {
    const checked = checkOptions(options ?? {});
    this.#failureThreshold = checked.failureThreshold;
    this.#cooldownMs = checked.cooldownMs;
    this.#halfOpenMaxCalls = checked.halfOpenMaxCalls;
    this.#clock = checked.clock;
    this.#onStateChange = options?.onStateChange;
  }

  /**
   * The current state; an `open` circuit whose cool-down has passed reads as `half_open`.
   *
   * @example Open, then half-open after the cool-down
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 1_000, clock });
   * breaker.recordFailure();
   * assert.equal(breaker.state, "open");
   * clock.advance(1_000);
   * assert.equal(breaker.state, "half_open");
   * ```
   */
  get state(): CircuitState {
    if (this.#state === "open" && this.#clock.now() - this.#openedAt >= this.#cooldownMs) {
      this.#trials = 0;
      this.#change("half_open");
    }
    return this.#state;
  }

  /**
   * Consecutive failures counted in `closed`.
   *
   * @example A success resets the count
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breaker = new CircuitBreaker({ failureThreshold: 3, clock: new FakeClock() });
   * breaker.recordFailure();
   * breaker.recordFailure();
   * assert.equal(breaker.failures, 2);
   * breaker.recordSuccess();
   * assert.equal(breaker.failures, 0);
   * ```
   */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Milliseconds until an `open` circuit turns `half_open`; 0 in the other states.
   *
   * @example Tell a caller when to come back
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 30_000, clock });
   * assert.equal(breaker.remainingCooldownMs, 0);
   * breaker.recordFailure();
   * clock.advance(10_000);
   * assert.equal(breaker.remainingCooldownMs, 20_000);
   * ```
   */
  get remainingCooldownMs(): number {
    if (this.state !== "open") return 0;
    return Math.max(0, this.#openedAt + this.#cooldownMs - this.#clock.now());
  }

  /**
   * Whether a call would be let through now, without taking a trial slot.
   *
   * @returns `true` when `closed`, or `half_open` with a trial slot free.
   *
   * @example Skip an agent whose circuit is open
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breaker = new CircuitBreaker({ failureThreshold: 1, clock: new FakeClock() });
   * assert.equal(breaker.isAvailable(), true);
   * breaker.recordFailure();
   * assert.equal(breaker.isAvailable(), false);
   * ```
   */
  isAvailable(): boolean {
    const state = this.state;
    return state === "closed" || (state === "half_open" && this.#trials < this.#halfOpenMaxCalls);
  }

  /**
   * Asks to make one call. In `half_open` this takes a trial slot, given back
   * by the next `recordSuccess`, `recordFailure` or `release`.
   *
   * @returns `true` when the call may go ahead.
   *
   * @example One trial call in half-open
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const breaker = new CircuitBreaker({
   *   failureThreshold: 1,
   *   cooldownMs: 1_000,
   *   halfOpenMaxCalls: 1,
   *   clock,
   * });
   * breaker.recordFailure();
   * assert.equal(breaker.tryAcquire(), false);
   * clock.advance(1_000);
   * assert.equal(breaker.tryAcquire(), true);
   * assert.equal(breaker.tryAcquire(), false);
   * ```
   */
  tryAcquire(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    if (state === "half_open" && this.#trials < this.#halfOpenMaxCalls) {
      this.#trials++;
      return true;
    }
    return false;
  }

  /**
   * Records a successful call: resets the failure count; closes a `half_open` circuit.
   *
   * @example A good trial call closes the circuit
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 1_000, clock });
   * breaker.recordFailure();
   * clock.advance(1_000);
   * assert.equal(breaker.tryAcquire(), true);
   * breaker.recordSuccess();
   * assert.equal(breaker.state, "closed");
   * ```
   */
  recordSuccess(): void {
    const state = this.state;
    if (state === "closed") this.#failures = 0;
    else if (state === "half_open") {
      this.#failures = 0;
      this.#trials = 0;
      this.#change("closed");
    }
  }

  /**
   * Records a failed call: may open a `closed` circuit; re-opens a `half_open` one.
   *
   * @example Open after the threshold
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breaker = new CircuitBreaker({ failureThreshold: 2, clock: new FakeClock() });
   * breaker.recordFailure();
   * assert.equal(breaker.state, "closed");
   * breaker.recordFailure();
   * assert.equal(breaker.state, "open");
   * ```
   */
  recordFailure(): void {
    const state = this.state;
    if (state === "closed") {
      this.#failures++;
      if (this.#failures >= this.#failureThreshold) this.#open();
    } else if (state === "half_open") {
      this.#open();
    }
  }

  /**
   * Ends a call that proves nothing either way (it was cancelled, say):
   * gives back a `half_open` trial slot and changes nothing else.
   *
   * @example Give back a trial slot after a cancelled call
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const breaker = new CircuitBreaker({
   *   failureThreshold: 1,
   *   cooldownMs: 1_000,
   *   halfOpenMaxCalls: 1,
   *   clock,
   * });
   * breaker.recordFailure();
   * clock.advance(1_000);
   * assert.equal(breaker.tryAcquire(), true);
   * assert.equal(breaker.isAvailable(), false);
   * breaker.release();
   * assert.equal(breaker.isAvailable(), true);
   * assert.equal(breaker.state, "half_open");
   * ```
   */
  release(): void {
    if (this.state === "half_open" && this.#trials > 0) this.#trials--;
  }

  /**
   * Runs `fn` through the breaker: refuses it when no call is let through,
   * records its outcome otherwise. Errors whose `code` is `ERR_CANCELLED`
   * count as neither success nor failure.
   *
   * @typeParam T The result of `fn`.
   * @param fn The call.
   * @returns What `fn` resolves to.
   * @throws {CircuitOpenError} `ERR_CIRCUIT_OPEN` when the call is refused;
   * otherwise whatever `fn` throws.
   *
   * @example Refuse calls while open
   * ```ts
   * import { CircuitBreaker, FakeClock, isPlmError } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breaker = new CircuitBreaker({ failureThreshold: 1, clock: new FakeClock() });
   * await assert.rejects(breaker.execute(() => Promise.reject(new Error("down"))));
   * await assert.rejects(
   *   breaker.execute(() => Promise.resolve(1)),
   *   (err) => isPlmError(err, "ERR_CIRCUIT_OPEN"),
   * );
   * ```
   */
  async execute<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.tryAcquire()) {
      const retryAfterMs = this.remainingCooldownMs;
      throw new CircuitOpenError(
        this.#state === "open"
          ? `Cannot call as the circuit is open for ${retryAfterMs} ms more`
          : "Cannot call as every half-open trial slot is taken",
        { retryAfterMs },
      );
    }
    let result: T;
    try {
      result = await fn();
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code === "ERR_CANCELLED") this.release();
      else this.recordFailure();
      throw error;
    }
    this.recordSuccess();
    return result;
  }

  /**
   * Closes the circuit and forgets every failure (an operator's reset).
   *
   * @example Reset an open circuit
   * ```ts
   * import { CircuitBreaker, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breaker = new CircuitBreaker({ failureThreshold: 1, clock: new FakeClock() });
   * breaker.recordFailure();
   * breaker.reset();
   * assert.equal(breaker.state, "closed");
   * assert.equal(breaker.failures, 0);
   * ```
   */
  reset(): void {
    this.#failures = 0;
    this.#trials = 0;
    if (this.#state !== "closed") this.#change("closed");
  }

  #open(): void {
    this.#openedAt = this.#clock.now();
    this.#trials = 0;
    this.#change("open");
  }

  #change(to: CircuitState): void {
    const from = this.#state;
    this.#state = to;
    this.#onStateChange?.(from, to);
  }
}

/** Options for {@link CircuitBreakers}. */
export interface CircuitBreakersOptions extends Omit<CircuitBreakerOptions, "onStateChange"> {
  /**
   * Called on every change of state of any agent's breaker.
   *
   * @default {undefined}
   */
  onStateChange?: (agentId: string, from: CircuitState, to: CircuitState) => void;
}

/**
 * One {@link CircuitBreaker} per agent id, created on first use with the same
 * options. Its {@link CircuitBreakers.isAvailable} fits the selector's state.
 *
 * @example Track the health of agents
 * ```ts
 * import { CircuitBreakers, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const breakers = new CircuitBreakers({ failureThreshold: 1, clock: new FakeClock() });
 * breakers.get("a-1").recordFailure();
 * assert.equal(breakers.isAvailable("a-1"), false);
 * assert.equal(breakers.isAvailable("a-2"), true);
 * assert.equal(breakers.state("a-2"), "closed");
 * ```
 */
export class CircuitBreakers {
  readonly #options: CircuitBreakersOptions;
  readonly #breakers = new Map<string, CircuitBreaker>();

  /**
   * Creates an empty set of breakers.
   *
   * @param options The options of every breaker, and a keyed hook.
   * @throws {RangeError} When a number option is out of range.
   * @throws {TypeError} When `clock` has no `now()`.
   */
  constructor(options?: CircuitBreakersOptions) {
    const { onStateChange, ...rest } = options ?? {};
    this.#options = { ...rest, ...checkOptions(rest) };
    if (onStateChange !== undefined) this.#options.onStateChange = onStateChange;
  }

  /**
   * The breaker of `agentId`, created closed on first use.
   *
   * @param agentId The agent id.
   * @returns The agent's breaker.
   *
   * @example One breaker per agent
   * ```ts
   * import { CircuitBreakers, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breakers = new CircuitBreakers({ clock: new FakeClock() });
   * assert.equal(breakers.get("a-1"), breakers.get("a-1"));
   * assert.notEqual(breakers.get("a-1"), breakers.get("a-2"));
   * ```
   */
  get(agentId: string): CircuitBreaker {
    let breaker = this.#breakers.get(agentId);
    if (breaker === undefined) {
      const { onStateChange, ...rest } = this.#options;
      const options: CircuitBreakerOptions = rest;
      if (onStateChange !== undefined) {
        options.onStateChange = (from, to) => onStateChange(agentId, from, to);
      }
      breaker = new CircuitBreaker(options);
      this.#breakers.set(agentId, breaker);
    }
    return breaker;
  }

  /**
   * The state of `agentId`'s breaker; `closed` for an agent never seen.
   *
   * @param agentId The agent id.
   * @returns The breaker's state.
   *
   * @example Read an agent's state
   * ```ts
   * import { CircuitBreakers, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breakers = new CircuitBreakers({ failureThreshold: 1, clock: new FakeClock() });
   * assert.equal(breakers.state("a-1"), "closed");
   * breakers.get("a-1").recordFailure();
   * assert.equal(breakers.state("a-1"), "open");
   * ```
   */
  state(agentId: string): CircuitState {
    return this.#breakers.get(agentId)?.state ?? "closed";
  }

  /**
   * Whether `agentId`'s breaker would let a call through now.
   *
   * @param agentId The agent id.
   * @returns `true` for an agent never seen.
   *
   * @example Pick the agents that can take work
   * ```ts
   * import { CircuitBreakers, FakeClock } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const breakers = new CircuitBreakers({ failureThreshold: 1, clock: new FakeClock() });
   * breakers.get("a-2").recordFailure();
   * const ready = ["a-1", "a-2", "a-3"].filter((id) => breakers.isAvailable(id));
   * assert.deepEqual(ready, ["a-1", "a-3"]);
   * ```
   */
  isAvailable(agentId: string): boolean {
    return this.#breakers.get(agentId)?.isAvailable() ?? true;
  }
}
