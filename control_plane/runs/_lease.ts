/**
 * The lease rules, pure: who may claim a run, which fencing token a claim
 * gives, and who still holds a lease. No I/O: `RunStore` reads the run, asks
 * these, and writes what they decide in one transaction; the adapters' update
 * fences on the same token, so a writer that lost its lease changes nothing.
 *
 * @module
 */
import { checkInteger, checkText, invalidArgument, PlmError } from "../../shared/mod.ts";
import { isTerminal, type LeaseHold, type Run } from "./state_machine.ts";

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

/**
 * The fencing token of a claim written over `run` (the run as read, before
 * the claim's write): its next version. Every write raises the version by one
 * and a token is never above the version it was written with (the adapters'
 * one-statement claim gives the last token + 1, at most the new version), so
 * this token is greater than every token the run had: no earlier hold matches it.
 */
export function nextLeaseToken(run: Run): number {
  return run.version + 1;
}

/**
 * Whether `hold` is the live lease on `run` at `now`: the same owner AND the
 * same token (a worker that claimed the run again, or another worker's claim,
 * gives a new token), not expired (an expired lease is held by nobody).
 */
export function holdsLease(run: Run, hold: LeaseHold, now: number): boolean {
  return run.lease !== null && run.lease.owner === hold.owner &&
    run.lease.token === hold.token && run.lease.expiresAt > now;
}

/**
 * Whether `hold` names the lease `run` carries, live or expired: a release
 * of one's own expired lease is harmless, one after another claim is not.
 */
export function namesLease(run: Run, hold: LeaseHold): boolean {
  return run.lease !== null && run.lease.owner === hold.owner && run.lease.token === hold.token;
}

/** `hold` checked: `owner` a text and `token` an integer >= 0, named as `${field}.owner` etc. */
export function checkHold(field: string, hold: LeaseHold): LeaseHold {
  if (typeof hold !== "object" || hold === null) {
    throw invalidArgument(field, "expected a lease hold { owner, token }");
  }
  return {
    owner: checkText(`${field}.owner`, hold.owner),
    token: checkInteger(`${field}.token`, hold.token),
  };
}
