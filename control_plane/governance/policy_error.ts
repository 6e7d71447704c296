/**
 * The error governance throws: {@link PolicyError}.
 *
 * @module
 */
import { type ErrorCode, PlmError, type SchemaIssue } from "../../shared/mod.ts";

/** Options for {@link PolicyError}. */
export interface PolicyErrorOptions {
  /**
   * Every problem found, each with the path of the bad field.
   *
   * @default {[]}
   */
  readonly issues?: readonly SchemaIssue[];
  /** The underlying error, kept for diagnostics. */
  readonly cause?: unknown;
}

/**
 * A governance error, such as an invalid policy file
 * (`ERR_POLICY_INVALID`). The message names the path of each bad field; the
 * same problems are in {@link PolicyError.issues}.
 *
 * @example Inspect the issues of an invalid policy set
 * ```ts
 * import { parsePolicySet, PolicyError } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * try {
 *   parsePolicySet({ rules: [{ id: "r1", effect: "permit", actions: ["*"] }] });
 *   assert.fail("expected an error");
 * } catch (err) {
 *   assert.ok(err instanceof PolicyError);
 *   assert.equal(err.code, "ERR_POLICY_INVALID");
 *   assert.deepEqual(err.issues[0]?.path, ["rules", 0, "effect"]);
 * }
 * ```
 */
export class PolicyError extends PlmError {
  /** Every problem found, each with the path of the bad field. */
  readonly issues: readonly SchemaIssue[];

  /**
   * Creates a governance error.
   *
   * @param code The stable error code, usually `ERR_POLICY_INVALID`.
   * @param message A sentence-case message without a trailing period.
   * @param options The issues and the cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: PolicyErrorOptions) {
    const { issues = [], cause } = options ?? {};
    super(code, message, cause === undefined ? undefined : { cause });
    this.name = "PolicyError";
    this.issues = issues;
  }
}
