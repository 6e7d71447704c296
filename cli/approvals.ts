/**
 * `plm approvals`: list, show, approve and reject approval requests.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type Approval,
  APPROVAL_STATES,
  type ApprovalState,
  ControlPlane,
  mayDecide,
  openStore,
} from "../control_plane/mod.ts";
import { INPUT_LIMITS } from "../shared/mod.ts";
import { callerIdentity, KEY_OPTIONS } from "./auth.ts";
import { openForReading } from "./db.ts";
import { type CliCommand, parseCount, storeLocation, UsageError } from "./io.ts";
import { loadPolicies } from "./policies.ts";

const HELP = `plm approvals: list, show and decide approval requests

USAGE:
  plm approvals list [--state STATE|all] [--run RUN_ID] [--mine] [-n N] [--json]
  plm approvals show APPROVAL_ID [--json]
  plm approvals approve APPROVAL_ID [--digest D] [--comment TEXT] [--json]
  plm approvals reject APPROVAL_ID --comment TEXT [--digest D] [--json]

COMMANDS:
  list     Print approvals, oldest first, one a line:
           "ID STATE RUN_ID ACTION RESOURCE requester=SUBJECT approvals=N/QUORUM
           deadline=TIME"; with --mine, only those the caller (PLM_TOKEN) may decide
           now (an approver role, not its own request, not decided yet)
  show     Print an approval as JSON: what is asked (subject), the requester, who may
           approve (spec), the digest, the decisions so far, the deadline
  approve  Record the caller's approval (PLM_TOKEN); at the quorum the run goes on
           (a worker executes it). The requester can never approve its own request
  reject   Record the caller's rejection: the approval and its run end rejected

  approve and reject quote the digest of the request the approver saw: --digest, else
  the digest read from the approval now (then the caller approves what 'show' prints).
  A refusal exits 1 with its code: ERR_APPROVAL_SELF, ERR_APPROVER_NOT_ALLOWED,
  ERR_APPROVAL_DIGEST_MISMATCH, ERR_APPROVAL_DUPLICATE (already decided by the caller),
  ERR_APPROVAL_NOT_PENDING (decided), ERR_APPROVAL_EXPIRED, ERR_APPROVAL_NOT_FOUND.

OPTIONS:
      --db LOCATION         A SQLite file or a postgres://user@host/db URL
                            (default: $PLM_DB, else plm.db); list and show only read it
      --state STATE         list: pending, approved, rejected, expired or all (default: pending)
      --run RUN_ID          list: only the approvals of this run (default: all)
  -n, --lines N             list: at most N, 1..1000 (default: 100)
      --digest D            approve, reject: the request's digest, 64 hex digits
                            (default: the approval's current digest)
      --comment TEXT        approve, reject: why (required to reject)
      --policy FILE         approve, reject: a policy set file overriding the store's
                            version in force (default: $PLM_POLICY, else the store's)
      --secret-file PATH    The HS256 secret (default: $PLM_JWT_SECRET)
      --issuer ISS          The required issuer (default: $PLM_JWT_ISSUER)
      --audience AUD        The required audience (default: $PLM_JWT_AUDIENCE)
      --json                stdout is JSON only: list: JSON lines, one approval each; show:
                            the approval; approve, reject: {"approval", "run"}
  -h, --help                Show this help

ENVIRONMENT:
  PLM_TOKEN       the approver's bearer token (approve, reject); verified, never printed
  PLM_JWT_SECRET  the secret it is verified with

EXIT CODES:
  0  done
  1  a runtime error or a refused decision (error: CODE: message on stderr)
  2  a usage error`;

/** The `plm approvals` command. */
export const approvalsCommand: CliCommand = {
  summary: "List, show, approve and reject approval requests",
  help: HELP,
  async run(args, io) {
    const { values: v, positionals } = parse(args);
    const [sub, ...rest] = positionals;
    const location = storeLocation(v.db, io);
    const json = v.json === true;
    const only = (flag: string, value: unknown, subs: string[]) => {
      if (value !== undefined && !subs.includes(sub ?? "")) {
        throw new UsageError(`${flag} applies to ${subs.join(", ")} only`);
      }
    };
    only("--state", v.state, ["list"]);
    only("--run", v.run, ["list"]);
    only("-n/--lines", v.lines, ["list"]);
    only("--digest", v.digest, ["approve", "reject"]);
    only("--comment", v.comment, ["approve", "reject"]);
    only("--policy", v.policy, ["approve", "reject"]);
    switch (sub) {
      case "list": {
        if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
        const state = v.state ?? "pending";
        if (state !== "all" && !APPROVAL_STATES.includes(state as ApprovalState)) {
          throw new UsageError(`--state must be one of ${APPROVAL_STATES.join(", ")} or all`);
        }
        const limit = parseCount(v.lines ?? "100", "-n", 1, INPUT_LIMITS.listLimit);
        // --mine: only what the caller (PLM_TOKEN) may decide now, by the service's own rules.
        const caller = v.mine === true ? await callerIdentity(v, io) : undefined;
        await using store = await openForReading(location);
        const cp = new ControlPlane(store, { policies: { rules: [] } });
        const approvals = (await cp.approvals.list({
          ...(state === "all" ? {} : { state: state as ApprovalState }),
          ...(v.run === undefined ? {} : { runId: v.run }),
          limit,
        })).filter((approval) =>
          caller === undefined || mayDecide(approval, caller, { now: cp.clock.now() })
        );
        for (const approval of approvals) io.out(json ? JSON.stringify(approval) : line(approval));
        return 0;
      }
      case "show": {
        const id = one(rest);
        await using store = await openForReading(location);
        const cp = new ControlPlane(store, { policies: { rules: [] } });
        const approval = await cp.approvals.get(id);
        io.out(json ? JSON.stringify(approval) : JSON.stringify(approval, null, 2));
        return 0;
      }
      case "approve":
      case "reject": {
        const id = one(rest);
        if (sub === "reject" && (v.comment === undefined || v.comment.trim() === "")) {
          throw new UsageError("reject needs --comment TEXT (the run's requester reads it)");
        }
        const identity = await callerIdentity(v, io);
        await using store = await openStore(location);
        const { policies } = await loadPolicies(v.policy ?? io.env("PLM_POLICY"), store);
        const cp = new ControlPlane(store, { policies });
        const digest = v.digest ?? (await cp.approvals.get(id)).digest;
        const { approval, run } = await cp.decideApproval(id, sub, {
          identity,
          digest,
          ...(v.comment === undefined ? {} : { comment: v.comment }),
        });
        // No worker may be running: chain the records now (PostgreSQL; a no-op on SQLite).
        await cp.audit.seal();
        io.out(
          json
            ? JSON.stringify({ approval, run })
            : `${approval.id} ${approval.state} (run ${run.id} ${run.state})`,
        );
        return 0;
      }
      case undefined:
        throw new UsageError("missing subcommand: list, show, approve or reject");
      default:
        throw new UsageError(`unknown subcommand '${sub}'`);
    }
  },
};

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        ...KEY_OPTIONS,
        db: { type: "string" },
        state: { type: "string" },
        run: { type: "string" },
        lines: { type: "string", short: "n" },
        digest: { type: "string" },
        comment: { type: "string" },
        policy: { type: "string" },
        json: { type: "boolean" },
        mine: { type: "boolean" },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function one(positionals: string[]): string {
  const [first, ...extra] = positionals;
  if (first === undefined) throw new UsageError("missing APPROVAL_ID");
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  return first;
}

/** One approval as a line of `approvals list`. */
function line(approval: Approval): string {
  const subject = (approval.subject ?? {}) as Record<string, unknown>;
  const approvals = approval.votes.filter((vote) => vote.decision === "approve").length;
  return [
    approval.id,
    approval.state,
    approval.runId,
    typeof subject.action === "string" ? subject.action : "-",
    typeof subject.resource === "string" ? subject.resource : "-",
    `requester=${approval.requester.subject}`,
    `approvals=${approvals}/${approval.spec.quorum}`,
    `deadline=${new Date(approval.deadline).toISOString()}`,
  ].join(" ");
}
