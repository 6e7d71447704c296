/**
 * {@link IdentityError}: why a bearer token was refused. A missing identity is
 * not a token error: `requireIdentity` throws a plain `PlmError` with code
 * `ERR_IDENTITY_REQUIRED`, the one class for that code.
 *
 * @module
 */
import { type ErrorCode, PlmError } from "../../shared/mod.ts";

/**
 * The codes an {@link IdentityError} carries: every `ERR_TOKEN_*`. (`ERR_IDENTITY_REQUIRED`
 * is thrown as a plain `PlmError` by `requireIdentity`.)
 */
export type IdentityErrorCode = Extract<ErrorCode, `ERR_TOKEN_${string}`>;

/**
 * Why a claim (or the `typ` header parameter) failed, in
 * `ERR_TOKEN_CLAIM_INVALID` errors:
 *
 * - `missing`: a required claim is absent;
 * - `invalid`: the value has the wrong type or shape;
 * - `mismatch`: `iss`, `aud` or `typ` differs from what is required;
 * - `forbidden`: the value is never accepted from a token (`actor_kind: "system"`);
 * - `lifetime_exceeded`: `exp - iat` is over the provider's maximum lifetime;
 * - `in_future`: `iat` is later than now plus the clock tolerance.
 *
 * @example A token from another issuer is a mismatch
 * ```ts
 * import {
 *   CLAIM_FAILURE_REASONS,
 *   Hs256JwtIdentityProvider,
 *   IdentityError,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const secret = "an-example-secret-of-at-least-32-bytes";
 * const other = new Hs256JwtIdentityProvider({ secret, issuer: "https://other.example" });
 * const ours = new Hs256JwtIdentityProvider({ secret, issuer: "https://plm.example" });
 * const token = await other.issueToken({ subject: "mallory", actorKind: "human" });
 * await assert.rejects(ours.verifyToken(token), (err) => {
 *   assert.ok(err instanceof IdentityError);
 *   assert.equal(err.claim, "iss");
 *   assert.ok(err.reason !== undefined && CLAIM_FAILURE_REASONS.includes(err.reason));
 *   assert.equal(err.reason, "mismatch");
 *   return true;
 * });
 * ```
 */
export const CLAIM_FAILURE_REASONS = [
  "missing",
  "invalid",
  "mismatch",
  "forbidden",
  "lifetime_exceeded",
  "in_future",
] as const;

/** One of {@link CLAIM_FAILURE_REASONS}. */
export type ClaimFailureReason = typeof CLAIM_FAILURE_REASONS[number];

/** Options for {@link IdentityError}. */
export interface IdentityErrorOptions {
  /** The underlying error, kept for diagnostics. */
  cause?: unknown;
  /** The claim that failed (for `ERR_TOKEN_CLAIM_INVALID`). */
  claim?: string;
  /** Why the claim failed (for `ERR_TOKEN_CLAIM_INVALID`). */
  reason?: ClaimFailureReason;
}

/**
 * A bearer token was refused. Branch on `code`; for `ERR_TOKEN_CLAIM_INVALID`, `claim` names the claim
 * (or the `typ` header parameter) and `reason` says what is wrong with it.
 * Messages never contain the token.
 *
 * @example Inspect a claim failure
 * ```ts
 * import { IdentityError } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const err = new IdentityError("ERR_TOKEN_CLAIM_INVALID", "Token has no sub claim", {
 *   claim: "sub",
 *   reason: "missing",
 * });
 * assert.equal(err.name, "IdentityError");
 * assert.equal(err.code, "ERR_TOKEN_CLAIM_INVALID");
 * assert.equal(err.claim, "sub");
 * assert.equal(err.reason, "missing");
 * ```
 */
export class IdentityError extends PlmError {
  /** The stable error code. */
  declare readonly code: IdentityErrorCode;
  /** The claim that failed, for `ERR_TOKEN_CLAIM_INVALID`. */
  readonly claim: string | undefined;
  /** Why the claim failed, for `ERR_TOKEN_CLAIM_INVALID`. */
  readonly reason: ClaimFailureReason | undefined;

  /**
   * Creates an identity error.
   *
   * @param code The stable error code.
   * @param message A sentence-case message without a trailing period; never the token.
   * @param options The cause, and the failed claim with its reason.
   */
  constructor(code: IdentityErrorCode, message: string, options?: IdentityErrorOptions) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "IdentityError";
    this.claim = options?.claim;
    this.reason = options?.reason;
  }
}
