/**
 * New trace and span ids: {@link newTraceContext} and
 * {@link childTraceContext}.
 *
 * @module
 */
import { PlmError, type Random } from "../../shared/mod.ts";
import { bytesToHex, SAMPLED } from "./_grammar.ts";
import { TraceState } from "./tracestate.ts";
import type { TraceContext } from "./types.ts";

/** Draws before giving up on a random source that keeps returning zeros. */
const MAX_DRAWS = 8;

/**
 * Draws `size` random bytes until they are not all zero; returns them as hex.
 * Without an injected {@link Random}, the bytes come from
 * `crypto.getRandomValues` in one call; with one, each byte is
 * `floor(random() * 256)`.
 */
function randomId(random: Random | undefined, size: number, what: string): string {
  const bytes = new Uint8Array(size);
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    if (random === undefined) crypto.getRandomValues(bytes);
    else for (let i = 0; i < size; i++) bytes[i] = Math.floor(random() * 256) & 0xff;
    if (bytes.some((byte) => byte !== 0)) return bytesToHex(bytes);
  }
  throw new PlmError(
    "ERR_INTERNAL",
    `Cannot generate a ${what}: the random source returned only zero bytes ${MAX_DRAWS} times`,
  );
}

/** Options for {@link newTraceContext}. */
export interface NewTraceContextOptions {
  /**
   * Uniform draws in [0, 1); each id byte is `floor(random() * 256)`.
   *
   * @default {crypto.getRandomValues}
   */
  random?: Random;
  /**
   * Whether to set the `sampled` flag.
   *
   * @default {true}
   */
  sampled?: boolean;
}

/**
 * Starts a new trace: a random 16-byte trace id, a random 8-byte span id and
 * no `tracestate`. An id whose bytes are all zero (invalid) is drawn again.
 *
 * @param options The random source and the sampled flag.
 * @returns The new root context.
 * @throws {PlmError} `ERR_INTERNAL` when the random source returns only zero
 * bytes 8 times in a row.
 *
 * @example Start a trace with a seeded source
 * ```ts
 * import { newTraceContext } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const ctx = newTraceContext({ random: () => 0xab / 256, sampled: false });
 * assert.equal(ctx.traceId, "ab".repeat(16));
 * assert.equal(ctx.spanId, "ab".repeat(8));
 * assert.equal(ctx.traceFlags, 0);
 * assert.match(newTraceContext().traceId, /^[0-9a-f]{32}$/);
 * ```
 */
export function newTraceContext(options: NewTraceContextOptions = {}): TraceContext {
  const { random, sampled = true } = options;
  return {
    traceId: randomId(random, 16, "trace id"),
    spanId: randomId(random, 8, "span id"),
    traceFlags: sampled ? SAMPLED : 0,
    traceState: TraceState.EMPTY,
  };
}

/** Options for {@link childTraceContext}. */
export interface ChildTraceContextOptions {
  /**
   * Uniform draws in [0, 1); each id byte is `floor(random() * 256)`.
   *
   * @default {crypto.getRandomValues}
   */
  random?: Random;
  /**
   * Whether to set the `sampled` flag.
   *
   * @default {(ctx.traceFlags & 0x01) !== 0}
   */
  sampled?: boolean;
}

/**
 * Derives the context of a new operation inside a trace: same trace id and
 * `tracestate`, a new random span id. Of the flags only `sampled` is carried
 * over; trace context level 1 reserves the others and has them set to zero.
 *
 * @param ctx The parent context.
 * @param options The random source and the sampled flag.
 * @returns The child context.
 * @throws {PlmError} `ERR_INTERNAL` when the random source returns only zero
 * bytes 8 times in a row.
 *
 * @example Call downstream as a child span
 * ```ts
 * import { childTraceContext, parseTraceparent } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const parent = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
 * assert.ok(parent !== null);
 * const child = childTraceContext(parent, { random: () => 0x11 / 256 });
 * assert.equal(child.traceId, parent.traceId);
 * assert.equal(child.spanId, "1111111111111111");
 * assert.equal(child.traceFlags, 1);
 * ```
 */
export function childTraceContext(
  ctx: TraceContext,
  options: ChildTraceContextOptions = {},
): TraceContext {
  const { random, sampled = (ctx.traceFlags & SAMPLED) !== 0 } = options;
  return {
    traceId: ctx.traceId,
    spanId: randomId(random, 8, "span id"),
    traceFlags: sampled ? SAMPLED : 0,
    traceState: ctx.traceState,
  };
}
