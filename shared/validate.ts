/**
 * The one rule for data from outside (tasks, identities, requests, files, ids,
 * limits): it is checked at the edge and refused with a {@link PlmError}
 * `ERR_INVALID_ARGUMENT` that names the bad field. Texts that reach the store
 * must survive it byte for byte, so U+0000 and lone surrogates are refused.
 *
 * @module
 */
import { z } from "zod";
import { canonicalJson, type CanonicalJsonOptions } from "./canonical_json.ts";
import { PlmError } from "./errors.ts";
import type { JsonValue } from "./json.ts";
import { formatIssues, type Schema } from "./schema.ts";

/**
 * Bounds on data from outside, documented in `docs/INPUT.md`.
 *
 * - `textLength`: an action, resource, subject, role, scope, id or key (UTF-16 code units);
 * - `reasonLength`: a reason or comment;
 * - `listLimit`: the most items one list call returns (`limit` is 1..`listLimit`).
 *
 * @example Read the bounds
 * ```ts
 * import { INPUT_LIMITS } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(INPUT_LIMITS.textLength, 1_024);
 * assert.equal(INPUT_LIMITS.listLimit, 1_000);
 * ```
 */
export const INPUT_LIMITS = { textLength: 1_024, reasonLength: 4_096, listLimit: 1_000 } as const;

/**
 * Why `text` cannot be stored byte-exact, or `undefined` when it can.
 *
 * @param text The text to check.
 * @returns A reason in words, or `undefined`.
 *
 * @example Find what the store would change
 * ```ts
 * import { unsafeTextReason } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(unsafeTextReason("job-1"), undefined);
 * assert.equal(unsafeTextReason("job\0A"), "contains U+0000");
 * assert.equal(unsafeTextReason("\ud800"), "contains a lone surrogate");
 * ```
 */
export function unsafeTextReason(text: string): string | undefined {
  if (text.includes("\0")) return "contains U+0000";
  if (!text.isWellFormed()) return "contains a lone surrogate";
  return undefined;
}

/**
 * Options for {@link textSchema}.
 */
export interface TextSchemaOptions {
  /**
   * The fewest characters.
   *
   * @default {1}
   */
  min?: number;
  /**
   * The most characters.
   *
   * @default {INPUT_LIMITS.textLength}
   */
  max?: number;
}

/**
 * A zod string schema for text that is stored: bounded length, no U+0000, no
 * lone surrogates.
 *
 * @param options The length bounds.
 * @returns The schema.
 *
 * @example Refuse a NUL byte
 * ```ts
 * import { textSchema } from "./validate.ts";
 * import assert from "node:assert/strict";
 *
 * const schema = textSchema();
 * assert.equal(schema.safeParse("bom:1").success, true);
 * assert.equal(schema.safeParse("bom:\0").success, false);
 * assert.equal(schema.safeParse("x".repeat(1_025)).success, false);
 * ```
 */
export function textSchema(options: TextSchemaOptions = {}): z.ZodString {
  const { min = 1, max = INPUT_LIMITS.textLength } = options;
  return z.string().min(min).max(max).superRefine((text, ctx) => {
    const reason = unsafeTextReason(text);
    if (reason !== undefined) ctx.addIssue({ code: "custom", message: `Text ${reason}` });
  });
}

/**
 * A zod schema for JSON from outside: a value that {@link canonicalJson}
 * accepts within the given bounds (BigInt, NaN, Infinity, functions, Date, Map
 * and cycles are refused, not converted). The one JSON check of the layers'
 * own schemas.
 *
 * @param options The depth and length bounds (`field` is ignored: zod names the path).
 * @returns The schema.
 *
 * @example Refuse a NaN and a Date
 * ```ts
 * import { jsonSchema } from "./validate.ts";
 * import assert from "node:assert/strict";
 *
 * const schema = jsonSchema({ maxDepth: 4 });
 * assert.equal(schema.safeParse({ qty: 2, tags: ["a"] }).success, true);
 * assert.equal(schema.safeParse({ qty: NaN }).success, false);
 * assert.equal(schema.safeParse(new Date(0)).success, false);
 * ```
 */
export function jsonSchema(options: CanonicalJsonOptions = {}): z.ZodType<JsonValue> {
  return z.unknown().superRefine((value, ctx) => {
    try {
      canonicalJson(value as JsonValue, { ...options, field: "it" });
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
    }
  }) as unknown as z.ZodType<JsonValue>;
}

/**
 * The error for a bad field of outside data.
 *
 * @param field The path of the field (`task.resource`).
 * @param message What is wrong, in words.
 * @returns A `PlmError` with code `ERR_INVALID_ARGUMENT`.
 *
 * @example Refuse a field
 * ```ts
 * import { invalidArgument } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const err = invalidArgument("limit", "expected an integer 1..1000");
 * assert.equal(err.code, "ERR_INVALID_ARGUMENT");
 * assert.equal(err.message, "Invalid limit: expected an integer 1..1000");
 * ```
 */
export function invalidArgument(field: string, message: string): PlmError {
  return new PlmError("ERR_INVALID_ARGUMENT", `Invalid ${field}: ${message}`);
}

/**
 * Parses outside data with a schema, or throws `ERR_INVALID_ARGUMENT` naming
 * the path of every bad field under `field`.
 *
 * @param schema The zod contract.
 * @param value The untrusted value.
 * @param field The name of the value (`task`).
 * @returns The parsed value.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `value` does not match.
 *
 * @example Name the bad field
 * ```ts
 * import { IdentitySchema, parseArgument } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const bad = { subject: "alice", actorKind: "human", roles: "admin", scopes: [] };
 * assert.throws(() => parseArgument(IdentitySchema, bad, "identity"), {
 *   code: "ERR_INVALID_ARGUMENT",
 *   message: /identity\.roles/,
 * });
 * ```
 */
export function parseArgument<T>(schema: Schema<T>, value: unknown, field: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => ({ ...issue, path: [field, ...issue.path] }));
  throw new PlmError("ERR_INVALID_ARGUMENT", `Invalid ${field}: ${formatIssues(issues)}`);
}

/**
 * Checks that `value` is a text that can be stored byte-exact, with at most
 * `max` characters.
 *
 * @param field The name of the value for the error.
 * @param value The untrusted value.
 * @param max The most characters.
 * @returns `value`, typed as a string.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` otherwise.
 *
 * @example Refuse a lone surrogate in a reason
 * ```ts
 * import { checkText } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(checkText("reason", "Too late"), "Too late");
 * assert.throws(() => checkText("reason", "\udc00"), { code: "ERR_INVALID_ARGUMENT" });
 * assert.throws(() => checkText("reason", 7), { code: "ERR_INVALID_ARGUMENT" });
 * ```
 */
export function checkText(
  field: string,
  value: unknown,
  max: number = INPUT_LIMITS.textLength,
): string {
  if (typeof value !== "string") throw invalidArgument(field, "expected a string");
  if (value.length > max) throw invalidArgument(field, `longer than ${max} characters`);
  const reason = unsafeTextReason(value);
  if (reason !== undefined) throw invalidArgument(field, `text ${reason}`);
  return value;
}

/**
 * Checks that `value` is a safe integer within `[min, max]`: the one count and
 * range check for limits, sequence numbers and sizes from outside.
 *
 * @param field The name of the value for the error.
 * @param value The untrusted value.
 * @param min The smallest allowed value.
 * @param max The largest allowed value.
 * @returns `value`, typed as a number.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` otherwise (NaN, 1.5, Infinity, a string...).
 *
 * @example Check a list limit
 * ```ts
 * import { checkInteger } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(checkInteger("limit", 10, 1, 1_000), 10);
 * for (const bad of [-1, 0, 1.5, NaN, Infinity, "10", 1_001]) {
 *   assert.throws(() => checkInteger("limit", bad, 1, 1_000), { code: "ERR_INVALID_ARGUMENT" });
 * }
 * ```
 */
export function checkInteger(
  field: string,
  value: unknown,
  min = 0,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalidArgument(field, `expected an integer ${min}..${max}, got ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return `the string ${JSON.stringify(value.slice(0, 32))}`;
  return typeof value;
}

/**
 * The one check of an integer constructor or factory option, a programmer's
 * setting rather than outside data: a safe integer within `[min, max]`, else a
 * `RangeError`. Not exported from `shared/mod.ts`; for data from outside use
 * {@link checkInteger}.
 *
 * @param name The option's name for the error.
 * @param value The value given.
 * @param min The smallest allowed value.
 * @param max The largest allowed value.
 * @returns `value`.
 * @throws {RangeError} When `value` is not a safe integer within the range.
 *
 * @example Check a concurrency option
 * ```ts
 * import { checkOption } from "./validate.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(checkOption("concurrency", 4, 1), 4);
 * assert.throws(() => checkOption("concurrency", 0, 1), RangeError);
 * ```
 */
export function checkOption(
  name: string,
  value: number,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
    throw new RangeError(`Cannot use ${name} ${value}: expected an integer ${range}`);
  }
  return value;
}
