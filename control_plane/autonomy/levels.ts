/**
 * Autonomy levels and the autonomy policy that assigns them per agent and per
 * action pattern.
 *
 * @module
 */
import { z } from "zod";
import { formatIssues, type Schema, type SchemaIssue } from "../../shared/mod.ts";
import { POLICY_LIMITS, PolicyError } from "../governance/mod.ts";

/**
 * Autonomy levels, from least to most autonomous:
 * `L0` manual (the agent never executes), `L1` suggest (a human carries the
 * suggestion out), `L2` act with approval, `L3` act and notify, `L4`
 * autonomous.
 *
 * @example Levels are ordered from least to most autonomous
 * ```ts
 * import {
 *   AUTONOMY_LEVELS,
 *   compareAutonomyLevels,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(AUTONOMY_LEVELS[0], "L0");
 * assert.equal(AUTONOMY_LEVELS.at(-1), "L4");
 * assert.ok(compareAutonomyLevels(AUTONOMY_LEVELS[1], AUTONOMY_LEVELS[2]) < 0);
 * ```
 */
export const AUTONOMY_LEVELS = ["L0", "L1", "L2", "L3", "L4"] as const;

/** One of {@link AUTONOMY_LEVELS}. */
export type AutonomyLevel = typeof AUTONOMY_LEVELS[number];

/**
 * A short name for each autonomy level, used in verdict reasons.
 *
 * @example Name a level
 * ```ts
 * import {
 *   AUTONOMY_LEVEL_NAMES,
 *   AUTONOMY_LEVELS,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(AUTONOMY_LEVEL_NAMES.L2, "act with approval");
 * assert.deepEqual(Object.keys(AUTONOMY_LEVEL_NAMES), [...AUTONOMY_LEVELS]);
 * ```
 */
export const AUTONOMY_LEVEL_NAMES = {
  L0: "manual",
  L1: "suggest",
  L2: "act with approval",
  L3: "act and notify",
  L4: "autonomous",
} as const satisfies Record<AutonomyLevel, string>;

/** A level for the actions of one agent that match a glob (see `compileGlob`, `.` separated). */
export interface AutonomyActionLevel {
  /**
   * An action glob: `bom.read`, `bom.*`, `bom.**`; at most
   * `POLICY_LIMITS.patternLength` (512) characters.
   */
  readonly pattern: string;
  /** The level for matching actions. */
  readonly level: AutonomyLevel;
}

/** The autonomy of one agent. */
export interface AgentAutonomy {
  /** The agent's level for actions no pattern matches. */
  readonly level: AutonomyLevel;
  /** Per-action levels; the first matching pattern wins. */
  readonly actions?: readonly AutonomyActionLevel[];
}

/** Who may act how autonomously: a default, then per agent and per action pattern. */
export interface AutonomyPolicy {
  /** The level of agents not listed in `agents`. */
  readonly defaultLevel: AutonomyLevel;
  /** Agents by id (the identity's `subject`). */
  readonly agents?: { readonly [agentId: string]: AgentAutonomy };
}

const levelSchema = z.enum(AUTONOMY_LEVELS);

const autonomyPolicySchema = z.strictObject({
  defaultLevel: levelSchema,
  agents: z.record(
    z.string().min(1),
    z.strictObject({
      level: levelSchema,
      actions: z.array(
        z.strictObject({
          pattern: z.string().min(1).max(
            POLICY_LIMITS.patternLength,
            `Expected a pattern of at most ${POLICY_LIMITS.patternLength} characters`,
          ),
          level: levelSchema,
        }).readonly(),
      ).readonly().exactOptional(),
    }).readonly(),
  ).readonly().exactOptional(),
}).readonly();

/**
 * Zod schema of {@link AutonomyLevel}.
 *
 * @example Validate a level
 * ```ts
 * import { AutonomyLevelSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(AutonomyLevelSchema.parse("L3"), "L3");
 * assert.ok(!AutonomyLevelSchema.safeParse("L5").success);
 * ```
 */
export const AutonomyLevelSchema: Schema<AutonomyLevel> = levelSchema;

/**
 * Zod schema of {@link AutonomyPolicy}; unknown keys are rejected.
 *
 * @example Validate an autonomy policy
 * ```ts
 * import { AutonomyPolicySchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const policy = {
 *   defaultLevel: "L1",
 *   agents: { "planner-1": { level: "L3", actions: [{ pattern: "bom.delete", level: "L2" }] } },
 * };
 * assert.ok(AutonomyPolicySchema.safeParse(policy).success);
 * assert.ok(!AutonomyPolicySchema.safeParse({ defaultLevel: "L9" }).success);
 * ```
 */
export const AutonomyPolicySchema: Schema<AutonomyPolicy> = autonomyPolicySchema;

/**
 * Validates an autonomy policy.
 *
 * @param input The candidate policy (TS literal or parsed JSON).
 * @returns The validated policy.
 * @throws {PolicyError} `ERR_POLICY_INVALID` naming the path of every bad field.
 *
 * @example Reject a bad level with its path
 * ```ts
 * import { parseAutonomyPolicy, PolicyError } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseAutonomyPolicy({ defaultLevel: "L2" }).defaultLevel, "L2");
 * assert.throws(
 *   () => parseAutonomyPolicy({ defaultLevel: "L2", agents: { a: { level: "high" } } }),
 *   (err) => err instanceof PolicyError && err.message.includes("agents.a.level"),
 * );
 * ```
 */
export function parseAutonomyPolicy(input: unknown): AutonomyPolicy {
  const result = autonomyPolicySchema.safeParse(input);
  if (result.success) return result.data;
  const issues: SchemaIssue[] = result.error.issues.map((issue) => ({
    path: issue.path,
    message: issue.message,
  }));
  throw new PolicyError("ERR_POLICY_INVALID", `Invalid autonomy policy: ${formatIssues(issues)}`, {
    issues,
  });
}

/**
 * Compares two autonomy levels.
 *
 * @param a A level.
 * @param b Another level.
 * @returns A negative number when `a` is less autonomous than `b`, 0 when
 * equal, a positive number otherwise.
 *
 * @example Sort levels
 * ```ts
 * import { type AutonomyLevel, compareAutonomyLevels } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const levels: AutonomyLevel[] = ["L4", "L0", "L2"];
 * assert.ok(compareAutonomyLevels("L1", "L3") < 0);
 * assert.deepEqual(levels.sort(compareAutonomyLevels), ["L0", "L2", "L4"]);
 * ```
 */
export function compareAutonomyLevels(a: AutonomyLevel, b: AutonomyLevel): number {
  return AUTONOMY_LEVELS.indexOf(a) - AUTONOMY_LEVELS.indexOf(b);
}
