/**
 * The boundary linter on the real tree and on a generated 2,000-module graph,
 * each beside `deno info --json` alone on the same roots.
 */
import { lintBoundaries } from "../tools/lint_boundaries.ts";

const REPO = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");

/** A tree of `n` modules spread over the three layers, importing only downwards. */
async function generateTree(n: number): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "boundaries_bench_" });
  await Deno.copyFile(`${REPO}/boundaries.json`, `${root}/boundaries.json`);
  const layers = ["shared", "control_plane", "agent_runtime"] as const;
  for (const layer of layers) await Deno.mkdir(`${root}/${layer}/deep`, { recursive: true });
  const per = Math.floor(n / layers.length);
  for (let l = 0; l < layers.length; l++) {
    for (let i = 0; i < per; i++) {
      const imports: string[] = [];
      if (i > 0) imports.push(`./m${i - 1}.ts`);
      if (i > 1) imports.push(`./deep/m${(i * 7) % i}.ts`);
      if (l > 0) imports.push(`../${layers[l - 1]}/m${(i * 13) % per}.ts`);
      const text = imports.map((s) => `import ${JSON.stringify(s)};`).join("\n") +
        `\nexport const v${i} = ${i};\n`;
      await Deno.writeTextFile(`${root}/${layers[l]}/m${i}.ts`, text);
      await Deno.writeTextFile(`${root}/${layers[l]}/deep/m${i}.ts`, `export const d = ${i};\n`);
    }
  }
  return root;
}

async function listTs(dir: string, out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) await listTs(`${dir}/${e.name}`, out);
    else if (e.name.endsWith(".ts")) out.push(`${dir}/${e.name}`);
  }
  return out;
}

async function denoInfoAlone(root: string, dirs: string[]): Promise<void> {
  const files = (await Promise.all(dirs.map((d) => listTs(`${root}/${d}`)))).flat();
  const entry = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(entry, files.map((f) => `import "file://${f}";`).join("\n"));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    stdout: "piped",
    stderr: "null",
  }).output();
  await Deno.remove(entry);
  if (!out.success) throw new Error("deno info failed");
}

const generated = await generateTree(2_000);
const treeDirs = ["shared", "control_plane", "agent_runtime", "cli"];

Deno.bench("deno info --json alone (tree)", { group: "tree", baseline: true, n: 10 }, async () => {
  await denoInfoAlone(REPO, treeDirs);
});
Deno.bench("lint:boundaries (tree)", { group: "tree", n: 10 }, async () => {
  const report = await lintBoundaries({ root: REPO });
  if (report.broken !== 0) throw new Error("the tree breaks a contract");
});
Deno.bench(
  "deno info --json alone (2,000 modules)",
  { group: "generated", baseline: true, n: 5 },
  async () => {
    await denoInfoAlone(generated, ["shared", "control_plane", "agent_runtime"]);
  },
);
Deno.bench("lint:boundaries (2,000 modules)", { group: "generated", n: 5 }, async () => {
  const report = await lintBoundaries({ root: generated });
  if (report.broken !== 0 || report.errors.length !== 0) throw new Error("unexpected violation");
});

globalThis.addEventListener("unload", () => Deno.removeSync(generated, { recursive: true }));
