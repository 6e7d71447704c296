/**
 * Injected time: {@link Clock}, {@link systemClock} and {@link FakeClock}.
 *
 * @module
 */

import { type HostTimers, scheduleOn } from "./_timer.ts";

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

  /**
   * Reads the fake time.
   *
   * @returns The current fake time in epoch milliseconds.
   *
   * @example Read the time a test set
   * ```ts
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * assert.equal(new FakeClock(Date.UTC(2026, 0, 1)).now(), 1_767_225_600_000);
   * ```
   */
  now(): number {
    return this.#now;
  }

  /**
   * Moves the clock forward.
   *
   * @param ms Milliseconds to add; must be finite and not negative.
   * @throws {RangeError} When `ms` is negative or not finite.
   *
   * @example Let a lease expire
   * ```ts
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(1_000);
   * const leaseUntil = clock.now() + 30_000;
   * clock.advance(30_001);
   * assert.ok(clock.now() > leaseUntil);
   * assert.throws(() => clock.advance(-1), RangeError);
   * ```
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
   *
   * @example Jump to a date
   * ```ts
   * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock();
   * clock.set(Date.parse("2026-11-25T10:00:00Z"));
   * assert.equal(new Date(clock.now()).toISOString(), "2026-11-25T10:00:00.000Z");
   * ```
   */
  set(ms: number): void {
    if (!Number.isFinite(ms)) throw new RangeError(`Cannot set a clock to ${ms}`);
    this.#now = ms;
  }
}

/**
 * A source of uniform random draws in [0, 1): the one shape of injected
 * randomness (retry jitter, trace and span ids). Tests inject a seeded or
 * constant one; `Math.random` fits.
 */
export type Random = () => number;

/**
 * Schedules `callback` after `ms` milliseconds and returns a function that
 * cancels it. Injected wherever the package waits (timeouts, backoff,
 * heartbeats) so that tests drive time with {@link FakeTimers}.
 */
export type Timer = (callback: () => void, ms: number) => () => void;

/** The host's timers, for {@link systemTimer}. */
const HOST: HostTimers<ReturnType<typeof setTimeout>> = { set: setTimeout, clear: clearTimeout };

/**
 * The real {@link Timer}, on `setTimeout`. A delay longer than `setTimeout`
 * keeps (about 24.8 days) is waited out in steps, so a long timeout, lease or
 * backoff never fires at once.
 *
 * @param callback What to run when the time is up.
 * @param ms Milliseconds to wait.
 * @returns A function that cancels the timeout.
 *
 * @example Schedule and cancel
 * ```ts
 * import { systemTimer } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * let fired = false;
 * const cancel = systemTimer(() => (fired = true), 10);
 * cancel();
 * assert.equal(fired, false);
 * ```
 */
export const systemTimer: Timer = (callback: () => void, ms: number): () => void =>
  scheduleOn(HOST, callback, ms);

/** Options for {@link sleep}. */
export interface SleepOptions {
  /**
   * The timer that waits.
   *
   * @default {systemTimer}
   */
  timer?: Timer;
  /**
   * Ends the sleep early (the promise resolves, it does not reject).
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Waits `ms` milliseconds on an injected {@link Timer}, or less when `signal`
 * aborts; the one sleep of the package (backoff, polling). It resolves in
 * both cases and leaves neither a timer nor an abort listener behind.
 *
 * @param ms Milliseconds to wait; 0 or less resolves at once.
 * @param options The timer and an abort signal.
 * @returns A promise that resolves when the time is up or `signal` aborts.
 *
 * @example Cut a sleep short
 * ```ts
 * import { FakeClock, FakeTimers, sleep } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const timers = new FakeTimers(new FakeClock(0));
 * const stop = new AbortController();
 * const slept = sleep(60_000, { timer: timers.timer, signal: stop.signal });
 * stop.abort();
 * await slept;
 * assert.equal(timers.pending, 0);
 * ```
 */
export function sleep(ms: number, options: SleepOptions = {}): Promise<void> {
  const { timer = systemTimer, signal } = options;
  return new Promise((resolve) => {
    if (signal?.aborted || !(ms > 0)) return resolve();
    const done = () => {
      cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const cancel = timer(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Timers driven by a {@link FakeClock}: nothing fires until
 * {@link FakeTimers.advance} moves the clock past it.
 *
 * @example Fire a timeout without waiting
 * ```ts
 * import { FakeClock, FakeTimers } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock(0);
 * const timers = new FakeTimers(clock);
 * const fired: number[] = [];
 * timers.timer(() => fired.push(clock.now()), 100);
 * await timers.advance(99);
 * assert.deepEqual(fired, []);
 * await timers.advance(1);
 * assert.deepEqual(fired, [100]);
 * ```
 */
export class FakeTimers {
  #clock: FakeClock;
  #pending: { at: number; seq: number; callback: () => void }[] = [];
  #seq = 0;

  /**
   * Creates fake timers on a fake clock.
   *
   * @param clock The clock the timers read and move.
   */
  constructor(clock: FakeClock) {
    this.#clock = clock;
  }

  /** The {@link Timer} to inject. */
  readonly timer: Timer = (callback, ms) => {
    const entry = { at: this.#clock.now() + Math.max(0, ms), seq: this.#seq++, callback };
    this.#pending.push(entry);
    return () => {
      const i = this.#pending.indexOf(entry);
      if (i !== -1) this.#pending.splice(i, 1);
    };
  };

  /**
   * How many timers wait to fire.
   *
   * @example Count and cancel a pending timer
   * ```ts
   * import { FakeClock, FakeTimers } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * const timers = new FakeTimers(new FakeClock(0));
   * const cancel = timers.timer(() => {}, 1_000);
   * assert.equal(timers.pending, 1);
   * cancel();
   * assert.equal(timers.pending, 0);
   * ```
   */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * Moves the clock forward by `ms`, firing every timer that falls due in
   * order, and lets promise callbacks run after each one.
   *
   * @param ms Milliseconds to advance; not negative.
   * @returns A promise that resolves once the clock stands at the end and
   *   every timer due by then has fired.
   * @throws {RangeError} When `ms` is negative or not finite.
   *
   * @example Fire due timers in order
   * ```ts
   * import { FakeClock, FakeTimers } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const fired: string[] = [];
   * timers.timer(() => fired.push("heartbeat"), 20);
   * timers.timer(() => fired.push("timeout"), 50);
   * await timers.advance(30);
   * assert.deepEqual(fired, ["heartbeat"]);
   * assert.equal(clock.now(), 30);
   * await timers.advance(20);
   * assert.deepEqual(fired, ["heartbeat", "timeout"]);
   * ```
   */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`Cannot advance timers by ${ms}`);
    const end = this.#clock.now() + ms;
    await flush();
    for (;;) {
      const next = this.#next();
      if (next === undefined || next.at > end) break;
      this.#pending.splice(this.#pending.indexOf(next), 1);
      if (next.at > this.#clock.now()) this.#clock.set(next.at);
      next.callback();
      await flush();
    }
    this.#clock.set(end);
    await flush();
  }

  /**
   * Fires timers until none is left or `limit` ms have passed, for "run until idle".
   *
   * @param limit The most milliseconds to advance (default 3,600,000, one hour).
   * @returns A promise that resolves when no timer is due within `limit`.
   *
   * @example Run a chain of timers to the end
   * ```ts
   * import { FakeClock, FakeTimers } from "@tracepulse/plm-engine-core/shared";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * let ticks = 0;
   * const tick = () => {
   *   if (++ticks < 3) timers.timer(tick, 1_000);
   * };
   * timers.timer(tick, 1_000);
   * await timers.runAll();
   * assert.equal(ticks, 3);
   * assert.equal(clock.now(), 3_000);
   * assert.equal(timers.pending, 0);
   * ```
   */
  async runAll(limit = 3_600_000): Promise<void> {
    const end = this.#clock.now() + limit;
    await flush();
    for (let next = this.#next(); next !== undefined && next.at <= end; next = this.#next()) {
      await this.advance(next.at - this.#clock.now());
    }
  }

  #next() {
    let best: { at: number; seq: number; callback: () => void } | undefined;
    for (const t of this.#pending) {
      if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}

async function flush(): Promise<void> {
  // Let queued promise callbacks (and the tasks they start) run.
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => queueMicrotask(resolve));
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
}
