/**
 * Who an audit record names: {@link actorOf} and {@link resolveActor}.
 *
 * @module
 */
import type { Identity } from "../../shared/mod.ts";
import { requireIdentity } from "../identity/context.ts";
import type { AuditActor } from "./types.ts";

/**
 * The audit actor of an identity.
 *
 * @param identity Who.
 * @returns `{ subject, kind }`.
 *
 * @example Turn an identity into an audit actor
 * ```ts
 * import { actorOf } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(
 *   actorOf({ subject: "alice", actorKind: "human", roles: [], scopes: [] }),
 *   { subject: "alice", kind: "human" },
 * );
 * ```
 */
export function actorOf(identity: Identity): AuditActor {
  return { subject: identity.subject, kind: identity.actorKind };
}

/**
 * The actor to audit: the explicit one, else the identity bound to the
 * current async context (through `requireIdentity`, the one "bound identity
 * or fail" check). Fails closed when there is neither.
 *
 * @param explicit An actor given by the caller.
 * @returns The actor.
 * @throws {PlmError} `ERR_IDENTITY_REQUIRED` when no actor is given or bound.
 *
 * @example Resolve an explicit actor
 * ```ts
 * import { resolveActor } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(resolveActor({ subject: "svc", kind: "service" }).subject, "svc");
 * assert.throws(() => resolveActor(undefined), { code: "ERR_IDENTITY_REQUIRED" });
 * ```
 */
export function resolveActor(explicit: AuditActor | undefined): AuditActor {
  if (explicit !== undefined) return explicit;
  return actorOf(requireIdentity(undefined, { action: "audit a change" }));
}
