/**
 * The agents file of `plm runs submit --agents FILE`: a JSON list of HTTP
 * agents, checked whole with a strict schema before any run is created.
 *
 * @module
 */
import { z } from "zod";
import { type Agent, httpAgent } from "../agent_runtime/mod.ts";
import { TASK_LIMITS } from "../control_plane/mod.ts";
import { INPUT_LIMITS, parseArgument, PlmError } from "../shared/mod.ts";
import { textSchema } from "../shared/validate.ts";
import { readArgumentFile } from "./io.ts";

/** One HTTP agent of the agents file: the options of `httpAgent`, and its URL. */
const AgentSpecSchema = z.strictObject({
  id: textSchema(),
  url: z.url({ protocol: /^https?$/, normalize: false }).max(INPUT_LIMITS.textLength),
  capabilities: z.array(textSchema({ max: TASK_LIMITS.capabilityLength }))
    .max(INPUT_LIMITS.listLimit).exactOptional(),
  tier: z.int().min(0).exactOptional(),
  costPerRun: z.number().min(0).exactOptional(),
  maxConcurrency: z.int().min(1).exactOptional(),
});

/**
 * The agents file: a non-empty JSON list of agents with distinct ids, each
 * with distinct capabilities; any other key is refused.
 */
const AgentsFileSchema = z.array(AgentSpecSchema).min(1).max(INPUT_LIMITS.listLimit)
  .superRefine((specs, ctx) => {
    const ids = new Set<string>();
    specs.forEach((spec, index) => {
      if (ids.has(spec.id)) {
        ctx.addIssue({ code: "custom", path: [index, "id"], message: `Duplicate id '${spec.id}'` });
      }
      ids.add(spec.id);
      const capabilities = spec.capabilities ?? [];
      if (new Set(capabilities).size !== capabilities.length) {
        ctx.addIssue({
          code: "custom",
          path: [index, "capabilities"],
          message: "Duplicate capability",
        });
      }
    });
  });

/**
 * Reads and checks the agents file and builds its HTTP agents.
 *
 * @param path The file, from `--agents`.
 * @param token The bearer token the agents are called with.
 * @returns The agents, in file order.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the path within the file (such as
 * `agents[1].id`) when the file cannot be read, is not JSON or does not match the schema.
 */
export async function readAgentsFile(path: string, token: string): Promise<Agent[]> {
  const text = await readArgumentFile("--agents", path);
  let specs: unknown;
  try {
    specs = JSON.parse(text);
  } catch (err) {
    throw new PlmError(
      "ERR_INVALID_ARGUMENT",
      `Invalid --agents ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  let agents;
  try {
    agents = parseArgument(AgentsFileSchema, specs, "agents");
  } catch (err) {
    throw new PlmError("ERR_INVALID_ARGUMENT", `${(err as Error).message} (in ${path})`, {
      cause: err,
    });
  }
  return agents.map(({ url, ...options }) => httpAgent(url, { ...options, token }));
}
