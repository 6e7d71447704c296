import assert from "node:assert/strict";
import * as jose from "jose";
import { main } from "../../cli.ts";
import { fakeIo } from "./_fake_io.ts";
import { runPlm } from "./_subprocess.ts";

const SECRET = "cli-test-secret-of-at-least-32-bytes-long";

async function issue(args: string[], env: Record<string, string> = { PLM_JWT_SECRET: SECRET }) {
  const io = fakeIo(env);
  const code = await main(["auth", "issue-token", ...args], io);
  return { code, io, token: io.stdout[0] ?? "" };
}

// ---------------------------------------------------------------------------
// In process

Deno.test("plm auth --help prints USAGE and OPTIONS with defaults", async () => {
  const io = fakeIo();
  assert.equal(await main(["auth", "--help"], io), 0);
  const help = io.stdout.join("\n");
  assert.match(help, /USAGE:/);
  assert.match(help, /OPTIONS:/);
  assert.match(help, /--ttl <SECONDS>.*\(default: 3600\)/);
  assert.match(help, /PLM_JWT_SECRET/);
  assert.match(help, /issue-token/);
  assert.match(help, /verify \[TOKEN\]/);
});

Deno.test("plm auth issue-token prints only a token with the requested claims", async () => {
  const { code, io, token } = await issue([
    "--subject",
    "alice",
    "--actor-kind",
    "human",
    "--role",
    "approver",
    "--role",
    "viewer",
    "--scope",
    "runs:read runs:write",
    "--scope",
    "audit:read",
    "--tenant",
    "acme",
    "--ttl",
    "120",
    "--issuer",
    "plm-cli",
    "--audience",
    "plm-api",
  ]);
  assert.equal(code, 0);
  assert.equal(io.stdout.length, 1);
  assert.deepEqual(io.stderr, []);
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const { payload } = await jose.jwtVerify(token, new TextEncoder().encode(SECRET), {
    algorithms: ["HS256"],
    issuer: "plm-cli",
    audience: "plm-api",
  });
  assert.equal(payload.sub, "alice");
  assert.equal(payload.actor_kind, "human");
  assert.deepEqual(payload.roles, ["approver", "viewer"]);
  assert.equal(payload.scope, "runs:read runs:write audit:read");
  assert.equal(payload.tenant, "acme");
  assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 120);
});

Deno.test("plm auth verify prints the identity as JSON", async (t) => {
  const { token } = await issue(["--subject", "bot-1", "--actor-kind", "agent", "--scope", "a b"]);

  await t.step("token as an argument", async () => {
    const io = fakeIo({ PLM_JWT_SECRET: SECRET });
    assert.equal(await main(["auth", "verify", token], io), 0);
    const identity = JSON.parse(io.stdout.join("\n"));
    assert.equal(identity.subject, "bot-1");
    assert.equal(identity.actorKind, "agent");
    assert.deepEqual(identity.scopes, ["a", "b"]);
  });
  await t.step("token from standard input, trimmed", async () => {
    const io = fakeIo({ PLM_JWT_SECRET: SECRET }, `\n  ${token}  \n`);
    assert.equal(await main(["auth", "verify"], io), 0);
    assert.equal(JSON.parse(io.stdout[0] ?? "").subject, "bot-1");
  });
});

Deno.test("plm auth verify exits 1 with the error code for a refused token", async (t) => {
  const { token } = await issue(["--subject", "alice", "--actor-kind", "human"]);
  const cases: [string, string[], Record<string, string>, string, string?][] = [
    ["wrong secret", [token], { PLM_JWT_SECRET: SECRET + "-other" }, "ERR_TOKEN_SIGNATURE_INVALID"],
    ["garbage", ["not-a-token"], { PLM_JWT_SECRET: SECRET }, "ERR_TOKEN_MALFORMED"],
    ["empty standard input", [], { PLM_JWT_SECRET: SECRET }, "ERR_TOKEN_MISSING"],
    [
      "issuer required from PLM_JWT_ISSUER",
      [token],
      { PLM_JWT_SECRET: SECRET, PLM_JWT_ISSUER: "plm" },
      "ERR_TOKEN_CLAIM_INVALID",
    ],
    [
      "audience required from --audience",
      [token, "--audience", "api"],
      { PLM_JWT_SECRET: SECRET },
      "ERR_TOKEN_CLAIM_INVALID",
    ],
  ];
  for (const [name, args, env, code] of cases) {
    await t.step(name, async () => {
      const io = fakeIo(env);
      assert.equal(await main(["auth", "verify", ...args], io), 1);
      assert.deepEqual(io.stdout, []);
      assert.match(io.stderr.join("\n"), new RegExp(`^error: ${code}: `));
      assert.ok(!io.stderr.join("\n").includes(token), "the token is not echoed");
    });
  }
});

Deno.test("plm auth issue-token takes issuer and audience from the environment", async () => {
  const env = { PLM_JWT_SECRET: SECRET, PLM_JWT_ISSUER: "env-iss", PLM_JWT_AUDIENCE: "env-aud" };
  const { code, token } = await issue(["--subject", "svc", "--actor-kind", "service"], env);
  assert.equal(code, 0);
  const payload = jose.decodeJwt(token);
  assert.equal(payload.iss, "env-iss");
  assert.equal(payload.aud, "env-aud");
  const io = fakeIo(env);
  assert.equal(await main(["auth", "verify", token], io), 0);
});

Deno.test("plm auth reads the secret from --secret-file", async () => {
  const path = await Deno.makeTempFile({ prefix: "plm_auth_secret_" });
  try {
    await Deno.writeTextFile(path, `${SECRET}\n`);
    const { code, token } = await issue(
      ["--subject", "alice", "--actor-kind", "human", "--secret-file", path],
      {},
    );
    assert.equal(code, 0);
    // The trailing newline is not part of the secret.
    await jose.jwtVerify(token, new TextEncoder().encode(SECRET));
    const io = fakeIo({ PLM_JWT_SECRET: SECRET + "-ignored" });
    assert.equal(await main(["auth", "verify", token, "--secret-file", path], io), 0);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("plm auth exits 1 when the secret file cannot be read", async () => {
  const io = fakeIo();
  const args = ["auth", "verify", "x", "--secret-file", "/nonexistent/plm-secret"];
  assert.equal(await main(args, io), 1);
  assert.match(io.stderr[0] ?? "", /^error: ERR_INVALID_ARGUMENT: Cannot read the secret file/);
});

Deno.test("plm auth prints one error line, not the help, for a missing or short secret", async (t) => {
  const base = ["--subject", "a", "--actor-kind", "human"];
  const cases: [string, string[], Record<string, string>][] = [
    ["no secret", ["issue-token", ...base], {}],
    ["empty secret", ["verify", "x"], { PLM_JWT_SECRET: "" }],
    ["short secret", ["issue-token", ...base], { PLM_JWT_SECRET: "short" }],
  ];
  for (const [name, args, env] of cases) {
    await t.step(name, async () => {
      const io = fakeIo(env);
      assert.equal(await main(["auth", ...args], io), 1);
      assert.deepEqual(io.stdout, []);
      assert.equal(io.stderr.length, 1);
      assert.match(
        io.stderr[0] ?? "",
        /^error: ERR_INVALID_ARGUMENT: [^\n]*(PLM_JWT_SECRET|short)/,
      );
    });
  }
});

Deno.test("plm auth reports usage errors with exit 2 and help on stderr", async (t) => {
  const base = ["--subject", "a", "--actor-kind", "human"];
  const env = { PLM_JWT_SECRET: SECRET };
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    [
      "secret as a flag",
      ["issue-token", ...base, "--secret", SECRET],
      env,
      /never taken from a flag/,
    ],
    ["secret as a flag=value", ["issue-token", ...base, `--secret=${SECRET}`], env, /never taken/],
    ["no subcommand", [], env, /missing subcommand/],
    ["unknown subcommand", ["revoke"], env, /unknown subcommand 'revoke'/],
    ["missing subject", ["issue-token", "--actor-kind", "human"], env, /missing --subject/],
    ["missing actor kind", ["issue-token", "--subject", "a"], env, /missing --actor-kind/],
    [
      "system actor kind",
      ["issue-token", "--subject", "a", "--actor-kind", "system"],
      env,
      /system/,
    ],
    [
      "unknown actor kind",
      ["issue-token", "--subject", "a", "--actor-kind", "robot"],
      env,
      /robot/,
    ],
    ["ttl over the maximum", ["issue-token", ...base, "--ttl", "86401"], env, /--ttl/],
    ["ttl not a number", ["issue-token", ...base, "--ttl", "1h"], env, /--ttl/],
    ["unknown option", ["issue-token", ...base, "--admin"], env, /--admin/],
    ["positional to issue-token", ["issue-token", ...base, "extra"], env, /extra/],
    ["two tokens to verify", ["verify", "a", "b"], env, /unexpected argument 'b'/],
  ];
  for (const [name, args, envVars, message] of cases) {
    await t.step(name, async () => {
      const io = fakeIo(envVars);
      assert.equal(await main(["auth", ...args], io), 2);
      assert.deepEqual(io.stdout, []);
      const stderr = io.stderr.join("\n");
      assert.match(stderr, message);
      assert.match(stderr, /USAGE:/);
      assert.ok(!stderr.includes(SECRET), "the secret is not echoed");
    });
  }
});

// ---------------------------------------------------------------------------
// End to end, in a subprocess

function plm(args: string[], env: Record<string, string>, stdin?: string) {
  return runPlm(args, stdin === undefined ? { env } : { env, stdin });
}

Deno.test("plm auth issue-token then verify works end to end in a subprocess", async (t) => {
  const env = { PLM_JWT_SECRET: SECRET };
  const issued = await plm(
    ["auth", "issue-token", "--subject", "alice", "--actor-kind", "human", "--role", "approver"],
    env,
  );
  assert.equal(issued.code, 0, issued.stderr);
  const token = issued.stdout.trim();
  assert.equal(issued.stdout, `${token}\n`, "only the token is printed");
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);

  await t.step("verify with the token as an argument", async () => {
    const verified = await plm(["auth", "verify", token], env);
    assert.equal(verified.code, 0, verified.stderr);
    const identity = JSON.parse(verified.stdout);
    assert.equal(identity.subject, "alice");
    assert.equal(identity.actorKind, "human");
    assert.deepEqual(identity.roles, ["approver"]);
  });
  await t.step("verify with the token on standard input", async () => {
    const verified = await plm(["auth", "verify"], env, `${token}\n`);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(JSON.parse(verified.stdout).subject, "alice");
  });
  await t.step("a wrong secret exits 1", async () => {
    const verified = await plm(["auth", "verify", token], { PLM_JWT_SECRET: SECRET + "-other" });
    assert.equal(verified.code, 1);
    assert.equal(verified.stdout, "");
    assert.match(verified.stderr, /^error: ERR_TOKEN_SIGNATURE_INVALID: /);
  });
});

Deno.test("plm auth issue-token without a secret prints one error line in a subprocess", async () => {
  const result = await plm(["auth", "issue-token", "--subject", "a", "--actor-kind", "human"], {});
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.match(
    result.stderr,
    /^error: ERR_INVALID_ARGUMENT: No secret[^\n]*PLM_JWT_SECRET[^\n]*\n$/,
  );
});
