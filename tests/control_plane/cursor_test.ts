import assert from "node:assert/strict";
import { decodeCursor, encodeCursor } from "../../control_plane/runs/_cursor.ts";

Deno.test("encodeCursor() round-trips through decodeCursor()", async (t) => {
  const keys = [
    { createdAt: 0, id: "r-1" },
    { createdAt: 1_764_500_000_000, id: "0af76519-16cd-43dd-8448-eb211c80319c" },
    { createdAt: -5, id: 'ü 🙂 "quoted" \\ /' },
    { createdAt: Number.MAX_SAFE_INTEGER, id: "\u2028".repeat(1024) },
  ];
  for (const key of keys) {
    await t.step(JSON.stringify(key).slice(0, 40), () => {
      const cursor = encodeCursor(key);
      assert.match(cursor, /^[A-Za-z0-9_-]+$/, "base64url, unpadded");
      assert.deepEqual(decodeCursor(cursor), key);
    });
  }
});

Deno.test("decodeCursor() refuses what encodeCursor() did not make", async (t) => {
  const encode = (text: string) =>
    new TextEncoder().encode(text).toBase64({ alphabet: "base64url", omitPadding: true });
  const bad: [string, unknown][] = [
    ["not base64", "!!!"],
    ["padded", encodeCursor({ createdAt: 1, id: "a" }) + "="],
    ["not JSON", encode("[1,")],
    ["three elements", encode('[1,"a",2]')],
    ["an unsafe time", encode('[9007199254740993,"a"]')],
    ["a nested id", encode('[1,["a"]]')],
    ["a lone surrogate", encode('[1,"\\ud800"]')],
    ["too long", "A".repeat(100_000)],
    ["not a text", null],
  ];
  for (const [name, value] of bad) {
    await t.step(name, () => {
      assert.throws(() => decodeCursor(value), { code: "ERR_INVALID_ARGUMENT" });
    });
  }
});
