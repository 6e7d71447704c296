import assert from "node:assert/strict";
import { canonicalJson, digestJson, type JsonValue, sha256Hex } from "../../shared/mod.ts";

const refused = { code: "ERR_INVALID_ARGUMENT" };

Deno.test("canonicalJson() writes RFC 8785 canonical text", async (t) => {
  await t.step("keys sorted by UTF-16 code units, no whitespace", () => {
    assert.equal(
      canonicalJson({ b: 1, a: [true, null, "s"], c: {} }),
      '{"a":[true,null,"s"],"b":1,"c":{}}',
    );
    // RFC 8785 3.2.3: "\u20ac" (€) sorts after "\r" and before the emoji (a surrogate pair).
    const keys = { "\u20ac": 1, "\r": 2, "\ud83d\ude00": 3, "1": 4, "\u0080": 5, "\u00f6": 6 };
    const order = Object.keys(JSON.parse(canonicalJson(keys)));
    assert.deepEqual(order, ["1", "\r", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00"]);
  });
  await t.step("numbers as ECMAScript writes them (RFC 8785 appendix B)", () => {
    const cases: [number, string][] = [
      [0, "0"],
      [-0, "0"],
      [1e21, "1e+21"],
      [1e-7, "1e-7"],
      [333333333.3333333, "333333333.3333333"],
      [9007199254740992, "9007199254740992"],
      [4.5, "4.5"],
      [0.000001, "0.000001"],
    ];
    for (const [value, text] of cases) assert.equal(canonicalJson(value), text);
  });
  await t.step("strings escaped as JSON, U+0000 kept as an escape", () => {
    assert.equal(canonicalJson('a\0b\u001f"\\'), '"a\\u0000b\\u001f\\"\\\\"');
    assert.equal(canonicalJson("\u2028é"), '"\u2028é"');
  });
  await t.step("key order never changes the digest", () => {
    assert.equal(digestJson({ a: 1, b: { c: 2, d: 3 } }), digestJson({ b: { d: 3, c: 2 }, a: 1 }));
    assert.equal(sha256Hex(canonicalJson({ x: 1 })), digestJson({ x: 1 }));
  });
});

Deno.test("canonicalJson() refuses what JSON cannot carry, naming the path", async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ["NaN", { a: [1, NaN] }, /input\.a\[1\]/],
    ["Infinity", { a: Infinity }, /input\.a/],
    ["BigInt", { n: 1n }, /input\.n/],
    ["a function", { f: () => 1 }, /input\.f/],
    ["undefined", { u: undefined }, /input\.u/],
    ["a symbol", [Symbol("s")], /input\[0\]/],
    ["a Date", { at: new Date(0) }, /input\.at: a Date/],
    ["a Map", { m: new Map() }, /input\.m: a Map/],
    ["a class instance", { x: new (class Point {})() }, /Point/],
    ["a sparse array", { s: [1, , 3] }, /input\.s\[1\]/],
    ["a lone surrogate", { "k": "\ud800" }, /input\.k/],
    ["a lone surrogate in a key", { "\udc00": 1 }, /lone surrogate/],
    ["an odd key", { "a b": [{ c: NaN }] }, /input\["a b"\]\[0\]\.c/],
  ];
  for (const [name, value, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => canonicalJson(value as JsonValue, { field: "input" }), {
        ...refused,
        message,
      });
    });
  }
});

Deno.test("canonicalJson() bounds depth and length without unbounded recursion", async (t) => {
  await t.step("a cycle is refused as too deep", () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    assert.throws(() => canonicalJson(cycle as JsonValue), { ...refused, message: /deep/ });
  });
  await t.step("100,000 levels of nesting never overflow the stack", () => {
    let deep: JsonValue = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.throws(() => canonicalJson(deep), { ...refused, message: /deep/ });
  });
  await t.step("the depth bound is exact", () => {
    let value: JsonValue = 1;
    for (let i = 0; i < 32; i++) value = [value];
    assert.equal(canonicalJson(value).length, 65);
    assert.throws(() => canonicalJson([value]), refused);
  });
  await t.step("a wide value is refused as soon as it passes maxLength", () => {
    let reads = 0;
    const wide = new Array(1_000_000).fill(0).map(() => ({
      get n() {
        return ++reads;
      },
    }));
    assert.throws(() => canonicalJson(wide, { maxLength: 1_000 }), {
      ...refused,
      message: /more than 1000 characters/,
    });
    assert.ok(reads < 200, `stopped after ${reads} elements, not 1,000,000`);
  });
  await t.step("a getter that throws is a refusal naming its path", () => {
    const hostile = {
      a: {
        get b() {
          throw new Error("boom");
        },
      },
    };
    assert.throws(() => canonicalJson(hostile as never, { field: "input" }), {
      ...refused,
      message: /input\.a\.b: reading it threw Error/,
    });
  });
  await t.step("text over maxLength is refused", () => {
    assert.throws(() => canonicalJson("x".repeat(20), { maxLength: 10 }), {
      ...refused,
      message: /more than 10 characters/,
    });
    assert.equal(canonicalJson("x".repeat(8), { maxLength: 10 }), '"xxxxxxxx"');
  });
});
