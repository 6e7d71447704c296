/**
 * W3C Trace Context level 1: parse and format `traceparent` and
 * `tracestate`, read them from and write them to `Headers`, start traces and
 * child spans, and bind the current context with `AsyncLocalStorage`.
 *
 * @example Continue an incoming trace into a downstream call
 * ```ts
 * import {
 *   childTraceContext,
 *   currentTraceContext,
 *   extractTraceContext,
 *   injectTraceContext,
 *   newTraceContext,
 *   withTraceContext,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const incoming = new Headers({
 *   traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 *   tracestate: "congo=t61rcWkgMzE",
 * });
 * const ctx = extractTraceContext(incoming) ?? newTraceContext();
 * const outgoing = new Headers();
 * withTraceContext(ctx, () => {
 *   const current = currentTraceContext();
 *   if (current !== undefined) injectTraceContext(childTraceContext(current), outgoing);
 * });
 * assert.match(outgoing.get("traceparent") ?? "", /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
 * assert.equal(outgoing.get("tracestate"), "congo=t61rcWkgMzE");
 * ```
 *
 * @module
 */
export { currentTraceContext, withTraceContext } from "./context.ts";
export {
  childTraceContext,
  type ChildTraceContextOptions,
  newTraceContext,
  type NewTraceContextOptions,
} from "./generate.ts";
export { extractTraceContext, injectTraceContext } from "./propagation.ts";
export { checkTraceContext, formatTraceparent, parseTraceparent } from "./traceparent.ts";
export { formatTracestate, parseTracestate, TraceState } from "./tracestate.ts";
export { type TraceContext, type TraceStateEntry } from "./types.ts";
