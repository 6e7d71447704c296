/**
 * Runs: the pure lifecycle state machine and the {@link RunStore} over the store port.
 *
 * @example Walk a run through the state machine
 * ```ts
 * import { RUN_TRANSITIONS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(RUN_TRANSITIONS.awaiting_approval.approve, ["queued"]);
 * ```
 *
 * @module
 */
export {
  type CreateRunInput,
  type RunCallOptions,
  type RunPage,
  type RunPageOptions,
  type RunReadOptions,
  RunStore,
  type RunStoreOptions,
} from "./run_store.ts";
export {
  isTerminal,
  type LeaseHold,
  type Run,
  RUN_STATES,
  RUN_TRANSITIONS,
  type RunError,
  type RunEvent,
  type RunEventInput,
  type RunEventType,
  type RunLease,
  type RunState,
  type RunTask,
  TERMINAL_RUN_STATES,
  transition,
} from "./state_machine.ts";
export {
  parseTask,
  TASK_LIMITS,
  TaskAttributesSchema,
  type TaskInput,
  TaskInputSchema,
} from "./task.ts";
