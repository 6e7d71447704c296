/**
 * Concurrency limits: {@link ConcurrencyLimiter} (a slot count with a bounded
 * FIFO queue) and {@link InFlightCounter} (calls in flight per agent).
 *
 * @module
 */
import { PlmError } from "../control_plane/mod.ts";

/**
 * Options for {@link ConcurrencyLimiter}.
 *
 * @example One slot and one place in the queue
 * ```ts
 * import {
 *   ConcurrencyLimiter,
 *   type ConcurrencyLimiterOptions,
 *   isPlmError,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const options: ConcurrencyLimiterOptions = { concurrency: 1, maxQueue: 1 };
 * const limiter = new ConcurrencyLimiter(options);
 * const gate = Promise.withResolvers<void>();
 * const first = limiter.run(() => gate.promise);
 * const second = limiter.run(() => "second");
 * assert.equal(limiter.queued, 1);
 * await assert.rejects(limiter.run(() => "third"), (err) => isPlmError(err, "ERR_QUEUE_FULL"));
 * gate.resolve();
 * await first;
 * assert.equal(await second, "second");
 * ```
 */
export interface ConcurrencyLimiterOptions {
  /**
   * How many calls run at once. A positive integer.
   *
   * @default {1}
   */
  concurrency?: number;
  /**
   * How many calls may wait for a slot. A non-negative integer, or `Infinity`.
   *
   * @default {Infinity}
   */
  maxQueue?: number;
}

/**
 * Options for {@link ConcurrencyLimiter.run}.
 *
 * @example Take a waiting call out of the queue
 * ```ts
 * import {
 *   ConcurrencyLimiter,
 *   isPlmError,
 *   type LimiterRunOptions,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const limiter = new ConcurrencyLimiter({ concurrency: 1 });
 * const gate = Promise.withResolvers<void>();
 * const first = limiter.run(() => gate.promise);
 * const controller = new AbortController();
 * const options: LimiterRunOptions = { signal: controller.signal };
 * const waiting = limiter.run(() => "never", options);
 * controller.abort();
 * await assert.rejects(waiting, (err) => isPlmError(err, "ERR_CANCELLED"));
 * assert.equal(limiter.queued, 0);
 * gate.resolve();
 * await first;
 * ```
 */
export interface LimiterRunOptions {
  /** Takes the call out of the queue when aborted before it starts. */
  signal?: AbortSignal;
}

type Waiter = (() => void) | null;

/** After this many dequeued slots, the queue array is compacted. */
const COMPACT_AFTER = 1024;

/**
 * Runs at most `concurrency` calls at once; further calls wait in a FIFO
 * queue of at most `maxQueue` entries, and a call that finds the queue full is
 * refused before `fn` is touched. A slot freed by a finished call goes
 * straight to the oldest waiter, so a later call never overtakes it.
 *
 * @example Two at a time, the rest queued
 * ```ts
 * import { ConcurrencyLimiter } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const limiter = new ConcurrencyLimiter({ concurrency: 2, maxQueue: 10 });
 * let peak = 0;
 * const results = await Promise.all([1, 2, 3, 4].map((n) =>
 *   limiter.run(async () => {
 *     peak = Math.max(peak, limiter.inFlight);
 *     await Promise.resolve();
 *     return n * 10;
 *   })
 * ));
 * assert.deepEqual(results, [10, 20, 30, 40]);
 * assert.equal(peak, 2);
 * ```
 */
export class ConcurrencyLimiter {
  readonly #concurrency: number;
  readonly #maxQueue: number;
  #active = 0;
  #queue: Waiter[] = [];
  #head = 0;
  #queued = 0;

  /**
   * Creates a limiter.
   *
   * @param options The number of slots and the size of the queue.
   * @throws {RangeError} When `concurrency` is not a positive integer or
   * `maxQueue` is not a non-negative integer or `Infinity`.
   */
  constructor(options?: ConcurrencyLimiterOptions) {
    const { concurrency = 1, maxQueue = Number.POSITIVE_INFINITY } = options ?? {};
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`Cannot use concurrency ${concurrency}: it must be a positive integer`);
    }
    if (
      !(maxQueue === Number.POSITIVE_INFINITY || (Number.isSafeInteger(maxQueue) && maxQueue >= 0))
    ) {
      throw new RangeError(
        `Cannot use maxQueue ${maxQueue}: it must be a non-negative integer or Infinity`,
      );
    }
    this.#concurrency = concurrency;
    this.#maxQueue = maxQueue;
  }

  /** How many calls run at once, at most. */
  get concurrency(): number {
    return this.#concurrency;
  }

  /** How many calls are running now (slots taken, including `tryAcquire` permits). */
  get inFlight(): number {
    return this.#active;
  }

  /** How many calls wait for a slot. */
  get queued(): number {
    return this.#queued;
  }

  /**
   * Runs `fn` when a slot is free, waiting in the queue if needed.
   *
   * @typeParam T The result of `fn`.
   * @param fn The call; its slot is freed when it settles.
   * @param options A signal that takes the call out of the queue.
   * @returns What `fn` resolves to.
   * @throws {PlmError} `ERR_QUEUE_FULL` when every slot is taken and the queue
   * is full (`fn` is not called); `ERR_CANCELLED` when `signal` aborts before
   * `fn` starts. Otherwise whatever `fn` throws.
   *
   * @example Refuse work when the queue is full
   * ```ts
   * import { ConcurrencyLimiter, isPlmError } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const limiter = new ConcurrencyLimiter({ concurrency: 1, maxQueue: 0 });
   * const { promise, resolve } = Promise.withResolvers<void>();
   * const first = limiter.run(() => promise);
   * await assert.rejects(limiter.run(() => Promise.resolve()), (err) => isPlmError(err, "ERR_QUEUE_FULL"));
   * resolve();
   * await first;
   * ```
   */
  async run<T>(fn: () => T | PromiseLike<T>, options?: LimiterRunOptions): Promise<T> {
    if (this.#active < this.#concurrency) this.#active++;
    else await this.#wait(options?.signal);
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }

  /**
   * Takes a slot if one is free now, without queueing.
   *
   * @returns A function that frees the slot (calling it again does nothing),
   * or `undefined` when every slot is taken.
   *
   * @example Take a slot by hand
   * ```ts
   * import { ConcurrencyLimiter } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const limiter = new ConcurrencyLimiter({ concurrency: 1 });
   * const release = limiter.tryAcquire();
   * assert.ok(release !== undefined);
   * assert.equal(limiter.tryAcquire(), undefined);
   * release();
   * assert.equal(limiter.inFlight, 0);
   * ```
   */
  tryAcquire(): (() => void) | undefined {
    if (this.#active >= this.#concurrency) return undefined;
    this.#active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#release();
    };
  }

  #wait(signal: AbortSignal | undefined): Promise<void> {
    if (this.#queued >= this.#maxQueue) {
      return Promise.reject(
        new PlmError(
          "ERR_QUEUE_FULL",
          `Cannot queue the call as ${this.#queued} calls already wait for ${this.#concurrency} slots`,
        ),
      );
    }
    if (signal === undefined) {
      return new Promise<void>((resolve) => {
        this.#queue.push(resolve);
        this.#queued++;
      });
    }
    if (signal.aborted) return Promise.reject(cancelled(signal));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const index = this.#queue.indexOf(waiter, this.#head);
        if (index === -1) return;
        this.#queue[index] = null;
        this.#queued--;
        reject(cancelled(signal));
      };
      const waiter = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
      this.#queued++;
    });
  }

  #release(): void {
    const queue = this.#queue;
    while (this.#head < queue.length) {
      const waiter = queue[this.#head];
      queue[this.#head++] = null;
      if (waiter === null || waiter === undefined) continue;
      this.#queued--;
      this.#compact();
      waiter(); // the slot passes to the waiter: #active is unchanged
      return;
    }
    this.#compact();
    this.#active--;
  }

  #compact(): void {
    const queue = this.#queue;
    if (this.#head === queue.length) {
      queue.length = 0;
      this.#head = 0;
    } else if (this.#head >= COMPACT_AFTER && this.#head * 2 >= queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

function cancelled(signal: AbortSignal): PlmError {
  return new PlmError("ERR_CANCELLED", "Cannot run the call as it was cancelled while queued", {
    cause: signal.reason,
  });
}

/**
 * Counts calls in flight per key (agent id), for the selector's load and
 * fullness checks.
 *
 * @example Count an agent's calls
 * ```ts
 * import { InFlightCounter } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const counter = new InFlightCounter();
 * assert.ok(counter.tryIncrement("a-1", 1));
 * assert.ok(!counter.tryIncrement("a-1", 1));
 * counter.decrement("a-1");
 * assert.equal(counter.inFlight("a-1"), 0);
 * ```
 */
export class InFlightCounter {
  readonly #counts = new Map<string, number>();
  #total = 0;

  /** Calls in flight over every key. */
  get total(): number {
    return this.#total;
  }

  /**
   * Calls in flight for `key`.
   *
   * @param key The agent id.
   * @returns The count, 0 for a key never seen.
   */
  inFlight(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  /**
   * Counts one more call for `key`.
   *
   * @param key The agent id.
   */
  increment(key: string): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
    this.#total++;
  }

  /**
   * Counts one more call for `key` when fewer than `max` are in flight.
   *
   * @param key The agent id.
   * @param max The agent's `maxConcurrency`.
   * @returns `true` when counted.
   */
  tryIncrement(key: string, max: number): boolean {
    const count = this.#counts.get(key) ?? 0;
    if (count >= max) return false;
    this.#counts.set(key, count + 1);
    this.#total++;
    return true;
  }

  /**
   * Counts one call fewer for `key`.
   *
   * @param key The agent id.
   * @throws {RangeError} When `key` has no call in flight.
   */
  decrement(key: string): void {
    const count = this.#counts.get(key) ?? 0;
    if (count === 0) throw new RangeError(`Cannot decrement ${key} as it has no call in flight`);
    if (count === 1) this.#counts.delete(key);
    else this.#counts.set(key, count - 1);
    this.#total--;
  }
}
