/**
 * The control plane decides what is allowed: identity, governance, autonomy,
 * human approval, run lifecycle, trace propagation, audit log and the SQLite
 * store. It imports `shared/` only and never `agent_runtime/`.
 *
 * @module
 */
export * from "../shared/mod.ts";
