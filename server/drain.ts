/**
 * {@link trackInFlight}: a graceful shutdown that lets requests in flight
 * finish. `Deno.serve`'s own `shutdown()` cuts off a request whose body is
 * still arriving, so the server first drains: new requests are refused with a
 * `503` problem (`Connection: close`, `Retry-After`) while those already in
 * flight finish; only then is the listener shut.
 *
 * @module
 */
import { HttpProblem, problemOf, problemResponse } from "./problem.ts";

/** A `Deno.serve` handler. */
export type ServeHandler = (request: Request, info: Deno.ServeHandlerInfo) => Promise<Response>;

/** What {@link trackInFlight} returns. */
export interface InFlightTracker {
  /** The handler to serve: counts each request until its handler answers. */
  readonly fetch: ServeHandler;
  /** How many requests are being handled now. */
  readonly inFlight: number;
  /** Whether {@link InFlightTracker.drain} was called. */
  readonly draining: boolean;
  /**
   * Refuses new requests from now on and resolves once every request in
   * flight has been answered.
   */
  drain(): Promise<void>;
}

/**
 * Wraps a handler to count requests in flight and drain them at shutdown.
 *
 * @param handler The app's handler (`app.fetch`).
 * @returns The counting handler and `drain()`.
 *
 * @example Drain: a request in flight finishes, a new one is refused
 * ```ts
 * import { trackInFlight } from "./drain.ts";
 * import assert from "node:assert/strict";
 *
 * const gate = Promise.withResolvers<void>();
 * const tracker = trackInFlight(async () => {
 *   await gate.promise;
 *   return new Response("done");
 * });
 * const info = {} as Deno.ServeHandlerInfo;
 * const first = tracker.fetch(new Request("http://x/"), info);
 * const drained = tracker.drain();
 * assert.equal((await tracker.fetch(new Request("http://x/"), info)).status, 503);
 * gate.resolve();
 * assert.equal(await (await first).text(), "done");
 * await drained;
 * assert.equal(tracker.inFlight, 0);
 * ```
 */
export function trackInFlight(
  handler: (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>,
): InFlightTracker {
  let inFlight = 0;
  let draining = false;
  let idle: PromiseWithResolvers<void> | undefined;
  const fetch: ServeHandler = async (request, info) => {
    if (draining) {
      const problem = problemOf(
        new HttpProblem(503, "ERR_QUEUE_FULL", "The server is shutting down: send it elsewhere"),
      );
      return problemResponse(problem, { connection: "close", "retry-after": "1" });
    }
    inFlight++;
    try {
      return await handler(request, info);
    } finally {
      inFlight--;
      if (inFlight === 0) idle?.resolve();
    }
  };
  return {
    fetch,
    get inFlight() {
      return inFlight;
    },
    get draining() {
      return draining;
    },
    drain() {
      draining = true;
      if (inFlight === 0) return Promise.resolve();
      idle ??= Promise.withResolvers<void>();
      return idle.promise;
    },
  };
}
