/**
 * Trace context over HTTP headers: {@link extractTraceContext} and
 * {@link injectTraceContext}.
 *
 * @module
 */
import { VERSION_00_LENGTH } from "./_grammar.ts";
import { formatTraceparent, parseTraceparent } from "./traceparent.ts";
import { TraceState } from "./tracestate.ts";
import type { TraceContext } from "./types.ts";

const TRACEPARENT = "traceparent";
const TRACESTATE = "tracestate";

/**
 * Reads the trace context of an incoming request.
 *
 * - No `traceparent`, or an invalid one, gives `null`; `tracestate` is then
 *   not read.
 * - Several `traceparent` headers are invalid. `Headers.get` joins repeated
 *   fields with `", "`, so a value holding a comma counts as several headers
 *   (even a later version whose unknown fields would allow one).
 * - Several `tracestate` headers are one list, in order (`Headers.get`
 *   already joins them with `", "`). It is checked whole, as
 *   `parseTracestate` does, the first time it is read
 *   (`TraceState.received`): an invalid `tracestate` then reads as no
 *   members and is never passed on, and the `traceparent` is kept.
 *
 * Header names match in any case, and `Headers` trims the white space around
 * values.
 *
 * @param headers The request headers.
 * @returns The context, or `null` when there is no valid `traceparent`.
 *
 * @example Continue the caller's trace
 * ```ts
 * import { extractTraceContext } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const headers = new Headers({
 *   traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 *   tracestate: "congo=t61rcWkgMzE",
 * });
 * const ctx = extractTraceContext(headers);
 * assert.equal(ctx?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
 * assert.equal(ctx?.traceState.get("congo"), "t61rcWkgMzE");
 * assert.equal(extractTraceContext(new Headers()), null);
 * ```
 */
export function extractTraceContext(headers: Headers): TraceContext | null {
  const traceparent = headers.get(TRACEPARENT);
  if (traceparent === null) return null;
  if (traceparent.length > VERSION_00_LENGTH && traceparent.includes(",")) return null;
  const ctx = parseTraceparent(traceparent);
  if (ctx === null) return null;
  const tracestate = headers.get(TRACESTATE);
  if (tracestate === null || tracestate === "") return ctx;
  return {
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    traceFlags: ctx.traceFlags,
    traceState: TraceState.received(tracestate),
  };
}

/**
 * Writes a context into outgoing request headers: sets `traceparent` (version
 * `00`) and, when the context has members, `tracestate`. Without members any
 * `tracestate` already in `headers` is removed, as it would belong to another
 * trace.
 *
 * @param ctx The context to send, usually a child of the current one.
 * @param headers The outgoing headers; changed in place.
 * @throws {TypeError} When the context breaks the `traceparent` grammar (see
 * `formatTraceparent`) or its `traceState` is not a `TraceState`.
 * @throws {RangeError} When the flags are out of range.
 *
 * @example Propagate a context to a downstream call
 * ```ts
 * import { injectTraceContext, TraceState } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const headers = new Headers();
 * injectTraceContext({
 *   traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
 *   spanId: "00f067aa0ba902b7",
 *   traceFlags: 1,
 *   traceState: TraceState.from([["rojo", "00f067aa0ba902b7"]]),
 * }, headers);
 * assert.equal(headers.get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
 * assert.equal(headers.get("tracestate"), "rojo=00f067aa0ba902b7");
 * ```
 */
export function injectTraceContext(ctx: TraceContext, headers: Headers): void {
  const { traceState } = ctx;
  // A TraceState is valid by construction; anything else (a context rebuilt from JSON, say)
  // is refused rather than sent unchecked.
  if (!(traceState instanceof TraceState)) {
    throw new TypeError("Cannot inject a trace context whose traceState is not a TraceState");
  }
  headers.set(TRACEPARENT, formatTraceparent(ctx));
  if (traceState.size === 0) headers.delete(TRACESTATE);
  else headers.set(TRACESTATE, traceState.header);
}
