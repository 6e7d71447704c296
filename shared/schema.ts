/**
 * The package's view of a runtime schema. Public schemas are typed with
 * {@link Schema} instead of zod's own classes so that the public API does not
 * change with zod's internal types; the values are zod schemas.
 *
 * @module
 */

/**
 * One problem found while validating, with the path to the bad field.
 *
 * @example Summarise why an input was rejected
 * ```ts
 * import { formatIssues, IdentitySchema } from "@tracepulse/plm-engine-core/shared";
 * import type { SchemaIssue } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const result = IdentitySchema.safeParse({ subject: "bob", actorKind: "robot", roles: [] });
 * assert.ok(!result.success);
 * const issues: readonly SchemaIssue[] = result.error.issues;
 * assert.deepEqual(issues.map((issue) => issue.path), [["actorKind"], ["scopes"]]);
 * assert.match(formatIssues(issues), /^actorKind: .+; scopes: /);
 * ```
 */
export interface SchemaIssue {
  /** Path from the root of the input to the bad field. */
  readonly path: readonly PropertyKey[];
  /** What is wrong, in words. */
  readonly message: string;
}

/**
 * The result of {@link Schema.safeParse}.
 *
 * @example Read the issues of a failed parse
 * ```ts
 * import { type Identity, IdentitySchema } from "@tracepulse/plm-engine-core/shared";
 * import type { SafeParseResult } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const input = { subject: "", actorKind: "human", roles: [], scopes: [] };
 * const result: SafeParseResult<Identity> = IdentitySchema.safeParse(input);
 * assert.ok(!result.success);
 * assert.deepEqual(result.error.issues.map((issue) => issue.path), [["subject"]]);
 * ```
 */
export type SafeParseResult<T> =
  | { readonly success: true; readonly data: T }
  | { readonly success: false; readonly error: { readonly issues: readonly SchemaIssue[] } };

/**
 * A runtime schema that validates unknown input into `T`.
 *
 * @example Validate with a schema
 * ```ts
 * import { IdentitySchema, type Schema, type Identity } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const schema: Schema<Identity> = IdentitySchema;
 * const result = schema.safeParse({ subject: "svc", actorKind: "service", roles: [], scopes: [] });
 * assert.ok(result.success);
 * ```
 */
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
