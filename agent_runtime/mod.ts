/**
 * The agent runtime asks how to run a task: selector, dispatcher, retry and
 * escalation. It imports `shared/` and `control_plane/mod.ts`.
 *
 * @example Pick an agent and run a task with retries under a limit
 * ```ts
 * import {
 *   ConcurrencyLimiter,
 *   defineAgent,
 *   FakeClock,
 *   retry,
 *   RetryPolicy,
 *   selectAgent,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const agent = defineAgent({
 *   id: "echo",
 *   capabilities: ["echo"],
 *   invoke: (task) => Promise.resolve(task.input),
 * });
 * const { agent: chosen } = selectAgent({ capabilities: ["echo"] }, [agent], {
 *   inFlight: () => 0,
 *   isAvailable: () => true,
 * });
 * const limiter = new ConcurrencyLimiter({ concurrency: 4 });
 * const clock = new FakeClock();
 * const sleep = (ms: number) => Promise.resolve(clock.advance(ms));
 * const result = await limiter.run(() =>
 *   retry(() => Promise.resolve(chosen.id), new RetryPolicy(), { clock, sleep })
 * );
 * assert.equal(result, "echo");
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
