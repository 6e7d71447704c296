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
export * from "./public.ts";
export * from "./system_identity.ts";
