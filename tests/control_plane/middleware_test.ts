import assert from "node:assert/strict";
import { deferred, MemorySink } from "./_memory_sink.ts";
import { FakeClock, FakeTimers, type Identity, type JsonValue } from "../../shared/mod.ts";
import { canonicalJson } from "../../shared/canonical_json.ts";
import { AuditLog } from "../../control_plane/audit/audit_log.ts";
import { openStore } from "../../control_plane/store/mod.ts";
import {
  ANONYMOUS_ACTOR,
  currentIdentity,
  Hs256JwtIdentityProvider,
  IdentityError,
  identityMiddleware,
  type IdentityMiddlewareOptions,
  type RequestHandler,
  requireIdentity,
  type TokenVerifier,
} from "../../control_plane/identity/public.ts";

const SECRET = "middleware-test-secret-of-at-least-32-bytes";
const NOW_MS = Date.UTC(2026, 10, 25, 10, 0, 0);
const INFO = { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 4000 } } as const;

function setup(options: IdentityMiddlewareOptions = {}) {
  const clock = new FakeClock(NOW_MS);
  const timers = new FakeTimers(clock);
  const provider = new Hs256JwtIdentityProvider({ secret: SECRET, clock });
  const calls: (Identity | undefined)[] = [];
  const authenticate = identityMiddleware(provider, { clock, timer: timers.timer, ...options });
  const handler = authenticate(
    (_req: Request, info: { remoteAddr: { hostname: string } }) => {
      assert.equal(info.remoteAddr.hostname.length > 0, true);
      calls.push(currentIdentity());
      return Response.json({ subject: requireIdentity().subject });
    },
  );
  return { clock, timers, provider, authenticate, handler, calls };
}

/** The `info` of a request from `hostname`. */
function from(hostname: string) {
  return { remoteAddr: { transport: "tcp", hostname, port: 4000 } } as const;
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

Deno.test("identityMiddleware() audits the first rejection of each client and code without the token", async (t) => {
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
      data: { client: "127.0.0.1", count: 1 },
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
      data: { client: "127.0.0.1", count: 1 },
    });
  });
  await t.step("a claim failure names the claim", async () => {
    await handler(request(`Bearer ${systemToken}`), INFO);
    assert.deepEqual(audit.entries.at(-1)?.data, {
      client: "127.0.0.1",
      count: 1,
      claim: "actor_kind",
      reason: "forbidden",
    });
    assert.equal(audit.entries.at(-1)?.reason, "ERR_TOKEN_CLAIM_INVALID");
  });
  await t.step("a repeat within the minute is counted, not written", async () => {
    const before = audit.entries.length;
    await handler(request(`Bearer ${forged}`, "/v1/other"), INFO);
    assert.equal(audit.entries.length, before);
  });
  await t.step("an accepted request is not audited", async () => {
    const before = audit.entries.length;
    const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
    assert.equal((await handler(request(`Bearer ${token}`), INFO)).status, 200);
    assert.equal(audit.entries.length, before);
  });
  await t.step("no entry contains a token or the query string", () => {
    assert.equal(audit.entries.length, 3);
    const text = JSON.stringify(audit.entries);
    for (const secretish of [forged, ...forged.split("."), systemToken.split(".")[2]!, "leaky"]) {
      assert.ok(!text.includes(secretish), `audit leaked ${secretish.slice(0, 12)}`);
    }
  });
});

Deno.test("identityMiddleware() writes at most two rows for 5,000 rejections from one client", async () => {
  await using store = await openStore(":memory:");
  const audit = new AuditLog(store);
  const { handler, authenticate, clock } = setup({ audit });
  for (let i = 0; i < 5_000; i++) {
    const response = await handler(request(i % 2 === 0 ? undefined : "Bearer x", `/r/${i}`), INFO);
    assert.equal(response.status, 401);
    if (i % 1_000 === 999) clock.advance(5_000);
  }
  // One row per code at once: the rest are counted in memory.
  assert.deepEqual((await audit.list()).map((r) => [r.reason, r.data]), [
    ["ERR_TOKEN_MISSING", { client: "127.0.0.1", count: 1 }],
    ["ERR_TOKEN_MALFORMED", { client: "127.0.0.1", count: 1 }],
  ]);
  await authenticate.flush();
  const records = await audit.list();
  assert.equal(records.length, 4);
  const counts = records.map((r) => (r.data as { count: number }).count);
  assert.equal(counts.reduce((a, b) => a + b, 0), 5_000);
  assert.deepEqual(records.slice(2).map((r) => [r.resource, r.reason, r.data]), [
    ["http:*", "ERR_TOKEN_MISSING", {
      client: "127.0.0.1",
      count: 2_499,
      aggregated: true,
      from: "2026-11-25T10:00:00.000Z",
      until: "2026-11-25T10:00:25.000Z",
    }],
    ["http:*", "ERR_TOKEN_MALFORMED", {
      client: "127.0.0.1",
      count: 2_499,
      aggregated: true,
      from: "2026-11-25T10:00:00.000Z",
      until: "2026-11-25T10:00:25.000Z",
    }],
  ]);
  assert.equal((await audit.verify()).ok, true);
});

Deno.test("identityMiddleware() closes a rejection window after a minute", async (t) => {
  await t.step("on the next rejection of the client", async () => {
    const audit = new MemorySink();
    const { handler, clock } = setup({ audit });
    for (let i = 0; i < 3; i++) await handler(request(), INFO);
    clock.advance(59_999);
    await handler(request(), INFO);
    assert.equal(audit.entries.length, 1);
    clock.advance(1);
    await handler(request(), INFO);
    assert.deepEqual(audit.entries.map((e) => e.data), [
      { client: "127.0.0.1", count: 1 },
      {
        client: "127.0.0.1",
        count: 3,
        aggregated: true,
        from: "2026-11-25T10:00:00.000Z",
        until: "2026-11-25T10:01:00.000Z",
      },
      { client: "127.0.0.1", count: 1 },
    ]);
  });
  await t.step("on the timer when the client goes quiet", async () => {
    const audit = new MemorySink();
    const { handler, timers } = setup({ audit });
    for (let i = 0; i < 4; i++) await handler(request(), INFO);
    assert.equal(timers.pending, 1);
    await timers.advance(59_999);
    assert.equal(audit.entries.length, 1);
    await timers.advance(1);
    assert.equal(audit.entries.length, 2);
    assert.equal((audit.entries[1]?.data as { count: number }).count, 3);
    assert.equal(timers.pending, 0);
  });
  await t.step("a lone rejection adds no count record", async () => {
    const audit = new MemorySink();
    const { handler, timers, authenticate } = setup({ audit });
    await handler(request(), INFO);
    await timers.advance(60_000);
    await authenticate.flush();
    assert.equal(audit.entries.length, 1);
  });
  await t.step("disposing flushes and cancels the timer", async () => {
    const audit = new MemorySink();
    const { handler, timers, authenticate } = setup({ audit });
    await handler(request(), INFO);
    await handler(request(), INFO);
    await authenticate[Symbol.asyncDispose]();
    assert.equal(audit.entries.length, 2);
    assert.equal(timers.pending, 0);
  });
});

Deno.test("identityMiddleware() bounds the clients it tracks", async () => {
  const audit = new MemorySink();
  const { handler, authenticate } = setup({ audit, maxClients: 3 });
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 1_000; i++) await handler(request(), from(`10.0.${i >> 8}.${i & 255}`));
  }
  // Three clients get their own window; the 997 others share one.
  assert.deepEqual(audit.entries.map((e) => (e.data as { client: string }).client), [
    "10.0.0.0",
    "10.0.0.1",
    "10.0.0.2",
    "(other clients)",
  ]);
  await authenticate.flush();
  const counts = audit.entries.map((e) => (e.data as { count: number }).count);
  assert.deepEqual(counts, [1, 1, 1, 1, 1, 1, 1, 1_993]);
  assert.equal(counts.reduce((a, b) => a + b, 0), 2_000);
});

Deno.test("identityMiddleware() bounds each rejection record", async (t) => {
  await t.step("a 60 KB path is cut and says so", async () => {
    await using store = await openStore(":memory:");
    const audit = new AuditLog(store);
    const { handler } = setup({ audit });
    const path = `/${"a".repeat(60_000)}`;
    await handler(request(undefined, path), INFO);
    const [record] = await audit.list();
    assert.ok(record !== undefined);
    assert.ok(canonicalJson(record as unknown as JsonValue).length < 2_048);
    assert.equal(record.resource.length, "http:POST ".length + 512);
    assert.ok(record.resource.endsWith("…"));
    assert.deepEqual(record.data, {
      client: "127.0.0.1",
      count: 1,
      truncated: true,
      pathLength: 60_001,
    });
    assert.equal((await audit.verify()).ok, true);
  });
  await t.step("a client key is cut and made storable", async () => {
    const audit = new MemorySink();
    const { handler } = setup({ audit, clientKey: () => `evil\0\ud800${"x".repeat(300)}` });
    await handler(request(), INFO);
    const client = (audit.entries[0]?.data as { client: string }).client;
    assert.equal(client.length, 128);
    assert.ok(client.startsWith("evil\ufffd\ufffdxx") && client.endsWith("x…"));
  });
});

Deno.test("identityMiddleware() does not trust an unauthenticated client's traceparent", async (t) => {
  const traced = (traceparent: string) => {
    const req = request("Bearer x");
    req.headers.set("traceparent", traceparent);
    return req;
  };
  await t.step("a well-formed one is data, never the record's traceId", async () => {
    const audit = new MemorySink();
    const { handler } = setup({ audit });
    await handler(traced("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), INFO);
    assert.equal(audit.entries[0]?.traceId, undefined);
    assert.equal(
      (audit.entries[0]?.data as { untrustedTraceId: string }).untrustedTraceId,
      "4bf92f3577b34da6a3ce929d0e0e4736",
    );
  });
  await t.step("a malformed one is not recorded at all", async () => {
    const audit = new MemorySink();
    const { handler } = setup({ audit });
    await handler(traced(`00-${"z".repeat(5_000)}-00f067aa0ba902b7-01`), INFO);
    assert.equal(audit.entries[0]?.traceId, undefined);
    assert.deepEqual(audit.entries[0]?.data, { client: "127.0.0.1", count: 1 });
  });
});

Deno.test("identityMiddleware() refuses options it cannot use", () => {
  const verifier: TokenVerifier = { verifyToken: () => Promise.reject(new Error("unused")) };
  assert.throws(() => identityMiddleware(verifier, { maxClients: 0 }), RangeError);
  assert.throws(() => identityMiddleware(verifier, { maxClients: 1.5 }), RangeError);
  assert.throws(
    () => identityMiddleware(verifier, { clientKey: "ip" as unknown as () => string }),
    TypeError,
  );
});

Deno.test("identityMiddleware() binds only identities IdentitySchema accepts", async (t) => {
  const bad: [string, unknown][] = [
    ["roles as a string", { subject: "svc", actorKind: "service", roles: "admin", scopes: [] }],
    ["U+0000 in the subject", { subject: "svc\0", actorKind: "service", roles: [], scopes: [] }],
    ["the system actor kind", { subject: "cron", actorKind: "system", roles: [], scopes: [] }],
  ];
  for (const [name, identity] of bad) {
    await t.step(name, async () => {
      const verifier: TokenVerifier = { verifyToken: () => Promise.resolve(identity as Identity) };
      let called = false;
      const handler = identityMiddleware(verifier)(() => {
        called = true;
        return new Response("ok");
      });
      await assert.rejects(Promise.resolve(handler(request("Bearer abc"), INFO)), {
        code: "ERR_INVALID_ARGUMENT",
      });
      assert.equal(called, false);
    });
  }
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
