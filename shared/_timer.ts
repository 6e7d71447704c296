/**
 * The stepping behind `systemTimer`, over injected `setTimeout` and
 * `clearTimeout` so tests can drive it without waiting.
 *
 * @module
 */

/** The longest delay `setTimeout` keeps (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/** The two calls of the host's timer API that a timer needs. */
export interface HostTimers<Id> {
  set(callback: () => void, ms: number): Id;
  clear(id: Id): void;
}

/**
 * Schedules `callback` after `ms`, waiting a delay longer than
 * {@link MAX_TIMEOUT_MS} out in steps; returns the cancel function.
 */
export function scheduleOn<Id>(host: HostTimers<Id>, callback: () => void, ms: number): () => void {
  let id: Id;
  const arm = (left: number) => {
    id = left > MAX_TIMEOUT_MS
      ? host.set(() => arm(left - MAX_TIMEOUT_MS), MAX_TIMEOUT_MS)
      : host.set(callback, left);
  };
  arm(ms);
  return () => host.clear(id);
}
