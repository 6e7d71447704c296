import assert from "node:assert/strict";
import { isPlmError, type Random } from "../../shared/mod.ts";
import { seededRandom } from "../_seeded_random.ts";
import {
  childTraceContext,
  currentTraceContext,
  extractTraceContext,
  formatTraceparent,
  formatTracestate,
  injectTraceContext,
  newTraceContext,
  parseTraceparent,
  parseTracestate,
  type TraceContext,
  TraceState,
  type TraceStateEntry,
  withTraceContext,
} from "../../control_plane/trace/mod.ts";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID = "00f067aa0ba902b7";
const VALID = `00-${TRACE_ID}-${SPAN_ID}-01`;

function traceparent(version: string, flags = "01", rest = ""): string {
  return `${version}-${TRACE_ID}-${SPAN_ID}-${flags}${rest}`;
}

function context(overrides: Partial<TraceContext> = {}): TraceContext {
  return {
    traceId: TRACE_ID,
    spanId: SPAN_ID,
    traceFlags: 1,
    traceState: TraceState.EMPTY,
    ...overrides,
  };
}

/** `count` distinct members `k01=v01,k02=v02,...`. */
function members(count: number, from = 1): string[] {
  return Array.from({ length: count }, (_, i) => {
    const n = String(from + i).padStart(2, "0");
    return `k${n}=v${n}`;
  });
}

// ---------------------------------------------------------------------------
// parseTraceparent

Deno.test("parseTraceparent() reads the four fields of version 00", () => {
  assert.deepEqual(parseTraceparent(VALID), {
    traceId: TRACE_ID,
    spanId: SPAN_ID,
    traceFlags: 1,
    traceState: TraceState.EMPTY,
  });
  assert.equal(parseTraceparent(traceparent("00", "00"))?.traceFlags, 0);
});

Deno.test("parseTraceparent() keeps all eight flag bits of version 00", () => {
  assert.equal(parseTraceparent(traceparent("00", "ff"))?.traceFlags, 0xff);
  assert.equal(parseTraceparent(traceparent("00", "09"))?.traceFlags, 0x09);
});

Deno.test("parseTraceparent() requires version 00 to be exactly 55 characters", async (t) => {
  await t.step("55 is valid", () => {
    assert.equal(VALID.length, 55);
    assert.notEqual(parseTraceparent(VALID), null);
  });
  await t.step("54 is invalid", () => assert.equal(parseTraceparent(VALID.slice(0, 54)), null));
  await t.step("a trailing character is invalid", () => {
    assert.equal(parseTraceparent(`${VALID}.`), null);
  });
  await t.step("a trailing field is invalid", () => {
    assert.equal(parseTraceparent(`${VALID}-what-the-future-will-be-like`), null);
  });
  await t.step("an empty value is invalid", () => assert.equal(parseTraceparent(""), null));
});

Deno.test("parseTraceparent() parses a higher version by its first four fields", async (t) => {
  await t.step("without extra fields", () => {
    const ctx = parseTraceparent(traceparent("cc"));
    assert.equal(ctx?.traceId, TRACE_ID);
    assert.equal(ctx?.spanId, SPAN_ID);
    assert.equal(ctx?.traceFlags, 1);
  });
  await t.step("with extra fields after a dash", () => {
    const ctx = parseTraceparent(traceparent("cc", "01", "-what-the-future-will-be-like"));
    assert.equal(ctx?.traceId, TRACE_ID);
  });
  await t.step("with a dash and nothing after it", () => {
    assert.notEqual(parseTraceparent(traceparent("01", "01", "-")), null);
  });
  await t.step("not when the flags run on without a dash", () => {
    assert.equal(parseTraceparent(traceparent("cc", "01", ".what-the-future-will-be-like")), null);
    assert.equal(parseTraceparent(traceparent("cc", "01", "0")), null);
  });
  await t.step("not when shorter than 55 characters", () => {
    assert.equal(parseTraceparent(traceparent("cc").slice(0, 54)), null);
  });
  await t.step("version fe is still a version", () => {
    assert.notEqual(parseTraceparent(traceparent("fe")), null);
  });
});

Deno.test("parseTraceparent() keeps only the sampled flag of a higher version", () => {
  assert.equal(parseTraceparent(traceparent("cc", "ff"))?.traceFlags, 1);
  assert.equal(parseTraceparent(traceparent("cc", "fe"))?.traceFlags, 0);
});

Deno.test("parseTraceparent() rejects version ff", () => {
  assert.equal(parseTraceparent(traceparent("ff")), null);
  assert.equal(parseTraceparent(traceparent("ff", "01", "-more")), null);
});

Deno.test("parseTraceparent() rejects a malformed version", async (t) => {
  for (
    const [name, value] of [
      ["illegal first character", traceparent(".0")],
      ["illegal second character", traceparent("0.")],
      ["uppercase", traceparent("CC")],
      ["three digits", traceparent("000")],
      ["four digits", traceparent("0000")],
      ["one digit", traceparent("0")],
    ] as const
  ) {
    await t.step(name, () => assert.equal(parseTraceparent(value), null));
  }
});

Deno.test("parseTraceparent() accepts lowercase hex only", async (t) => {
  await t.step("uppercase trace id", () => {
    assert.equal(parseTraceparent(`00-${TRACE_ID.toUpperCase()}-${SPAN_ID}-01`), null);
  });
  await t.step("one uppercase digit in the trace id", () => {
    assert.equal(parseTraceparent(`00-${TRACE_ID.slice(0, 31)}F-${SPAN_ID}-01`), null);
  });
  await t.step("uppercase parent id", () => {
    assert.equal(parseTraceparent(`00-${TRACE_ID}-00F067AA0BA902B7-01`), null);
  });
  await t.step("uppercase flags", () => {
    assert.equal(parseTraceparent(traceparent("00", "0A")), null);
    assert.notEqual(parseTraceparent(traceparent("00", "0a")), null);
  });
  await t.step("non-hex letters", () => {
    assert.equal(parseTraceparent(`00-${TRACE_ID.slice(0, 31)}g-${SPAN_ID}-01`), null);
    assert.equal(parseTraceparent(`00-${TRACE_ID}-${SPAN_ID.slice(0, 15)}g-01`), null);
  });
  await t.step("non-ASCII", () => {
    assert.equal(parseTraceparent(`00-${TRACE_ID.slice(0, 31)}é-${SPAN_ID}-01`), null);
  });
});

Deno.test("parseTraceparent() rejects all-zero ids", async (t) => {
  await t.step("trace id", () => {
    assert.equal(parseTraceparent(`00-${"0".repeat(32)}-${SPAN_ID}-01`), null);
  });
  await t.step("parent id", () => {
    assert.equal(parseTraceparent(`00-${TRACE_ID}-${"0".repeat(16)}-01`), null);
  });
  await t.step("one non-zero digit is enough", () => {
    assert.notEqual(parseTraceparent(`00-${"0".repeat(31)}1-${"0".repeat(15)}1-01`), null);
  });
});

Deno.test("parseTraceparent() rejects ids of the wrong size or content", async (t) => {
  for (
    const [name, value] of [
      ["trace id with a leading dot", `00-.${TRACE_ID.slice(1)}-${SPAN_ID}-01`],
      ["trace id with a trailing dot", `00-${TRACE_ID.slice(0, 31)}.-${SPAN_ID}-01`],
      ["trace id too long", `00-${TRACE_ID}3-${SPAN_ID}-01`],
      ["trace id too short", `00-${TRACE_ID.slice(1)}-${SPAN_ID}-01`],
      ["parent id with a leading dot", `00-${TRACE_ID}-.${SPAN_ID.slice(1)}-01`],
      ["parent id with a trailing dot", `00-${TRACE_ID}-${SPAN_ID.slice(0, 15)}.-01`],
      ["parent id too long", `00-${TRACE_ID}-${SPAN_ID}7-01`],
      ["parent id too short", `00-${TRACE_ID}-${SPAN_ID.slice(1)}-01`],
      ["wrong delimiters", `00_${TRACE_ID}_${SPAN_ID}_01`],
    ] as const
  ) {
    await t.step(name, () => assert.equal(parseTraceparent(value), null));
  }
});

Deno.test("parseTraceparent() requires flags of two hex digits", async (t) => {
  for (
    const [name, value] of [
      ["illegal first character", traceparent("00", ".0")],
      ["illegal second character", traceparent("00", "0.")],
      ["not hex", traceparent("00", "0g")],
      ["too long", traceparent("00", "001")],
      ["too short", traceparent("00", "1")],
      ["too short in a higher version", traceparent("cc", "1", "-x")],
    ] as const
  ) {
    await t.step(name, () => assert.equal(parseTraceparent(value), null));
  }
});

Deno.test("parseTraceparent() does not trim white space itself", () => {
  assert.equal(parseTraceparent(` ${VALID}`), null);
  assert.equal(parseTraceparent(`${VALID}\t`), null);
});

// ---------------------------------------------------------------------------
// formatTraceparent

Deno.test("formatTraceparent() writes version 00 with two-digit flags", () => {
  assert.equal(formatTraceparent(context()), VALID);
  assert.equal(formatTraceparent(context({ traceFlags: 0 })), traceparent("00", "00"));
  assert.equal(formatTraceparent(context({ traceFlags: 0x0f })), traceparent("00", "0f"));
  assert.equal(formatTraceparent(context({ traceFlags: 0xff })), traceparent("00", "ff"));
});

Deno.test("formatTraceparent() round-trips with parseTraceparent()", async (t) => {
  await t.step("version 00", () => {
    for (const flags of ["00", "01", "9a", "ff"]) {
      const value = traceparent("00", flags);
      const ctx = parseTraceparent(value);
      assert.ok(ctx !== null);
      assert.equal(formatTraceparent(ctx), value);
    }
  });
  await t.step("a higher version comes back as 00", () => {
    const ctx = parseTraceparent(traceparent("cc", "03", "-future"));
    assert.ok(ctx !== null);
    assert.equal(formatTraceparent(ctx), VALID);
  });
});

Deno.test("formatTraceparent() rejects an invalid context", async (t) => {
  for (
    const [name, ctx] of [
      ["uppercase trace id", context({ traceId: TRACE_ID.toUpperCase() })],
      ["short trace id", context({ traceId: TRACE_ID.slice(1) })],
      ["zero trace id", context({ traceId: "0".repeat(32) })],
      ["uppercase span id", context({ spanId: SPAN_ID.toUpperCase() })],
      ["long span id", context({ spanId: `${SPAN_ID}0` })],
      ["zero span id", context({ spanId: "0".repeat(16) })],
    ] as const
  ) {
    await t.step(name, () => assert.throws(() => formatTraceparent(ctx), TypeError));
  }
  for (const traceFlags of [-1, 256, 1.5, Number.NaN]) {
    await t.step(`flags ${traceFlags}`, () => {
      assert.throws(() => formatTraceparent(context({ traceFlags })), RangeError);
    });
  }
});

// ---------------------------------------------------------------------------
// parseTracestate

Deno.test("parseTracestate() reads members in order", () => {
  assert.deepEqual(parseTracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), [
    ["rojo", "00f067aa0ba902b7"],
    ["congo", "t61rcWkgMzE"],
  ]);
});

Deno.test("parseTracestate() allows empty members", async (t) => {
  await t.step("an empty header", () => assert.deepEqual(parseTracestate(""), []));
  await t.step("white space only", () => assert.deepEqual(parseTracestate(" \t "), []));
  await t.step("commas only", () => assert.deepEqual(parseTracestate(", ,\t,"), []));
  await t.step("between, before and after members", () => {
    assert.deepEqual(parseTracestate(",foo=1,,, ,bar=2,"), [["foo", "1"], ["bar", "2"]]);
  });
});

Deno.test("parseTracestate() ignores spaces and tabs around members", async (t) => {
  for (
    const value of [
      "foo=1 \t , \t bar=2, \t baz=3",
      "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
    ]
  ) {
    await t.step(JSON.stringify(value), () => {
      assert.deepEqual(parseTracestate(value), [["foo", "1"], ["bar", "2"], ["baz", "3"]]);
    });
  }
  for (const value of [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"]) {
    await t.step(JSON.stringify(value), () => {
      assert.deepEqual(parseTracestate(value), [["foo", "1"]]);
    });
  }
});

Deno.test("parseTracestate() accepts both key forms", async (t) => {
  await t.step("simple key with every allowed character", () => {
    const key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    assert.deepEqual(parseTracestate(`${key}=1`), [[key, "1"]]);
  });
  await t.step("tenant@system with every allowed character", () => {
    const key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/";
    assert.deepEqual(parseTracestate(`${key}=1`), [[key, "1"]]);
  });
  await t.step("tenant starting with a digit", () => {
    assert.deepEqual(parseTracestate("1tenant@vendor=1"), [["1tenant@vendor", "1"]]);
  });
  await t.step("one-character tenant and system", () => {
    assert.deepEqual(parseTracestate("t@v=1"), [["t@v", "1"]]);
  });
});

Deno.test("parseTracestate() rejects malformed keys", async (t) => {
  for (
    const value of [
      "foo =1",
      "FOO=1",
      "Foo=1",
      "foo.bar=1",
      "1foo=1",
      "_foo=1",
      "foo@=1,bar=2",
      "@foo=1,bar=2",
      "foo@@bar=1,bar=2",
      "foo@bar@baz=1,bar=2",
      "t@1v=1",
      "t@V=1",
      "foo",
      "foo,bar=2",
      "=1",
      "bar=2,foo",
    ]
  ) {
    await t.step(JSON.stringify(value), () => assert.equal(parseTracestate(value), null));
  }
});

Deno.test("parseTracestate() limits key lengths to 256, 241@14", async (t) => {
  await t.step("simple key of 256", () => {
    assert.equal(parseTracestate(`${"z".repeat(256)}=1`)?.[0]?.[0].length, 256);
  });
  await t.step("simple key of 257", () => {
    assert.equal(parseTracestate(`${"z".repeat(257)}=1`), null);
  });
  await t.step("tenant of 241 and system of 14", () => {
    const key = `${"t".repeat(241)}@${"v".repeat(14)}`;
    assert.deepEqual(parseTracestate(`${key}=1`), [[key, "1"]]);
  });
  await t.step("tenant of 242", () => {
    assert.equal(parseTracestate(`${"t".repeat(242)}@v=1`), null);
  });
  await t.step("system of 15", () => {
    assert.equal(parseTracestate(`t@${"v".repeat(15)}=1`), null);
  });
});

Deno.test("parseTracestate() limits values to 1-256 printable characters", async (t) => {
  await t.step("256 characters", () => {
    assert.equal(parseTracestate(`foo=${"v".repeat(256)}`)?.[0]?.[1].length, 256);
  });
  await t.step("257 characters", () => {
    assert.equal(parseTracestate(`foo=${"v".repeat(257)}`), null);
  });
  await t.step("256 characters and a trailing space", () => {
    assert.equal(parseTracestate(`foo=${"v".repeat(256)} `)?.[0]?.[1].length, 256);
  });
  await t.step("every allowed character", () => {
    let value = "";
    for (let code = 0x20; code <= 0x7e; code++) {
      if (code !== 0x2c && code !== 0x3d) value += String.fromCharCode(code);
    }
    assert.deepEqual(parseTracestate(`foo=${value}`), [["foo", value]]);
  });
  await t.step("empty", () => {
    assert.equal(parseTracestate("foo="), null);
    assert.equal(parseTracestate("foo=,bar=3"), null);
  });
  await t.step("spaces only", () => assert.equal(parseTracestate("foo=   "), null));
});

Deno.test("parseTracestate() keeps inner and leading spaces but not trailing ones", () => {
  assert.deepEqual(parseTracestate("foo= a b  ,bar=2"), [["foo", " a b"], ["bar", "2"]]);
});

Deno.test("parseTracestate() rejects forbidden value characters", async (t) => {
  for (
    const value of [
      "foo=bar=baz",
      "foo=a,b",
      "foo=a\tb",
      "foo=\tb",
      "foo=a\nb",
      "foo=\x7f",
      "foo=é",
    ]
  ) {
    await t.step(JSON.stringify(value), () => assert.equal(parseTracestate(value), null));
  }
});

Deno.test("parseTracestate() allows 32 members but not 33", async (t) => {
  await t.step("32", () => assert.equal(parseTracestate(members(32).join(","))?.length, 32));
  await t.step("33", () => assert.equal(parseTracestate(members(33).join(",")), null));
  await t.step("32 with empty members between", () => {
    assert.equal(parseTracestate(members(32).join(", ,"))?.length, 32);
  });
});

Deno.test("parseTracestate() rejects duplicate keys", async (t) => {
  await t.step("same value", () => assert.equal(parseTracestate("foo=1,foo=1"), null));
  await t.step("different value", () => assert.equal(parseTracestate("foo=1,foo=2"), null));
  await t.step("far apart", () => {
    assert.equal(parseTracestate([...members(20), "k01=x"].join(",")), null);
  });
  await t.step("same tenant, other system", () => {
    assert.equal(parseTracestate("t@a=1,t@b=2")?.length, 2);
  });
});

// ---------------------------------------------------------------------------
// formatTracestate

Deno.test("formatTracestate() joins members with commas in order", () => {
  assert.equal(formatTracestate([]), "");
  assert.equal(
    formatTracestate([["rojo", "00f067aa0ba902b7"], ["congo", "t61rcWkgMzE"]]),
    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
  );
});

Deno.test("formatTracestate() round-trips with parseTracestate()", () => {
  const entries: TraceStateEntry[] = [
    ["z".repeat(256), "v".repeat(256)],
    [`${"t".repeat(241)}@${"v".repeat(14)}`, " leading space"],
    ...members(30).map((member): TraceStateEntry => {
      const [key = "", value = ""] = member.split("=");
      return [key, value];
    }),
  ];
  const header = formatTracestate(entries);
  assert.deepEqual(parseTracestate(header), entries);
  assert.equal(formatTracestate(parseTracestate(header) ?? []), header);
});

Deno.test("formatTracestate() rejects what parseTracestate() would", async (t) => {
  for (
    const [name, entries] of [
      ["uppercase key", [["Foo", "1"]]],
      ["long key", [["z".repeat(257), "1"]]],
      ["key with =", [["a=b", "1"]]],
      ["empty value", [["foo", ""]]],
      ["value ending in a space", [["foo", "bar "]]],
      ["value with a comma", [["foo", "a,b"]]],
      ["value with =", [["foo", "a=b"]]],
      ["value with a tab", [["foo", "a\tb"]]],
      ["value of 257", [["foo", "v".repeat(257)]]],
      ["duplicate key", [["foo", "1"], ["foo", "2"]]],
    ] as const
  ) {
    await t.step(name, () => assert.throws(() => formatTracestate(entries), TypeError));
  }
  await t.step("33 members", () => {
    const entries = members(33).map((member): TraceStateEntry => [member, "1"]);
    assert.throws(() => formatTracestate(entries), RangeError);
  });
});

// ---------------------------------------------------------------------------
// The tracestate grammar against an independent reference

/**
 * The tracestate rules written the obvious way (split, trim, one regex per
 * member), to check the one-pass scanner against.
 */
function referenceTracestate(value: string): [string, string][] | null {
  const key =
    /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
  const val = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
  const out: [string, string][] = [];
  for (const raw of value.split(",")) {
    const member = raw.replace(/^[ \t]+|[ \t]+$/g, "");
    if (member === "") continue;
    const eq = member.indexOf("=");
    if (eq < 0) return null;
    const [k, v] = [member.slice(0, eq), member.slice(eq + 1)];
    if (!key.test(k) || !val.test(v) || out.some(([seen]) => seen === k)) return null;
    out.push([k, v]);
  }
  return out.length > 32 ? null : out;
}

Deno.test("parseTracestate() and TraceState.parse() agree with a reference on random input", () => {
  const random = seededRandom(20261125);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const word = (chars: string, max: number) =>
    Array.from({ length: 1 + Math.floor(random() * max) }, () => pick([...chars])).join("");
  const keyChars = "az09_-*/";
  // Members built from the grammar's characters (keys sometimes repeat, as only a few first
  // letters are drawn), joined with white space and empty members, then one character
  // replaced, half the time, by one on or just past an edge of the grammar.
  const edges = [..."@=, \tA~!\x7f\x1fé0z"];
  let valid = 0;
  for (let i = 0; i < 20_000; i++) {
    const count = Math.floor(random() * 5);
    const list = Array.from({ length: count }, () => {
      const key = random() < 0.2
        ? `${word("t0", 2)}@${word("v", 2)}`
        : `${pick([..."abc"])}${word(keyChars, 2)}`;
      return `${key}=${pick(["", " "])}${word("x y!~", 4)}`;
    });
    let value = list.join(pick([",", ", ", " ,\t", ",,"]));
    if (random() < 0.3) value = ` ${value}\t`;
    if (value.length > 0 && random() < 0.5) {
      const at = Math.floor(random() * value.length);
      value = value.slice(0, at) + pick(edges) + value.slice(at + 1);
    }
    const expected = referenceTracestate(value);
    assert.deepEqual(parseTracestate(value), expected, JSON.stringify(value));
    const state = TraceState.parse(value);
    assert.deepEqual(state?.entries() ?? null, expected, JSON.stringify(value));
    if (state !== null) {
      assert.equal(state.header, formatTracestate(expected ?? []), JSON.stringify(value));
      assert.equal(state.size, expected?.length);
    }
    // Checked on first read: the same members, or none at all.
    const received = TraceState.received(value);
    assert.deepEqual(received.entries(), expected ?? [], JSON.stringify(value));
    assert.equal(received.header, formatTracestate(expected ?? []), JSON.stringify(value));
    if (expected !== null && expected.length > 0) valid++;
  }
  // The corpus must reach both sides of the grammar to mean anything.
  assert.ok(valid > 5_000 && valid < 15_000, `${valid} of 20000 inputs were valid`);
});

// ---------------------------------------------------------------------------
// TraceState

Deno.test("TraceState.parse() keeps a canonical header and rebuilds any other", async (t) => {
  await t.step("canonical input is kept as is", () => {
    const value = "rojo=00f067aa0ba902b7,congo= x y";
    assert.equal(TraceState.parse(value)?.header, value);
  });
  for (
    const value of [
      " rojo=1,congo=2",
      "rojo=1,congo=2\t",
      "rojo=1 ,congo=2",
      "rojo=1,,congo=2",
      ",rojo=1,congo=2,",
    ]
  ) {
    await t.step(JSON.stringify(value), () => {
      const state = TraceState.parse(value);
      assert.equal(state?.header, "rojo=1,congo=2");
      assert.equal(state?.raw, value);
      assert.deepEqual(state?.entries(), [["rojo", "1"], ["congo", "2"]]);
    });
  }
  await t.step("no members", () => {
    for (const value of ["", " ", ",,"]) assert.equal(TraceState.parse(value), TraceState.EMPTY);
  });
  await t.step("invalid", () => {
    for (const value of ["rojo=1,rojo=2", "Rojo=1", "rojo=", "rojo=1\t2", members(33).join(",")]) {
      assert.equal(TraceState.parse(value), null);
    }
  });
});

Deno.test("TraceState.received() checks the header whole on first read", async (t) => {
  await t.step("a valid header", () => {
    const state = TraceState.received(" rojo=1 ,, congo=2");
    assert.equal(state.raw, " rojo=1 ,, congo=2");
    assert.equal(state.size, 2);
    assert.equal(state.header, "rojo=1,congo=2");
    assert.equal(state.get("congo"), "2");
  });
  for (const value of ["rojo=1,rojo=2", "rojo=1,Congo=2", "rojo=1,congo=", members(33).join(",")]) {
    await t.step(`invalid: ${value.slice(0, 20)}`, () => {
      // Whichever is read first, the whole header reads as no members.
      for (const read of [(s: TraceState) => s.get("rojo"), (s: TraceState) => s.size]) {
        const state = TraceState.received(value);
        read(state);
        assert.equal(state.get("rojo"), undefined);
        assert.equal(state.size, 0);
        assert.equal(state.header, "");
        assert.deepEqual([...state], []);
        assert.equal(state.raw, value);
      }
    });
  }
  await t.step("an empty header", () => assert.equal(TraceState.received(""), TraceState.EMPTY));
});

Deno.test("TraceState compares by raw under deepStrictEqual, by header in meaning", () => {
  assert.deepEqual(TraceState.parse("rojo=1"), TraceState.from([["rojo", "1"]]));
  assert.notDeepEqual(TraceState.parse("rojo=1"), TraceState.from([["rojo", "2"]]));
  const spaced = TraceState.received("rojo=1 , congo=2");
  assert.notDeepEqual(spaced, TraceState.from([["rojo", "1"], ["congo", "2"]]));
  assert.equal(spaced.header, TraceState.from([["rojo", "1"], ["congo", "2"]]).header);
});

Deno.test("TraceState.from() checks members as formatTracestate() does", () => {
  assert.equal(TraceState.from([]), TraceState.EMPTY);
  assert.equal(TraceState.from(new Map([["a", "1"], ["b", "2"]])).header, "a=1,b=2");
  assert.throws(() => TraceState.from([["A", "1"]]), TypeError);
  assert.throws(() => TraceState.from([["a", "1=2"]]), TypeError);
  assert.throws(() => TraceState.from([["a", "1"], ["a", "2"]]), TypeError);
  assert.throws(
    () => TraceState.from(members(33).map((m) => m.split("=") as [string, string])),
    RangeError,
  );
});

Deno.test("TraceState.from() copies its input", () => {
  const tuple: [string, string] = ["rojo", "1"];
  const state = TraceState.from([tuple]);
  tuple[1] = "2";
  assert.equal(state.get("rojo"), "1");
  assert.equal(state.header, "rojo=1");
});

Deno.test("TraceState.entries() is built once, read-only and in order", () => {
  const state = TraceState.parse("rojo=1,congo=2,t@v=3");
  assert.ok(state !== null);
  const entries = state.entries();
  assert.deepEqual(entries, [["rojo", "1"], ["congo", "2"], ["t@v", "3"]]);
  assert.equal(state.entries(), entries);
  assert.ok(Object.isFrozen(entries));
  assert.deepEqual([...state], entries);
});

Deno.test("TraceState.get() reads one member", () => {
  const state = TraceState.parse("rojo=1,congo=2");
  assert.equal(state?.get("rojo"), "1");
  assert.equal(state?.get("congo"), "2");
  assert.equal(state?.get("con"), undefined);
  assert.equal(TraceState.EMPTY.get("rojo"), undefined);
});

Deno.test("TraceState.set() moves the member to the front, as the spec's mutation rules ask", async (t) => {
  const state = TraceState.from([["rojo", "1"], ["congo", "2"], ["plm", "3"]]);
  await t.step("a new key goes first", () => {
    assert.equal(state.set("new", "x").header, "new=x,rojo=1,congo=2,plm=3");
  });
  await t.step("a changed key moves first", () => {
    assert.equal(state.set("plm", "4").header, "plm=4,rojo=1,congo=2");
  });
  await t.step(
    "the original is unchanged",
    () => assert.equal(state.header, "rojo=1,congo=2,plm=3"),
  );
  await t.step("past 32 members the rightmost is dropped", () => {
    const full = TraceState.parse(members(32).join(","));
    const next = full?.set("new", "x");
    assert.equal(next?.size, 32);
    assert.deepEqual(next?.entries()[0], ["new", "x"]);
    assert.equal(next?.get("k32"), undefined);
    assert.equal(next?.get("k31"), "v31");
  });
  await t.step("an invalid member is refused", () => {
    assert.throws(() => state.set("Rojo", "1"), TypeError);
    assert.throws(() => state.set("rojo", "a,b"), TypeError);
  });
});

Deno.test("TraceState.delete() removes one member", () => {
  const state = TraceState.from([["rojo", "1"], ["congo", "2"]]);
  assert.equal(state.delete("rojo").header, "congo=2");
  assert.equal(state.delete("rojo").delete("congo"), TraceState.EMPTY);
  assert.equal(state.delete("missing"), state);
});

Deno.test("TraceState serializes as its header and parses back", () => {
  const state = TraceState.from([["rojo", "1"], ["t@v", "x y"]]);
  assert.equal(String(state), "rojo=1,t@v=x y");
  const json = JSON.stringify({ traceState: state });
  assert.equal(json, '{"traceState":"rojo=1,t@v=x y"}');
  assert.deepEqual(TraceState.parse(JSON.parse(json).traceState), state);
});

// ---------------------------------------------------------------------------
// extractTraceContext

Deno.test("extractTraceContext() returns null without a traceparent", () => {
  assert.equal(extractTraceContext(new Headers()), null);
  assert.equal(extractTraceContext(new Headers({ tracestate: "foo=1" })), null);
  assert.equal(extractTraceContext(new Headers({ "trace-parent": VALID })), null);
});

Deno.test("extractTraceContext() reads traceparent and tracestate", () => {
  const headers = new Headers({ traceparent: VALID, tracestate: "foo=1,bar=2" });
  assert.deepEqual(extractTraceContext(headers), {
    traceId: TRACE_ID,
    spanId: SPAN_ID,
    traceFlags: 1,
    traceState: TraceState.from([["foo", "1"], ["bar", "2"]]),
  });
  assert.deepEqual(extractTraceContext(new Headers({ traceparent: VALID })), context());
});

Deno.test("extractTraceContext() matches header names in any case", () => {
  const ctx = extractTraceContext(new Headers({ TrAcEpArEnT: VALID, TRACESTATE: "foo=1" }));
  assert.equal(ctx?.traceId, TRACE_ID);
  assert.deepEqual(ctx?.traceState.entries(), [["foo", "1"]]);
});

Deno.test("extractTraceContext() accepts white space around the traceparent", async (t) => {
  for (const value of [` ${VALID}`, `\t${VALID}`, `${VALID} `, `${VALID}\t`, `\t ${VALID} \t`]) {
    await t.step(JSON.stringify(value), () => {
      assert.equal(extractTraceContext(new Headers({ traceparent: value }))?.traceId, TRACE_ID);
    });
  }
});

Deno.test("extractTraceContext() ignores tracestate when traceparent is invalid", () => {
  const headers = new Headers({ traceparent: traceparent("ff"), tracestate: "foo=1" });
  assert.equal(extractTraceContext(headers), null);
});

Deno.test("extractTraceContext() drops an invalid tracestate whole and keeps traceparent", () => {
  const headers = new Headers({ traceparent: VALID, tracestate: "foo=1,FOO=2" });
  const ctx = extractTraceContext(headers);
  assert.equal(ctx?.traceId, TRACE_ID);
  assert.equal(ctx?.traceState.size, 0);
  assert.equal(ctx?.traceState.get("foo"), undefined);
  assert.equal(ctx?.traceState.header, "");
  assert.deepEqual(ctx?.traceState.entries(), []);
  // Never passed on.
  const outgoing = new Headers({ tracestate: "stale=1" });
  injectTraceContext(ctx!, outgoing);
  assert.equal(outgoing.has("tracestate"), false);
});

Deno.test("extractTraceContext() rejects several traceparent headers", async (t) => {
  await t.step("two of version 00", () => {
    const headers = new Headers([
      ["traceparent", `00-${TRACE_ID.slice(0, 31)}1-${SPAN_ID}-01`],
      ["traceparent", `00-${TRACE_ID.slice(0, 31)}2-${SPAN_ID}-01`],
    ]);
    assert.equal(extractTraceContext(headers), null);
  });
  await t.step("the same value twice", () => {
    const headers = new Headers([["traceparent", VALID], ["traceparent", VALID]]);
    assert.equal(extractTraceContext(headers), null);
  });
  await t.step("a higher version whose joined value would parse", () => {
    const headers = new Headers([
      ["traceparent", traceparent("cc", "01", "-future")],
      ["traceparent", VALID],
    ]);
    const joined = headers.get("traceparent") ?? "";
    assert.equal(joined, `${traceparent("cc", "01", "-future")}, ${VALID}`);
    assert.notEqual(parseTraceparent(joined), null);
    assert.equal(extractTraceContext(headers), null);
  });
});

Deno.test("extractTraceContext() combines several tracestate headers in order", async (t) => {
  await t.step("different keys", () => {
    const headers = new Headers([
      ["traceparent", VALID],
      ["tracestate", "foo=1,bar=2"],
      ["tracestate", "rojo=1,congo=2"],
      ["tracestate", "baz=3"],
    ]);
    assert.deepEqual(extractTraceContext(headers)?.traceState.entries(), [
      ["foo", "1"],
      ["bar", "2"],
      ["rojo", "1"],
      ["congo", "2"],
      ["baz", "3"],
    ]);
  });
  await t.step("an empty header first or last", () => {
    for (const order of [["", "foo=1"], ["foo=1", ""]]) {
      const headers = new Headers([["traceparent", VALID]]);
      for (const value of order) headers.append("tracestate", value);
      assert.deepEqual(extractTraceContext(headers)?.traceState.entries(), [["foo", "1"]]);
    }
  });
  await t.step("a key repeated across headers invalidates all", () => {
    for (const second of ["foo=1", "foo=2"]) {
      const headers = new Headers([
        ["traceparent", VALID],
        ["tracestate", "foo=1"],
        ["tracestate", second],
      ]);
      assert.deepEqual(extractTraceContext(headers)?.traceState.size, 0);
    }
  });
  await t.step("32 members across headers, and 33", () => {
    const headers = (last: number) =>
      new Headers([
        ["traceparent", VALID],
        ["tracestate", members(10, 1).join(",")],
        ["tracestate", members(10, 11).join(",")],
        ["tracestate", members(10, 21).join(",")],
        ["tracestate", members(last, 31).join(",")],
      ]);
    assert.equal(extractTraceContext(headers(2))?.traceState.size, 32);
    assert.deepEqual(extractTraceContext(headers(3))?.traceState.size, 0);
  });
  await t.step("a key of 257 in a second header invalidates all", () => {
    const headers = new Headers([
      ["traceparent", VALID],
      ["tracestate", "foo=1"],
      ["tracestate", `${"z".repeat(257)}=1`],
    ]);
    assert.deepEqual(extractTraceContext(headers)?.traceState.size, 0);
  });
});

// ---------------------------------------------------------------------------
// injectTraceContext

Deno.test("injectTraceContext() sets traceparent and tracestate", () => {
  const headers = new Headers();
  injectTraceContext(
    context({ traceState: TraceState.from([["rojo", "1"], ["congo", "2"]]) }),
    headers,
  );
  assert.equal(headers.get("traceparent"), VALID);
  assert.equal(headers.get("tracestate"), "rojo=1,congo=2");
});

Deno.test("injectTraceContext() sends no tracestate without members", () => {
  const headers = new Headers({ traceparent: "stale", tracestate: "stale=1" });
  injectTraceContext(context(), headers);
  assert.equal(headers.get("traceparent"), VALID);
  assert.equal(headers.has("tracestate"), false);
});

Deno.test("injectTraceContext() changes nothing when the context is invalid", async (t) => {
  const invalid: [string, TraceContext][] = [
    ["an upper-case trace id", context({ traceId: TRACE_ID.toUpperCase() })],
    ["a traceState that is not a TraceState (from JSON)", {
      ...context(),
      traceState: JSON.parse(JSON.stringify(TraceState.from([["foo", "1"]]))),
    }],
    ["a traceState that is a plain list", {
      ...context(),
      traceState: [["foo", "1"]] as unknown as TraceState,
    }],
  ];
  for (const [name, ctx] of invalid) {
    await t.step(name, () => {
      const headers = new Headers({ traceparent: "old", tracestate: "old=1" });
      assert.throws(() => injectTraceContext(ctx, headers), TypeError);
      assert.equal(headers.get("traceparent"), "old");
      assert.equal(headers.get("tracestate"), "old=1");
    });
  }
});

Deno.test("injectTraceContext() round-trips with extractTraceContext()", () => {
  for (
    const ctx of [
      context(),
      context({ traceFlags: 0, traceState: TraceState.from([["a", "1"], ["t@b", "x y"]]) }),
      newTraceContext(),
    ]
  ) {
    const headers = new Headers();
    injectTraceContext(ctx, headers);
    assert.deepEqual(extractTraceContext(headers), ctx);
  }
});

// ---------------------------------------------------------------------------
// newTraceContext and childTraceContext

/**
 * A random source that gives every byte of draw k the value `fills[k]`, where
 * a draw is one id's worth of bytes (`size` calls), then fails the test.
 */
function scripted(size: number, ...fills: number[]): { random: Random; draws: () => number } {
  let calls = 0;
  return {
    random(): number {
      const fill = fills[Math.floor(calls++ / size)];
      if (fill === undefined) throw new Error("Random source called too often");
      return fill / 256;
    },
    draws: () => calls / size,
  };
}

Deno.test("newTraceContext() makes random valid ids, sampled by default", () => {
  const ctx = newTraceContext();
  assert.match(ctx.traceId, /^[0-9a-f]{32}$/);
  assert.match(ctx.spanId, /^[0-9a-f]{16}$/);
  assert.equal(ctx.traceFlags, 1);
  assert.equal(ctx.traceState, TraceState.EMPTY);
  assert.notEqual(newTraceContext().traceId, ctx.traceId);
  assert.notEqual(parseTraceparent(formatTraceparent(ctx)), null);
});

Deno.test("newTraceContext() clears the sampled flag on request", () => {
  assert.equal(newTraceContext({ sampled: false }).traceFlags, 0);
});

Deno.test("newTraceContext() draws 16 then 8 bytes from the injected random", () => {
  let calls = 0;
  const ctx = newTraceContext({ random: () => (calls++ < 16 ? 0x0a : 0xb0) / 256 });
  assert.equal(calls, 24);
  assert.equal(ctx.traceId, "0a".repeat(16));
  assert.equal(ctx.spanId, "b0".repeat(8));
  const edges = newTraceContext({ random: () => 0.999999 });
  assert.equal(edges.traceId, "ff".repeat(16));
});

Deno.test("newTraceContext() draws again when the random returns zeros", () => {
  // Each draw of the trace id takes 16 calls; of the span id, 8.
  let calls = 0;
  const plan = [0, 0, 1]; // trace id: two zero draws, then ones
  const ctx = newTraceContext({
    random: () => {
      const n = calls++;
      const fill = n < 48 ? plan[Math.floor(n / 16)]! : n < 56 ? 0 : 2;
      return fill / 256;
    },
  });
  assert.equal(ctx.traceId, "01".repeat(16));
  assert.equal(ctx.spanId, "02".repeat(8));
  assert.equal(calls, 48 + 16);
});

Deno.test("newTraceContext() throws ERR_INTERNAL when the random only returns zeros", () => {
  assert.throws(
    () => newTraceContext({ random: () => 0 }),
    (err) => isPlmError(err, "ERR_INTERNAL"),
  );
});

Deno.test("childTraceContext() keeps trace id and state and draws a new span id", () => {
  const parent = context({ traceState: TraceState.from([["rojo", "1"]]) });
  const source = scripted(8, 0, 0x5c);
  const child = childTraceContext(parent, { random: source.random });
  assert.equal(source.draws(), 2);
  assert.equal(child.traceId, TRACE_ID);
  assert.equal(child.spanId, "5c".repeat(8));
  assert.equal(child.traceState, parent.traceState);
  assert.notEqual(childTraceContext(parent).spanId, childTraceContext(parent).spanId);
});

Deno.test("childTraceContext() carries the sampled flag only", async (t) => {
  await t.step("sampled", () => assert.equal(childTraceContext(context()).traceFlags, 1));
  await t.step("not sampled", () => {
    assert.equal(childTraceContext(context({ traceFlags: 0 })).traceFlags, 0);
  });
  await t.step("reserved bits cleared", () => {
    assert.equal(childTraceContext(context({ traceFlags: 0xff })).traceFlags, 1);
    assert.equal(childTraceContext(context({ traceFlags: 0xfe })).traceFlags, 0);
  });
  await t.step("overridden", () => {
    assert.equal(childTraceContext(context(), { sampled: false }).traceFlags, 0);
    assert.equal(childTraceContext(context({ traceFlags: 0 }), { sampled: true }).traceFlags, 1);
  });
});

Deno.test("childTraceContext() throws ERR_INTERNAL when the random only returns zeros", () => {
  assert.throws(
    () => childTraceContext(context(), { random: () => 0 }),
    (err) => isPlmError(err, "ERR_INTERNAL"),
  );
});

// ---------------------------------------------------------------------------
// withTraceContext and currentTraceContext

Deno.test("currentTraceContext() is undefined outside withTraceContext()", () => {
  assert.equal(currentTraceContext(), undefined);
});

Deno.test("withTraceContext() binds the context and returns the result", async () => {
  const ctx = context();
  assert.equal(withTraceContext(ctx, () => currentTraceContext()), ctx);
  const result = await withTraceContext(ctx, async () => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    return currentTraceContext();
  });
  assert.equal(result, ctx);
  assert.equal(currentTraceContext(), undefined);
});

Deno.test("withTraceContext() nests, the innermost binding winning", () => {
  const outer = context();
  const inner = childTraceContext(outer);
  withTraceContext(outer, () => {
    withTraceContext(inner, () => assert.equal(currentTraceContext(), inner));
    assert.equal(currentTraceContext(), outer);
  });
});

Deno.test("withTraceContext() isolates concurrent async calls", async () => {
  const contexts = Array.from({ length: 20 }, () => newTraceContext());
  const seen = await Promise.all(contexts.map((ctx, i) =>
    withTraceContext(ctx, async () => {
      const ids: string[] = [];
      for (let step = 0; step < 3; step++) {
        // Different delays interleave the calls differently at each step.
        await new Promise((resolve) => setTimeout(resolve, (i * 7 + step * 3) % 5));
        ids.push(currentTraceContext()?.spanId ?? "none");
      }
      return ids;
    })
  ));
  seen.forEach((ids, i) => assert.deepEqual(ids, Array(3).fill(contexts[i]?.spanId)));
});

Deno.test("withTraceContext() refuses a malformed context by field before binding it", () => {
  const good = {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    traceFlags: 1,
    traceState: TraceState.EMPTY,
  };
  for (
    const [bad, field] of [
      [{ ...good, traceId: "4BF92F3577B34DA6A3CE929D0E0E4736" }, /trace\.traceId/],
      [{ ...good, traceFlags: 256 }, /trace\.traceFlags/],
      [{ ...good, traceState: [] }, /trace\.traceState/],
      [null, /trace/],
    ] as const
  ) {
    assert.throws(() => withTraceContext(bad as never, () => "bound"), {
      code: "ERR_INVALID_ARGUMENT",
      message: field,
    });
  }
  assert.equal(withTraceContext(good, () => currentTraceContext()?.spanId), good.spanId);
});
