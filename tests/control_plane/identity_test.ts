import assert from "node:assert/strict";
import { deferred, MemorySink } from "./_memory_sink.ts";
import * as jose from "jose";
import {
  FakeClock,
  type Identity,
  IdentitySchema,
  isPlmError,
  PlmError,
} from "../../shared/mod.ts";
import { resolveActor } from "../../control_plane/audit/actor.ts";
import { ControlPlane } from "../../control_plane/control_plane.ts";
import { openStore } from "../../control_plane/store/mod.ts";
import { task, TRACEPARENT } from "./_runs_fixture.ts";
import {
  currentIdentity,
  Hs256JwtIdentityProvider,
  type Hs256JwtIdentityProviderOptions,
  IdentityError,
  type IssueTokenClaims,
  type IssueTokenOptions,
  MAX_TOKEN_LENGTH,
  requireIdentity,
  SYSTEM_IDENTITY,
  withIdentity,
  withSystemIdentity,
} from "../../control_plane/identity/mod.ts";
import * as publicApi from "../../control_plane/identity/public.ts";

// ---------------------------------------------------------------------------
// Helpers: tokens are hand-built here with WebCrypto and jose's base64url, not
// with the code under test.

const SECRET = "identity-test-secret-of-at-least-32-bytes";
const NOW_MS = Date.UTC(2026, 10, 25, 10, 0, 0);
const NOW = NOW_MS / 1000;
const HEADER = { alg: "HS256", typ: "JWT" };
const encoder = new TextEncoder();

function b64(input: string | Uint8Array): string {
  return jose.base64url.encode(input);
}

async function hmac(input: string, secret: string = SECRET, hash = "SHA-256"): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash },
    false,
    ["sign"],
  );
  return b64(new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(input))));
}

/** Signs raw (already encoded) header and payload segments. */
async function signSegments(h: string, p: string, secret?: string): Promise<string> {
  return `${h}.${p}.${await hmac(`${h}.${p}`, secret)}`;
}

/** Valid claims; an override set to `undefined` removes the claim. */
function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = {
    sub: "alice",
    actor_kind: "human",
    roles: ["approver"],
    scope: "runs:read runs:write",
    tenant: "acme",
    iat: NOW,
    exp: NOW + 600,
    jti: "t-1",
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

interface CraftOptions {
  header?: string | Record<string, unknown>;
  payload?: string | Record<string, unknown>;
  secret?: string;
}

/** Builds an HS256 token from JSON text or objects (text allows duplicate keys). */
function craft(options: CraftOptions = {}): Promise<string> {
  const { header = HEADER, payload = claims(), secret } = options;
  const h = b64(typeof header === "string" ? header : JSON.stringify(header));
  const p = b64(typeof payload === "string" ? payload : JSON.stringify(payload));
  return signSegments(h, p, secret);
}

function provider(
  options: Partial<Hs256JwtIdentityProviderOptions> = {},
): Hs256JwtIdentityProvider {
  return new Hs256JwtIdentityProvider({ secret: SECRET, clock: new FakeClock(NOW_MS), ...options });
}

async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  claim?: string,
  reason?: string,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof IdentityError, `expected IdentityError, got ${String(err)}`);
    assert.equal(err.name, "IdentityError");
    assert.equal(err.code, code, err.message);
    if (claim !== undefined) assert.equal(err.claim, claim);
    if (reason !== undefined) assert.equal(err.reason, reason);
    return true;
  });
}

// ---------------------------------------------------------------------------
// RFC 7515 appendix A.1

const RFC7515_A1_KEY =
  "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const RFC7515_A1_TOKEN =
  "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

Deno.test("RFC 7515 A.1 vector carries a genuine HS256 signature", async () => {
  const key = await jose.importJWK({ kty: "oct", k: RFC7515_A1_KEY }, "HS256");
  const { payload, protectedHeader } = await jose.compactVerify(RFC7515_A1_TOKEN, key);
  assert.deepEqual(protectedHeader, { typ: "JWT", alg: "HS256" });
  assert.equal(
    new TextDecoder().decode(payload),
    '{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}',
  );
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() passes the RFC 7515 A.1 signature and rejects its missing claims", async (t) => {
  const secret = jose.base64url.decode(RFC7515_A1_KEY);
  const clock = new FakeClock(1_300_819_000_000);

  await t.step("no sub claim", async () => {
    await rejectsWith(
      new Hs256JwtIdentityProvider({ secret, clock }).verifyToken(RFC7515_A1_TOKEN),
      "ERR_TOKEN_CLAIM_INVALID",
      "sub",
      "missing",
    );
  });

  await t.step("a changed payload no longer verifies", async () => {
    const [h, , s] = RFC7515_A1_TOKEN.split(".");
    const forged = `${h}.${b64('{"iss":"joe","exp":1300819380,"sub":"root"}')}.${s}`;
    await rejectsWith(
      new Hs256JwtIdentityProvider({ secret, clock }).verifyToken(forged),
      "ERR_TOKEN_SIGNATURE_INVALID",
    );
  });

  await t.step("another key does not verify it", async () => {
    await rejectsWith(
      new Hs256JwtIdentityProvider({ secret: SECRET, clock }).verifyToken(RFC7515_A1_TOKEN),
      "ERR_TOKEN_SIGNATURE_INVALID",
    );
  });
});

// ---------------------------------------------------------------------------
// Construction

Deno.test("Hs256JwtIdentityProvider() refuses secrets shorter than 32 bytes", async (t) => {
  await t.step("string of 31 bytes", () => {
    assert.throws(() => new Hs256JwtIdentityProvider({ secret: "x".repeat(31) }), RangeError);
  });
  await t.step("Uint8Array of 31 bytes", () => {
    assert.throws(() => new Hs256JwtIdentityProvider({ secret: new Uint8Array(31) }), RangeError);
  });
  await t.step("multi-byte string counts UTF-8 bytes", () => {
    assert.throws(
      () => new Hs256JwtIdentityProvider({ secret: "é".repeat(15) + "a" }),
      RangeError,
    );
    new Hs256JwtIdentityProvider({ secret: "é".repeat(16) });
  });
  await t.step("32 bytes is enough", () => {
    new Hs256JwtIdentityProvider({ secret: "x".repeat(32) });
    new Hs256JwtIdentityProvider({ secret: new Uint8Array(32) });
  });
  await t.step("a secret of another type", () => {
    assert.throws(
      () => new Hs256JwtIdentityProvider({ secret: 42 as unknown as string }),
      TypeError,
    );
  });
});

Deno.test("Hs256JwtIdentityProvider() validates its options", async (t) => {
  await t.step("negative clock tolerance", () => {
    assert.throws(() => provider({ clockToleranceSeconds: -1 }), RangeError);
  });
  await t.step("maximum lifetime not a positive whole number", () => {
    assert.throws(() => provider({ maxTokenLifetimeSeconds: 0 }), RangeError);
    assert.throws(
      () => provider({ maxTokenLifetimeSeconds: 1.5 }),
      (err) => err instanceof RangeError && /maxTokenLifetimeSeconds/.test(err.message),
    );
  });
  await t.step("empty issuer or audience", () => {
    assert.throws(() => provider({ issuer: "" }), TypeError);
    assert.throws(() => provider({ audience: "" }), TypeError);
  });
});

Deno.test("Hs256JwtIdentityProvider() copies a Uint8Array secret", async () => {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const original = bytes.slice();
  const issuer = new Hs256JwtIdentityProvider({ secret: bytes, clock: new FakeClock(NOW_MS) });
  bytes.fill(0);
  const token = await issuer.issueToken({ subject: "alice", actorKind: "human" });
  const verifier = new Hs256JwtIdentityProvider({ secret: original, clock: new FakeClock(NOW_MS) });
  assert.equal((await verifier.verifyToken(token)).subject, "alice");
});

// ---------------------------------------------------------------------------
// issueToken

Deno.test("Hs256JwtIdentityProvider.issueToken() writes the documented header and claims", async () => {
  const p = provider({
    issuer: "https://plm.example",
    audience: "plm-api",
    generateId: () => "jti-42",
  });
  const token = await p.issueToken(
    {
      subject: "alice",
      actorKind: "human",
      roles: ["approver", "viewer"],
      scopes: ["runs:read", "runs:write"],
      tenant: "acme",
    },
    { ttlSeconds: 120 },
  );
  const [h, payload] = token.split(".");
  assert.equal(new TextDecoder().decode(jose.base64url.decode(h!)), '{"alg":"HS256","typ":"JWT"}');
  assert.deepEqual(jose.decodeJwt(token), {
    sub: "alice",
    actor_kind: "human",
    roles: ["approver", "viewer"],
    scope: "runs:read runs:write",
    tenant: "acme",
    iss: "https://plm.example",
    aud: "plm-api",
    iat: NOW,
    exp: NOW + 120,
    jti: "jti-42",
  });
  assert.ok(payload);
  // The token is a standard JWT: plain jose accepts it with the same secret.
  const verified = await jose.jwtVerify(token, encoder.encode(SECRET), {
    algorithms: ["HS256"],
    issuer: "https://plm.example",
    audience: "plm-api",
    currentDate: new Date(NOW_MS),
  });
  assert.equal(verified.payload.sub, "alice");
});

Deno.test("Hs256JwtIdentityProvider.issueToken() omits optional claims and defaults the ttl", async (t) => {
  await t.step("no scope, tenant, iss or aud; one hour", async () => {
    const payload = jose.decodeJwt(
      await provider().issueToken({ subject: "svc", actorKind: "service" }),
    );
    assert.deepEqual(Object.keys(payload), ["sub", "actor_kind", "roles", "iat", "exp", "jti"]);
    assert.deepEqual(payload.roles, []);
    assert.equal(payload.exp, NOW + 3600);
  });
  await t.step("the default ttl is capped by the maximum lifetime", async () => {
    const payload = jose.decodeJwt(
      await provider({ maxTokenLifetimeSeconds: 300 }).issueToken({
        subject: "svc",
        actorKind: "service",
      }),
    );
    assert.equal(payload.exp, NOW + 300);
  });
  await t.step("each token gets a fresh jti by default", async () => {
    const p = provider();
    const a = jose.decodeJwt(await p.issueToken({ subject: "a", actorKind: "agent" }));
    const b = jose.decodeJwt(await p.issueToken({ subject: "a", actorKind: "agent" }));
    assert.equal(typeof a.jti, "string");
    assert.notEqual(a.jti, b.jti);
  });
});

Deno.test("Hs256JwtIdentityProvider.issueToken() refuses what verifyToken() would refuse", async (t) => {
  const p = provider();
  const cases: [string, unknown, IssueTokenOptions?][] = [
    ["system actor kind", { subject: "cron", actorKind: "system" }],
    ["unknown actor kind", { subject: "r2", actorKind: "robot" }],
    ["ttl over the maximum", { subject: "a", actorKind: "human" }, { ttlSeconds: 86_401 }],
    ["ttl 0", { subject: "a", actorKind: "human" }, { ttlSeconds: 0 }],
    ["ttl -1", { subject: "a", actorKind: "human" }, { ttlSeconds: -1 }],
    ["ttl 1.5", { subject: "a", actorKind: "human" }, { ttlSeconds: 1.5 }],
    ["ttl NaN", { subject: "a", actorKind: "human" }, { ttlSeconds: Number.NaN }],
    ["empty subject", { subject: "", actorKind: "human" }],
    ["U+0000 in the subject", { subject: "a\0b", actorKind: "human" }],
    ["a lone surrogate in the tenant", { subject: "a", actorKind: "human", tenant: "\ud800" }],
    ["a scope with a space", { subject: "a", actorKind: "human", scopes: ["a b"] }],
    ["an empty scope", { subject: "a", actorKind: "human", scopes: [""] }],
    ["roles that are not strings", { subject: "a", actorKind: "human", roles: [1] }],
    ["roles as a string", { subject: "a", actorKind: "human", roles: "admin" }],
    ["a token over 8 KiB", {
      subject: "a",
      actorKind: "human",
      roles: Array(9).fill("r".repeat(1_000)),
    }],
    ["an unknown claim", { subject: "a", actorKind: "human", admin: true }],
  ];
  for (const [name, claims, options] of cases) {
    await t.step(name, async () => {
      await assert.rejects(p.issueToken(claims as IssueTokenClaims, options), {
        code: "ERR_INVALID_ARGUMENT",
      });
    });
  }
  await t.step("the maximum ttl itself is accepted", async () => {
    await p.issueToken({ subject: "a", actorKind: "human" }, { ttlSeconds: 86_400 });
  });
});

// ---------------------------------------------------------------------------
// verifyToken: accepted tokens

Deno.test("Hs256JwtIdentityProvider.verifyToken() returns a frozen, schema-valid identity", async () => {
  const identity = await provider().verifyToken(await craft());
  assert.deepEqual(identity, {
    subject: "alice",
    actorKind: "human",
    roles: ["approver"],
    scopes: ["runs:read", "runs:write"],
    tenant: "acme",
    tokenId: "t-1",
    expiresAt: (NOW + 600) * 1000,
  });
  assert.ok(Object.isFrozen(identity));
  assert.ok(Object.isFrozen(identity.roles));
  assert.ok(Object.isFrozen(identity.scopes));
  assert.ok(IdentitySchema.safeParse(identity).success);
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() accepts what issueToken() issues", async () => {
  const p = provider({ issuer: "iss-1", audience: "aud-1" });
  for (const actorKind of ["human", "agent", "service"] as const) {
    const identity = await p.verifyToken(
      await p.issueToken({ subject: `s-${actorKind}`, actorKind, scopes: ["a"] }),
    );
    assert.equal(identity.subject, `s-${actorKind}`);
    assert.equal(identity.actorKind, actorKind);
    assert.deepEqual(identity.scopes, ["a"]);
  }
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() decodes non-ASCII UTF-8 claims", async () => {
  const identity = await provider().verifyToken(
    await craft({ payload: claims({ sub: "zoë-山田", roles: ["révision"] }) }),
  );
  assert.equal(identity.subject, "zoë-山田");
  assert.deepEqual(identity.roles, ["révision"]);
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() defaults absent roles and scope to empty", async () => {
  const identity = await provider().verifyToken(
    await craft({ payload: claims({ roles: undefined, scope: undefined, tenant: undefined }) }),
  );
  assert.deepEqual(identity.roles, []);
  assert.deepEqual(identity.scopes, []);
  assert.equal("tenant" in identity, false);
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() accepts an aud array that contains the audience", async () => {
  const identity = await provider({ audience: "plm" }).verifyToken(
    await craft({ payload: claims({ aud: ["other", "plm"] }) }),
  );
  assert.equal(identity.subject, "alice");
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() never fetches or uses jku, x5u, jwk or kid", async (t) => {
  await t.step("key-locating header parameters are ignored", async () => {
    // A fetch of these addresses would fail (nothing listens there); the
    // token verifies with the configured key alone.
    const identity = await provider().verifyToken(
      await craft({
        header: {
          ...HEADER,
          kid: "attacker-key",
          jku: "http://127.0.0.1:9/jwks.json",
          x5u: "http://127.0.0.1:9/cert.pem",
        },
      }),
    );
    assert.equal(identity.subject, "alice");
  });
  await t.step("an embedded jwk with the attacker's key does not verify", async () => {
    const attacker = "attacker-secret-of-at-least-32-bytes-long";
    const jwk = { kty: "oct", k: b64(attacker) };
    await rejectsWith(
      provider().verifyToken(await craft({ header: { ...HEADER, jwk }, secret: attacker })),
      "ERR_TOKEN_SIGNATURE_INVALID",
    );
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() accepts a token of exactly MAX_TOKEN_LENGTH", async () => {
  let token: string | undefined;
  outer: for (const kid of ["", "k", "kk"]) {
    for (let n = 5_900; n < 6_200; n++) {
      const header = kid === "" ? HEADER : { ...HEADER, kid };
      const candidate = await craft({ header, payload: claims({ filler: "f".repeat(n) }) });
      if (candidate.length === MAX_TOKEN_LENGTH) {
        token = candidate;
        break outer;
      }
      if (candidate.length > MAX_TOKEN_LENGTH) break;
    }
  }
  assert.ok(token, "could not build a token of exactly the limit");
  assert.equal((await provider().verifyToken(token)).subject, "alice");
  await rejectsWith(provider().verifyToken(token + "A"), "ERR_TOKEN_TOO_LARGE");
});

// ---------------------------------------------------------------------------
// verifyToken: each rejection

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects a missing token", async (t) => {
  for (const [name, value] of [["empty", ""], ["undefined", undefined], ["null", null]] as const) {
    await t.step(name, async () => {
      await rejectsWith(provider().verifyToken(value), "ERR_TOKEN_MISSING");
    });
  }
  await t.step("a non-string is a TypeError", async () => {
    await assert.rejects(provider().verifyToken(42 as unknown as string), TypeError);
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects tokens over 8 KiB", async (t) => {
  await t.step("garbage over the limit is not parsed", async () => {
    await rejectsWith(provider().verifyToken("a".repeat(8193)), "ERR_TOKEN_TOO_LARGE");
  });
  await t.step("a validly signed large token", async () => {
    const token = await craft({ payload: claims({ filler: "x".repeat(8192) }) });
    assert.ok(token.length > 8192);
    await rejectsWith(provider().verifyToken(token), "ERR_TOKEN_TOO_LARGE");
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects malformed structure", async (t) => {
  const good = await craft();
  const [h, p, s] = good.split(".") as [string, string, string];
  const cases: [string, string | Promise<string>][] = [
    ["one segment", h],
    ["two segments", `${h}.${p}`],
    ["four segments", `${good}.${s}`],
    ["empty header segment", `.${p}.${s}`],
    ["empty payload segment", `${h}..${s}`],
    ["whitespace inside", `${h}. ${p}.${s}`],
    ["segment length 1 mod 4", signSegments(h, p + "A")],
    ["header not JSON", craft({ header: "{alg:HS256}" })],
    ["header a JSON array", craft({ header: '["HS256"]' })],
    ["payload not JSON", craft({ payload: "not json" })],
    ["payload a JSON string", craft({ payload: '"alice"' })],
    ["payload null", craft({ payload: "null" })],
    ["payload with a byte-order mark", craft({ payload: "\uFEFF" + JSON.stringify(claims()) })],
    [
      "payload not UTF-8",
      signSegments(h, b64(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))),
    ],
    ["crit header", craft({ header: { ...HEADER, crit: ["exp"] } })],
    ["empty crit header", craft({ header: { ...HEADER, crit: [] } })],
  ];
  for (const [name, token] of cases) {
    await t.step(name, async () => {
      await rejectsWith(provider().verifyToken(await token), "ERR_TOKEN_MALFORMED");
    });
  }
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects non-canonical base64url", async (t) => {
  const payloadJson = JSON.stringify(claims());

  await t.step("padding", async () => {
    // Find a payload whose encoding needs padding, then add it and sign it.
    let text = payloadJson;
    while (b64(text).length % 4 === 0) text += " ";
    const p = b64(text);
    const padded = p + "=".repeat(4 - (p.length % 4));
    await rejectsWith(
      provider().verifyToken(await signSegments(b64(JSON.stringify(HEADER)), padded)),
      "ERR_TOKEN_MALFORMED",
    );
    // Without the padding the same payload is fine.
    await provider().verifyToken(await signSegments(b64(JSON.stringify(HEADER)), p));
  });

  for (const rest of [2, 3]) {
    await t.step(`non-zero unused bits in the last character (length 4n+${rest})`, async () => {
      let text = payloadJson;
      while (b64(text).length % 4 !== rest) text += " ";
      const p = b64(text);
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      const last = alphabet.indexOf(p.at(-1)!);
      const loose = p.slice(0, -1) + alphabet[last | 1];
      // A lenient decoder reads the same bytes from both spellings.
      assert.deepEqual(jose.base64url.decode(loose), jose.base64url.decode(p));
      await rejectsWith(
        provider().verifyToken(await signSegments(b64(JSON.stringify(HEADER)), loose)),
        "ERR_TOKEN_MALFORMED",
      );
    });
  }

  await t.step("standard alphabet '+' and '/' in the payload", async () => {
    let p = "";
    for (let n = 3; n < 9 && !/[-_]/.test(p); n++) {
      p = b64(JSON.stringify(claims({ x: "?>".repeat(n) })));
    }
    assert.match(p, /[-_]/);
    const std = p.replaceAll("-", "+").replaceAll("_", "/");
    await rejectsWith(
      provider().verifyToken(await signSegments(b64(JSON.stringify(HEADER)), std)),
      "ERR_TOKEN_MALFORMED",
    );
  });

  await t.step("standard alphabet in the signature", async () => {
    let token = "";
    for (let i = 0; i < 50 && !/[-_]/.test(token.split(".")[2] ?? ""); i++) {
      token = await craft({ payload: claims({ jti: `t-${i}` }) });
    }
    const [h, p, s] = token.split(".") as [string, string, string];
    assert.match(s, /[-_]/);
    const std = s.replaceAll("-", "+").replaceAll("_", "/");
    await rejectsWith(provider().verifyToken(`${h}.${p}.${std}`), "ERR_TOKEN_MALFORMED");
    // The canonical spelling verifies.
    await provider().verifyToken(token);
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects duplicate JSON member names", async (t) => {
  const payload = JSON.stringify(claims()).slice(1);
  const cases: [string, CraftOptions][] = [
    ["header alg twice", { header: '{"alg":"HS256","typ":"JWT","alg":"HS256"}' }],
    ["payload sub twice", { payload: `{"sub":"mallory",${payload}` }],
    ["escaped spelling of the same name", { payload: `{"\\u0073ub":"mallory",${payload}` }],
    ["nested object", { payload: `{"ctx":{"a":1,"a":2},${payload}` }],
    ["object inside an array", { payload: `{"ctx":[{"a":1,"a":2}],${payload}` }],
  ];
  for (const [name, options] of cases) {
    await t.step(name, async () => {
      await rejectsWith(provider().verifyToken(await craft(options)), "ERR_TOKEN_MALFORMED");
    });
  }
  await t.step("a duplicate among many names", async () => {
    const many = Array.from({ length: 500 }, (_, i) => `"k${i}":${i}`).join(",");
    await rejectsWith(
      provider().verifyToken(await craft({ payload: `{${many},"k250":0,${payload}` })),
      "ERR_TOKEN_MALFORMED",
    );
    const identity = await provider().verifyToken(await craft({ payload: `{${many},${payload}` }));
    assert.equal(identity.subject, "alice");
  });
  await t.step("the same name in different objects is fine", async () => {
    const identity = await provider().verifyToken(
      await craft({ payload: `{"a":{"x":1},"b":{"x":[{"x":2},{"x":3}]},"c":"\\"x\\"",${payload}` }),
    );
    assert.equal(identity.subject, "alice");
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects every algorithm but HS256", async (t) => {
  const h = (alg: unknown) => b64(JSON.stringify({ alg, typ: "JWT" }));
  const p = b64(JSON.stringify(claims()));
  const cases: [string, Promise<string> | string][] = [
    ["none, no signature", `${h("none")}.${p}.`],
    ["none, with an HS256 signature", signSegments(h("none"), p)],
    [
      "HS512",
      (async () => {
        const input = `${h("HS512")}.${p}`;
        return `${input}.${await hmac(input, SECRET, "SHA-512")}`;
      })(),
    ],
    ["RS256", `${h("RS256")}.${p}.${b64(new Uint8Array(256))}`],
    ["lower-case hs256", signSegments(h("hs256"), p)],
    ["alg missing", signSegments(b64('{"typ":"JWT"}'), p)],
    ["alg not a string", signSegments(h(256), p)],
  ];
  for (const [name, token] of cases) {
    await t.step(name, async () => {
      await rejectsWith(provider().verifyToken(await token), "ERR_TOKEN_ALG_NOT_ALLOWED");
    });
  }
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() requires typ JWT", async (t) => {
  await t.step("typ missing", async () => {
    await rejectsWith(
      provider().verifyToken(await craft({ header: { alg: "HS256" } })),
      "ERR_TOKEN_CLAIM_INVALID",
      "typ",
      "missing",
    );
  });
  for (const typ of ["at+jwt", "jwt", "JWS", 1]) {
    await t.step(`typ ${JSON.stringify(typ)}`, async () => {
      await rejectsWith(
        provider().verifyToken(await craft({ header: { alg: "HS256", typ } })),
        "ERR_TOKEN_CLAIM_INVALID",
        "typ",
        "mismatch",
      );
    });
  }
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects invalid signatures", async (t) => {
  const good = await craft();
  const [h, p, s] = good.split(".") as [string, string, string];
  await t.step("a changed first signature character", async () => {
    const flipped = (s[0] === "A" ? "B" : "A") + s.slice(1);
    await rejectsWith(
      provider().verifyToken(`${h}.${p}.${flipped}`),
      "ERR_TOKEN_SIGNATURE_INVALID",
    );
  });
  await t.step("an empty signature", async () => {
    await rejectsWith(provider().verifyToken(`${h}.${p}.`), "ERR_TOKEN_SIGNATURE_INVALID");
  });
  await t.step("a wrong secret", async () => {
    await rejectsWith(
      provider().verifyToken(await craft({ secret: SECRET + "-other" })),
      "ERR_TOKEN_SIGNATURE_INVALID",
    );
  });
  await t.step("a payload swapped under a valid signature", async () => {
    const other = b64(JSON.stringify(claims({ roles: ["admin"] })));
    await rejectsWith(provider().verifyToken(`${h}.${other}.${s}`), "ERR_TOKEN_SIGNATURE_INVALID");
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() requires sub, actor_kind, iat and exp", async (t) => {
  for (const claim of ["sub", "actor_kind", "iat", "exp"]) {
    await t.step(claim, async () => {
      await rejectsWith(
        provider().verifyToken(await craft({ payload: claims({ [claim]: undefined }) })),
        "ERR_TOKEN_CLAIM_INVALID",
        claim,
        "missing",
      );
    });
  }
  await t.step("iss when an issuer is configured", async () => {
    await rejectsWith(
      provider({ issuer: "plm" }).verifyToken(await craft()),
      "ERR_TOKEN_CLAIM_INVALID",
      "iss",
      "missing",
    );
  });
  await t.step("aud when an audience is configured", async () => {
    await rejectsWith(
      provider({ audience: "api" }).verifyToken(await craft()),
      "ERR_TOKEN_CLAIM_INVALID",
      "aud",
      "missing",
    );
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() rejects invalid claim values", async (t) => {
  const cases: [
    string,
    Record<string, unknown>,
    string,
    string,
    Partial<Hs256JwtIdentityProviderOptions>?,
  ][] = [
    ["empty sub", { sub: "" }, "sub", "invalid"],
    ["numeric sub", { sub: 7 }, "sub", "invalid"],
    ["system actor kind", { actor_kind: "system" }, "actor_kind", "forbidden"],
    ["unknown actor kind", { actor_kind: "robot" }, "actor_kind", "invalid"],
    ["roles a string", { roles: "admin" }, "roles", "invalid"],
    ["roles with a number", { roles: ["admin", 1] }, "roles", "invalid"],
    ["scope an array", { scope: ["runs:read"] }, "scope", "invalid"],
    ["empty tenant", { tenant: "" }, "tenant", "invalid"],
    ["numeric jti", { jti: 5 }, "jti", "invalid"],
    ["fractional iat", { iat: NOW + 0.5 }, "iat", "invalid"],
    ["string exp", { exp: String(NOW + 600) }, "exp", "invalid"],
    ["negative iat", { iat: -1 }, "iat", "invalid"],
    ["nbf a string", { nbf: "soon" }, "nbf", "invalid"],
    ["exp before iat", { exp: NOW - 1 }, "exp", "invalid"],
    ["lifetime over the maximum", { exp: NOW + 86_401 }, "exp", "lifetime_exceeded"],
    ["lifetime over a smaller maximum", { exp: NOW + 601 }, "exp", "lifetime_exceeded", {
      maxTokenLifetimeSeconds: 600,
    }],
    ["iss not a string", { iss: 1 }, "iss", "invalid"],
    ["wrong iss", { iss: "evil" }, "iss", "mismatch", { issuer: "plm" }],
    ["wrong aud", { aud: "other" }, "aud", "mismatch", { audience: "api" }],
    ["aud array without it", { aud: ["a", "b"] }, "aud", "mismatch", { audience: "api" }],
    ["aud a number", { aud: 1 }, "aud", "invalid"],
  ];
  for (const [name, overrides, claim, reason, options] of cases) {
    await t.step(name, async () => {
      await rejectsWith(
        provider(options).verifyToken(await craft({ payload: claims(overrides) })),
        "ERR_TOKEN_CLAIM_INVALID",
        claim,
        reason,
      );
    });
  }
  await t.step("the maximum lifetime itself is accepted", async () => {
    await provider().verifyToken(await craft({ payload: claims({ exp: NOW + 86_400 }) }));
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() refuses claim texts the store cannot keep", async (t) => {
  // Each would be hashed as given but stored differently: refused as a token error.
  const cases: [string, Record<string, unknown>, string][] = [
    ["U+0000 in sub", { sub: "alice\0admin" }, "sub"],
    ["a lone surrogate in sub", { sub: "alice\ud800" }, "sub"],
    ["sub over 1,024 characters", { sub: "a".repeat(1_025) }, "sub"],
    ["U+0000 in a role", { roles: ["approver\0"] }, "roles"],
    ["an empty role", { roles: [""] }, "roles"],
    ["a lone surrogate in scope", { scope: "runs:read \udc00" }, "scope"],
    ["U+0000 in tenant", { tenant: "acme\0" }, "tenant"],
    ["U+0000 in jti", { jti: "t\0" }, "jti"],
  ];
  for (const [name, overrides, claim] of cases) {
    await t.step(name, async () => {
      await rejectsWith(
        provider().verifyToken(await craft({ payload: claims(overrides) })),
        "ERR_TOKEN_CLAIM_INVALID",
        claim,
        "invalid",
      );
    });
  }
  await t.step("what it accepts always matches IdentitySchema", async () => {
    const identity = await provider().verifyToken(
      await craft({ payload: claims({ sub: "a".repeat(1_024), roles: ["é", "🙂"] }) }),
    );
    assert.ok(IdentitySchema.safeParse(identity).success);
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() accepts no token that jose.jwtVerify refuses (ADR 0005)", async () => {
  // ADR 0005: verification is our own code on WebCrypto, not jose's; it must be at least as
  // strict. jose, given the same key, algorithm and time, is the oracle over odd headers and
  // every claim set to odd values or removed.
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const headers: Record<string, unknown>[] = [
    HEADER,
    { ...HEADER, crit: ["b64"], b64: false },
    { ...HEADER, b64: false },
    { ...HEADER, crit: [] },
    { ...HEADER, typ: "jwt" },
    { alg: "HS256" },
    { ...HEADER, kid: 1 },
  ];
  const odd: unknown[] = [undefined, null, 0, -1, 1.5, "", "x", [], {}, true, ["a"], [1], 1e300];
  const times = [NOW - 100, NOW + 100, NOW + 1e9];
  const names = ["sub", "actor_kind", "iat", "exp", "nbf", "iss", "aud", "roles", "scope", "jti"];
  let accepted = 0;
  let checked = 0;
  for (const header of headers) {
    for (const name of names) {
      for (const value of [...odd, ...times]) {
        const token = await craft({ header, payload: claims({ [name]: value }) });
        const ours = await provider().verifyToken(token).then(() => true, () => false);
        const theirs = await jose.jwtVerify(token, key, {
          algorithms: ["HS256"],
          currentDate: new Date(NOW_MS),
        }).then(() => true, () => false);
        assert.ok(!ours || theirs, `jose refuses what we accept: ${name} = ${String(value)}`);
        if (ours) accepted++;
        checked++;
      }
    }
  }
  // The corpus is not all refusals: some variants are valid for both.
  assert.ok(accepted > 0 && accepted < checked);
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() checks time with the clock tolerance", async (t) => {
  const clock = new FakeClock(NOW_MS);
  const p = provider({ clock, clockToleranceSeconds: 30 });
  const token = await craft({ payload: claims({ iat: NOW - 600, exp: NOW }) });

  await t.step("expired beyond the tolerance", async () => {
    clock.set((NOW + 30) * 1000);
    await rejectsWith(p.verifyToken(token), "ERR_TOKEN_EXPIRED");
  });
  await t.step("expired within the tolerance", async () => {
    clock.set((NOW + 29) * 1000);
    await p.verifyToken(token);
  });
  await t.step("nbf beyond the tolerance", async () => {
    clock.set(NOW_MS);
    await rejectsWith(
      p.verifyToken(await craft({ payload: claims({ nbf: NOW + 31 }) })),
      "ERR_TOKEN_NOT_YET_VALID",
    );
  });
  await t.step("nbf within the tolerance", async () => {
    clock.set(NOW_MS);
    await p.verifyToken(await craft({ payload: claims({ nbf: NOW + 30 }) }));
  });
  await t.step("iat in the future beyond the tolerance", async () => {
    clock.set(NOW_MS);
    await rejectsWith(
      p.verifyToken(await craft({ payload: claims({ iat: NOW + 31, exp: NOW + 600 }) })),
      "ERR_TOKEN_CLAIM_INVALID",
      "iat",
      "in_future",
    );
  });
  await t.step("iat in the future within the tolerance", async () => {
    clock.set(NOW_MS);
    await p.verifyToken(await craft({ payload: claims({ iat: NOW + 30, exp: NOW + 600 }) }));
  });
  await t.step("a zero tolerance expires at exp exactly", async () => {
    const strict = provider({ clock, clockToleranceSeconds: 0 });
    clock.set(NOW * 1000 - 1);
    await strict.verifyToken(token);
    clock.set(NOW * 1000);
    await rejectsWith(strict.verifyToken(token), "ERR_TOKEN_EXPIRED");
  });
});

Deno.test("Hs256JwtIdentityProvider.verifyToken() checks structure, signature, claims, then time", async (t) => {
  const expired = { iat: NOW - 7200, exp: NOW - 3600 };
  await t.step("alg none before an expired, unsigned payload", async () => {
    const token = `${b64('{"alg":"none","typ":"JWT"}')}.${b64(JSON.stringify(claims(expired)))}.`;
    await rejectsWith(provider().verifyToken(token), "ERR_TOKEN_ALG_NOT_ALLOWED");
  });
  await t.step("signature before a missing sub", async () => {
    await rejectsWith(
      provider().verifyToken(
        await craft({ payload: claims({ sub: undefined }), secret: SECRET + "x" }),
      ),
      "ERR_TOKEN_SIGNATURE_INVALID",
    );
  });
  await t.step("claim presence before expiry", async () => {
    await rejectsWith(
      provider().verifyToken(await craft({ payload: claims({ ...expired, sub: undefined }) })),
      "ERR_TOKEN_CLAIM_INVALID",
      "sub",
      "missing",
    );
  });
  await t.step("claim values before expiry", async () => {
    await rejectsWith(
      provider().verifyToken(
        await craft({ payload: claims({ ...expired, actor_kind: "system" }) }),
      ),
      "ERR_TOKEN_CLAIM_INVALID",
      "actor_kind",
      "forbidden",
    );
  });
  await t.step("duplicate keys before the signature", async () => {
    const dup = `{"sub":"x",${JSON.stringify(claims()).slice(1)}`;
    await rejectsWith(
      provider().verifyToken(await craft({ payload: dup, secret: SECRET + "x" })),
      "ERR_TOKEN_MALFORMED",
    );
  });
});

Deno.test("IdentityError messages never contain the token", async () => {
  const token = await craft({ payload: claims({ actor_kind: "system" }) });
  const [, p, s] = token.split(".") as [string, string, string];
  await assert.rejects(provider().verifyToken(token), (err: unknown) => {
    assert.ok(err instanceof IdentityError);
    assert.ok(!err.message.includes(p) && !err.message.includes(s));
    return true;
  });
});

// ---------------------------------------------------------------------------
// Context: currentIdentity, requireIdentity, withIdentity

const ALICE: Identity = { subject: "alice", actorKind: "human", roles: [], scopes: [] };
const BOB: Identity = { subject: "bob", actorKind: "agent", roles: ["runner"], scopes: [] };

/** Asserts the one error of the "bound identity or fail" check: a plain PlmError. */
function identityRequired(err: unknown): true {
  assert.ok(err instanceof PlmError, `expected PlmError, got ${String(err)}`);
  assert.equal(err.code, "ERR_IDENTITY_REQUIRED");
  assert.equal(err.name, "PlmError");
  assert.ok(!(err instanceof IdentityError), "ERR_IDENTITY_REQUIRED is not a token error");
  return true;
}

Deno.test("currentIdentity() is undefined and requireIdentity() throws when nothing is bound", () => {
  assert.equal(currentIdentity(), undefined);
  assert.throws(() => requireIdentity(), identityRequired);
});

const TASK = task();

async function controlPlane() {
  const store = await openStore(":memory:");
  let n = 0;
  const cp = new ControlPlane(store, {
    policies: { id: "p", rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] },
    clock: new FakeClock(NOW_MS),
    generateId: () => `id-${++n}`,
  });
  return { store, cp };
}

Deno.test("requireIdentity() is the one check: every caller throws one PlmError class", async (t) => {
  const { store, cp } = await controlPlane();
  await using _store = store;
  const calls: [string, () => unknown][] = [
    ["requireIdentity()", () => requireIdentity()],
    ["resolveActor()", () => resolveActor(undefined)],
    ["ControlPlane.authorize()", () => cp.authorize({ action: "bom.read", resource: "bom:1" })],
    ["ControlPlane.setPolicies()", () => cp.setPolicies({ rules: [] })],
    ["ControlPlane.decideApproval()", () => cp.decideApproval("a-1", "approve", { digest: "d" })],
    ["RunStore.create()", () => cp.runs.create({ task: TASK, traceparent: TRACEPARENT })],
  ];
  for (const [name, call] of calls) {
    await t.step(name, () => assert.rejects(async () => await call(), identityRequired));
  }
  assert.equal((await cp.audit.list()).length, 0);
});

Deno.test("requireIdentity() validates an explicit identity with IdentitySchema", async (t) => {
  const bad: [string, unknown][] = [
    ["roles as a string", { ...ALICE, roles: "admin" }],
    ["scopes as a string", { ...ALICE, scopes: "runs:write" }],
    ["U+0000 in the subject", { ...ALICE, subject: "alice\0" }],
    ["a lone surrogate in a role", { ...ALICE, roles: ["\ud800"] }],
    ["an empty role", { ...ALICE, roles: [""] }],
    ["a subject over 1,024 characters", { ...ALICE, subject: "a".repeat(1_025) }],
    ["an unknown key", { ...ALICE, admin: true }],
    ["an unknown actor kind", { ...ALICE, actorKind: "root" }],
  ];
  for (const [name, identity] of bad) {
    await t.step(name, () => {
      assert.throws(() => requireIdentity(identity as Identity, { field: "request.identity" }), {
        code: "ERR_INVALID_ARGUMENT",
        message: /request\.identity/,
      });
    });
  }
  await t.step("a valid identity comes back frozen", () => {
    const parsed = requireIdentity({ ...ALICE, roles: ["approver"] });
    assert.deepEqual(parsed, { ...ALICE, roles: ["approver"] });
    assert.ok(Object.isFrozen(parsed));
  });
});

Deno.test("ControlPlane and RunStore refuse an invalid explicit identity before acting", async (t) => {
  const { store, cp } = await controlPlane();
  await using _store = store;
  const admin = { ...ALICE, roles: "admin" } as unknown as Identity;
  const nul = { ...ALICE, subject: "alice\0" };
  await t.step("authorize({ identity })", async () => {
    for (const identity of [admin, nul]) {
      await assert.rejects(
        () => cp.authorize({ identity, action: "bom.read", resource: "bom:1" }),
        { code: "ERR_INVALID_ARGUMENT", message: /request\.identity/ },
      );
    }
  });
  await t.step("decideApproval({ identity })", async () => {
    await assert.rejects(
      () => cp.decideApproval("a-1", "approve", { identity: admin, digest: "d" }),
      { code: "ERR_INVALID_ARGUMENT", message: /options\.identity/ },
    );
  });
  await t.step("runs.create({ requester })", async () => {
    await assert.rejects(
      () => cp.runs.create({ task: TASK, requester: nul, traceparent: TRACEPARENT }),
      { code: "ERR_INVALID_ARGUMENT", message: /requester/ },
    );
  });
  assert.equal((await cp.audit.list()).length, 0);
  assert.equal((await cp.audit.verify()).ok, true);
});

Deno.test("withIdentity() binds across awaits and unbinds afterwards", async () => {
  const seen = await withIdentity(ALICE, async () => {
    const first = requireIdentity().subject;
    await Promise.resolve();
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    return [first, currentIdentity()?.subject];
  });
  assert.deepEqual(seen, ["alice", "alice"]);
  assert.equal(currentIdentity(), undefined);
});

Deno.test("withIdentity() refuses the system actor kind and invalid identities", async (t) => {
  const cases: [string, unknown][] = [
    ["system", SYSTEM_IDENTITY],
    ["empty subject", { ...ALICE, subject: "" }],
    ["unknown key", { ...ALICE, admin: true }],
    ["roles as a string", { ...ALICE, roles: "admin" }],
    ["U+0000 in the subject", { ...ALICE, subject: "alice\0" }],
    ["a lone surrogate in a scope", { ...ALICE, scopes: ["\udc00"] }],
  ];
  for (const [name, identity] of cases) {
    await t.step(name, () => {
      let ran = false;
      assert.throws(() => withIdentity(identity as Identity, () => (ran = true)), {
        code: "ERR_INVALID_ARGUMENT",
      });
      assert.equal(ran, false);
    });
  }
});

Deno.test("withIdentity() restores the outer identity after a nested call and a throw", () => {
  withIdentity(ALICE, () => {
    withIdentity(BOB, () => assert.equal(currentIdentity()?.subject, "bob"));
    assert.equal(currentIdentity()?.subject, "alice");
    assert.throws(() =>
      withIdentity(BOB, () => {
        throw new Error("boom");
      })
    );
    assert.equal(currentIdentity()?.subject, "alice");
  });
});

// ---------------------------------------------------------------------------
// withSystemIdentity

Deno.test("withSystemIdentity() binds the system identity for fn only", async () => {
  const inside = await withSystemIdentity("sweep expired leases", async () => {
    await Promise.resolve();
    return currentIdentity();
  });
  assert.deepEqual(inside, { subject: "system", actorKind: "system", roles: [], scopes: [] });
  assert.equal(currentIdentity(), undefined);
});

Deno.test("withSystemIdentity() isolates nested calls", async () => {
  await withIdentity(ALICE, async () => {
    await withSystemIdentity("nested job", async () => {
      assert.equal(currentIdentity()?.actorKind, "system");
      withIdentity(BOB, () => assert.equal(currentIdentity()?.subject, "bob"));
      assert.equal(currentIdentity()?.actorKind, "system");
      await withSystemIdentity(
        "inner job",
        () => assert.equal(currentIdentity()?.subject, "system"),
      );
      assert.equal(currentIdentity()?.subject, "system");
    });
    assert.equal(currentIdentity()?.subject, "alice");
  });
  assert.equal(currentIdentity(), undefined);
});

Deno.test("withSystemIdentity() isolates concurrent calls", async () => {
  const gates = Array.from({ length: 20 }, deferred);
  const tasks = gates.map((gate, i) => {
    const body = async () => {
      const before = currentIdentity()?.subject;
      await gate.promise;
      await Promise.resolve();
      return [before, currentIdentity()?.subject];
    };
    return i % 2 === 0
      ? withSystemIdentity(`job ${i}`, body)
      : withIdentity({ ...ALICE, subject: `user-${i}` }, body);
  });
  // Release in reverse order so that the continuations interleave.
  for (const gate of gates.toReversed()) gate.resolve();
  const results = await Promise.all(tasks);
  results.forEach((pair, i) => {
    const expected = i % 2 === 0 ? "system" : `user-${i}`;
    assert.deepEqual(pair, [expected, expected]);
  });
  assert.equal(currentIdentity(), undefined);
});

Deno.test("withSystemIdentity() restores the previous binding when fn throws", async () => {
  await assert.rejects(
    withIdentity(ALICE, async () => {
      await assert.rejects(
        withSystemIdentity("failing job", async () => {
          await Promise.resolve();
          throw new Error("boom");
        }),
        /boom/,
      );
      assert.equal(currentIdentity()?.subject, "alice");
      throw new Error("done");
    }),
    /done/,
  );
  assert.equal(currentIdentity(), undefined);
});

Deno.test("withSystemIdentity() audits the reason", async (t) => {
  await t.step("without a caller", async () => {
    const audit = new MemorySink();
    assert.equal(await withSystemIdentity("rotate keys", () => 7, { audit }), 7);
    assert.deepEqual(audit.entries, [{
      actor: { subject: "system", kind: "system" },
      action: "system.identity.bound",
      resource: "identity:system",
      outcome: "allowed",
      reason: "rotate keys",
    }]);
  });
  await t.step("from inside a caller's context", async () => {
    const audit = new MemorySink();
    await withIdentity(ALICE, () => withSystemIdentity("escalate", () => undefined, { audit }));
    assert.deepEqual(audit.entries[0]?.data, { invokedBy: "alice" });
  });
});

Deno.test("withSystemIdentity() refuses an empty reason", async () => {
  await assert.rejects(() => withSystemIdentity("", () => 1), TypeError);
  await assert.rejects(() => withSystemIdentity("  ", () => 1), TypeError);
});

Deno.test("control_plane/identity/public.ts does not export withSystemIdentity", () => {
  assert.equal("withSystemIdentity" in publicApi, false);
  assert.equal("SYSTEM_IDENTITY" in publicApi, false);
  assert.equal(typeof publicApi.Hs256JwtIdentityProvider, "function");
  assert.equal(typeof publicApi.identityMiddleware, "function");
  assert.ok(isPlmError(new publicApi.IdentityError("ERR_TOKEN_MISSING", "x")));
});
