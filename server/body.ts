/**
 * Reading a request body within limits: at most `maxBytes` (checked on the
 * declared `Content-Length` first, then while reading, so a chunked body is
 * cut off too) and within `timeoutMs` (a client that stalls is dropped).
 *
 * @module
 */
import type { Timer } from "../shared/mod.ts";
import { HttpProblem } from "./problem.ts";

/** Limits of {@link readBody}. */
export interface BodyLimits {
  /** The most bytes accepted. */
  readonly maxBytes: number;
  /** How long the whole body may take to arrive, in milliseconds. */
  readonly timeoutMs: number;
  /** Schedules the timeout. */
  readonly timer: Timer;
}

/**
 * Reads a request's body, refusing one over the limit or too slow.
 *
 * @param request The request.
 * @param limits The size and time limits.
 * @returns The bytes (empty when there is no body).
 * @throws {HttpProblem} `413` over `maxBytes`, `408` when it takes longer than `timeoutMs`.
 *
 * @example Refuse a chunked body over the limit
 * ```ts
 * import { systemTimer } from "../shared/mod.ts";
 * import { readBody } from "./body.ts";
 * import assert from "node:assert/strict";
 *
 * const body = new ReadableStream({
 *   start(c) {
 *     c.enqueue(new Uint8Array(8));
 *     c.enqueue(new Uint8Array(8));
 *     c.close();
 *   },
 * });
 * const request = new Request("http://x/", { method: "POST", body });
 * await assert.rejects(
 *   readBody(request, { maxBytes: 10, timeoutMs: 1000, timer: systemTimer }),
 *   { status: 413 },
 * );
 * ```
 */
export async function readBody(request: Request, limits: BodyLimits): Promise<Uint8Array> {
  const { maxBytes, timeoutMs, timer } = limits;
  const declared = request.headers.get("content-length");
  if (declared !== null && /^[0-9]+$/.test(declared) && Number(declared) > maxBytes) {
    throw tooLarge(maxBytes);
  }
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  let timedOut = false;
  const cancel = timer(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (timedOut) {
        throw new HttpProblem(
          408,
          "ERR_TIMEOUT",
          `The request body did not arrive within ${timeoutMs} ms`,
        );
      }
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge(maxBytes);
      }
      chunks.push(value);
    }
  } finally {
    cancel();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function tooLarge(maxBytes: number): HttpProblem {
  return new HttpProblem(
    413,
    "ERR_INVALID_ARGUMENT",
    `The request body is larger than ${maxBytes} bytes`,
    "body",
  );
}
