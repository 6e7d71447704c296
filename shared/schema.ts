/**
 * The package's view of a runtime schema. Public schemas are typed with
 * {@link Schema} instead of zod's own classes so that the public API does not
 * change with zod's internal types; the values are zod schemas.
 *
 * @module
 */

/** One problem found while validating, with the path to the bad field. */
export interface SchemaIssue {
  /** Path from the root of the input to the bad field. */
  readonly path: readonly PropertyKey[];
  /** What is wrong, in words. */
  readonly message: string;
}

/** The result of {@link Schema.safeParse}. */
export type SafeParseResult<T> =
  | { readonly success: true; readonly data: T }
  | { readonly success: false; readonly error: { readonly issues: readonly SchemaIssue[] } };

/** A runtime schema that validates unknown input into `T`. */
export interface Schema<T> {
  /** Returns the validated value or throws the schema library's error. */
  parse(input: unknown): T;
  /** Returns the validated value or the issues, without throwing. */
  safeParse(input: unknown): SafeParseResult<T>;
}

/**
 * Formats schema issues as one line: `path.to.field: message; other: message`.
 *
 * @param issues The issues of a failed parse.
 * @returns A one-line summary naming each bad field.
 *
 * @example Name the bad field
 * ```ts
 * import { formatIssues } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   formatIssues([{ path: ["rules", 0, "effect"], message: "Invalid option" }]),
 *   "rules[0].effect: Invalid option",
 * );
 * ```
 */
export function formatIssues(issues: readonly SchemaIssue[]): string {
  return issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`).join("; ");
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out === "" ? "(root)" : out;
}
