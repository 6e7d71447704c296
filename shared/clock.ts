/**
 * Injected time: {@link Clock}, {@link systemClock} and {@link FakeClock}.
 *
 * @module
 */

/** A source of the current time in milliseconds since the Unix epoch. */
export interface Clock {
  /** The current time in epoch milliseconds. */
  now(): number;
}

/**
 * The real clock, backed by `Date.now()`. The only place the package reads the
 * wall clock; everything else receives a {@link Clock}.
 *
 * @example Read the time
 * ```ts
 * import { systemClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.ok(systemClock.now() > 0);
 * ```
 */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that only moves when told to. For tests and simulations.
 *
 * @example Advance time without sleeping
 * ```ts
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock(1_000);
 * clock.advance(500);
 * assert.equal(clock.now(), 1_500);
 * clock.set(0);
 * assert.equal(clock.now(), 0);
 * ```
 */
export class FakeClock implements Clock {
  #now: number;

  /**
   * Creates a fake clock.
   *
   * @param start The initial time in epoch milliseconds. Defaults to 0.
   * @throws {RangeError} When `start` is not finite.
   */
  constructor(start = 0) {
    if (!Number.isFinite(start)) throw new RangeError(`Cannot start a clock at ${start}`);
    this.#now = start;
  }

  /** The current fake time. */
  now(): number {
    return this.#now;
  }

  /**
   * Moves the clock forward.
   *
   * @param ms Milliseconds to add; must be finite and not negative.
   * @throws {RangeError} When `ms` is negative or not finite.
   */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`Cannot advance a clock by ${ms}`);
    this.#now += ms;
  }

  /**
   * Sets the clock to an absolute time.
   *
   * @param ms Epoch milliseconds; must be finite.
   * @throws {RangeError} When `ms` is not finite.
   */
  set(ms: number): void {
    if (!Number.isFinite(ms)) throw new RangeError(`Cannot set a clock to ${ms}`);
    this.#now = ms;
  }
}
