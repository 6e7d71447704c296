/**
 * {@link InFlightCounter}: the calls each agent has in flight, which the
 * `Dispatcher` keeps for the selector (load and fullness) next to its global
 * slots.
 *
 * @module
 */

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
 * counter.increment("a-1");
 * counter.increment("a-1");
 * counter.decrement("a-1");
 * assert.equal(counter.inFlight("a-1"), 1);
 * assert.equal(counter.inFlight("b-2"), 0);
 * ```
 */
export class InFlightCounter {
  readonly #counts = new Map<string, number>();

  /**
   * Calls in flight for `key`.
   *
   * @param key The agent id.
   * @returns The count, 0 for a key never seen.
   *
   * @example Read an agent's load
   * ```ts
   * import { InFlightCounter } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const counter = new InFlightCounter();
   * counter.increment("a-1");
   * assert.equal(counter.inFlight("a-1"), 1);
   * assert.equal(counter.inFlight("a-2"), 0);
   * ```
   */
  inFlight(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  /**
   * Counts one more call for `key`.
   *
   * @param key The agent id.
   *
   * @example Count a call as it starts
   * ```ts
   * import { InFlightCounter } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const counter = new InFlightCounter();
   * counter.increment("a-1");
   * counter.increment("a-1");
   * assert.equal(counter.inFlight("a-1"), 2);
   * ```
   */
  increment(key: string): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  /**
   * Counts one call fewer for `key`.
   *
   * @param key The agent id.
   * @throws {RangeError} When `key` has no call in flight.
   *
   * @example Count a call as it ends
   * ```ts
   * import { InFlightCounter } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const counter = new InFlightCounter();
   * counter.increment("a-1");
   * counter.decrement("a-1");
   * assert.equal(counter.inFlight("a-1"), 0);
   * assert.throws(() => counter.decrement("a-1"), RangeError);
   * ```
   */
  decrement(key: string): void {
    const count = this.#counts.get(key) ?? 0;
    if (count === 0) throw new RangeError(`Cannot decrement ${key} as it has no call in flight`);
    if (count === 1) this.#counts.delete(key);
    else this.#counts.set(key, count - 1);
  }
}
