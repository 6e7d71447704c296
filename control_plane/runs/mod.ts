/**
 * Runs: the pure lifecycle state machine and the SQLite {@link RunStore}.
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
export * from "./run_store.ts";
export * from "./state_machine.ts";
export * from "./task.ts";
