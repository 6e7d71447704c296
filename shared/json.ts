/**
 * JSON values, as stored in audit records and run payloads.
 *
 * @module
 */

/**
 * Any value that survives `JSON.stringify` and `JSON.parse` unchanged.
 *
 * @example Round-trip a payload through JSON
 * ```ts
 * import type { JsonValue } from "@tracepulse/plm-engine-core/shared";
 * import { canonicalJson } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const payload: JsonValue = { part: "P-7", lines: [{ qty: 2 }, null], draft: false };
 * assert.deepEqual(JSON.parse(JSON.stringify(payload)), payload);
 * assert.equal(canonicalJson(payload), '{"draft":false,"lines":[{"qty":2},null],"part":"P-7"}');
 * ```
 */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue };
