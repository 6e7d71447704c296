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
 */
export type TraceStateEntry = readonly [key: string, value: string];

/**
 * A W3C Trace Context (level 1): the `traceparent` fields and the checked
 * `tracestate`.
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
