import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import { Hs256JwtIdentityProvider } from "../../control_plane/mod.ts";

const SECRET = "cli-runs-test-secret-of-at-least-32-bytes";

async function setUp() {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/policy.json`,
    JSON.stringify({
      rules: [
        { id: "updates", effect: "allow", actions: ["bom.update"] },
        { id: "no-deletes", effect: "deny", actions: ["bom.delete"] },
      ],
    }),
  );
  const provider = new Hs256JwtIdentityProvider({ secret: SECRET });
  const token = await provider.issueToken({ subject: "planner", actorKind: "agent" });
  const env: Record<string, string> = {
    PLM_DB: `${dir}/plm.db`,
    PLM_JWT_SECRET: SECRET,
    PLM_TOKEN: token,
    PLM_POLICY: `${dir}/policy.json`,
  };
  const run = async (args: string[], overrides: Record<string, string | undefined> = {}) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(["runs", ...args], {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      readStdin: () => Promise.resolve(""),
      env: (name) => (name in overrides ? overrides[name] : env[name]),
    });
    return { code, out, err };
  };
  return { dir, run };
}

Deno.test("plm runs submit decides under the policy and records the run", async () => {
  const { dir, run } = await setUp();
  try {
    const allowed = await run(["submit", "--action", "bom.update", "--resource", "bom:1"]);
    assert.equal(allowed.code, 0, allowed.err.join("\n"));
    const [id, state] = allowed.out[0]!.split(" ");
    assert.equal(state, "queued", "allowed, waiting for a worker (no agents given)");
    const denied = await run(["submit", "--action", "bom.delete", "--resource", "bom:1"]);
    assert.match(denied.out[0] ?? "", / rejected ERR_FORBIDDEN: /);

    const listed = await run(["list", "--state", "queued"]);
    assert.deepEqual(listed.out.map((l) => JSON.parse(l).id), [id]);
    const shown = await run(["show", id!]);
    assert.equal(shown.code, 0);
    assert.match(shown.out.join("\n"), /run\.created\s+queued\s+planner/);
    assert.match(shown.out.join("\n"), /policy\.decide\s+allow/);

    const cancelled = await run(["cancel", id!, "--reason", "changed plan"]);
    assert.equal(cancelled.out[0], `${id} cancelled`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plm runs cancel is governed: another identity is refused and audited", async () => {
  const { dir, run } = await setUp();
  try {
    const submitted = await run(["submit", "--action", "bom.update", "--resource", "bom:2"]);
    const [id] = submitted.out[0]!.split(" ");
    const provider = new Hs256JwtIdentityProvider({ secret: SECRET });
    const mallory = await provider.issueToken({ subject: "mallory", actorKind: "human" });
    const refused = await run(["cancel", id!], { PLM_TOKEN: mallory });
    assert.equal(refused.code, 1);
    assert.match(refused.err[0] ?? "", /^error: ERR_FORBIDDEN: /);
    const shown = await run(["show", id!]);
    assert.match(shown.out.join("\n"), /run\.cancel\s+denied\s+mallory/);
    const queued = await run(["list", "--state", "queued"]);
    assert.deepEqual(queued.out.map((line) => JSON.parse(line).id), [id], "still queued");
    const admin = await provider.issueToken({
      subject: "root",
      actorKind: "human",
      roles: ["run-admin"],
    });
    const cancelled = await run(["cancel", id!, "--reason", "ops"], { PLM_TOKEN: admin });
    assert.equal(cancelled.out[0], `${id} cancelled`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plm runs submit fails closed without a valid token", async () => {
  const { dir, run } = await setUp();
  try {
    const missing = await run(["submit", "--action", "bom.update", "--resource", "bom:1"], {
      PLM_TOKEN: undefined,
    });
    assert.equal(missing.code, 1);
    assert.deepEqual(missing.err.length, 1, "one line, not the help");
    assert.match(missing.err[0] ?? "", /^error: ERR_IDENTITY_REQUIRED: .*PLM_TOKEN/);
    const forged = await run(["submit", "--action", "bom.update", "--resource", "bom:1"], {
      PLM_JWT_SECRET: "another-secret-that-is-32-bytes-long!!",
    });
    assert.equal(forged.code, 1);
    assert.match(forged.err[0] ?? "", /^error: ERR_TOKEN_SIGNATURE_INVALID: /);
    const usage = await run(["submit", "--resource", "bom:1"]);
    assert.equal(usage.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plm runs submit --wait runs the task on an HTTP agent", async () => {
  const { dir, run } = await setUp();
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    seen.push(req.headers.get("traceparent") ?? "none");
    const body = await req.json();
    return Response.json({ echoed: body.task.resource });
  });
  try {
    await Deno.writeTextFile(
      `${dir}/agents.json`,
      JSON.stringify([{ id: "remote", url: `http://127.0.0.1:${server.addr.port}/invoke` }]),
    );
    const done = await run([
      "submit",
      "--action",
      "bom.update",
      "--resource",
      "bom:9",
      "--agents",
      `${dir}/agents.json`,
      "--wait",
    ]);
    assert.equal(done.code, 0, done.err.join("\n"));
    assert.match(done.out[0] ?? "", / succeeded$/);
    assert.equal(seen.length, 1);
    assert.match(seen[0]!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plm runs list pages newest first with -n and --cursor, limits 1..1000", async () => {
  const { dir, run } = await setUp();
  try {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const submitted = await run(["submit", "--action", "bom.update", "--resource", `bom:${i}`]);
      ids.push(submitted.out[0]!.split(" ")[0]!);
    }
    const first = await run(["list", "-n", "2"]);
    assert.equal(first.code, 0, first.err.join("\n"));
    const page1 = first.out.map((l) => JSON.parse(l).id);
    const cursor = /^next: --cursor (\S+)$/.exec(first.err[0] ?? "")?.[1];
    assert.ok(cursor !== undefined, `a cursor on stderr: ${first.err}`);
    const second = await run(["list", "-n", "2", "--cursor", cursor]);
    assert.equal(second.code, 0, second.err.join("\n"));
    assert.deepEqual(second.err, [], "the last page has no cursor");
    const page2 = second.out.map((l) => JSON.parse(l).id);
    const all = (await run(["list"])).out.map((l) => JSON.parse(l));
    assert.deepEqual([...page1, ...page2], all.map((r) => r.id), "the pages make the whole list");
    assert.deepEqual(new Set(all.map((r) => r.id)), new Set(ids));
    assert.ok(all.every((r, i) => i === 0 || all[i - 1].createdAt >= r.createdAt), "newest first");

    for (const n of ["0", "1001", "-1", "1.5", "ten", ""]) {
      const bad = await run(["list", "-n", n]);
      assert.equal(bad.code, 2, `-n ${n}`);
    }
    const forged = await run(["list", "--cursor", "not-a-cursor"]);
    assert.equal(forged.code, 1);
    assert.match(forged.err[0] ?? "", /^error: ERR_INVALID_ARGUMENT: .*cursor/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plm runs submit reports a policy file it cannot read by its option", async () => {
  const { dir, run } = await setUp();
  try {
    const missing = `${dir}/no-such-policy.json`;
    const result = await run(["submit", "--action", "bom.update", "--resource", "bom:1"], {
      PLM_POLICY: missing,
    });
    assert.equal(result.code, 1);
    assert.match(
      result.err[0] ?? "",
      /^error: ERR_INVALID_ARGUMENT: Invalid --policy .*no-such-policy/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
