import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import { fakeIo } from "./_fake_io.ts";
import { runPlm } from "./_subprocess.ts";

Deno.test("main() refuses an argument that is not valid UTF-8, naming the option", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "plm_cli_test_" });
  try {
    await t.step("raw bytes in a subprocess", async () => {
      const result = await runPlm(["db", "migrate", "--db"], { printfArg: `${dir}/plm\\xff.db` });
      assert.equal(result.code, 1);
      assert.equal(result.stdout, "");
      assert.match(
        result.stderr,
        /^error: ERR_INVALID_ARGUMENT: Invalid --db: [^\n]*UTF-8[^\n]*\n$/,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no database was created");
    });
    const cases: [string, string[], RegExp][] = [
      ["an option value", ["runs", "submit", "--resource", "bom:\uFFFD"], /Invalid --resource: /],
      ["an --option=value", ["runs", "submit", "--resource=bom:\uFFFD"], /Invalid --resource: /],
      ["a positional", ["runs", "show", "r-\uFFFD"], /Invalid argument 3: /],
      ["U+0000", ["runs", "cancel", "r-1", "--reason", "a\0b"], /Invalid --reason: .*U\+0000/],
      ["a lone surrogate", ["audit", "verify", "--db", `${dir}/\ud800.db`], /Invalid --db: /],
    ];
    for (const [name, args, message] of cases) {
      await t.step(name, async () => {
        const io = fakeIo({ PLM_DB: `${dir}/plm.db` });
        assert.equal(await main(args, io), 1);
        assert.deepEqual(io.stdout, []);
        assert.equal(io.stderr.length, 1);
        assert.match(io.stderr[0] ?? "", /^error: ERR_INVALID_ARGUMENT: /);
        assert.match(io.stderr[0] ?? "", message);
        assert.deepEqual([...Deno.readDirSync(dir)], []);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main() reports a refused environment read as ERR_PERMISSION", async () => {
  const result = await runPlm(["audit", "verify"], { permissions: [] });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^error: ERR_PERMISSION: [^\n]*--allow-env[^\n]*\n$/);
});
