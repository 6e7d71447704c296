/**
 * An in-process agent whose calls wait until the test settles them, shared by
 * the dispatcher and runtime tests.
 *
 * @module
 */
import { defineAgent, type JsonValue } from "../../agent_runtime/mod.ts";

/** One call of a {@link gatedAgent}: its run, its signal, and how to settle it. */
export interface GatedCall {
  readonly runId: string;
  readonly signal: AbortSignal;
  /** Resolves the call with `"ok from <id>"`. */
  readonly finish: () => void;
}

/**
 * An agent whose calls stay pending until `finish()`; records them in call order.
 *
 * @param id The agent id.
 * @param options Its `maxConcurrency` (default 1) and `capabilities` (default none).
 * @returns The agent and its calls.
 */
export function gatedAgent(
  id: string,
  options: { maxConcurrency?: number; capabilities?: string[] } = {},
) {
  const calls: GatedCall[] = [];
  const agent = defineAgent({
    id,
    maxConcurrency: options.maxConcurrency ?? 1,
    capabilities: options.capabilities ?? [],
    invoke: (_task, ctx) =>
      new Promise<JsonValue>((resolve) =>
        calls.push({ runId: ctx.runId, signal: ctx.signal, finish: () => resolve(`ok from ${id}`) })
      ),
  });
  return { agent, calls };
}
