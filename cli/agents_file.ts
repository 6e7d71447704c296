/**
 * The agents file of `plm runs submit --agents FILE`: a JSON list of HTTP
 * agents, checked whole with a strict schema before any run is created.
 *
 * @module
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
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

/** The file names `--agents` imports as a module rather than reads as JSON. */
const MODULE_FILE = /\.(?:ts|mts|js|mjs)$/;

/**
 * The agents of `--agents FILE`: a `.ts`/`.mts`/`.js`/`.mjs` file is imported
 * (a dynamic `import()` of its file URL) and its default export must be a
 * non-empty list of agents (`defineAgent` makes them); any other file is the
 * HTTP-agents JSON file ({@link readAgentsFile}).
 *
 * @param path The file, from `--agents`.
 * @param token The bearer token HTTP agents are called with.
 * @returns The agents, in order.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `--agents` (and the entry) when the module
 * cannot be imported, has no default export that is a list, or an entry does not have the
 * `Agent` shape (`id`, `capabilities`, `tier`, `costPerRun`, `maxConcurrency`, `invoke`), or
 * two agents share an id.
 */
export async function loadAgents(path: string, token: string): Promise<Agent[]> {
  if (!MODULE_FILE.test(path)) return await readAgentsFile(path, token);
  let module: Record<string, unknown>;
  try {
    module = await import(pathToFileURL(resolve(path)).href);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw err; // ERR_PERMISSION
    }
    throw new PlmError(
      "ERR_INVALID_ARGUMENT",
      `Invalid --agents ${path}: cannot import it (${(err as Error).message})`,
      { cause: err },
    );
  }
  return checkAgentList(module.default, path);
}

/** Checks that `value` is a non-empty list of agents with distinct ids. */
function checkAgentList(value: unknown, path: string): Agent[] {
  const bad = (where: string, why: string) =>
    new PlmError("ERR_INVALID_ARGUMENT", `Invalid --agents ${path}${where}: ${why}`);
  if (!Array.isArray(value)) {
    throw bad("", "its default export must be a list of agents (defineAgent makes them)");
  }
  if (value.length === 0) throw bad("", "its default export is an empty list");
  if (value.length > INPUT_LIMITS.listLimit) {
    throw bad("", `at most ${INPUT_LIMITS.listLimit} agents`);
  }
  const ids = new Set<string>();
  value.forEach((agent: unknown, index) => {
    const where = ` (default[${index}])`;
    if (agent === null || typeof agent !== "object" || Array.isArray(agent)) {
      throw bad(where, "expected an agent object");
    }
    const a = agent as Record<string, unknown>;
    if (typeof a.id !== "string" || a.id === "") {
      throw bad(`${where}.id`, "expected a non-empty string");
    }
    if (ids.has(a.id)) throw bad(`${where}.id`, `duplicate id '${a.id}'`);
    ids.add(a.id);
    if (
      !Array.isArray(a.capabilities) ||
      !a.capabilities.every((c) => typeof c === "string" && c !== "")
    ) {
      throw bad(`${where}.capabilities`, "expected a list of non-empty strings");
    }
    if (!Number.isSafeInteger(a.tier) || (a.tier as number) < 0) {
      throw bad(`${where}.tier`, "expected an integer >= 0");
    }
    if (
      typeof a.costPerRun !== "number" || !(a.costPerRun >= 0) || !Number.isFinite(a.costPerRun)
    ) {
      throw bad(`${where}.costPerRun`, "expected a finite number >= 0");
    }
    if (!Number.isSafeInteger(a.maxConcurrency) || (a.maxConcurrency as number) < 1) {
      throw bad(`${where}.maxConcurrency`, "expected an integer >= 1");
    }
    if (typeof a.invoke !== "function") throw bad(`${where}.invoke`, "expected a function");
  });
  return value as Agent[];
}
