/**
 * One canonical JSON (RFC 8785, JCS) and one digest helper for every hash the
 * package computes: audit records, request digests, approval digests and
 * policy versions.
 *
 * @module
 */
import { hash } from "node:crypto";
import { PlmError } from "./errors.ts";
import type { JsonValue } from "./json.ts";

/** Bounds on a JSON value that {@link canonicalJson} accepts. */
export interface CanonicalJsonOptions {
  /**
   * The name of the value in error messages (`task.input`).
   *
   * @default {"value"}
   */
  field?: string;
  /**
   * The most levels of arrays and objects (the root counts as one).
   *
   * @default {JSON_LIMITS.maxDepth}
   */
  maxDepth?: number;
  /**
   * The most UTF-16 code units of canonical text.
   *
   * @default {JSON_LIMITS.maxLength}
   */
  maxLength?: number;
}

/**
 * Default bounds of {@link canonicalJson}: 32 levels of nesting and 1,000,000
 * characters of canonical text.
 *
 * @example Read the bounds
 * ```ts
 * import { JSON_LIMITS } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(JSON_LIMITS.maxDepth, 32);
 * assert.equal(JSON_LIMITS.maxLength, 1_000_000);
 * ```
 */
export const JSON_LIMITS = { maxDepth: 32, maxLength: 1_000_000 } as const;

/** The text grew past `maxLength`: refused as soon as a container sees it, not at the end. */
class TooLong {}

/** A refusal deep in a value; frames on the way out add their key to `path`. */
class JsonRefusal {
  readonly path: (string | number)[] = [];
  constructor(readonly message: string) {}
}

/**
 * Serialises a JSON value as RFC 8785 (JCS) canonical text: object keys sorted
 * by UTF-16 code units, no whitespace, numbers and strings as ECMAScript
 * writes them. Refuses, rather than converts, whatever JSON cannot carry
 * exactly: `undefined`, functions, symbols, BigInt, NaN and ±Infinity, lone
 * surrogates, objects that are not plain (Date, Map, class instances), sparse
 * arrays, and values deeper or longer than the bounds (a cycle is refused as
 * too deep). Recursion is bounded by `maxDepth`.
 *
 * @param value The value to serialise.
 * @param options The field name for errors and the bounds.
 * @returns The canonical text.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the path of the first bad part.
 *
 * @example Sort keys, drop whitespace, refuse what JSON cannot carry
 * ```ts
 * import { canonicalJson } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(canonicalJson({ b: [1, "x"], a: { d: null, c: true } }), '{"a":{"c":true,"d":null},"b":[1,"x"]}');
 * assert.throws(() => canonicalJson({ at: new Date(0) } as never, { field: "input" }), {
 *   code: "ERR_INVALID_ARGUMENT",
 *   message: /input\.at/,
 * });
 * ```
 */
export function canonicalJson(value: JsonValue, options: CanonicalJsonOptions = {}): string {
  const {
    field = "value",
    maxDepth = JSON_LIMITS.maxDepth,
    maxLength = JSON_LIMITS.maxLength,
  } = options;
  let text: string;
  try {
    text = write(value, maxDepth, maxLength);
    if (text.length > maxLength) throw new TooLong();
  } catch (err) {
    if (err instanceof TooLong) {
      throw new PlmError(
        "ERR_INVALID_ARGUMENT",
        `Cannot accept ${field}: its JSON is more than ${maxLength} characters`,
      );
    }
    if (!(err instanceof JsonRefusal)) throw err;
    throw new PlmError(
      "ERR_INVALID_ARGUMENT",
      `Cannot accept ${field}${formatPath(err.path)}: ${err.message}`,
    );
  }
  return text;
}

/**
 * Hex SHA-256 of the UTF-8 encoding of `text`.
 *
 * @param text The text to hash; must be well-formed UTF-16 (no lone surrogates).
 * @returns 64 lowercase hex digits.
 *
 * @example Hash a text
 * ```ts
 * import { sha256Hex } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
 * ```
 */
export function sha256Hex(text: string): string {
  return hash("sha256", text, "hex");
}

/**
 * `sha256Hex(canonicalJson(value))`: the digest of a JSON value, independent of
 * key order.
 *
 * @param value The value to digest.
 * @param options The field name for errors and the bounds.
 * @returns 64 lowercase hex digits.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `value` is not JSON or out of bounds.
 *
 * @example Key order does not change the digest
 * ```ts
 * import { digestJson } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(digestJson({ a: 1, b: 2 }), digestJson({ b: 2, a: 1 }));
 * assert.notEqual(digestJson({ a: 1 }), digestJson({ a: 2 }));
 * ```
 */
export function digestJson(value: JsonValue, options?: CanonicalJsonOptions): string {
  return sha256Hex(canonicalJson(value, options));
}

function write(value: unknown, depth: number, max: number): string {
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw new JsonRefusal("a string holds a lone surrogate");
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new JsonRefusal(`${value} is not a JSON number`);
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      if (value === null) return "null";
      if (depth <= 0) throw new JsonRefusal("nested too deep (or a cycle)");
      return Array.isArray(value)
        ? writeArray(value, depth - 1, max)
        : writeObject(value, depth - 1, max);
    default:
      throw new JsonRefusal(`a ${typeof value} is not JSON`);
  }
}

function writeArray(array: readonly unknown[], depth: number, max: number): string {
  let out = "[";
  for (let i = 0; i < array.length; i++) {
    if (!(i in array)) throw refusalAt(new JsonRefusal("a sparse array is not JSON"), i);
    try {
      out += (i === 0 ? "" : ",") + write(array[i], depth, max);
    } catch (err) {
      throw refusalAt(err, i);
    }
    if (out.length > max) throw new TooLong();
  }
  return out + "]";
}

function writeObject(object: object, depth: number, max: number): string {
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const name = (object.constructor as { name?: unknown } | undefined)?.name;
    throw new JsonRefusal(`a ${typeof name === "string" ? name : "non-plain object"} is not JSON`);
  }
  const keys = Object.keys(object).sort();
  let out = "{";
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (!key.isWellFormed()) throw refusalAt(new JsonRefusal("a key holds a lone surrogate"), key);
    try {
      out += (i === 0 ? "" : ",") + JSON.stringify(key) + ":" +
        write((object as Record<string, unknown>)[key], depth, max);
    } catch (err) {
      throw refusalAt(err, key);
    }
    if (out.length > max) throw new TooLong();
  }
  return out + "}";
}

/** Adds `key` to a refusal's path; anything else thrown inside (a getter) becomes a refusal. */
function refusalAt(err: unknown, key: string | number): unknown {
  if (err instanceof TooLong) return err;
  const refusal = err instanceof JsonRefusal
    ? err
    : new JsonRefusal(`reading it threw ${err instanceof Error ? err.name : typeof err}`);
  refusal.path.unshift(key);
  return refusal;
}

function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const key of path) {
    out += typeof key === "number"
      ? `[${key}]`
      : /^[A-Za-z_$][\w$]*$/.test(key)
      ? `.${key}`
      : `[${JSON.stringify(key)}]`;
  }
  return out;
}
