import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { FakeClock } from "../../shared/mod.ts";
import {
  type AuditCheckpoint,
  type AuditLog,
  type AuditVerifyResult,
  type CheckpointKey,
  generateCheckpointKeys,
  importCheckpointPrivateKey,
  importCheckpointPublicKey,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
} from "../../control_plane/audit/mod.ts";
import { dropTriggers, restoreTriggers, rewriteFrom, seeded } from "./_audit_fixture.ts";

const AT = Date.UTC(2026, 10, 30, 12);

async function keys(): Promise<{ privateKey: CheckpointKey; publicKey: CheckpointKey }> {
  const pair = await generateCheckpointKeys();
  return {
    privateKey: await importCheckpointPrivateKey(pair.privateKeyPem),
    publicKey: await importCheckpointPublicKey(pair.publicKeyPem),
  };
}

/** Signs the log's current head at {@link AT}. */
async function checkpointOf(audit: AuditLog, privateKey: CheckpointKey): Promise<AuditCheckpoint> {
  return await signCheckpoint(await audit.head(), { privateKey, clock: new FakeClock(AT) });
}

function failure(result: AuditVerifyResult): [string, number, number | undefined] | "ok" {
  return result.ok ? "ok" : [result.problem, result.firstBadSeq, result.checkpointIndex];
}

Deno.test("signCheckpoint() signs the canonical JSON of { version, seq, hash, at, keyId }", async () => {
  const { privateKey, publicKey } = await keys();
  const head = { seq: 12, hash: "ab".repeat(32) };
  const checkpoint = await signCheckpoint(head, { privateKey, clock: new FakeClock(AT + 0.7) });
  assert.deepEqual(Object.keys(checkpoint).sort(), [
    "at",
    "hash",
    "keyId",
    "seq",
    "signature",
    "version",
  ]);
  assert.deepEqual({ ...checkpoint, signature: "" }, {
    version: 1,
    seq: 12,
    hash: head.hash,
    at: AT,
    keyId: publicKey.keyId,
    signature: "",
  });
  // Independent evidence: the signed text written out by hand, checked by WebCrypto directly.
  const text =
    `{"at":${AT},"hash":"${head.hash}","keyId":"${publicKey.keyId}","seq":12,"version":1}`;
  const signature = Uint8Array.fromBase64(checkpoint.signature, { alphabet: "base64url" });
  assert.equal(signature.length, 64);
  assert.ok(
    await crypto.subtle.verify("Ed25519", publicKey.key, signature, new TextEncoder().encode(text)),
  );
  assert.deepEqual(await verifyCheckpoint(checkpoint, publicKey), { ok: true, checkpoint });
});

Deno.test("signCheckpoint() refuses a malformed head", async (t) => {
  const { privateKey } = await keys();
  const cases: [string, { seq: number; hash: string }, RegExp][] = [
    ["negative seq", { seq: -1, hash: "a".repeat(64) }, /head\.seq/],
    ["fractional seq", { seq: 1.5, hash: "a".repeat(64) }, /head\.seq/],
    ["short hash", { seq: 1, hash: "a".repeat(63) }, /head\.hash/],
    ["upper-case hash", { seq: 1, hash: "A".repeat(64) }, /head\.hash/],
  ];
  for (const [name, head, field] of cases) {
    await t.step(name, async () => {
      await assert.rejects(signCheckpoint(head, { privateKey }), {
        code: "ERR_INVALID_ARGUMENT",
        message: field,
      });
    });
  }
});

Deno.test("verifyCheckpoint() refuses any tampered field, the signature, and a wrong key", async (t) => {
  const { privateKey, publicKey } = await keys();
  const checkpoint = await signCheckpoint({ seq: 5, hash: "c".repeat(64) }, {
    privateKey,
    clock: new FakeClock(AT),
  });
  const flipped = (checkpoint.signature[0] === "A" ? "B" : "A") + checkpoint.signature.slice(1);
  const tampered: [string, AuditCheckpoint][] = [
    ["seq", { ...checkpoint, seq: 6 }],
    ["hash", { ...checkpoint, hash: "d".repeat(64) }],
    ["at", { ...checkpoint, at: AT + 1 }],
    ["signature", { ...checkpoint, signature: flipped }],
  ];
  for (const [name, forged] of tampered) {
    await t.step(name, async () => {
      const result = await verifyCheckpoint(forged, publicKey);
      assert.equal(result.ok ? "ok" : result.problem, "bad_signature");
    });
  }
  await t.step("keyId (the verifier holds a key under the new id)", async () => {
    const otherId = publicKey.keyId === "0".repeat(16) ? "1".repeat(16) : "0".repeat(16);
    const result = await verifyCheckpoint({ ...checkpoint, keyId: otherId }, [
      publicKey,
      { key: publicKey.key, keyId: otherId },
    ]);
    assert.equal(result.ok ? "ok" : result.problem, "bad_signature");
  });
  await t.step("another key pair: its id is not the checkpoint's", async () => {
    const other = await keys();
    const result = await verifyCheckpoint(checkpoint, other.publicKey);
    assert.equal(result.ok ? "ok" : result.problem, "unknown_key");
  });
  await t.step("another key pair presented under the signer's id", async () => {
    const other = await keys();
    const impostor = { key: other.publicKey.key, keyId: publicKey.keyId };
    const result = await verifyCheckpoint(checkpoint, impostor);
    assert.equal(result.ok ? "ok" : result.problem, "bad_signature");
  });
  await t.step("the right key among several (a rotation)", async () => {
    const other = await keys();
    const result = await verifyCheckpoint(checkpoint, [other.publicKey, publicKey]);
    assert.equal(result.ok, true);
  });
  await t.step("a malformed checkpoint is an invalid argument naming the field", async () => {
    const bad = { ...checkpoint, signature: checkpoint.signature + "=" };
    await assert.rejects(verifyCheckpoint(bad, publicKey), {
      code: "ERR_INVALID_ARGUMENT",
      message: /checkpoint\.signature/,
    });
  });
});

Deno.test("importCheckpoint*Key() read PEM and JWK, and the key id is SHA-256 of the SPKI", async (t) => {
  const { privateKey: nodePrivate, publicKey: nodePublic } = generateKeyPairSync("ed25519");
  const spki = nodePublic.export({ type: "spki", format: "der" });
  const expectedId = createHash("sha256").update(spki).digest("hex").slice(0, 16);
  const privatePem = nodePrivate.export({ type: "pkcs8", format: "pem" }) as string;
  const publicPem = nodePublic.export({ type: "spki", format: "pem" }) as string;
  const privateJwk = JSON.stringify(nodePrivate.export({ format: "jwk" }));
  const publicJwk = JSON.stringify(nodePublic.export({ format: "jwk" }));

  await t.step("PEM and JWK give the same id on both sides", async () => {
    const ids = await Promise.all([
      importCheckpointPrivateKey(privatePem),
      importCheckpointPrivateKey(privateJwk),
      importCheckpointPublicKey(publicPem),
      importCheckpointPublicKey(publicJwk),
    ]);
    assert.deepEqual(ids.map((k) => k.keyId), Array(4).fill(expectedId));
    assert.deepEqual(ids.map((k) => [k.key.type, k.key.extractable]).slice(0, 2), [
      ["private", false],
      ["private", false],
    ]);
  });
  await t.step(
    "a private JWK's 'x' is not taken on trust: the id is derived from 'd'",
    async () => {
      const other = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" });
      const lying = JSON.stringify({ ...JSON.parse(privateJwk), x: other.x });
      assert.equal((await importCheckpointPrivateKey(lying)).keyId, expectedId);
    },
  );
  await t.step("a key from the JWK signs what the PEM key verifies", async () => {
    const privateKey = await importCheckpointPrivateKey(privateJwk);
    const checkpoint = await signCheckpoint({ seq: 0, hash: "0".repeat(64) }, { privateKey });
    const result = await verifyCheckpoint(checkpoint, await importCheckpointPublicKey(publicPem));
    assert.equal(result.ok, true);
  });

  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const refusedPrivate: [string, string][] = [
    ["a public PEM", publicPem],
    ["a public JWK", publicJwk],
    ["an EC key", ec.privateKey.export({ type: "pkcs8", format: "pem" }) as string],
    ["garbage", "not a key"],
    ["broken base64", privatePem.replace(/\n[A-Za-z0-9+/]/, "\n!")],
    ["two blocks", privatePem + privatePem],
    ["JSON that is no JWK", "[1]"],
  ];
  for (const [name, text] of refusedPrivate) {
    await t.step(`importCheckpointPrivateKey() refuses ${name}`, async () => {
      await assert.rejects(importCheckpointPrivateKey(text, { field: "--key k.pem" }), {
        code: "ERR_INVALID_ARGUMENT",
        message: /^Invalid --key k\.pem: /,
      });
    });
  }
  const refusedPublic: [string, string][] = [
    ["a private PEM", privatePem],
    ["a private JWK", privateJwk],
    ["an EC key", ec.publicKey.export({ type: "spki", format: "pem" }) as string],
    [
      "an RSA key",
      generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({
        type: "spki",
        format: "pem",
      }) as string,
    ],
  ];
  for (const [name, text] of refusedPublic) {
    await t.step(`importCheckpointPublicKey() refuses ${name}`, async () => {
      await assert.rejects(importCheckpointPublicKey(text), {
        code: "ERR_INVALID_ARGUMENT",
        message: /^Invalid publicKey: /,
      });
    });
  }
});

Deno.test("parseCheckpoint() refuses what is not a checkpoint, naming the field", async (t) => {
  const { privateKey } = await keys();
  const good = await signCheckpoint({ seq: 1, hash: "e".repeat(64) }, { privateKey });
  assert.deepEqual(parseCheckpoint(JSON.stringify(good)), good);
  const cases: [string, string, RegExp][] = [
    ["not JSON", "{", /^Invalid ckpt\.json: not JSON/],
    ["an unknown key", JSON.stringify({ ...good, note: "x" }), /ckpt\.json: .*note/],
    ["version 2", JSON.stringify({ ...good, version: 2 }), /ckpt\.json\.version/],
    ["seq as a string", JSON.stringify({ ...good, seq: "1" }), /ckpt\.json\.seq/],
    ["a fractional time", JSON.stringify({ ...good, at: 1.5 }), /ckpt\.json\.at/],
    ["a long key id", JSON.stringify({ ...good, keyId: "0".repeat(17) }), /ckpt\.json\.keyId/],
    ["a missing field", JSON.stringify({ ...good, hash: undefined }), /ckpt\.json\.hash/],
    [
      "a non-canonical signature",
      JSON.stringify({ ...good, signature: good.signature.slice(0, 85) + "B" }),
      /ckpt\.json\.signature/,
    ],
  ];
  for (const [name, text, field] of cases) {
    await t.step(name, () => {
      assert.throws(() => parseCheckpoint(text, "ckpt.json"), {
        code: "ERR_INVALID_ARGUMENT",
        message: field,
      });
    });
  }
});

Deno.test("AuditLog.verify({ checkpoints }) holds the chain to every checkpoint", async (t) => {
  const { privateKey } = await keys();

  await t.step("an intact log that grew past its checkpoints", async () => {
    await using seed = await seeded(0);
    const { audit } = seed;
    const empty = await checkpointOf(audit, privateKey);
    await using seed2 = await seeded(4);
    const { audit: audit2 } = seed2;
    const atFour = await checkpointOf(audit2, privateKey);
    assert.deepEqual(await audit.verify({ checkpoints: [empty] }), {
      ok: true,
      checked: 0,
      head: await audit.head(),
      sealedThrough: 0,
      pending: 0,
    });
    assert.equal((await audit2.verify({ checkpoints: [empty, atFour] })).ok, true);
  });

  await t.step("truncation after a checkpoint", async () => {
    await using seed = await seeded(8);
    const { db, audit } = seed;
    const checkpoint = await checkpointOf(audit, privateKey);
    dropTriggers(db);
    db.exec("DELETE FROM audit_log WHERE seq > 5");
    restoreTriggers(db);
    assert.equal((await audit.verify()).ok, true);
    assert.deepEqual(failure(await audit.verify({ checkpoints: [checkpoint] })), [
      "truncated",
      6,
      0,
    ]);
  });

  await t.step("a rewrite: every hash recomputed from record 3, triggers restored", async () => {
    await using seed = await seeded(6);
    const { db, audit } = seed;
    const checkpoint = await checkpointOf(audit, privateKey);
    await rewriteFrom(db, audit, 3);
    assert.equal((await audit.verify()).ok, true);
    assert.deepEqual(failure(await audit.verify({ checkpoints: [checkpoint] })), [
      "head_mismatch",
      6,
      0,
    ]);
  });

  await t.step("a forged record behind a checkpoint", async () => {
    await using seed = await seeded(6);
    const { db, audit } = seed;
    const checkpoint = await checkpointOf(audit, privateKey);
    dropTriggers(db);
    db.exec("UPDATE audit_log SET outcome = 'denied' WHERE seq = 4");
    restoreTriggers(db);
    assert.deepEqual(failure(await audit.verify({ checkpoints: [checkpoint] })), [
      "hash_mismatch",
      4,
      undefined,
    ]);
  });

  await t.step("several checkpoints: the later one fails and is named", async () => {
    await using seed = await seeded(3);
    const { db, audit, clock } = seed;
    const early = await checkpointOf(audit, privateKey);
    for (let i = 4; i <= 9; i++) {
      clock.advance(10);
      await audit.append({
        actor: { subject: "svc", kind: "service" },
        action: "demo",
        resource: `x:${i}`,
        outcome: "ok",
      });
    }
    const late = await checkpointOf(audit, privateKey);
    await rewriteFrom(db, audit, 5);
    // Given in either order, the checkpoint at record 9 is the one named.
    assert.deepEqual(failure(await audit.verify({ checkpoints: [early, late] })), [
      "head_mismatch",
      9,
      1,
    ]);
    assert.deepEqual(failure(await audit.verify({ checkpoints: [late, early] })), [
      "head_mismatch",
      9,
      0,
    ]);
    assert.equal((await audit.verify({ checkpoints: [early] })).ok, true);
  });

  await t.step(
    "an expected head and a checkpoint at one seq: the expected head is named",
    async () => {
      await using seed = await seeded(2);
      const { audit } = seed;
      const checkpoint = await checkpointOf(audit, privateKey);
      const result = await audit.verify({
        expectedHead: { seq: 2, hash: "f".repeat(64) },
        checkpoints: [checkpoint],
      });
      assert.deepEqual(failure(result), ["head_mismatch", 2, undefined]);
    },
  );

  await t.step("a malformed checkpoint is refused naming its index", async () => {
    await using seed = await seeded(1);
    const { audit } = seed;
    const bad = { seq: 1, hash: "x" } as unknown as AuditCheckpoint;
    await assert.rejects(() => audit.verify({ checkpoints: [bad] }), {
      code: "ERR_INVALID_ARGUMENT",
      message: /checkpoints\[0\]/,
    });
  });
});

Deno.test("AuditLog.verify() trusts only checkpoints whose signature was checked, and they cannot change", async () => {
  const { privateKey, publicKey } = await keys();
  await using seed = await seeded(3);
  const { audit } = seed;
  const signed = await checkpointOf(audit, privateKey);
  const parsed = parseCheckpoint(JSON.stringify(signed), "ckpt.json");
  await assert.rejects(() => audit.verify({ checkpoints: [parsed] }), {
    code: "ERR_CHECKPOINT_INVALID",
  });
  const forged = { ...signed, hash: "f".repeat(64) };
  await assert.rejects(() => audit.verify({ checkpoints: [forged] }), {
    code: "ERR_CHECKPOINT_INVALID",
  });
  const result = await verifyCheckpoint(parsed, publicKey);
  assert.ok(result.ok);
  assert.equal((await audit.verify({ checkpoints: [result.checkpoint] })).ok, true);
  assert.throws(() => ((result.checkpoint as { seq: number }).seq = 1), TypeError, "frozen");
});

Deno.test("AuditCheckpointSchema refuses a time past what a Date can hold", () => {
  const checkpoint = {
    version: 1,
    seq: 0,
    hash: "0".repeat(64),
    at: 8_640_000_000_000_001,
    keyId: "0123456789abcdef",
    signature: "A".repeat(86),
  };
  assert.throws(() => parseCheckpoint(JSON.stringify(checkpoint), "ckpt.json"), {
    code: "ERR_INVALID_ARGUMENT",
    message: /at/,
  });
});
