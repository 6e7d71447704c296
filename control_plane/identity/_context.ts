/**
 * The one `AsyncLocalStorage` that carries the bound {@link Identity}, and the
 * check every binding goes through. Private to `control_plane/identity/`:
 * `context.ts`, `middleware.ts` and `system_identity.ts` share it, nothing
 * else may import it.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { type Identity, IdentitySchema, invalidArgument, parseArgument } from "../../shared/mod.ts";

/** The identity bound to the current async context, if any. */
export const identityStorage: AsyncLocalStorage<Identity> = new AsyncLocalStorage<Identity>();

/**
 * Validates an identity about to be bound by `withIdentity` or the
 * middleware: it must match `IdentitySchema` and must not be the `system`
 * actor kind (only `withSystemIdentity` binds that).
 *
 * @returns The parsed, frozen identity.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `field` otherwise.
 */
export function bindableIdentity(identity: unknown, field: string): Identity {
  const parsed = parseArgument(IdentitySchema, identity, field);
  if (parsed.actorKind === "system") {
    throw invalidArgument(
      `${field}.actorKind`,
      "the system actor kind is bound by withSystemIdentity only",
    );
  }
  return parsed;
}
