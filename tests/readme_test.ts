/**
 * The README is a promise: its usage example (not run, since it serves HTTP)
 * must at least type-check against the real public API.
 */
import assert from "node:assert/strict";

const REPO = decodeURIComponent(new URL("../", import.meta.url).pathname);

Deno.test("README usage example type-checks against the public API", async () => {
  const readme = await Deno.readTextFile(`${REPO}README.md`);
  const blocks = [...readme.matchAll(/```ts ignore\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 1, "the README has its usage example");
  const file = await Deno.makeTempFile({ dir: REPO, prefix: ".readme_example_", suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, blocks.join("\n"));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", file],
      cwd: REPO,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(file);
  }
});
