/**
 * A by-convention guard beside the linter: the source text of the control
 * plane never names agent_runtime in an import, whatever the graph says.
 */
import assert from "node:assert/strict";
import { REPO } from "./_fixture.ts";

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* walk(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

const IMPORT_OF_RUNTIME =
  /(?:\bfrom\s*|\bimport\s*\(?\s*)["'][^"']*agent[_-]runtime[^"']*["']|export\s+[^;]*from\s*["'][^"']*agent[_-]runtime/;

Deno.test("control_plane/**/*.ts never imports agent_runtime", async () => {
  const offenders: string[] = [];
  let scanned = 0;
  for await (const path of walk(`${REPO}/control_plane`)) {
    scanned++;
    const text = await Deno.readTextFile(path);
    text.split("\n").forEach((line, i) => {
      if (IMPORT_OF_RUNTIME.test(line)) offenders.push(`${path.slice(REPO.length + 1)}:${i + 1}`);
    });
  }
  assert.ok(scanned > 1, "the scan saw the control plane");
  assert.deepEqual(offenders, []);
});

Deno.test("the agent_runtime import pattern matches every import form", () => {
  for (
    const line of [
      'import { x } from "../agent_runtime/mod.ts";',
      'import type { X } from "../../agent_runtime/agent.ts";',
      'const m = await import("../agent_runtime/mod.ts");',
      'export * from "../agent_runtime/mod.ts";',
      'import "@tracepulse/plm-engine-core/agent-runtime";',
    ]
  ) assert.match(line, IMPORT_OF_RUNTIME, line);
  assert.doesNotMatch('import { x } from "../shared/mod.ts";', IMPORT_OF_RUNTIME);
});

Deno.test("a layer's mod.ts names what it takes from the layers below, never export *", async () => {
  for (const layer of ["control_plane", "agent_runtime"]) {
    const text = await Deno.readTextFile(`${REPO}/${layer}/mod.ts`);
    assert.doesNotMatch(text, /export\s*\*\s*from\s*["']\.\.\//, `${layer}/mod.ts`);
    assert.match(text, /export\s*\{[^}]+\}\s*from\s*"\.\.\/shared\/mod\.ts"/, `${layer}/mod.ts`);
  }
});
