/**
 * The identity bound to the current async context: {@link currentIdentity},
 * {@link withIdentity}, and {@link requireIdentity}, the one "given or bound
 * identity, or fail" check.
 *
 * @module
 */
import { type Identity, IdentitySchema, parseArgument, PlmError } from "../../shared/mod.ts";
import { bindableIdentity, identityStorage } from "./_context.ts";

/**
 * Returns the identity bound to the current async context (by
 * `identityMiddleware`, {@link withIdentity} or `withSystemIdentity`).
 *
 * @returns The bound identity, or `undefined` when none is bound.
 *
 * @example Nothing is bound outside a request
 * ```ts
 * import { currentIdentity, withIdentity } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(currentIdentity(), undefined);
 * const alice = { subject: "alice", actorKind: "human", roles: [], scopes: [] } as const;
 * withIdentity(alice, () => assert.equal(currentIdentity()?.subject, "alice"));
 * assert.equal(currentIdentity(), undefined);
 * ```
 */
export function currentIdentity(): Identity | undefined {
  return identityStorage.getStore();
}

/** Options for {@link requireIdentity}. */
export interface RequireIdentityOptions {
  /**
   * The name of `explicit` in `ERR_INVALID_ARGUMENT` errors (`request.identity`).
   *
   * @default {"identity"}
   */
  field?: string;
  /**
   * What needs the identity, for the message `Cannot <action> without an identity`.
   *
   * @default {"act"}
   */
  action?: string;
}

/**
 * The one "bound identity or fail" check: returns `explicit`, validated, when
 * it is given, else the identity bound to the current async context, else
 * throws. Every public call that acts for someone (`authorize`,
 * `decideApproval`, `runs.create`, `submit`, an audit without an explicit
 * actor) goes through it, so an identity from outside is always checked
 * against `IdentitySchema` (`roles: "admin"` or a subject with U+0000 is
 * refused) and a missing one is always the same error: a `PlmError` with code
 * `ERR_IDENTITY_REQUIRED` (never an `IdentityError`, which is for refused
 * tokens).
 *
 * @param explicit An identity given by the caller; `undefined` to use the bound one.
 * @param options The field name and the action, for errors.
 * @returns The identity to act as (frozen).
 * @throws {PlmError} `ERR_IDENTITY_REQUIRED` when none is given or bound;
 * `ERR_INVALID_ARGUMENT` naming the field when `explicit` does not match `IdentitySchema`.
 *
 * @example Require a caller
 * ```ts
 * import {
 *   isPlmError,
 *   requireIdentity,
 *   withIdentity,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => requireIdentity(), (err) => isPlmError(err, "ERR_IDENTITY_REQUIRED"));
 * const bot = { subject: "bot-7", actorKind: "agent", roles: [], scopes: [] } as const;
 * assert.equal(withIdentity(bot, () => requireIdentity().subject), "bot-7");
 * assert.equal(requireIdentity(bot).subject, "bot-7");
 * const admin = { ...bot, roles: "admin" as unknown as string[] };
 * assert.throws(() => requireIdentity(admin), { code: "ERR_INVALID_ARGUMENT" });
 * ```
 */
export function requireIdentity(
  explicit?: Identity,
  options?: RequireIdentityOptions,
): Identity {
  const { field = "identity", action = "act" } = options ?? {};
  if (explicit !== undefined) return parseArgument(IdentitySchema, explicit, field);
  const bound = identityStorage.getStore();
  if (bound === undefined) {
    throw new PlmError("ERR_IDENTITY_REQUIRED", `Cannot ${action} without an identity`);
  }
  return bound;
}

/**
 * Runs `fn` with `identity` bound for its whole async context (every `await`
 * inside it included), then restores what was bound before. For code that
 * already holds a verified identity (a queue consumer, a test); requests use
 * `identityMiddleware`. The identity is validated and frozen first; the
 * `system` actor kind is refused (only `withSystemIdentity` binds it).
 *
 * @typeParam T What `fn` returns (a promise stays a promise).
 * @param identity A verified, non-system identity.
 * @param fn The code to run as `identity`.
 * @returns What `fn` returns.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `identity` does not match
 * `IdentitySchema` or its `actorKind` is `system`.
 *
 * @example Bind across awaits
 * ```ts
 * import { currentIdentity, withIdentity } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const svc = { subject: "billing", actorKind: "service", roles: [], scopes: [] } as const;
 * const seen = await withIdentity(svc, async () => {
 *   await Promise.resolve();
 *   return currentIdentity()?.subject;
 * });
 * assert.equal(seen, "billing");
 * assert.throws(
 *   () => withIdentity({ subject: "x", actorKind: "system", roles: [], scopes: [] }, () => 1),
 *   { code: "ERR_INVALID_ARGUMENT" },
 * );
 * ```
 */
export function withIdentity<T>(identity: Identity, fn: () => T): T {
  return identityStorage.run(bindableIdentity(identity, "identity"), fn);
}
