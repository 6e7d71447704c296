/**
 * The agent runtime asks how to run a task: selector, dispatcher, retry and
 * escalation. It imports `shared/` and `control_plane/mod.ts`.
 *
 * @module
 */
export * from "../control_plane/mod.ts";
