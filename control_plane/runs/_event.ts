/**
 * What a run's event carries and what its audit record says, pure: the check
 * of an agent's event before anything is read or written, the record's reason
 * and trace id.
 *
 * @module
 */
import { canonicalJson, checkText, INPUT_LIMITS } from "../../shared/mod.ts";
import type { Run, RunEventInput } from "./state_machine.ts";

/**
 * Checks what an event carries from an agent, before anything is read or
 * written: a `succeed` or `suggest` result must be JSON as it is (a NaN or a
 * Date is refused, not stored as `null` or a string), a `fail` error's code
 * and message must be bounded text.
 *
 * @returns The result's canonical JSON, to store, for `succeed` and `suggest`.
 */
export function checkEvent(event: RunEventInput): string | undefined {
  switch (event?.type) {
    case "succeed":
    case "suggest":
      return canonicalJson(event.result, { field: "event.result" });
    case "fail":
      checkText("event.error.code", event.error?.code);
      checkText("event.error.message", event.error?.message, INPUT_LIMITS.reasonLength);
      return undefined;
    default:
      return undefined;
  }
}

/** The audit reason of `event`, which led to `run`, if it has one. */
export function reasonOf(event: RunEventInput, run: Run): string | undefined {
  switch (event.type) {
    case "reject":
    case "expire":
    case "escalate":
    case "cancel":
      return event.reason;
    case "fail":
      return `${event.error.code}: ${event.error.message}`;
    case "lease_expired":
      return run.error?.message;
    default:
      return undefined;
  }
}

/** The W3C trace id of the run, from its `traceparent` (checked when the run was created). */
export function traceIdOf(run: Run): string {
  return run.traceparent.slice(3, 35);
}
