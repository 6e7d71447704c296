/**
 * The agent runtime asks how to run a task: selector, dispatcher, retry and
 * escalation. It imports `shared/` and `control_plane/mod.ts`.
 *
 * @example Submit a task, let the worker loop run it, stop the worker
 * ```ts
 * import {
 *   AgentRuntime,
 *   ControlPlane,
 *   defineAgent,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const controlPlane = new ControlPlane(db, {
 *   policies: { rules: [{ id: "reads", effect: "allow", actions: ["bom.read"] }] },
 * });
 * const echo = defineAgent({
 *   id: "echo",
 *   capabilities: ["echo"],
 *   invoke: (task) => Promise.resolve(task.input),
 * });
 * const runtime = new AgentRuntime({ controlPlane, agents: [echo], retry: { maxAttempts: 2 } });
 * runtime.start();
 * const identity = { subject: "svc", actorKind: "service" as const, roles: [], scopes: [] };
 * const id = await runtime.submit(
 *   { action: "bom.read", resource: "bom:1", capabilities: ["echo"], input: 7 },
 *   { identity },
 * );
 * assert.equal((await runtime.wait(id)).result, 7);
 * await runtime.stop();
 * ```
 *
 * @module
 */
export * from "../control_plane/mod.ts";
export * from "./agent.ts";
export * from "./circuit_breaker.ts";
export * from "./http_agent.ts";
export * from "./limiter.ts";
export * from "./retry.ts";
export * from "./selector.ts";
export * from "./dispatcher.ts";
export * from "./escalation.ts";
export * from "./runtime.ts";
