/**
 * The one escaping rule of the inbox: {@link escapeHtml}, and the tagged
 * template {@link html} that applies it to every interpolated value, so a
 * value from the store (an input, a subject, a comment) is always text.
 *
 * @module
 */

const ESCAPES: { readonly [char: string]: string } = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
  "`": "&#96;",
};

/**
 * Escapes a value for HTML text and quoted attribute values: `&`, `<`, `>`,
 * `"`, `'` and `` ` `` become character references. Any value is turned into
 * a string first (`null` and `undefined` become the empty string).
 *
 * @param value The value to show.
 * @returns The escaped text.
 *
 * @example Hostile input stays text
 * ```ts
 * import { escapeHtml } from "./html.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(escapeHtml("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
 * assert.equal(escapeHtml('"><img onerror=x>'), "&quot;&gt;&lt;img onerror=x&gt;");
 * assert.equal(escapeHtml(null), "");
 * ```
 */
export function escapeHtml(value: unknown): string {
  const text = value === null || value === undefined ? "" : String(value);
  return text.replace(/[&<>"'`]/g, (char) => ESCAPES[char] ?? char);
}

/**
 * HTML that is already safe: the result of {@link html}. Only
 * {@link html} makes one, so a plain string is never trusted as markup.
 */
export class SafeHtml {
  /** The markup. */
  readonly value: string;

  /**
   * Wraps markup that the caller vouches for; use {@link html} instead.
   *
   * @param value The markup.
   *
   * @example Markup made by `html` is not escaped twice
   * ```ts
   * import { html, SafeHtml } from "./html.ts";
   * import assert from "node:assert/strict";
   *
   * const inner = html`<b>${"a<b"}</b>`;
   * assert.ok(inner instanceof SafeHtml);
   * assert.equal(html`<p>${inner}</p>`.value, "<p><b>a&lt;b</b></p>");
   * ```
   */
  constructor(value: string) {
    this.value = value;
  }

  /**
   * The markup.
   *
   * @returns The markup.
   *
   * @example As a string
   * ```ts
   * import { html } from "./html.ts";
   * import assert from "node:assert/strict";
   *
   * assert.equal(String(html`<i>${1}</i>`), "<i>1</i>");
   * ```
   */
  toString(): string {
    return this.value;
  }
}

/**
 * A tagged template for markup: every interpolated value is escaped with
 * {@link escapeHtml}, except {@link SafeHtml} (made by `html` itself); arrays
 * are joined, each item treated the same way.
 *
 * @param strings The literal parts.
 * @param values The interpolated values.
 * @returns The markup.
 *
 * @example Build a list from hostile values
 * ```ts
 * import { html } from "./html.ts";
 * import assert from "node:assert/strict";
 *
 * const items = ["<b>", "ok"].map((item) => html`<li>${item}</li>`);
 * assert.equal(html`<ul>${items}</ul>`.value, "<ul><li>&lt;b&gt;</li><li>ok</li></ul>");
 * ```
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) {
    out += render(values[i]) + (strings[i + 1] ?? "");
  }
  return new SafeHtml(out);
}

function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === false) return "";
  return escapeHtml(value);
}
