/**
 * The identity contract: who asked for an action.
 *
 * @module
 */
import { z } from "zod";
import type { Schema } from "./schema.ts";
import { INPUT_LIMITS, textSchema } from "./validate.ts";

/**
 * Every kind of actor. `system` is bound only by `withSystemIdentity`, never by a token.
 *
 * @example Every kind is a valid identity kind
 * ```ts
 * import { ACTOR_KINDS, IdentitySchema } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * for (const actorKind of ACTOR_KINDS) {
 *   assert.ok(
 *     IdentitySchema.safeParse({ subject: "s", actorKind, roles: [], scopes: [] }).success,
 *   );
 * }
 * assert.ok(
 *   !IdentitySchema.safeParse({ subject: "s", actorKind: "robot", roles: [], scopes: [] })
 *     .success,
 * );
 * ```
 */
export const ACTOR_KINDS = ["human", "agent", "service", "system"] as const;

/** One of {@link ACTOR_KINDS}. */
export type ActorKind = typeof ACTOR_KINDS[number];

/**
 * Zod schema of {@link ActorKind}.
 *
 * @example Validate an actor kind
 * ```ts
 * import { ActorKindSchema } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * assert.equal(ActorKindSchema.parse("agent"), "agent");
 * assert.equal(ActorKindSchema.safeParse("robot").success, false);
 * ```
 */
export const ActorKindSchema: Schema<ActorKind> = z.enum(ACTOR_KINDS);

/** An authenticated (or system) principal. */
export interface Identity {
  /** The subject (`sub` claim), never empty. */
  readonly subject: string;
  /** What kind of actor the subject is. */
  readonly actorKind: ActorKind;
  /** Roles granted to the subject. */
  readonly roles: readonly string[];
  /** OAuth-style scopes granted to the subject. */
  readonly scopes: readonly string[];
  /** The tenant the subject acts for, when multi-tenant. */
  readonly tenant?: string;
  /** The token id (`jti`) the identity came from. */
  readonly tokenId?: string;
  /** When the token expires, in epoch milliseconds. */
  readonly expiresAt?: number;
}

/**
 * Zod schema of {@link Identity}; unknown keys are rejected. `subject`, every
 * role and scope, `tenant` and `tokenId` are stored texts: 1 to
 * `INPUT_LIMITS.textLength` characters, no U+0000, no lone surrogates; `roles`
 * and `scopes` are arrays (a string is refused, not split) of at most
 * `INPUT_LIMITS.listLimit` items.
 *
 * @example Validate an identity
 * ```ts
 * import { IdentitySchema } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const id = IdentitySchema.parse({
 *   subject: "alice",
 *   actorKind: "human",
 *   roles: ["approver"],
 *   scopes: [],
 * });
 * assert.equal(id.subject, "alice");
 * assert.equal(IdentitySchema.safeParse({ subject: "" }).success, false);
 * const admin = { subject: "mallory", actorKind: "human", roles: "admin", scopes: [] };
 * assert.equal(IdentitySchema.safeParse(admin).success, false);
 * assert.equal(IdentitySchema.safeParse({ ...id, subject: "alice\0" }).success, false);
 * ```
 */
export const IdentitySchema: Schema<Identity> = z.strictObject({
  subject: textSchema(),
  actorKind: z.enum(ACTOR_KINDS),
  roles: z.array(textSchema()).max(INPUT_LIMITS.listLimit).readonly(),
  scopes: z.array(textSchema()).max(INPUT_LIMITS.listLimit).readonly(),
  tenant: textSchema().exactOptional(),
  tokenId: textSchema().exactOptional(),
  expiresAt: z.number().int().nonnegative().exactOptional(),
}).readonly();
