/**
 * The one `AsyncLocalStorage` that carries the bound {@link Identity}. Private
 * to `control_plane/identity/`: `context.ts`, `middleware.ts` and
 * `system_identity.ts` share it, nothing else may import it.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Identity } from "../../shared/mod.ts";

/** The identity bound to the current async context, if any. */
export const identityStorage: AsyncLocalStorage<Identity> = new AsyncLocalStorage<Identity>();
