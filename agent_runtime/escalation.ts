/**
 * {@link EscalationLadder}: where a task goes when retries are exhausted.
 *
 * @module
 */
import { type ApprovalSpec, ApprovalSpecSchema, formatIssues } from "../control_plane/mod.ts";
import { checkOption } from "../shared/validate.ts";

/** One rung of the ladder. */
export type EscalationStep =
  | {
    /** Try again with a stronger agent: one of at least this tier. */
    readonly kind: "tier";
    /** The lowest tier allowed from this step on. */
    readonly minTier: number;
  }
  | {
    /** Ask humans (an approval of kind `escalation`); approval resumes the run, rejection ends it. */
    readonly kind: "human";
    /** Who may approve, how many, until when, and what happens on expiry. */
    readonly approval: ApprovalSpec;
  }
  | {
    /** Give up: the run fails. */
    readonly kind: "fail";
  };

/** Options for {@link EscalationLadder}. */
export interface EscalationLadderOptions {
  /**
   * Error codes that skip the remaining retries and escalate at once.
   *
   * @default {[]}
   */
  escalateNowCodes?: readonly string[];
}

/**
 * An ordered ladder of escalation steps: stronger agent tiers, then a human
 * tier, then fail. A run's `escalations` count is its position on the ladder;
 * each step taken is a `run.transition` to `escalated` in the audit log and
 * counts against the run's escalation budget.
 *
 * @example A stronger agent, then a human, then fail
 * ```ts
 * import { EscalationLadder } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const ladder = new EscalationLadder([
 *   { kind: "tier", minTier: 2 },
 *   { kind: "human", approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 3600, onExpiry: "deny" } },
 *   { kind: "fail" },
 * ], { escalateNowCodes: ["ERR_MODEL_REFUSED"] });
 * assert.equal(ladder.next(0)?.kind, "tier");
 * assert.equal(ladder.minTier(1), 2);
 * assert.equal(ladder.next(1)?.kind, "human");
 * assert.equal(ladder.next(3), undefined);
 * assert.ok(ladder.escalatesNow("ERR_MODEL_REFUSED"));
 * ```
 */
export class EscalationLadder {
  /** The steps, in order. */
  readonly steps: readonly EscalationStep[];
  #now: ReadonlySet<string>;

  /**
   * Validates and builds a ladder.
   *
   * @param steps The rungs, in order. Tier steps must rise; `fail` can only be last.
   * @param options Codes that escalate at once.
   * @throws {RangeError} When a step is malformed or out of order.
   */
  constructor(steps: readonly EscalationStep[], options: EscalationLadderOptions = {}) {
    const { escalateNowCodes = [] } = options;
    let tier = -1;
    steps.forEach((step, i) => {
      switch (step.kind) {
        case "tier":
          // Tiers rise: each step's minTier is an integer above the one before.
          tier = checkOption(`steps[${i}].minTier`, step.minTier, tier + 1);
          break;
        case "human": {
          const parsed = ApprovalSpecSchema.safeParse(step.approval);
          if (!parsed.success) {
            throw new RangeError(`Cannot use step ${i}: ${formatIssues(parsed.error.issues)}`);
          }
          break;
        }
        case "fail":
          if (i !== steps.length - 1) {
            throw new RangeError(`Cannot use step ${i}: fail must be last`);
          }
          break;
        default:
          throw new RangeError(
            `Cannot use step ${i}: unknown kind ${(step as { kind: unknown }).kind}`,
          );
      }
    });
    this.steps = Object.freeze([...steps]);
    this.#now = new Set(escalateNowCodes);
  }

  /**
   * The step a run takes as its next escalation.
   *
   * @param escalations How many steps the run has taken.
   * @returns The next step, or `undefined` past the top (the run fails).
   *
   * @example Walk the ladder
   * ```ts
   * import { EscalationLadder } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const ladder = new EscalationLadder([{ kind: "tier", minTier: 2 }, { kind: "fail" }]);
   * assert.deepEqual(ladder.next(0), { kind: "tier", minTier: 2 });
   * assert.equal(ladder.next(1)?.kind, "fail");
   * assert.equal(ladder.next(2), undefined);
   * ```
   */
  next(escalations: number): EscalationStep | undefined {
    return this.steps[escalations];
  }

  /**
   * The lowest agent tier allowed after `escalations` steps: the highest tier
   * step taken so far, 0 before any.
   *
   * @param escalations How many steps the run has taken.
   * @returns The minimum tier for selection.
   *
   * @example Tiers only rise
   * ```ts
   * import { EscalationLadder } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const ladder = new EscalationLadder([
   *   { kind: "tier", minTier: 1 },
   *   { kind: "tier", minTier: 3 },
   *   { kind: "fail" },
   * ]);
   * assert.deepEqual([0, 1, 2, 3].map((n) => ladder.minTier(n)), [0, 1, 3, 3]);
   * ```
   */
  minTier(escalations: number): number {
    let tier = 0;
    for (const step of this.steps.slice(0, escalations)) {
      if (step.kind === "tier") tier = step.minTier;
    }
    return tier;
  }

  /**
   * Whether an error code skips the remaining retries.
   *
   * @param code An error code.
   * @returns `true` when it is one of `escalateNowCodes`.
   *
   * @example Escalate a refusal at once, retry a timeout
   * ```ts
   * import { EscalationLadder } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * const ladder = new EscalationLadder([{ kind: "fail" }], {
   *   escalateNowCodes: ["ERR_MODEL_REFUSED"],
   * });
   * assert.equal(ladder.escalatesNow("ERR_MODEL_REFUSED"), true);
   * assert.equal(ladder.escalatesNow("ERR_TIMEOUT"), false);
   * ```
   */
  escalatesNow(code: string): boolean {
    return this.#now.has(code);
  }
}
