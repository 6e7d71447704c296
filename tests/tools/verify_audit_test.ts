import assert from "node:assert/strict";
import {
  AuditLog,
  type AuditRecord,
  generateCheckpointKeys,
  importCheckpointPrivateKey,
  openStore,
  signCheckpoint,
} from "../../control_plane/mod.ts";
import { FakeClock } from "../../shared/mod.ts";
import { jcs, verifyCheckpoint, verifyLines } from "../../tools/verify_audit.ts";

async function exported(n: number): Promise<string[]> {
  await using db = await openStore(":memory:");
  const clock = new FakeClock(Date.UTC(2026, 10, 30));
  const audit = new AuditLog(db, { clock });
  for (let i = 1; i <= n; i++) {
    clock.advance(7);
    await audit.append({
      actor: { subject: i % 2 ? "alice" : "agent-é😀", kind: i % 2 ? "human" : "agent" },
      action: "run.transition",
      resource: `bom:${i}\u2028"q"`,
      outcome: "succeeded",
      ...(i % 3 ? { reason: "Because \\ said so", runId: `r-${i}` } : {}),
      ...(i % 4 ? {} : { traceId: "4bf92f3577b34da6a3ce929d0e0e4736" }),
      data: { i, nul: "a\0b", nested: { z: [1.5, -0, 1e21], a: null } },
    });
  }
  return (await audit.list()).map((record) => JSON.stringify(record));
}

Deno.test("tools/verify_audit.ts recomputes the chain the library wrote", async () => {
  const lines = await exported(25);
  const verdict = verifyLines(lines);
  assert.deepEqual(verdict.ok && verdict.checked, 25);
  const last = JSON.parse(lines.at(-1)!) as AuditRecord;
  assert.deepEqual(verifyLines(lines, [{ seq: 25, hash: last.hash }]).ok, true);
});

Deno.test("tools/verify_audit.ts names the first bad record", async (t) => {
  const lines = await exported(6);
  const edit = (index: number, change: (r: Record<string, unknown>) => void) => {
    const copy = [...lines];
    const record = JSON.parse(copy[index]!);
    change(record);
    copy[index] = JSON.stringify(record);
    return copy;
  };
  const cases: [string, string[], number, string][] = [
    ["an edited outcome", edit(2, (r) => (r.outcome = "failed")), 3, "hash_mismatch"],
    ["edited data", edit(4, (r) => ((r.data as { i: number }).i = 0)), 5, "hash_mismatch"],
    ["a deleted record", lines.filter((_, i) => i !== 3), 4, "seq_gap"],
    ["swapped records", [lines[0]!, lines[2]!, lines[1]!], 2, "seq_gap"],
    ["a relinked record", edit(1, (r) => (r.prevHash = "f".repeat(64))), 2, "prev_hash_mismatch"],
    ["garbage", [lines[0]!, "{not json"], 2, "not_json"],
  ];
  for (const [name, tampered, seq, problem] of cases) {
    await t.step(name, () => {
      const verdict = verifyLines(tampered);
      assert.deepEqual(verdict.ok ? "ok" : [verdict.seq, verdict.problem], [seq, problem]);
    });
  }
  await t.step("truncation against a remembered head", () => {
    const head = JSON.parse(lines[5]!) as AuditRecord;
    const verdict = verifyLines(lines.slice(0, 4), [{ seq: 6, hash: head.hash }]);
    assert.deepEqual(verdict.ok ? "ok" : [verdict.seq, verdict.problem], [5, "truncated"]);
  });
});

Deno.test("jcs() matches the RFC 8785 examples it relies on", () => {
  assert.equal(jcs({ b: [1e21, -0, 0.1], a: "\u20ac\0" }), '{"a":"€\\u0000","b":[1e+21,0,0.1]}');
  assert.throws(() => jcs({ x: NaN }));
  assert.throws(() => jcs("\ud800"));
});

Deno.test("tools/verify_audit.ts verifyCheckpoint() checks what signCheckpoint() signed", async (t) => {
  const pair = await generateCheckpointKeys();
  const privateKey = await importCheckpointPrivateKey(pair.privateKeyPem);
  const head = { seq: 4, hash: "9".repeat(64) };
  const checkpoint = await signCheckpoint(head, { privateKey, clock: new FakeClock(5) });
  const text = JSON.stringify(checkpoint);
  const other = await generateCheckpointKeys();
  await t.step("with the PEM public key, among others", async () => {
    assert.deepEqual(await verifyCheckpoint(text, [other.publicKeyPem, pair.publicKeyPem]), head);
  });
  await t.step("with the public key as a JWK", async () => {
    const spki = Uint8Array.fromBase64(pair.publicKeyPem.replace(/-----[A-Z ]+-----|\s/g, ""));
    const key = await crypto.subtle.importKey("spki", spki, "Ed25519", true, ["verify"]);
    const jwk = JSON.stringify(await crypto.subtle.exportKey("jwk", key));
    assert.deepEqual(await verifyCheckpoint(text, [jwk]), head);
  });
  const refused: [string, string, string[], RegExp][] = [
    [
      "a changed time",
      JSON.stringify({ ...checkpoint, at: 6 }),
      [pair.publicKeyPem],
      /bad signature/,
    ],
    ["an extra field", JSON.stringify({ ...checkpoint, x: 1 }), [pair.publicKeyPem], /version 1/],
    ["another signer's key", text, [other.publicKeyPem], /no trusted key/],
    ["a private key PEM given as the public key", text, [pair.privateKeyPem], /PUBLIC KEY/],
  ];
  await t.step("refuses a private JWK given as the public key", async () => {
    const pkcs8 = Uint8Array.fromBase64(pair.privateKeyPem.replace(/-----[A-Z ]+-----|\s/g, ""));
    const key = await crypto.subtle.importKey("pkcs8", pkcs8, "Ed25519", true, ["sign"]);
    const jwk = JSON.stringify(await crypto.subtle.exportKey("jwk", key));
    await assert.rejects(verifyCheckpoint(text, [jwk]), /private JWK/);
  });
  for (const [name, forged, keys, message] of refused) {
    await t.step(`refuses ${name}`, async () => {
      await assert.rejects(verifyCheckpoint(forged, keys), message);
    });
  }
});
