/**
 * Turns of the event loop under synchronous work.
 *
 * @module
 */
import { setImmediate } from "node:timers";

/**
 * Lets the event loop turn (timers, heartbeats, I/O) once every `every`
 * steps of work that settle without I/O (SQLite calls are synchronous here),
 * which would otherwise run as one chain of microtasks with no timer firing
 * until it ends. Every step that asks while a turn is due waits for the same
 * turn, in order, so a burst pauses as a whole. `setImmediate` runs after the
 * timers phase, without the clamping of a nested `setTimeout(0)`.
 */
export class Turns {
  readonly #every: number;
  #since = 0;
  #turn: Promise<void> | undefined;

  /** @param every Steps between two turns. */
  constructor(every: number) {
    this.#every = every;
  }

  /** The turn to wait for, or `undefined` when the step may go on at once. */
  next(): Promise<void> | undefined {
    if (this.#turn !== undefined) return this.#turn;
    if (++this.#since < this.#every) return undefined;
    this.#since = 0;
    this.#turn = new Promise((resolve) =>
      setImmediate(() => {
        this.#turn = undefined;
        resolve();
      })
    );
    return this.#turn;
  }
}
