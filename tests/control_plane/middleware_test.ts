import assert from "node:assert/strict";
import { deferred, MemorySink } from "./_memory_sink.ts";
import { FakeClock, type Identity } from "../../shared/mod.ts";
import type { AuditSink } from "../../control_plane/audit/types.ts";
import {
  ANONYMOUS_ACTOR,
  currentIdentity,
  Hs256JwtIdentityProvider,
  IdentityError,
  identityMiddleware,
  type RequestHandler,
  requireIdentity,
  type TokenVerifier,
} from "../../control_plane/identity/public.ts";

const SECRET = "middleware-test-secret-of-at-least-32-bytes";
const NOW_MS = Date.UTC(2026, 10, 25, 10, 0, 0);
const INFO = { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 4000 } } as const;

function setup(options: { audit?: AuditSink; realm?: string } = {}) {
  const clock = new FakeClock(NOW_MS);
  const provider = new Hs256JwtIdentityProvider({ secret: SECRET, clock });
  const calls: (Identity | undefined)[] = [];
  const handler = identityMiddleware(provider, options)(
    (_req: Request, info: typeof INFO) => {
      assert.equal(info, INFO);
      calls.push(currentIdentity());
      return Response.json({ subject: requireIdentity().subject });
    },
  );
  return { clock, provider, handler, calls };
}

function request(authorization?: string, path = "/v1/runs?x=1"): Request {
  const headers = new Headers();
  if (authorization !== undefined) headers.set("authorization", authorization);
  return new Request(`http://localhost${path}`, { method: "POST", headers });
}

async function assert401(
  response: Response,
  code: string,
  challenge: string,
): Promise<void> {
  assert.equal(response.status, 401);
  assert.equal(response.headers.get("www-authenticate"), challenge);
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.equal(response.headers.get("cache-control"), "no-store");
  assert.deepEqual(await response.json(), { error: code });
}

const MISSING = 'Bearer realm="plm"';
const INVALID = 'Bearer realm="plm", error="invalid_token"';

Deno.test("identityMiddleware() runs the handler with the verified identity bound", async () => {
  const { provider, handler, calls } = setup();
  const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
  const response = await handler(request(`Bearer ${token}`), INFO);
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { subject: "alice" });
  assert.equal(calls[0]?.subject, "alice");
  assert.equal(currentIdentity(), undefined);
});

Deno.test("identityMiddleware() accepts the scheme in any case", async (t) => {
  const { provider, handler } = setup();
  const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
  for (const scheme of ["bearer", "BEARER", "BeArEr"]) {
    await t.step(scheme, async () => {
      assert.equal((await handler(request(`${scheme} ${token}`), INFO)).status, 200);
    });
  }
});

Deno.test("identityMiddleware() answers 401 without an error code when no bearer token is sent", async (t) => {
  const cases: [string, string | undefined][] = [
    ["no Authorization header", undefined],
    ["another scheme", "Basic YWxpY2U6c2VjcmV0"],
    ["the scheme alone", "Bearer"],
    ["the scheme and a space", "Bearer "],
    ["a tab instead of the space (another scheme)", "Bearer\tabc"],
  ];
  for (const [name, authorization] of cases) {
    await t.step(name, async () => {
      const { handler, calls } = setup();
      await assert401(await handler(request(authorization), INFO), "ERR_TOKEN_MISSING", MISSING);
      assert.equal(calls.length, 0);
    });
  }
  await t.step("with a custom realm", async () => {
    const { handler } = setup({ realm: "runs-api" });
    await assert401(
      await handler(request(), INFO),
      "ERR_TOKEN_MISSING",
      'Bearer realm="runs-api"',
    );
  });
});

Deno.test("identityMiddleware() answers 401 invalid_token for a malformed Authorization header", async (t) => {
  const { provider } = setup();
  const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
  const cases: [string, string][] = [
    ["two spaces", `Bearer  ${token}`],
    ["two tokens", `Bearer ${token} ${token}`],
    ["a comma-joined second header", `Bearer ${token}, Bearer ${token}`],
    ["characters outside b64token", `Bearer ${token}!`],
  ];
  for (const [name, authorization] of cases) {
    await t.step(name, async () => {
      const { handler, calls } = setup();
      await assert401(await handler(request(authorization), INFO), "ERR_TOKEN_MALFORMED", INVALID);
      assert.equal(calls.length, 0);
    });
  }
});

Deno.test("identityMiddleware() answers 401 invalid_token with the code for a refused token", async (t) => {
  const { clock } = setup();
  const wrong = new Hs256JwtIdentityProvider({ secret: SECRET + "-wrong", clock });
  const cases: [string, () => Promise<string>, string][] = [
    [
      "wrong secret",
      () => wrong.issueToken({ subject: "a", actorKind: "human" }),
      "ERR_TOKEN_SIGNATURE_INVALID",
    ],
    ["not a JWT", () => Promise.resolve("abc.def"), "ERR_TOKEN_MALFORMED"],
    ["too large", () => Promise.resolve("a".repeat(9000)), "ERR_TOKEN_TOO_LARGE"],
    [
      "alg none",
      () => Promise.resolve("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30."),
      "ERR_TOKEN_ALG_NOT_ALLOWED",
    ],
  ];
  for (const [name, make, code] of cases) {
    await t.step(name, async () => {
      const { handler, calls } = setup();
      await assert401(await handler(request(`Bearer ${await make()}`), INFO), code, INVALID);
      assert.equal(calls.length, 0);
    });
  }
  await t.step("expired", async () => {
    const s = setup();
    const token = await s.provider.issueToken({ subject: "a", actorKind: "human" }, {
      ttlSeconds: 60,
    });
    s.clock.advance(91_000);
    await assert401(
      await s.handler(request(`Bearer ${token}`), INFO),
      "ERR_TOKEN_EXPIRED",
      INVALID,
    );
    assert.equal(s.calls.length, 0);
  });
});

Deno.test("identityMiddleware() keeps 40 concurrent requests' identities apart", async () => {
  const { provider } = setup();
  const gates = Array.from({ length: 40 }, deferred);
  const allArrived = deferred();
  let arrived = 0;
  const seen: string[][] = [];
  const handler = identityMiddleware(provider)(async (req: Request) => {
    const index = Number(new URL(req.url).searchParams.get("i"));
    const trail = [requireIdentity().subject];
    if (++arrived === gates.length) allArrived.resolve();
    await gates[index]!.promise;
    trail.push(requireIdentity().subject);
    await Promise.resolve();
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    trail.push(currentIdentity()?.subject ?? "none");
    seen[index] = trail;
    return new Response(requireIdentity().subject);
  });
  const tokens = await Promise.all(
    gates.map((_, i) => provider.issueToken({ subject: `user-${i}`, actorKind: "agent" })),
  );
  const responses = tokens.map((token, i) =>
    handler(request(`Bearer ${token}`, `/r?i=${i}`), INFO)
  );
  // Wait until all 40 handlers are suspended at once, then release them out of order.
  await allArrived.promise;
  const order = gates.map((_, i) => i).sort((a, b) => (a * 17) % 40 - (b * 17) % 40);
  for (const i of order) gates[i]!.resolve();
  const bodies = await Promise.all(responses.map(async (r) => await (await r).text()));
  bodies.forEach((body, i) => {
    assert.equal(body, `user-${i}`);
    assert.deepEqual(seen[i], [`user-${i}`, `user-${i}`, `user-${i}`]);
  });
  assert.equal(currentIdentity(), undefined);
});

Deno.test("identityMiddleware() leaves nothing bound after the handler, even when it throws", async () => {
  const { provider } = setup();
  const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
  const handler = identityMiddleware(provider)(async () => {
    await Promise.resolve();
    throw new Error("handler failed");
  });
  await assert.rejects(
    Promise.resolve(handler(request(`Bearer ${token}`), INFO)),
    /handler failed/,
  );
  assert.equal(currentIdentity(), undefined);
});

Deno.test("identityMiddleware() audits every rejection without the token", async (t) => {
  const audit = new MemorySink();
  const { provider, handler, clock } = setup({ audit });
  const wrong = new Hs256JwtIdentityProvider({ secret: SECRET + "-wrong", clock });
  const forged = await wrong.issueToken({ subject: "mallory", actorKind: "human" });
  const systemToken = await (async () => {
    const enc = (v: unknown) =>
      btoa(JSON.stringify(v)).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
    const h = enc({ alg: "HS256", typ: "JWT" });
    const now = NOW_MS / 1000;
    const p = enc({ sub: "cron", actor_kind: "system", iat: now, exp: now + 60 });
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(SECRET),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const sig = new Uint8Array(
      await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${h}.${p}`)),
    );
    return `${h}.${p}.${
      btoa(String.fromCharCode(...sig)).replaceAll("+", "-").replaceAll("/", "_").replaceAll(
        "=",
        "",
      )
    }`;
  })();

  await t.step("a missing token", async () => {
    await handler(request(undefined, "/v1/runs?access_token=leaky"), INFO);
    assert.deepEqual(audit.entries.at(-1), {
      actor: ANONYMOUS_ACTOR,
      action: "auth.token.rejected",
      resource: "http:POST /v1/runs",
      outcome: "denied",
      reason: "ERR_TOKEN_MISSING",
    });
  });
  await t.step("a forged token", async () => {
    await handler(request(`Bearer ${forged}`, "/v1/approvals/a-1"), INFO);
    assert.deepEqual(audit.entries.at(-1), {
      actor: { subject: "anonymous", kind: "service" },
      action: "auth.token.rejected",
      resource: "http:POST /v1/approvals/a-1",
      outcome: "denied",
      reason: "ERR_TOKEN_SIGNATURE_INVALID",
    });
  });
  await t.step("a claim failure names the claim", async () => {
    await handler(request(`Bearer ${systemToken}`), INFO);
    assert.deepEqual(audit.entries.at(-1)?.data, { claim: "actor_kind", reason: "forbidden" });
    assert.equal(audit.entries.at(-1)?.reason, "ERR_TOKEN_CLAIM_INVALID");
  });
  await t.step("a rejection carries the request's trace id", async () => {
    const traced = request(`Bearer ${forged}`);
    traced.headers.set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    await handler(traced, INFO);
    assert.equal(audit.entries.at(-1)?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  });
  await t.step("an accepted request is not audited", async () => {
    const before = audit.entries.length;
    const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
    assert.equal((await handler(request(`Bearer ${token}`), INFO)).status, 200);
    assert.equal(audit.entries.length, before);
  });
  await t.step("no entry contains a token or the query string", () => {
    assert.equal(audit.entries.length, 4);
    const text = JSON.stringify(audit.entries);
    for (const secretish of [forged, ...forged.split("."), systemToken.split(".")[2]!, "leaky"]) {
      assert.ok(!text.includes(secretish), `audit leaked ${secretish.slice(0, 12)}`);
    }
  });
});

Deno.test("identityMiddleware() lets errors other than IdentityError propagate", async () => {
  const boom: TokenVerifier = { verifyToken: () => Promise.reject(new Error("store down")) };
  let called = false;
  const handler: RequestHandler = identityMiddleware(boom)(() => {
    called = true;
    return new Response("ok");
  });
  await assert.rejects(Promise.resolve(handler(request("Bearer abc"), INFO)), /store down/);
  assert.equal(called, false);
});

Deno.test("identityMiddleware() works with any TokenVerifier", async () => {
  const calls: (string | null | undefined)[] = [];
  const verifier: TokenVerifier = {
    verifyToken(token) {
      calls.push(token);
      if (token === "good") {
        return Promise.resolve({ subject: "svc", actorKind: "service", roles: [], scopes: [] });
      }
      return Promise.reject(new IdentityError("ERR_TOKEN_EXPIRED", "Token expired"));
    },
  };
  const handler = identityMiddleware(verifier)(() => new Response(requireIdentity().subject));
  assert.equal(await (await handler(request("Bearer good"), INFO)).text(), "svc");
  await assert401(await handler(request("Bearer bad"), INFO), "ERR_TOKEN_EXPIRED", INVALID);
  assert.deepEqual(calls, ["good", "bad"]);
});

Deno.test("identityMiddleware() parses the header itself before asking the verifier", async (t) => {
  const calls: (string | null | undefined)[] = [];
  const permissive: TokenVerifier = {
    verifyToken(token) {
      calls.push(token);
      return Promise.resolve({ subject: "anyone", actorKind: "service", roles: [], scopes: [] });
    },
  };
  const handler = identityMiddleware(permissive)(() => new Response("ok"));
  for (const authorization of ["Bearer  abc", "Bearer abc def", "Bearer abc!", "Bearer a,b"]) {
    await t.step(JSON.stringify(authorization), async () => {
      await assert401(await handler(request(authorization), INFO), "ERR_TOKEN_MALFORMED", INVALID);
    });
  }
  await t.step("a missing token never reaches the verifier either", async () => {
    await assert401(await handler(request("Basic abc"), INFO), "ERR_TOKEN_MISSING", MISSING);
  });
  assert.deepEqual(calls, []);
  assert.equal((await handler(request("Bearer abc.def-_~+/=="), INFO)).status, 200);
  assert.deepEqual(calls, ["abc.def-_~+/=="]);
});

Deno.test("identityMiddleware() refuses a realm that would break the header", () => {
  const verifier: TokenVerifier = { verifyToken: () => Promise.reject(new Error("unused")) };
  assert.throws(() => identityMiddleware(verifier, { realm: 'a"b' }), TypeError);
});

Deno.test("identityMiddleware() plugs into Deno.serve on loopback", async () => {
  const { provider } = setup();
  const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    identityMiddleware(provider)((_req, info) =>
      Response.json({ subject: requireIdentity().subject, local: info.remoteAddr.hostname })
    ),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/v1/runs`;
    const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual(await ok.json(), { subject: "alice", local: "127.0.0.1" });
    const denied = await fetch(url);
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get("www-authenticate"), MISSING);
    assert.deepEqual(await denied.json(), { error: "ERR_TOKEN_MISSING" });
  } finally {
    await server.shutdown();
  }
});
