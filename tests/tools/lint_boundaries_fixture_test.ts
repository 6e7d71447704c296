/**
 * The permanent negative fixtures: for each contract, materialise an offending
 * file in a copy of the real tree, run the real `deno task lint:boundaries`,
 * expect it to trip with the contract name and `file:line`, delete the file and
 * expect the clean tree to pass again. Working on a copy keeps the test safe
 * when test files run in parallel.
 */
import assert from "node:assert/strict";
import { REPO, runTask } from "./_fixture.ts";

const SKIP = new Set([".git", "node_modules", ".tmp"]);

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (SKIP.has(entry.name)) continue;
    if (entry.isDirectory) await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

const PROBES = [
  {
    contract: "control_plane-must-not-depend-on-agent_runtime",
    file: "control_plane/_lint_fixtures/offending.ts",
    text: '// probe\nimport type { AgentRuntime } from "../../agent_runtime/mod.ts";\n',
    line: 2,
  },
  {
    contract: "shared-must-not-depend-on-layers",
    file: "shared/lint_probe.ts",
    text: 'import "../control_plane/mod.ts";\n',
    line: 1,
  },
  {
    contract: "layers-must-not-depend-on-delivery",
    file: "agent_runtime/lint_probe.ts",
    text: 'import "../server/mod.ts";\n',
    line: 1,
  },
  {
    contract: "server-must-not-depend-on-cli",
    file: "server/lint_probe.ts",
    text: '// probe\nimport "../cli/io.ts";\n',
    line: 2,
  },
  {
    contract: "plm_engine_core-must-not-depend-on-workbench",
    file: "control_plane/_lint_fixtures/offending.ts",
    text: '\n\nimport { bom } from "@tracepulse/plm-accelerators";\nexport { bom };\n',
    line: 3,
  },
  {
    contract: "with_system_identity-allowlist",
    file: "control_plane/_lint_fixtures/offending.ts",
    text:
      'import { withSystemIdentity } from "../identity/mod.ts";\nexport { withSystemIdentity };\n',
    line: 1,
  },
  {
    contract: "private-files-stay-in-their-folder",
    file: "control_plane/_lint_fixtures/offending.ts",
    text: 'import "../identity/_context.ts";\n',
    line: 1,
  },
] as const;

Deno.test("deno task lint:boundaries trips on each contract's negative fixture", async (t) => {
  const tree = await Deno.makeTempDir({ prefix: "boundaries_tree_" });
  try {
    await copyTree(REPO, tree);
    const clean = await runTask(tree);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /Contracts: 7 kept, 0 broken\./);

    for (const probe of PROBES) {
      await t.step(probe.contract, async () => {
        await Deno.writeTextFile(`${tree}/${probe.file}`, probe.text);
        try {
          const dirty = await runTask(tree);
          assert.equal(dirty.code, 1, dirty.stdout + dirty.stderr);
          assert.match(
            dirty.stdout,
            new RegExp(`^${probe.contract}: ${probe.file}:${probe.line}:\\d+ imports `, "m"),
          );
        } finally {
          await Deno.remove(`${tree}/${probe.file}`);
        }
        const again = await runTask(tree);
        assert.equal(again.code, 0, again.stdout + again.stderr);
      });
    }
  } finally {
    await Deno.remove(tree, { recursive: true });
  }
});
