/**
 * The trace context in force for the current async call chain:
 * {@link withTraceContext} and {@link currentTraceContext}, backed by
 * `AsyncLocalStorage`.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { TraceContext } from "./types.ts";
import { checkTraceContext } from "./traceparent.ts";

const storage = new AsyncLocalStorage<TraceContext>();

/**
 * The trace context bound by the innermost enclosing
 * {@link withTraceContext}, across `await`s and timers.
 *
 * @returns The bound context, or `undefined` outside any binding.
 *
 * @example Read the bound context
 * ```ts
 * import {
 *   currentTraceContext,
 *   newTraceContext,
 *   withTraceContext,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const ctx = newTraceContext();
 * assert.equal(currentTraceContext(), undefined);
 * await withTraceContext(ctx, async () => {
 *   await Promise.resolve();
 *   assert.equal(currentTraceContext(), ctx);
 * });
 * ```
 */
export function currentTraceContext(): TraceContext | undefined {
  return storage.getStore();
}

/**
 * Runs `fn` with `ctx` bound as the current trace context; the binding
 * follows every async operation `fn` starts and ends with it. Bindings nest:
 * the innermost wins.
 *
 * @typeParam T The result of `fn`.
 * @param ctx The context to bind.
 * @param fn The code to run.
 * @returns What `fn` returns (a promise stays a promise).
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the bad field of `ctx` (`trace.spanId`).
 *
 * @example Bind an incoming request's context
 * ```ts
 * import {
 *   currentTraceContext,
 *   extractTraceContext,
 *   newTraceContext,
 *   withTraceContext,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const headers = new Headers({
 *   traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 * });
 * const ctx = extractTraceContext(headers) ?? newTraceContext();
 * const traceId = withTraceContext(ctx, () => currentTraceContext()?.traceId);
 * assert.equal(traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
 * ```
 */
export function withTraceContext<T>(ctx: TraceContext, fn: () => T): T {
  return storage.run(checkTraceContext(ctx, "trace"), fn);
}
