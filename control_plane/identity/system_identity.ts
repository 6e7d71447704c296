/**
 * {@link withSystemIdentity}: the only way to act as the `system` actor.
 *
 * Importable only from this file, `control_plane/identity/mod.ts`, `cli.ts`,
 * `cli/` and `tests/` (the boundary linter enforces it); it is deliberately
 * not re-exported by `control_plane/mod.ts`.
 *
 * @module
 */
import type { Identity } from "../../shared/mod.ts";
import type { AuditSink } from "../audit/types.ts";
import { identityStorage } from "./_context.ts";

/** The identity {@link withSystemIdentity} binds. */
export const SYSTEM_IDENTITY: Identity = Object.freeze({
  subject: "system",
  actorKind: "system",
  roles: Object.freeze([] as string[]),
  scopes: Object.freeze([] as string[]),
});

/** Options for {@link withSystemIdentity}. */
export interface WithSystemIdentityOptions {
  /**
   * Where to record each binding, as action `system.identity.bound` by actor
   * `system`, resource `identity:system`, outcome `allowed`, with `reason`
   * (and the subject that was bound before, when there was one, in
   * `data.invokedBy`). The entry is appended before `fn` runs.
   *
   * @default {undefined} (not audited)
   */
  audit?: AuditSink;
}

/**
 * Runs `fn` as the `system` actor (`{ subject: "system", actorKind: "system",
 * roles: [], scopes: [] }`) for `fn`'s whole async context and only that:
 * nested and concurrent calls are isolated, and the previous binding is back
 * once `fn` returns. For cron and background work that no caller asked for.
 *
 * @typeParam T What `fn` returns (a promise is awaited).
 * @param reason Why system rights are needed; audited.
 * @param fn The code to run as the system.
 * @param options Where to audit the binding.
 * @returns What `fn` returns, once the binding is audited and `fn` done.
 * @throws {TypeError} When `reason` is not a non-empty string (as a rejection).
 *
 * @example Run a sweep as the system
 * ```ts
 * import { withSystemIdentity } from "./mod.ts";
 * import { currentIdentity } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const kind = await withSystemIdentity("expire stale approvals", async () => {
 *   await Promise.resolve();
 *   return currentIdentity()?.actorKind;
 * });
 * assert.equal(kind, "system");
 * assert.equal(currentIdentity(), undefined);
 * ```
 */
export async function withSystemIdentity<T>(
  reason: string,
  fn: () => T,
  options?: WithSystemIdentityOptions,
): Promise<Awaited<T>> {
  const { audit } = options ?? {};
  if (typeof reason !== "string" || reason.trim() === "") {
    throw new TypeError("Cannot bind the system identity without a reason");
  }
  if (audit !== undefined) {
    const before = identityStorage.getStore();
    await audit.append({
      actor: { subject: SYSTEM_IDENTITY.subject, kind: "system" },
      action: "system.identity.bound",
      resource: "identity:system",
      outcome: "allowed",
      reason,
      ...(before === undefined ? {} : { data: { invokedBy: before.subject } }),
    });
  }
  return await identityStorage.run(SYSTEM_IDENTITY, fn);
}
