/**
 * Frozen contracts shared by every layer: errors and codes, the clock, and the
 * zod schemas of the data that crosses layers. Imports nothing internal.
 *
 * @example Build a fake clock and an error
 * ```ts
 * import { FakeClock, PlmError } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const clock = new FakeClock(10);
 * const err = new PlmError("ERR_INTERNAL", "Something broke");
 * assert.equal(clock.now(), 10);
 * assert.equal(err.code, "ERR_INTERNAL");
 * ```
 *
 * @module
 */
export * from "./assert_never.ts";
export * from "./canonical_json.ts";
export * from "./clock.ts";
export * from "./errors.ts";
export * from "./identity.ts";
export * from "./json.ts";
export * from "./schema.ts";
// textSchema is the zod building block for the layers' own schemas, not public API.
export {
  checkInteger,
  checkText,
  INPUT_LIMITS,
  invalidArgument,
  parseArgument,
  unsafeTextReason,
} from "./validate.ts";
