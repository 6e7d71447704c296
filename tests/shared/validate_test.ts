import assert from "node:assert/strict";
import {
  checkInteger,
  checkText,
  IdentitySchema,
  INPUT_LIMITS,
  parseArgument,
  unsafeTextReason,
} from "../../shared/mod.ts";
import { textSchema } from "../../shared/validate.ts";

const refused = { code: "ERR_INVALID_ARGUMENT" };

Deno.test("unsafeTextReason() finds U+0000 and lone surrogates, nothing else", () => {
  for (const ok of ["", "bom:1", "é€😀", "\u2028", "\u00a0"]) {
    assert.equal(unsafeTextReason(ok), undefined);
  }
  for (const bad of ["a\0", "\ud800", "x\udfff", "\ud83d"]) {
    assert.notEqual(unsafeTextReason(bad), undefined);
  }
});

Deno.test("textSchema() bounds length and refuses unstorable text", () => {
  const schema = textSchema();
  assert.equal(schema.safeParse("x".repeat(INPUT_LIMITS.textLength)).success, true);
  assert.equal(schema.safeParse("x".repeat(INPUT_LIMITS.textLength + 1)).success, false);
  assert.equal(schema.safeParse("").success, false);
  assert.equal(textSchema({ min: 0 }).safeParse("").success, true);
  assert.equal(schema.safeParse("job\0A").success, false);
  assert.equal(schema.safeParse(7).success, false);
});

Deno.test("parseArgument() names the field and its path", () => {
  const bad = { subject: "a", actorKind: "human", roles: ["ok", 7], scopes: [] };
  assert.throws(() => parseArgument(IdentitySchema, bad, "identity"), {
    ...refused,
    message: /identity\.roles\[1\]/,
  });
  const good = { subject: "a", actorKind: "human", roles: [], scopes: [] };
  assert.deepEqual(parseArgument(IdentitySchema, good, "identity"), good);
});

Deno.test("checkInteger() and checkText() refuse with ERR_INVALID_ARGUMENT", () => {
  for (const bad of [-1, 1.5, NaN, Infinity, -Infinity, "5", null, 2 ** 53]) {
    assert.throws(() => checkInteger("limit", bad, 0), { ...refused, message: /limit/ });
  }
  assert.equal(checkInteger("limit", 0, 0, 1), 0);
  assert.throws(() => checkText("reason", "a".repeat(11), 10), refused);
  assert.throws(() => checkText("reason", { toString: () => "x" }), refused);
  assert.equal(checkText("reason", "ok"), "ok");
});
