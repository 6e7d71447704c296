import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import { Hs256JwtIdentityProvider } from "../../control_plane/mod.ts";
import { fakeIo } from "./_fake_io.ts";

const SECRET = "cli-agents-test-secret-of-at-least-32-bytes";
const AGENT = { id: "remote", url: "http://127.0.0.1:9/invoke" };

Deno.test("plm runs submit refuses an agents file that does not match the schema", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "plm_cli_test_" });
  const token = await new Hs256JwtIdentityProvider({ secret: SECRET })
    .issueToken({ subject: "planner", actorKind: "agent" });
  const env = { PLM_DB: `${dir}/plm.db`, PLM_JWT_SECRET: SECRET, PLM_TOKEN: token };
  const cases: [string, unknown, RegExp][] = [
    ["an unknown key", [{ ...AGENT, timeout: 5 }], /agents\[0\]: .*timeout/],
    ["a misspelt key", [{ id: "remote", urll: AGENT.url }], /agents\[0\]\.url: .*agents\[0\]: /],
    ["a wrong type", [{ ...AGENT, tier: "1" }], /agents\[0\]\.tier: /],
    [
      "a fractional concurrency",
      [{ ...AGENT, maxConcurrency: 1.5 }],
      /agents\[0\]\.maxConcurrency/,
    ],
    ["capabilities as a string", [{ ...AGENT, capabilities: "bom" }], /agents\[0\]\.capabilities/],
    ["a bad URL", [{ ...AGENT, url: "not a url" }], /agents\[0\]\.url: /],
    ["a URL that is not HTTP", [{ ...AGENT, url: "file:///etc/passwd" }], /agents\[0\]\.url: /],
    ["an empty list", [], /agents: /],
    ["an object, not a list", AGENT, /agents: /],
    ["duplicate ids", [AGENT, { ...AGENT }], /agents\[1\]\.id: Duplicate id 'remote'/],
    ["a NUL in an id", [{ ...AGENT, id: "re\0mote" }], /agents\[0\]\.id: /],
  ];
  try {
    for (const [name, content, message] of cases) {
      await t.step(name, async () => {
        const file = `${dir}/agents.json`;
        await Deno.writeTextFile(file, JSON.stringify(content));
        const io = fakeIo(env);
        const args = ["runs", "submit", "--action", "a", "--resource", "r:1", "--agents", file];
        assert.equal(await main(args, io), 1);
        assert.deepEqual(io.stdout, []);
        assert.equal(io.stderr.length, 1);
        assert.match(io.stderr[0] ?? "", /^error: ERR_INVALID_ARGUMENT: /);
        assert.match(io.stderr[0] ?? "", message);
        assert.throws(() => Deno.statSync(env.PLM_DB), Deno.errors.NotFound, "no run was created");
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
