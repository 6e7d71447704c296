/**
 * The task contract: {@link TaskInput} as submitted, {@link TaskInputSchema}
 * that checks it, and {@link parseTask} that turns it into the stored
 * {@link RunTask}.
 *
 * @module
 */
import { z } from "zod";
import { canonicalJson, type JsonValue, parseArgument, type Schema } from "../../shared/mod.ts";
import { jsonSchema, textSchema } from "../../shared/validate.ts";
import { RISK_LEVELS, type RiskLevel } from "../governance/policy.ts";
import type { RunTask } from "./state_machine.ts";

/**
 * Bounds on a task, on top of `INPUT_LIMITS.textLength` for `action` and
 * `resource`:
 *
 * - `inputLength`: characters of canonical JSON of `input` (and of `attributes`);
 * - `inputDepth`: levels of nesting in `input` and each attribute;
 * - `capabilities`: entries in `capabilities`, each at most `capabilityLength` characters.
 *
 * @example Read the bounds
 * ```ts
 * import { TASK_LIMITS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(TASK_LIMITS.inputLength, 262_144);
 * assert.equal(TASK_LIMITS.inputDepth, 32);
 * ```
 */
export const TASK_LIMITS = {
  inputLength: 262_144,
  inputDepth: 32,
  capabilities: 64,
  capabilityLength: 128,
} as const;

/** A task as submitted; left-out fields take their defaults. */
export interface TaskInput {
  /** The governed action, dotted: `bom.update`. */
  action: string;
  /** What the action is about: `bom:42`. */
  resource: string;
  /**
   * Capabilities an agent needs.
   *
   * @default {[]}
   */
  capabilities?: readonly string[];
  /**
   * The task's input, handed to the agent.
   *
   * @default {null}
   */
  input?: JsonValue;
  /**
   * The risk governance weighs.
   *
   * @default {"low"}
   */
  risk?: RiskLevel;
  /**
   * Request attributes for policy conditions.
   *
   * @default {{}}
   */
  attributes?: { readonly [key: string]: JsonValue };
}

/** A JSON value that {@link canonicalJson} accepts within the task bounds. */
const boundedJson = jsonSchema({
  maxDepth: TASK_LIMITS.inputDepth,
  maxLength: TASK_LIMITS.inputLength,
});

const attributesSchema = z.record(textSchema({ max: TASK_LIMITS.capabilityLength }), boundedJson)
  .superRefine((attributes, ctx) => {
    // Each attribute is bounded on its own above; bound them together too.
    let length: number;
    try {
      length = canonicalJson(attributes as JsonValue).length;
    } catch {
      return; // a bad attribute is already reported by its own field
    }
    if (length > TASK_LIMITS.inputLength) {
      ctx.addIssue({
        code: "custom",
        message: `Its JSON is ${length} characters, more than ${TASK_LIMITS.inputLength}`,
      });
    }
  });

/**
 * Zod schema of request attributes (a task's `attributes`, and those given to
 * `ControlPlane.authorize`): at most 128-character names, each value JSON that
 * `canonicalJson` accepts, at most 32 deep, and 262,144 characters of canonical
 * JSON in all.
 *
 * @example Refuse a BigInt attribute
 * ```ts
 * import { TaskAttributesSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(TaskAttributesSchema.safeParse({ amount: 250 }).success);
 * assert.equal(TaskAttributesSchema.safeParse({ amount: 250n }).success, false);
 * ```
 */
export const TaskAttributesSchema: Schema<{ readonly [key: string]: JsonValue }> =
  attributesSchema as unknown as Schema<{ readonly [key: string]: JsonValue }>;

const taskInputSchema = z.strictObject({
  action: textSchema().regex(/^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/, {
    message: "Expected dotted words of letters, digits, _ and - (bom.update)",
  }),
  resource: textSchema(),
  capabilities: z.array(textSchema({ max: TASK_LIMITS.capabilityLength }))
    .max(TASK_LIMITS.capabilities).readonly().exactOptional(),
  input: boundedJson.exactOptional(),
  risk: z.enum(RISK_LEVELS).exactOptional(),
  attributes: attributesSchema.exactOptional(),
});

/**
 * Zod schema of {@link TaskInput}; unknown keys are refused.
 *
 * - `action`: dotted words (`bom.update`), `resource`: text; each at most 1,024
 *   characters, without U+0000 or lone surrogates;
 * - `capabilities`: a list (a string is refused) of at most 64 texts;
 * - `input` and each attribute: JSON that `canonicalJson` accepts, at most 32
 *   deep and 262,144 characters (BigInt, NaN, functions, Date, Map and cycles
 *   are refused, not converted);
 * - `risk`: one of `RISK_LEVELS`.
 *
 * @example Refuse a string given as capabilities
 * ```ts
 * import { TaskInputSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(TaskInputSchema.safeParse({ action: "bom.read", resource: "bom:1" }).success);
 * const bad = TaskInputSchema.safeParse({ action: "bom.read", resource: "bom:1", capabilities: "bom" });
 * assert.equal(bad.success, false);
 * ```
 */
export const TaskInputSchema: Schema<TaskInput> = taskInputSchema as unknown as Schema<TaskInput>;

/**
 * Checks a task from outside and fills in its defaults: the one way a task
 * enters the store.
 *
 * @param input The untrusted task.
 * @param field The name of the task in error messages.
 * @returns The task as stored, with every field present.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the path of the bad field (`task.capabilities`).
 *
 * @example Fill in the defaults, refuse a NaN
 * ```ts
 * import { parseTask } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const task = parseTask({ action: "bom.read", resource: "bom:1" });
 * assert.deepEqual(task, {
 *   action: "bom.read",
 *   resource: "bom:1",
 *   capabilities: [],
 *   input: null,
 *   risk: "low",
 *   attributes: {},
 * });
 * assert.throws(() => parseTask({ ...task, input: { qty: NaN } }), {
 *   code: "ERR_INVALID_ARGUMENT",
 *   message: /task\.input/,
 * });
 * ```
 */
export function parseTask(input: unknown, field = "task"): RunTask {
  const task = parseArgument(TaskInputSchema, input, field);
  return {
    action: task.action,
    resource: task.resource,
    capabilities: [...(task.capabilities ?? [])],
    input: task.input ?? null,
    risk: task.risk ?? "low",
    attributes: task.attributes ?? {},
  };
}
