/**
 * The fields of an audit entry and the check of an entry as `AuditLog`
 * writes it: the fields as `AuditEntryInputSchema` checks them, and `data`
 * turned into its canonical JSON once (the text that is hashed and stored).
 *
 * @module
 */
import { z } from "zod";
import {
  ACTOR_KINDS,
  canonicalJson,
  formatIssues,
  INPUT_LIMITS,
  type JsonValue,
  PlmError,
} from "../../shared/mod.ts";
import { textSchema } from "../../shared/validate.ts";
import type { AuditEntryInput } from "./types.ts";

/** The most characters of an audit record's `resource` and `reason`. */
const AUDIT_TEXT_LIMIT = 8_192;

/** The fields of an audit entry but `data`, shared by both entry schemas. */
export const entryFields = {
  actor: z.strictObject({
    subject: textSchema(),
    kind: z.enum(ACTOR_KINDS),
  }),
  action: z.string().max(INPUT_LIMITS.textLength).regex(/^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/),
  resource: textSchema({ max: AUDIT_TEXT_LIMIT }),
  outcome: textSchema(),
  reason: textSchema({ min: 0, max: AUDIT_TEXT_LIMIT }).exactOptional(),
  runId: textSchema().exactOptional(),
  traceId: z.string().regex(/^[0-9a-f]{32}$/).exactOptional(),
};

/**
 * An entry as {@link AuditLog} writes it: the fields checked as
 * {@link AuditEntryInputSchema} checks them, and `data` checked by computing
 * its canonical JSON, the text that is hashed and stored (computed once).
 */
const writableEntrySchema = z.strictObject({ ...entryFields, data: z.unknown().exactOptional() })
  .transform((entry, ctx) => {
    try {
      const dataJson = canonicalJson((entry.data ?? null) as JsonValue, { field: "it" });
      return { entry: entry as AuditEntryInput, dataJson };
    } catch (err) {
      ctx.addIssue({ code: "custom", path: ["data"], message: (err as Error).message });
      return z.NEVER;
    }
  });

/** An entry checked for writing, with its `data` as canonical JSON. */
export type WritableEntry = z.output<typeof writableEntrySchema>;

/**
 * Checks an entry for writing; `index` names it within a batch.
 * Throws `ERR_AUDIT_INVALID_RECORD` listing every issue.
 */
export function parseEntry(entry: unknown, index: number | undefined): WritableEntry {
  const result = writableEntrySchema.safeParse(entry);
  if (result.success) return result.data;
  const which = index === undefined ? "an audit entry" : `audit entry ${index}`;
  throw new PlmError(
    "ERR_AUDIT_INVALID_RECORD",
    `Cannot append ${which} as it is invalid: ${formatIssues(result.error.issues)}`,
  );
}
