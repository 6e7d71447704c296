/**
 * The idempotency rule, pure: what makes two create requests the same, and
 * what a create does when its key was used before. No I/O: `RunStore.create`
 * reads the run stored under the key, asks {@link decideIdempotency}, and
 * writes what it decides in one transaction.
 *
 * @module
 */
import { digestJson, type Identity, type JsonValue, PlmError } from "../../shared/mod.ts";
import type { RunTask } from "./state_machine.ts";

/**
 * The digest that identifies a create request: the checked task and who asks
 * (subject and tenant). Two requests with one key are the same exactly when
 * their digests are equal.
 */
export function requestDigest(task: RunTask, requester: Identity): string {
  return digestJson(
    [task as unknown as JsonValue, requester.subject, requester.tenant ?? null],
    { field: "task" },
  );
}

/** What a create with an idempotency key does: refused, reuse the stored run, or create one. */
export type IdempotencyDecision =
  | { readonly refused: PlmError }
  | { readonly refused?: undefined; readonly reuse: boolean };

/**
 * Decides a create under `key` whose request has `digest`, given the digest
 * stored with the run already created under that key (`undefined`: none).
 * No run yet: create one. The same digest: reuse the stored run. Another
 * digest: `ERR_RUN_IDEMPOTENCY_CONFLICT` (a key never names two requests).
 */
export function decideIdempotency(
  key: string,
  digest: string,
  storedDigest: string | undefined,
): IdempotencyDecision {
  if (storedDigest === undefined) return { reuse: false };
  if (storedDigest !== digest) {
    return {
      refused: new PlmError(
        "ERR_RUN_IDEMPOTENCY_CONFLICT",
        `Cannot reuse idempotency key ${key} for a different request`,
      ),
    };
  }
  return { reuse: true };
}
