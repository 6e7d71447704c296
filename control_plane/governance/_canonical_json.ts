/**
 * Canonical JSON (sorted keys, no whitespace) and its SHA-256, for content
 * versions. Private to governance.
 *
 * @module
 */
import { createHash } from "node:crypto";

/**
 * Serializes a JSON-compatible value with object keys sorted by code unit and
 * no whitespace. Keys whose value is `undefined` are left out, as
 * `JSON.stringify` does.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`Cannot serialize ${typeof value} as JSON`);
    return text;
  }
  if (Array.isArray(value)) {
    return `[${value.map((item) => item === undefined ? "null" : canonicalJson(item)).join(",")}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).filter((key) => record[key] !== undefined).sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(",")}}`;
}

/** The lowercase hex SHA-256 of the canonical JSON of `value`. */
export function sha256CanonicalJson(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value), "utf8").digest("hex");
}
