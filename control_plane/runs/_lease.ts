/**
 * The lease rules, pure: who may claim a run, and who still holds it. No I/O:
 * `RunStore` reads the run, asks these, and writes what they decide in one
 * transaction (the store port's adapters will ask the same questions).
 *
 * @module
 */
import { PlmError } from "../../shared/mod.ts";
import { isTerminal, type Run } from "./state_machine.ts";

/** What a claim does: refused, a fresh claim (or a renewal), or a takeover of an expired lease. */
export type ClaimDecision =
  | { readonly refused: PlmError }
  | { readonly refused?: undefined; readonly takeover: boolean };

/**
 * Decides a claim of `run` by `owner` at `now`. A finished run cannot be
 * claimed; another owner's live lease refuses the claim; another owner's
 * expired lease is taken over (the store turns a `running` run `retrying`).
 */
export function decideClaim(run: Run, owner: string, now: number): ClaimDecision {
  if (isTerminal(run.state)) {
    return {
      refused: new PlmError(
        "ERR_RUN_ILLEGAL_TRANSITION",
        `Cannot claim run ${run.id} as it is ${run.state}`,
      ),
    };
  }
  const lease = run.lease;
  if (lease !== null && lease.owner !== owner && lease.expiresAt > now) {
    return {
      refused: new PlmError(
        "ERR_RUN_LEASE_HELD",
        `Cannot claim run ${run.id} as ${lease.owner} holds it until ${
          new Date(lease.expiresAt).toISOString()
        }`,
      ),
    };
  }
  return { takeover: lease !== null && lease.owner !== owner };
}

/** Whether `owner` holds a live lease on `run` at `now` (an expired lease is held by nobody). */
export function holdsLease(run: Run, owner: string, now: number): boolean {
  return run.lease !== null && run.lease.owner === owner && run.lease.expiresAt > now;
}
