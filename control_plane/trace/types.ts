/**
 * The shapes of a W3C Trace Context: {@link TraceContext} and
 * {@link TraceStateEntry}.
 *
 * @module
 */
import type { TraceState } from "./tracestate.ts";

/**
 * One `tracestate` list member: a vendor key and its opaque value, e.g.
 * `["rojo", "00f067aa0ba902b7"]`.
 *
 * @example Read a vendor's entry
 * ```ts
 * import { parseTracestate, type TraceStateEntry } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const entries: TraceStateEntry[] = parseTracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE") ?? [];
 * const [key, value] = entries[0] ?? ["", ""];
 * assert.equal(key, "rojo");
 * assert.equal(value, "00f067aa0ba902b7");
 * ```
 */
export type TraceStateEntry = readonly [key: string, value: string];

/**
 * A W3C Trace Context (level 1): the `traceparent` fields and the checked
 * `tracestate`.
 *
 * @example Tell whether the caller sampled the request
 * ```ts
 * import { parseTraceparent, type TraceContext } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const ctx: TraceContext | null = parseTraceparent(
 *   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 * );
 * assert.ok(ctx !== null);
 * assert.equal(ctx.traceFlags & 0x01, 1);
 * assert.equal(ctx.traceState.size, 0);
 * ```
 */
export interface TraceContext {
  /** 32 lowercase hex digits (16 bytes), never all zero. */
  readonly traceId: string;
  /** The parent id: 16 lowercase hex digits (8 bytes), never all zero. */
  readonly spanId: string;
  /** The 8-bit trace flags; bit `0x01` is `sampled`. */
  readonly traceFlags: number;
  /** The `tracestate` members, leftmost (most recent vendor) first. */
  readonly traceState: TraceState;
}
