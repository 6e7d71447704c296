/**
 * Error types shared by every layer: {@link PlmError} and its stable codes.
 *
 * @module
 */

/**
 * Every stable error code the package throws. Codes never change meaning once
 * published; callers (retry policies, HTTP adapters, tests) branch on them.
 *
 * @example Branch on a stable code
 * ```ts
 * import { ERROR_CODES, isPlmError, PlmError } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.ok(ERROR_CODES.includes("ERR_FORBIDDEN"));
 * const err = new PlmError("ERR_FORBIDDEN", "Denied by rule no-delete");
 * assert.ok(ERROR_CODES.includes(err.code));
 * assert.ok(isPlmError(err, "ERR_FORBIDDEN"));
 * ```
 */
export const ERROR_CODES = [
  // identity
  "ERR_TOKEN_MISSING",
  "ERR_TOKEN_MALFORMED",
  "ERR_TOKEN_TOO_LARGE",
  "ERR_TOKEN_ALG_NOT_ALLOWED",
  "ERR_TOKEN_SIGNATURE_INVALID",
  "ERR_TOKEN_EXPIRED",
  "ERR_TOKEN_NOT_YET_VALID",
  "ERR_TOKEN_CLAIM_INVALID",
  "ERR_IDENTITY_REQUIRED",
  // store and audit
  "ERR_STORE_SCHEMA_TOO_NEW",
  /** A database opened read-only has an older schema than the code (run `plm db migrate`). */
  "ERR_STORE_SCHEMA_TOO_OLD",
  "ERR_STORE_MIGRATION_FAILED",
  "ERR_STORE_BUSY",
  /** A database opened read-only does not exist (read-only opens never create one). */
  "ERR_STORE_NOT_FOUND",
  /** The file is not a SQLite database, or it is corrupt or truncated. */
  "ERR_STORE_CORRUPT",
  /** A write reached a database that is read-only: opened so, or its file or folder is. */
  "ERR_STORE_READ_ONLY",
  /** The database server cannot be reached, refused the login, or the store is closed. */
  "ERR_STORE_UNAVAILABLE",
  "ERR_AUDIT_APPEND_ONLY",
  "ERR_AUDIT_INVALID_RECORD",
  /**
   * A signed audit checkpoint does not hold: its signature does not match, or no
   * trusted key has its key id (`plm audit verify --checkpoint`).
   */
  "ERR_CHECKPOINT_INVALID",
  // governance, autonomy, approvals
  "ERR_POLICY_INVALID",
  /** No policy set was applied to the store yet (`plm policy apply` stores one). */
  "ERR_POLICY_NOT_FOUND",
  "ERR_FORBIDDEN",
  "ERR_BUDGET_EXCEEDED",
  "ERR_APPROVAL_NOT_FOUND",
  "ERR_APPROVAL_NOT_PENDING",
  "ERR_APPROVAL_EXPIRED",
  "ERR_APPROVER_NOT_ALLOWED",
  "ERR_APPROVAL_SELF",
  "ERR_APPROVAL_DUPLICATE",
  "ERR_APPROVAL_DIGEST_MISMATCH",
  // runs
  "ERR_RUN_NOT_FOUND",
  "ERR_RUN_ILLEGAL_TRANSITION",
  "ERR_RUN_VERSION_CONFLICT",
  "ERR_RUN_LEASE_HELD",
  "ERR_RUN_LEASE_LOST",
  "ERR_RUN_IDEMPOTENCY_CONFLICT",
  // runtime
  "ERR_NO_AGENT",
  "ERR_QUEUE_FULL",
  "ERR_TIMEOUT",
  "ERR_DEADLINE_EXCEEDED",
  "ERR_CANCELLED",
  "ERR_RETRY_EXHAUSTED",
  "ERR_AGENT_FAILED",
  "ERR_CIRCUIT_OPEN",
  "ERR_ESCALATION_EXHAUSTED",
  // generic
  "ERR_INVALID_ARGUMENT",
  /** The process may not read or write a file: a missing Deno permission or an OS refusal. */
  "ERR_PERMISSION",
  "ERR_INTERNAL",
] as const;

/** One of {@link ERROR_CODES}. */
export type ErrorCode = typeof ERROR_CODES[number];

/** Options for {@link PlmError}. */
export interface PlmErrorOptions {
  /** The underlying error, kept for diagnostics. */
  cause?: unknown;
}

/**
 * The base class of every error this package throws on purpose. Branch on
 * `code`, never on the message text.
 *
 * @example Throw and catch by code
 * ```ts
 * import { PlmError } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * try {
 *   throw new PlmError("ERR_RUN_NOT_FOUND", "Cannot find run r-1");
 * } catch (err) {
 *   assert.ok(err instanceof PlmError);
 *   assert.equal(err.code, "ERR_RUN_NOT_FOUND");
 * }
 * ```
 */
export class PlmError extends Error {
  /** The stable error code. */
  readonly code: ErrorCode;

  /**
   * Creates an error with a stable code.
   *
   * @param code The stable error code.
   * @param message A sentence-case message without a trailing period.
   * @param options The cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: PlmErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PlmError";
    this.code = code;
  }
}

/**
 * Whether `value` is a {@link PlmError}, optionally with the given code.
 *
 * @param value Anything caught.
 * @param code The code to match, when given.
 * @returns `true` when `value` is a `PlmError` (with `code`).
 *
 * @example Narrow a caught value
 * ```ts
 * import { isPlmError, PlmError } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const err: unknown = new PlmError("ERR_TIMEOUT", "Attempt timed out");
 * assert.ok(isPlmError(err, "ERR_TIMEOUT"));
 * assert.ok(!isPlmError(new Error("x")));
 * ```
 */
export function isPlmError(value: unknown, code?: ErrorCode): value is PlmError {
  return value instanceof PlmError && (code === undefined || value.code === code);
}
