/**
 * Exhaustiveness check for `switch` statements over unions.
 *
 * @module
 */

/**
 * Marks a branch the type checker proves unreachable. At run time (bad data
 * from outside) it throws.
 *
 * @param value The value whose type has been narrowed to `never`.
 * @param message An optional message.
 * @returns Never returns.
 * @throws {TypeError} Always.
 *
 * @example Exhaustive switch
 * ```ts
 * import { assertNever } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * type Light = "red" | "green";
 * function next(light: Light): Light {
 *   switch (light) {
 *     case "red":
 *       return "green";
 *     case "green":
 *       return "red";
 *     default:
 *       return assertNever(light);
 *   }
 * }
 * assert.equal(next("red"), "green");
 * assert.throws(() => assertNever("blue" as never), TypeError);
 * ```
 */
export function assertNever(value: never, message?: string): never {
  throw new TypeError(message ?? `Unexpected value: ${JSON.stringify(value)}`);
}
