/**
 * The identity bound to the current async context: {@link currentIdentity},
 * {@link requireIdentity} and {@link withIdentity}.
 *
 * @module
 */
import { formatIssues, type Identity, IdentitySchema } from "../../shared/mod.ts";
import { identityStorage } from "./_context.ts";
import { IdentityError } from "./identity_error.ts";

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

/**
 * Returns the identity bound to the current async context, or throws.
 *
 * @returns The bound identity.
 * @throws {IdentityError} With code `ERR_IDENTITY_REQUIRED` when none is bound.
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
 * ```
 */
export function requireIdentity(): Identity {
  const identity = identityStorage.getStore();
  if (identity === undefined) {
    throw new IdentityError("ERR_IDENTITY_REQUIRED", "No identity is bound to this context");
  }
  return identity;
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
 * @throws {TypeError} When `identity` does not match `IdentitySchema`.
 * @throws {RangeError} When `identity.actorKind` is `system`.
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
 *   RangeError,
 * );
 * ```
 */
export function withIdentity<T>(identity: Identity, fn: () => T): T {
  const parsed = IdentitySchema.safeParse(identity);
  if (!parsed.success) {
    throw new TypeError(`Cannot bind an invalid identity: ${formatIssues(parsed.error.issues)}`);
  }
  if (parsed.data.actorKind === "system") {
    throw new RangeError("Cannot bind the system actor kind: use withSystemIdentity");
  }
  return identityStorage.run(parsed.data, fn);
}
