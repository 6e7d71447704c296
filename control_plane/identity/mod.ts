/**
 * Everything in `control_plane/identity/`, including `withSystemIdentity`.
 * Only this module, `system_identity.ts`, `cli.ts`, `cli/` and `tests/` may
 * import `withSystemIdentity`; everything else comes from `./public.ts`
 * (re-exported by `control_plane/mod.ts`).
 *
 * @example Act as the system for one job
 * ```ts
 * import { currentIdentity, withSystemIdentity } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const who = await withSystemIdentity("nightly audit verification", () => currentIdentity());
 * assert.equal(who?.actorKind, "system");
 * assert.equal(currentIdentity(), undefined);
 * ```
 *
 * @module
 */
export {
  ANONYMOUS_ACTOR,
  CLAIM_FAILURE_REASONS,
  type ClaimFailureReason,
  currentIdentity,
  Hs256JwtIdentityProvider,
  type Hs256JwtIdentityProviderOptions,
  IdentityError,
  type IdentityErrorCode,
  type IdentityErrorOptions,
  type IdentityMiddleware,
  identityMiddleware,
  type IdentityMiddlewareOptions,
  type IssueTokenClaims,
  type IssueTokenOptions,
  MAX_NUMERIC_DATE,
  MAX_TOKEN_LENGTH,
  MIN_SECRET_BYTES,
  type RequestHandler,
  requireIdentity,
  type RequireIdentityOptions,
  TOKEN_ACTOR_KINDS,
  type TokenActorKind,
  type TokenVerifier,
  withIdentity,
} from "./public.ts";
export {
  SYSTEM_IDENTITY,
  withSystemIdentity,
  type WithSystemIdentityOptions,
} from "./system_identity.ts";
