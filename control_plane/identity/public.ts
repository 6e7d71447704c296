/**
 * Identity for the control plane: verify bearer JWTs
 * ({@link Hs256JwtIdentityProvider}), bind the caller for a request
 * ({@link identityMiddleware}) and read it anywhere below
 * ({@link currentIdentity}, {@link requireIdentity}). Everything but
 * `withSystemIdentity`, which only `./mod.ts` exports.
 *
 * @example Verify a token and bind its identity
 * ```ts
 * import {
 *   currentIdentity,
 *   FakeClock,
 *   Hs256JwtIdentityProvider,
 *   withIdentity,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const provider = new Hs256JwtIdentityProvider({
 *   secret: "an-example-secret-of-at-least-32-bytes",
 *   clock: new FakeClock(Date.UTC(2026, 10, 25)),
 * });
 * const token = await provider.issueToken({ subject: "bot-1", actorKind: "agent" });
 * const identity = await provider.verifyToken(token);
 * withIdentity(identity, () => assert.equal(currentIdentity()?.subject, "bot-1"));
 * ```
 *
 * @module
 */
export {
  currentIdentity,
  requireIdentity,
  type RequireIdentityOptions,
  withIdentity,
} from "./context.ts";
export {
  Hs256JwtIdentityProvider,
  type Hs256JwtIdentityProviderOptions,
  type IssueTokenClaims,
  type IssueTokenOptions,
  MAX_NUMERIC_DATE,
  MAX_TOKEN_LENGTH,
  MIN_SECRET_BYTES,
  TOKEN_ACTOR_KINDS,
  type TokenActorKind,
  type TokenVerifier,
} from "./hs256_provider.ts";
export {
  CLAIM_FAILURE_REASONS,
  type ClaimFailureReason,
  IdentityError,
  type IdentityErrorCode,
  type IdentityErrorOptions,
} from "./identity_error.ts";
export {
  ANONYMOUS_ACTOR,
  type IdentityMiddleware,
  identityMiddleware,
  type IdentityMiddlewareOptions,
  type RequestHandler,
} from "./middleware.ts";
