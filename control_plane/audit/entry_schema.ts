/**
 * What an audit entry may hold: {@link AuditEntryInputSchema}, the check
 * `AuditLog` applies to every entry before it is hashed and stored.
 *
 * @module
 */
import { z } from "zod";
import type { Schema } from "../../shared/mod.ts";
import { jsonSchema } from "../../shared/validate.ts";
import type { AuditEntryInput } from "./types.ts";
import { entryFields } from "./_entry.ts";

/**
 * Zod schema of {@link AuditEntryInput}; unknown keys are rejected.
 *
 * - `actor.subject`, `outcome`, `runId`: non-empty texts of at most 1,024 characters,
 *   `resource` and `reason` of at most 8,192 (no U+0000, no lone surrogates: they are
 *   stored byte for byte as they are hashed);
 * - `actor.kind`: one of `ACTOR_KINDS`;
 * - `action`: dotted words of letters, digits, `_` and `-` (`run.transition`);
 * - `traceId`: a W3C trace id, 32 lowercase hex digits;
 * - `data`: any JSON value that `canonicalJson` accepts (finite numbers, plain objects
 *   and arrays, at most 32 deep).
 *
 * @example Validate an entry
 * ```ts
 * import { AuditEntryInputSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const ok = AuditEntryInputSchema.safeParse({
 *   actor: { subject: "alice", kind: "human" },
 *   action: "run.transition",
 *   resource: "run:r-1",
 *   outcome: "succeeded",
 * });
 * assert.ok(ok.success);
 * assert.equal(AuditEntryInputSchema.safeParse({ action: "x" }).success, false);
 * ```
 */
export const AuditEntryInputSchema: Schema<AuditEntryInput> = z.strictObject({
  ...entryFields,
  data: jsonSchema().exactOptional(),
});
