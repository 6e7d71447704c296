/**
 * The control plane decides what is allowed: identity, governance, autonomy,
 * human approval, run lifecycle, trace propagation, audit log and the SQLite
 * store. It imports `shared/` only and never `agent_runtime/`.
 *
 * @module
 */
export * from "../shared/mod.ts";
export * from "./governance/mod.ts";
export * from "./autonomy/mod.ts";
export * from "./trace/mod.ts";
export * from "./store/mod.ts";
export * from "./audit/mod.ts";
export * from "./identity/public.ts";
export * from "./runs/mod.ts";
export * from "./hitl/mod.ts";
export * from "./control_plane.ts";
