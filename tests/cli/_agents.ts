/**
 * The agents module the CLI tests hand to `--agents`: its default export is a
 * list of agents, as a deployment's module would be.
 *
 * - `echo` returns the task's input, after `input.ms` milliseconds when given
 *   (giving up when its signal aborts: a drain past its grace period).
 * - `breaker` (capability `fail`, tier 1) fails for good.
 */
import { AgentError, defineAgent } from "../../agent_runtime/mod.ts";

export default [
  defineAgent({
    id: "echo",
    maxConcurrency: 8,
    invoke: async (task, ctx) => {
      const ms = (task.input as { ms?: number } | null)?.ms ?? 0;
      if (ms > 0) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, ms);
          ctx.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            reject(ctx.signal.reason);
          }, { once: true });
        });
      }
      return task.input;
    },
  }),
  defineAgent({
    id: "breaker",
    capabilities: ["fail"],
    tier: 1, // echo (tier 0) is chosen first when a task needs no capability
    invoke: () =>
      Promise.reject(new AgentError("ERR_AGENT_FAILED", "broken on purpose", { retryable: false })),
  }),
];
