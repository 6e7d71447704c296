/**
 * The `traceparent` header of W3C Trace Context level 1:
 * {@link parseTraceparent} and {@link formatTraceparent}.
 *
 * @module
 */
import { byteToHex, hexValue, isNonZeroHex, SAMPLED, VERSION_00_LENGTH } from "./_grammar.ts";
import { checkInteger, invalidArgument } from "../../shared/mod.ts";
import { TraceState } from "./tracestate.ts";
import type { TraceContext } from "./types.ts";

const DASH = 0x2d;

/**
 * Parses a `traceparent` header value.
 *
 * The rules of W3C Trace Context level 1:
 * - `version` is two lowercase hex digits; `ff` is invalid.
 * - Version `00` is exactly `00-<trace-id>-<parent-id>-<trace-flags>`, 55
 *   characters.
 * - A higher version is parsed by its first four fields, which must be
 *   followed by `-` or the end of the value; the fields after them are not
 *   looked at. Of its flags only `sampled` is kept, the others meaning
 *   something this version does not know.
 * - `trace-id` is 32 and `parent-id` 16 lowercase hex digits, neither all
 *   zero; `trace-flags` is two lowercase hex digits.
 *
 * No white space is trimmed: HTTP header parsing (and `Headers`) already
 * removes the optional white space around a field value.
 *
 * @param value The header value.
 * @returns The context with an empty `traceState`, or `null` when the value
 * is invalid.
 *
 * @example Parse a sampled traceparent
 * ```ts
 * import { parseTraceparent, TraceState } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), {
 *   traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
 *   spanId: "00f067aa0ba902b7",
 *   traceFlags: 1,
 *   traceState: TraceState.EMPTY,
 * });
 * assert.equal(parseTraceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), null);
 * ```
 */
export function parseTraceparent(value: string): TraceContext | null {
  const length = value.length;
  if (length < VERSION_00_LENGTH) return null;
  const high = hexValue(value.charCodeAt(0));
  const low = hexValue(value.charCodeAt(1));
  if (high < 0 || low < 0) return null;
  const version = high * 16 + low;
  if (version === 0xff) return null;
  if (version === 0) {
    if (length !== VERSION_00_LENGTH) return null;
  } else if (length > VERSION_00_LENGTH && value.charCodeAt(VERSION_00_LENGTH) !== DASH) {
    return null;
  }
  if (
    value.charCodeAt(2) !== DASH || value.charCodeAt(35) !== DASH ||
    value.charCodeAt(52) !== DASH
  ) {
    return null;
  }
  if (!isNonZeroHex(value, 3, 35) || !isNonZeroHex(value, 36, 52)) return null;
  const flagsHigh = hexValue(value.charCodeAt(53));
  const flagsLow = hexValue(value.charCodeAt(54));
  if (flagsHigh < 0 || flagsLow < 0) return null;
  const flags = flagsHigh * 16 + flagsLow;
  return {
    traceId: value.slice(3, 35),
    spanId: value.slice(36, 52),
    traceFlags: version === 0 ? flags : flags & SAMPLED,
    traceState: TraceState.EMPTY,
  };
}

/**
 * Formats the `traceparent` header value of a context, always as version
 * `00`. The `traceState` is not part of it (see `TraceState.header`).
 *
 * @param ctx The context.
 * @returns `00-<traceId>-<spanId>-<flags as two hex digits>`.
 * @throws {TypeError} When `traceId` is not 32 or `spanId` not 16 lowercase hex
 * digits, or either is all zero.
 * @throws {RangeError} When `traceFlags` is not an integer from 0 to 255.
 *
 * @example Format a context
 * ```ts
 * import { formatTraceparent, TraceState } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const header = formatTraceparent({
 *   traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
 *   spanId: "00f067aa0ba902b7",
 *   traceFlags: 1,
 *   traceState: TraceState.EMPTY,
 * });
 * assert.equal(header, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
 * ```
 */
export function formatTraceparent(ctx: TraceContext): string {
  const { traceId, spanId, traceFlags } = ctx;
  if (traceId.length !== 32 || !isNonZeroHex(traceId, 0, 32)) {
    throw new TypeError(
      `Cannot format trace id "${traceId}": expected 32 lowercase hex digits, not all zero`,
    );
  }
  if (spanId.length !== 16 || !isNonZeroHex(spanId, 0, 16)) {
    throw new TypeError(
      `Cannot format span id "${spanId}": expected 16 lowercase hex digits, not all zero`,
    );
  }
  if (!Number.isInteger(traceFlags) || traceFlags < 0 || traceFlags > 0xff) {
    throw new RangeError(`Cannot format trace flags ${traceFlags}: expected an integer 0-255`);
  }
  return `00-${traceId}-${spanId}-${byteToHex(traceFlags)}`;
}

/**
 * Checks a {@link TraceContext} given from outside (an option, a decoded
 * message): lowercase hex ids that are not all zero, flags 0-255 and a
 * {@link TraceState}.
 *
 * @param ctx The untrusted context.
 * @param field The name of the context in error messages.
 * @returns `ctx`, typed.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the bad field (`trace.spanId`).
 *
 * @example Refuse an all-zero span id
 * ```ts
 * import { checkTraceContext, TraceState } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const ctx = {
 *   traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
 *   spanId: "00f067aa0ba902b7",
 *   traceFlags: 1,
 *   traceState: TraceState.EMPTY,
 * };
 * assert.equal(checkTraceContext(ctx, "trace"), ctx);
 * assert.throws(() => checkTraceContext({ ...ctx, spanId: "0".repeat(16) }, "trace"), {
 *   code: "ERR_INVALID_ARGUMENT",
 *   message: /trace\.spanId/,
 * });
 * ```
 */
export function checkTraceContext(ctx: unknown, field: string): TraceContext {
  if (typeof ctx !== "object" || ctx === null) throw invalidArgument(field, "expected an object");
  const { traceId, spanId, traceFlags, traceState } = ctx as Record<string, unknown>;
  if (typeof traceId !== "string" || traceId.length !== 32 || !isNonZeroHex(traceId, 0, 32)) {
    throw invalidArgument(`${field}.traceId`, "expected 32 lowercase hex digits, not all zero");
  }
  if (typeof spanId !== "string" || spanId.length !== 16 || !isNonZeroHex(spanId, 0, 16)) {
    throw invalidArgument(`${field}.spanId`, "expected 16 lowercase hex digits, not all zero");
  }
  checkInteger(`${field}.traceFlags`, traceFlags, 0, 255);
  if (!(traceState instanceof TraceState)) {
    throw invalidArgument(`${field}.traceState`, "expected a TraceState");
  }
  return ctx as TraceContext;
}
