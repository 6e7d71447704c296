/**
 * `@tracepulse/plm-engine-core` governs and runs AI-agent work: identity,
 * governance, autonomy, human approval, run lifecycle, audit and trace in the
 * control plane; selection, dispatch, retry and escalation in the runtime.
 *
 * @example Use the shared contracts
 * ```ts
 * import { IdentitySchema } from "@tracepulse/plm-engine-core";
 * import assert from "node:assert/strict";
 *
 * const who = IdentitySchema.parse({ subject: "a", actorKind: "agent", roles: [], scopes: [] });
 * assert.equal(who.actorKind, "agent");
 * ```
 *
 * @module
 */
export * from "./shared/mod.ts";
export * from "./control_plane/mod.ts";
export * from "./agent_runtime/mod.ts";
