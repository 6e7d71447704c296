/**
 * The inbox's pages as template strings: the layout, the sign-in form, the
 * cards and the error page. Every value goes through `html` (so through
 * `escapeHtml`); no page carries a script.
 *
 * @module
 */
import type { Approval, Identity, JsonValue, Run } from "../../control_plane/mod.ts";
import { html, type SafeHtml } from "./html.ts";

/** What one card shows, besides the approval itself. */
export interface CardView {
  readonly approval: Approval;
  /** The run waiting for it, when it could be read. */
  readonly run: Run | undefined;
  /** The policy rules that asked for it (empty for an escalation or when unknown). */
  readonly rules: readonly string[];
  /** Why it was asked: the policy's reason or the escalation's. */
  readonly reason: string | null;
  /** Whether the viewer gets the approve and reject forms. */
  readonly canDecide: boolean;
  /** Why not, when the viewer may not decide. */
  readonly note: string | undefined;
}

/** The paths a page links to, under the inbox's mount path. */
export interface Paths {
  readonly base: string;
  readonly css: string;
  readonly signIn: string;
  readonly signOut: string;
  decisions(approvalId: string): string;
}

/** The whole page around `body`. */
export function layout(paths: Paths, title: string, body: SafeHtml): string {
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>${title}</title>
        <link rel="stylesheet" href="${paths.css}">
      </head>
      <body>
        <header class="top">
          <h1><a href="${paths.base}">Approvals inbox</a></h1>
        </header>
        <main>
    ${body}
        </main>
      </body>
    </html>
  `.value;
}

/** The sign-in form; `error` is a refused token's code and message. */
export function signInPage(
  paths: Paths,
  csrf: string,
  error?: { code: string; message: string },
): string {
  return layout(
    paths,
    "Sign in: approvals inbox",
    html`<section class="signin">
<h2>Sign in</h2>
${
      error === undefined
        ? ""
        : html`<p class="error" role="alert"><code>${error.code}</code> ${error.message}</p>`
    }
<p>Paste your bearer token once. It is checked and then forgotten: the inbox keeps a session
cookie until the token expires.</p>
<form method="post" action="${paths.signIn}" autocomplete="off">
<input type="hidden" name="_csrf" value="${csrf}">
<label for="token">Token</label>
<textarea id="token" name="token" rows="4" required spellcheck="false" autocomplete="off"></textarea>
<button type="submit" name="signin">Sign in</button>
</form>
</section>`,
  );
}

/** The inbox of a signed-in viewer. */
export function inboxPage(
  paths: Paths,
  viewer: Identity,
  csrf: string,
  pending: readonly CardView[],
  decided: readonly CardView[],
  now: number,
): string {
  const roles = viewer.roles.length === 0 ? "no roles" : viewer.roles.join(", ");
  return layout(
    paths,
    `Approvals inbox (${pending.length} pending)`,
    html`
      <section class="who">
        <p>Signed in as <strong class="viewer">${viewer.subject}</strong> (${viewer
          .actorKind}; ${roles})</p>
        <form method="post" action="${paths.signOut}">
          <input type="hidden" name="_csrf" value="${csrf}">
          <button type="submit" class="secondary" name="signout">Sign out</button>
        </form>
        <p><a href="${paths.base}">Refresh</a></p>
      </section>
      <section class="pending">
      <h2>Pending (${pending.length})</h2>
      ${pending.length === 0
        ? html`<p class="empty">Nothing waits for you.</p>`
        : pending.map((card) => cardHtml(paths, csrf, card, now))}
      </section>
      ${decided.length === 0 ? "" : html`<section class="decided">
<h2>Decided here</h2>
${decided.map((card) => cardHtml(paths, csrf, card, now))}
</section>`}
    `,
  );
}

/** The error page: the code and message, never a stack. */
export function errorPage(paths: Paths, status: number, code: string, message: string): string {
  return layout(
    paths,
    `Error ${status}: approvals inbox`,
    html`
      <section class="failure">
        <h2>Error ${status}</h2>
        <p class="error" role="alert"><code class="code">${code}</code> ${message}</p>
        <p><a href="${paths.base}">Back to the inbox</a></p>
      </section>
    `,
  );
}

const EXPIRY_WORDS = {
  deny: "deny: the run ends expired",
  escalate: "escalate: the run goes to the next tier",
} as const;

function cardHtml(paths: Paths, csrf: string, card: CardView, now: number): SafeHtml {
  const { approval, run } = card;
  const subject = asObject(approval.subject);
  const action = text(subject?.action) ?? "(no action)";
  const resource = text(subject?.resource) ?? "(none)";
  const risk = text(subject?.risk) ?? "unknown";
  const input = subject === undefined ? approval.subject : subject.input ?? null;
  const approvals = approval.votes.filter((vote) => vote.decision === "approve").length;
  const overdue = approval.state === "pending" && now >= approval.deadline;
  return html`
    <article class="card state-${approval.state}" id="approval-${approval
      .id}" data-approval-id="${approval.id}"
      data-state="${approval.state}">
    <header>
    <h3 class="action">${action}</h3>
    <span class="badge state" data-outcome="${approval.state}">${approval.state}${overdue
      ? " (past its deadline)"
      : ""}</span>
    </header>
    <dl>
    <dt>Resource</dt><dd class="resource">${resource}</dd>
    <dt>Requested by</dt><dd class="requester">${approval.requester.subject} (${approval.requester
      .kind})</dd>
    <dt>Risk</dt><dd class="risk risk-${risk}">${risk}</dd>
    <dt>Rule</dt><dd class="rule">${card.rules.length === 0
      ? approval.kind === "escalation" ? "escalation" : "(unknown)"
      : card.rules.join(", ")}</dd>
    <dt>Reason</dt><dd class="reason">${card.reason ?? "(none recorded)"}</dd>
    ${subject?.mode === "suggest"
      ? html`
        <dt>Mode</dt>
        <dd>suggest only: the agent proposes, it does not act</dd>
      `
      : ""}
    <dt>Quorum</dt><dd class="quorum">${approvals} of ${approval.spec
      .quorum} approval${approval.spec.quorum === 1 ? "" : "s"} (roles: ${approval.spec
      .approverRoles.join(", ")})</dd>
    <dt>Decisions</dt><dd class="votes">${approval.votes.length === 0
      ? "none yet"
      : html`<ul>${
        approval.votes.map((vote) =>
          html`<li><strong>${vote.approver.subject}</strong> ${
            vote.decision === "approve" ? "approved" : "rejected"
          } at <time datetime="${iso(vote.at)}">${iso(vote.at)}</time>${
            vote.comment === null ? "" : html`: <q>${vote.comment}</q>`
          }</li>`
        )
      }</ul>`}</dd>
    <dt>Deadline</dt><dd class="deadline"><time datetime="${iso(approval.deadline)}">${iso(
      approval.deadline,
    )}</time></dd>
    <dt>On expiry</dt><dd class="expiry">${EXPIRY_WORDS[approval.spec.onExpiry]}</dd>
    ${approval.reason === null ? "" : html`
      <dt>Outcome</dt>
      <dd class="outcome">${approval.reason}</dd>
    `}
    <dt>Run</dt><dd class="run"><code>${approval.runId}</code>${run === undefined ? "" : html`
      <span class="run-state" data-run-state="${run.state}">${run.state}</span>
    `}</dd>
    </dl>
    <h4>Input</h4>
    <pre class="input">${JSON.stringify(input, null, 2)}</pre>
    ${card.canDecide ? decisionForms(paths, csrf, approval) : ""}
    ${card.note === undefined ? "" : html`<p class="note">${card.note}</p>`}
    </article>
  `;
}

function decisionForms(paths: Paths, csrf: string, approval: Approval): SafeHtml {
  const action = paths.decisions(approval.id);
  const hidden = html`<input type="hidden" name="_csrf" value="${csrf}">
<input type="hidden" name="digest" value="${approval.digest}">`;
  return html`
    <div class="decide">
      <form method="post" action="${action}" class="approve">
    ${hidden}
    <label for="approve-${approval.id}">Comment (optional)</label>
    <textarea id="approve-${approval.id}" name="comment" rows="2"></textarea>
    <button type="submit" name="decision" value="approve" class="approve">Approve</button>
      </form>
      <form method="post" action="${action}" class="reject">
    ${hidden}
    <label for="reject-${approval.id}">Why reject (required)</label>
    <textarea id="reject-${approval.id}" name="comment" rows="2" required></textarea>
    <button type="submit" name="decision" value="reject" class="reject">Reject</button>
      </form>
    </div>
  `;
}

function asObject(value: JsonValue): { readonly [key: string]: JsonValue } | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as { readonly [key: string]: JsonValue }
    : undefined;
}

function text(value: JsonValue | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The inbox's stylesheet, served from a route (`style-src 'self'`). */
export const INBOX_CSS = `
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { margin: 0 auto; max-width: 60rem; padding: 1rem; line-height: 1.4; }
.top h1 { font-size: 1.3rem; margin: 0 0 1rem; }
.top a { color: inherit; text-decoration: none; }
.who { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
.card { border: 1px solid #8886; border-radius: .5rem; padding: 1rem; margin: 1rem 0; }
.card header { display: flex; justify-content: space-between; align-items: baseline; }
.card h3 { margin: 0; font-size: 1.1rem; }
.badge { border-radius: 1rem; padding: .1rem .6rem; font-size: .85rem; background: #8883; }
.state-approved .badge { background: #2a73; }
.state-rejected .badge, .state-expired .badge { background: #c333; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
dd ul { margin: 0; padding-left: 1.1rem; }
pre.input { background: #8881; padding: .6rem; border-radius: .3rem; overflow: auto;
  max-height: 20rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.risk-high, .risk-critical { color: #c33; font-weight: 600; }
.decide { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.decide form, .signin form { display: flex; flex-direction: column; gap: .4rem; }
textarea { font: inherit; }
button { font: inherit; padding: .4rem .9rem; border-radius: .3rem; border: 1px solid #8888;
  cursor: pointer; }
button.approve { background: #2a7; color: #fff; }
button.reject { background: #c33; color: #fff; }
.error { color: #c33; }
.note { font-style: italic; }
`;
