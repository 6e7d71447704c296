/**
 * Folding an agent's autonomy level into a governance verdict.
 *
 * @module
 */
import { assertNever } from "../../shared/mod.ts";
import type { ApprovalSpec, Verdict } from "../governance/mod.ts";
import { AUTONOMY_LEVEL_NAMES, type AutonomyLevel } from "./levels.ts";

/** A verdict after autonomy was folded in. */
export interface AutonomyVerdict extends Verdict {
  /** The autonomy level that was applied. */
  readonly autonomyLevel: AutonomyLevel;
  /**
   * Whether humans are to be notified that the agent acts (`L3`): `ControlPlane.authorize`
   * audits `autonomy.notify` and hands the notification to `onNotify` (ADR 0004).
   */
  readonly notify: boolean;
  /**
   * Whether the agent may only suggest, a human carrying the action out (`L1`): the run's
   * approval is opened in `suggest` mode, the agent gets `mode: "suggest"` and the run
   * ends `suggested` (ADR 0004).
   */
  readonly suggestOnly: boolean;
}

/**
 * The approval opened when autonomy (not policy) requires one: one
 * `approver`, within a day, denied on expiry.
 *
 * @example The approval an L2 agent needs by default
 * ```ts
 * import {
 *   DEFAULT_AUTONOMY_APPROVAL,
 *   foldAutonomy,
 *   type Verdict,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DEFAULT_AUTONOMY_APPROVAL.quorum, 1);
 * assert.equal(DEFAULT_AUTONOMY_APPROVAL.onExpiry, "deny");
 * const verdict: Verdict = {
 *   decision: "allow",
 *   matchedRuleIds: ["edit"],
 *   reason: "Allowed by rule edit",
 *   policyVersion: "v1",
 * };
 * assert.equal(foldAutonomy(verdict, "L2").approval, DEFAULT_AUTONOMY_APPROVAL);
 * ```
 */
export const DEFAULT_AUTONOMY_APPROVAL: ApprovalSpec = Object.freeze({
  approverRoles: Object.freeze(["approver"]),
  quorum: 1,
  timeoutSeconds: 86_400,
  onExpiry: "deny",
});

/** Options for {@link foldAutonomy}. */
export interface FoldAutonomyOptions {
  /**
   * The approval spec used when an `allow` becomes `require_approval` at `L1`
   * or `L2`.
   *
   * @default {DEFAULT_AUTONOMY_APPROVAL}
   */
  readonly approval?: ApprovalSpec;
}

/**
 * Folds an autonomy level into a verdict. Autonomy only ever tightens:
 *
 * | verdict \ level    | L0   | L1, L2               | L3             | L4    |
 * | ------------------ | ---- | -------------------- | -------------- | ----- |
 * | `deny`             | deny | deny                 | deny           | deny  |
 * | `require_approval` | deny | require_approval     | require_approval, notify | require_approval |
 * | `allow`            | deny | require_approval (default spec) | allow, notify | allow |
 *
 * `L0` never executes: any non-deny becomes `deny` with code
 * `ERR_FORBIDDEN`. `L1` also sets `suggestOnly`. The level is recorded in
 * `autonomyLevel`; `matchedRuleIds` and `policyVersion` are kept.
 *
 * @param verdict The governance verdict.
 * @param level The agent's autonomy level for this action.
 * @param options The approval spec for autonomy-required approvals.
 * @returns A new verdict; the input is not changed.
 * @throws {TypeError} When `level` is not one of `AUTONOMY_LEVELS`.
 *
 * @example An allowed action at L2 needs approval
 * ```ts
 * import { foldAutonomy, type Verdict } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const verdict: Verdict = {
 *   decision: "allow",
 *   matchedRuleIds: ["edit"],
 *   reason: "Allowed by rule edit",
 *   policyVersion: "v1",
 * };
 * const folded = foldAutonomy(verdict, "L2");
 * assert.equal(folded.decision, "require_approval");
 * assert.equal(folded.autonomyLevel, "L2");
 * assert.deepEqual(folded.approval?.approverRoles, ["approver"]);
 *
 * assert.equal(foldAutonomy(verdict, "L3").notify, true);
 * assert.equal(foldAutonomy(verdict, "L0").decision, "deny");
 * ```
 */
export function foldAutonomy(
  verdict: Verdict,
  level: AutonomyLevel,
  options?: FoldAutonomyOptions,
): AutonomyVerdict {
  const { approval = DEFAULT_AUTONOMY_APPROVAL } = options ?? {};
  const label = `autonomy ${level} (${AUTONOMY_LEVEL_NAMES[level]})`;
  const base = { ...verdict, autonomyLevel: level, notify: false, suggestOnly: false };
  if (verdict.decision === "deny") return base;
  switch (level) {
    case "L0": {
      const { approval: _dropped, ...rest } = base;
      return {
        ...rest,
        decision: "deny",
        code: "ERR_FORBIDDEN",
        reason: `${verdict.reason}; ${label} never executes`,
      };
    }
    case "L1":
    case "L2": {
      const suggestOnly = level === "L1";
      if (verdict.decision === "require_approval") return { ...base, suggestOnly };
      return {
        ...base,
        decision: "require_approval",
        approval,
        suggestOnly,
        reason: `${verdict.reason}; ${label} requires approval`,
      };
    }
    case "L3":
      return { ...base, notify: true, reason: `${verdict.reason}; ${label}` };
    case "L4":
      return base;
    default:
      return assertNever(level, `Unknown autonomy level: ${String(level)}`);
  }
}
