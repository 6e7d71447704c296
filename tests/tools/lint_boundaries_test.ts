import assert from "node:assert/strict";
import {
  ConfigError,
  formatReport,
  lintBoundaries,
  type LintReport,
  main,
} from "../../tools/lint_boundaries.ts";
import { makeTree } from "./_fixture.ts";

const SYS = "control_plane/identity/system_identity.ts";
const BASE: Record<string, string> = {
  "mod.ts": 'export * from "./control_plane/mod.ts";\nexport * from "./agent_runtime/mod.ts";\n',
  "shared/mod.ts": "export const shared = 1;\n",
  "control_plane/mod.ts":
    'export * from "../shared/mod.ts";\nexport * from "./identity/public.ts";\n',
  "control_plane/identity/public.ts": "export function requireIdentity() {}\n",
  [SYS]: "export function withSystemIdentity() {}\n",
  "control_plane/identity/mod.ts":
    'export * from "./public.ts";\nexport * from "./system_identity.ts";\n',
  "control_plane/identity/_context.ts": "export const store = 1;\n",
  "agent_runtime/mod.ts": 'export * from "../control_plane/mod.ts";\nexport const rt = 1;\n',
  "agent_runtime/runtime.ts": "export const runtime = 1;\n",
  "cli.ts": 'import { withSystemIdentity } from "./control_plane/identity/mod.ts";\n' +
    "withSystemIdentity();\n",
};

async function lint(files: Record<string, string>, config?: unknown): Promise<LintReport> {
  const root = await makeTree({ ...BASE, ...files }, config);
  try {
    return await lintBoundaries({ root });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function broken(report: LintReport, contract: string) {
  return report.contracts.find((c) => c.name === contract)?.violations ?? [];
}

const CP_AR = "control_plane-must-not-depend-on-agent_runtime";

Deno.test("lintBoundaries() keeps every contract on a clean tree", async () => {
  const report = await lint({});
  assert.deepEqual(report.errors, []);
  assert.equal(report.broken, 0);
  assert.equal(report.kept, 7);
  assert.match(formatReport(report), /^Contracts: 7 kept, 0 broken\.$/m);
});

Deno.test("lintBoundaries() reports a direct import with file:line:col", async () => {
  const report = await lint({
    "control_plane/x.ts":
      '// leading comment\nimport { runtime } from "../agent_runtime/runtime.ts";\n',
  });
  const [v, ...rest] = broken(report, CP_AR);
  assert.equal(rest.length, 0);
  assert.equal(v?.importer, "control_plane/x.ts");
  assert.equal(v?.line, 2);
  assert.equal(v?.col, 25);
  assert.equal(v?.chain, undefined);
  assert.match(
    formatReport(report),
    new RegExp(`^${CP_AR}: control_plane/x.ts:2:25 imports ../agent_runtime/runtime.ts$`, "m"),
  );
});

Deno.test("lintBoundaries() counts a type-only import", async () => {
  const report = await lint({
    "control_plane/x.ts": 'import type { runtime } from "../agent_runtime/runtime.ts";\n' +
      "export type T = typeof runtime;\n",
  });
  assert.equal(broken(report, CP_AR)[0]?.line, 1);
});

Deno.test("lintBoundaries() counts a literal dynamic import", async () => {
  const report = await lint({
    "control_plane/x.ts": 'export const load = () => import("../agent_runtime/runtime.ts");\n',
  });
  assert.equal(broken(report, CP_AR)[0]?.specifier, "../agent_runtime/runtime.ts");
});

Deno.test("lintBoundaries() reports an indirect edge with its whole chain", async (t) => {
  await t.step("through the root mod.ts", async () => {
    const report = await lint({ "control_plane/x.ts": 'import "../mod.ts";\n' });
    const [v] = broken(report, CP_AR);
    assert.deepEqual(v?.chain, ["control_plane/x.ts", "mod.ts", "agent_runtime/mod.ts"]);
    assert.match(formatReport(report), /via control_plane\/x\.ts -> mod\.ts -> agent_runtime/);
  });
  await t.step("through shared/", async () => {
    const report = await lint({
      "control_plane/x.ts": 'import "../shared/bridge.ts";\n',
      "shared/bridge.ts": 'import "../agent_runtime/runtime.ts";\n',
    });
    assert.deepEqual(broken(report, CP_AR)[0]?.chain, [
      "control_plane/x.ts",
      "shared/bridge.ts",
      "agent_runtime/runtime.ts",
    ]);
    assert.equal(
      broken(report, "shared-must-not-depend-on-layers")[0]?.importer,
      "shared/bridge.ts",
    );
  });
});

Deno.test("lintBoundaries() trips on a workbench import that cannot resolve", async () => {
  const report = await lint({
    "agent_runtime/x.ts": 'import { bom } from "plm-accelerators/bom";\nexport const b = bom;\n',
    "shared/y.ts": 'import "npm:plm_accelerators@1";\n',
  });
  const found = broken(report, "plm_engine_core-must-not-depend-on-workbench");
  assert.deepEqual(found.map((v) => `${v.importer}:${v.line}`).sort(), [
    "agent_runtime/x.ts:1",
    "shared/y.ts:1",
  ]);
});

Deno.test("lintBoundaries() allows withSystemIdentity only to the allowlist", async (t) => {
  await t.step("a direct importer outside the allowlist", async () => {
    const report = await lint({
      "agent_runtime/cron.ts":
        'import { withSystemIdentity } from "../control_plane/identity/system_identity.ts";\n' +
        "withSystemIdentity();\n",
    });
    const found = broken(report, "with_system_identity-allowlist");
    assert.deepEqual(found.map((v) => `${v.importer}:${v.line}`), ["agent_runtime/cron.ts:1"]);
  });
  await t.step("through identity/mod.ts under another name", async () => {
    const report = await lint({
      "control_plane/x.ts":
        'import { requireIdentity, withSystemIdentity as sys } from "./identity/mod.ts";\n',
    });
    const [v] = broken(report, "with_system_identity-allowlist");
    assert.deepEqual(v?.chain, ["control_plane/x.ts", "control_plane/identity/mod.ts", SYS]);
  });
  await t.step("a namespace import of identity/mod.ts", async () => {
    const report = await lint({
      "control_plane/x.ts": 'import * as id from "./identity/mod.ts";\n',
    });
    assert.equal(broken(report, "with_system_identity-allowlist").length, 1);
  });
  await t.step("other names from identity/mod.ts are fine", async () => {
    const report = await lint({
      "control_plane/x.ts": 'import { requireIdentity } from "./identity/mod.ts";\n',
    });
    assert.equal(report.broken, 0);
  });
});

Deno.test("lintBoundaries() reports every barrel that passes withSystemIdentity on", async () => {
  const report = await lint({
    "control_plane/mod.ts":
      'export * from "../shared/mod.ts";\nexport * from "./identity/mod.ts";\n',
  });
  const found = broken(report, "with_system_identity-allowlist");
  assert.deepEqual(found.map((v) => v.importer).sort(), [
    "agent_runtime/mod.ts",
    "control_plane/mod.ts",
    "mod.ts",
    "mod.ts",
  ]);
  const leak = found.find((v) => v.importer === "control_plane/mod.ts");
  assert.equal(leak?.line, 2);
});

Deno.test("lintBoundaries() keeps _private.ts files inside their folder", async () => {
  const report = await lint({
    "control_plane/identity/ok.ts":
      'import { store } from "./_context.ts";\nexport const s = store;\n',
    "control_plane/runs.ts":
      'import { store } from "./identity/_context.ts";\nexport const s = store;\n',
  });
  const found = broken(report, "private-files-stay-in-their-folder");
  assert.deepEqual(found.map((v) => `${v.importer}:${v.line}:${v.col}`), [
    "control_plane/runs.ts:1:23",
  ]);
});

Deno.test("lintBoundaries() fails closed on a module deno info cannot load", async (t) => {
  await t.step("a missing file", async () => {
    const report = await lint({ "control_plane/x.ts": 'import "./gone.ts";\n' });
    assert.equal(report.errors.length, 1);
    assert.equal(report.errors[0]?.module, "control_plane/gone.ts");
    assert.equal(report.errors[0]?.at, "control_plane/x.ts:1:8");
  });
  await t.step("a syntax error in an analysed file nothing imports", async () => {
    const report = await lint({ "agent_runtime/broken.ts": "export const = ;\n" });
    assert.equal(report.errors[0]?.module, "agent_runtime/broken.ts");
    assert.match(formatReport(report), /graph error: .*agent_runtime\/broken\.ts/);
  });
  await t.step("an unresolvable package", async () => {
    const report = await lint({ "shared/x.ts": 'import "left-pad";\n' });
    assert.equal(report.errors[0]?.at, "shared/x.ts:1:8");
  });
});

Deno.test("lintBoundaries() honours exemptions that cite an existing ADR", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../boundaries.json", import.meta.url)),
  );
  config.contracts[0].ignore = [{
    from: "control_plane/x.ts",
    to: "agent_runtime/runtime.ts",
    adr: "docs/adr/0099-exempt.md",
  }];
  const files = {
    "control_plane/x.ts": 'import "../agent_runtime/runtime.ts";\n',
    "docs/adr/0099-exempt.md": "# 0099\n",
  };
  const report = await lint(files, config);
  assert.equal(report.broken, 0);

  await assert.rejects(
    () => lint({ "docs/adr/0099-exempt.md": "# 0099\n" }, config),
    (err: unknown) => err instanceof ConfigError && /matches no import/.test(err.message),
    "a stale exemption fails the run",
  );
  await assert.rejects(
    () => lint({ "control_plane/x.ts": files["control_plane/x.ts"] }, config),
    (err: unknown) => err instanceof ConfigError && /does not exist/.test(err.message),
    "an exemption whose ADR is missing fails the run",
  );
  delete config.contracts[0].ignore[0].adr;
  await assert.rejects(() => lint(files, config), ConfigError, "an exemption without an ADR");
});

Deno.test("main() exits 0, 1 and 2 and prints JSON with --json", async () => {
  const clean = await makeTree(BASE);
  const dirty = await makeTree({
    ...BASE,
    "control_plane/x.ts": 'import "../agent_runtime/mod.ts";\n',
  });
  const bad = await makeTree(BASE, { analyse: [], contracts: [] });
  const log = console.log;
  const error = console.error;
  const printed: string[] = [];
  console.log = (line: string) => void printed.push(line);
  console.error = (line: string) => void printed.push(line);
  try {
    assert.equal(await main(["--root", clean]), 0);
    assert.equal(await main(["--root", dirty]), 1);
    printed.length = 0;
    assert.equal(await main(["--root", dirty, "--json"]), 1);
    const json = JSON.parse(printed.join("\n"));
    assert.equal(json.broken, 1);
    assert.equal(json.contracts[0].violations[0].importer, "control_plane/x.ts");
    assert.equal(await main(["--root", bad]), 2);
    assert.equal(await main(["--bogus"]), 2);
  } finally {
    console.log = log;
    console.error = error;
    for (const dir of [clean, dirty, bad]) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lintBoundaries() keeps the layers off the delivery layers, and server/ off cli/", async () => {
  const report = await lint({
    "server/mod.ts": 'import "../control_plane/mod.ts";\nexport const app = 1;\n',
    "cli/serve.ts": 'import "../server/mod.ts";\n',
    "control_plane/leak.ts": '// probe\nimport "../server/mod.ts";\n',
    "server/leak.ts": 'import "../cli/serve.ts";\n',
  });
  const layers = broken(report, "layers-must-not-depend-on-delivery");
  assert.deepEqual(layers.map((v) => [v.importer, v.line]), [["control_plane/leak.ts", 2]]);
  const server = broken(report, "server-must-not-depend-on-cli");
  assert.deepEqual(server.map((v) => v.importer), ["server/leak.ts"]);
});
