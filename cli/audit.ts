/**
 * `plm audit`: verify the hash chain of the audit log, print its head and its
 * newest records.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type AuditHead, AuditLog } from "../control_plane/audit/mod.ts";
import { assertNever, INPUT_LIMITS } from "../shared/mod.ts";
import { openForReading } from "./db.ts";
import { type CliCommand, type CliIo, dbPath, parseCount, UsageError } from "./io.ts";

const HELP = `plm audit: check and read the hash-chained audit log

USAGE:
  plm audit verify [--db PATH] [--expected-head SEQ:HASH]
  plm audit tail [--db PATH] [-n N]
  plm audit head [--db PATH]
  plm audit export [--db PATH]

COMMANDS:
  verify  Check every record's link and hash; print "N records valid", or the first
          bad seq and why (exit 1)
  tail    Print the newest records as JSON lines, oldest first
  head    Print the newest record's seq and hash as "SEQ HASH" (0 and 64 zeros when empty)
  export  Print every record as JSON lines, oldest first, for an outside check with
          tools/verify_audit.ts (see docs/AUDIT.md)

OPTIONS:
      --db PATH                 The database file (default: $PLM_DB, else plm.db in the
                                current directory); it must exist, and is only read
      --expected-head SEQ:HASH  verify: also require record SEQ to have hash HASH, as printed
                                by 'plm audit head' earlier; catches truncation (default: none)
  -n, --lines N                 tail: how many records to print, 1..1000 (default: 10)
  -h, --help                    Show this help`;

const SUBCOMMANDS = ["verify", "tail", "head", "export"] as const;
/** Records per page when exporting. */
const EXPORT_PAGE = 1_000;
type AuditSubcommand = typeof SUBCOMMANDS[number];

interface AuditArgs {
  readonly subcommand: AuditSubcommand;
  readonly path: string;
  readonly expectedHead?: AuditHead;
  readonly lines: number;
}

/**
 * The `plm audit` command: `verify`, `tail` and `head`.
 *
 * @example Print the head of an empty log
 * ```ts
 * import { main } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const out: string[] = [];
 * const io = { out: (l: string) => out.push(l), err: () => {}, readStdin: () => Promise.resolve(""), env: () => undefined };
 * const db = `${await Deno.makeTempDir()}/plm.db`;
 * assert.equal(await main(["db", "migrate", "--db", db], io), 0);
 * assert.equal(await main(["audit", "head", "--db", db], io), 0);
 * assert.equal(out[1], `0 ${"0".repeat(64)}`);
 * ```
 */
export const auditCommand: CliCommand = {
  summary: "Verify and read the hash-chained audit log",
  help: HELP,
  run(args, io) {
    const parsed = parseAuditArgs(args, io);
    using db = openForReading(parsed.path);
    const audit = new AuditLog(db);
    switch (parsed.subcommand) {
      case "verify": {
        const result = audit.verify(
          parsed.expectedHead === undefined ? {} : { expectedHead: parsed.expectedHead },
        );
        io.out(`${result.checked} ${result.checked === 1 ? "record" : "records"} valid`);
        if (result.ok) return Promise.resolve(0);
        io.out(`record ${result.firstBadSeq} invalid: ${result.problem}: ${result.reason}`);
        return Promise.resolve(1);
      }
      case "tail": {
        const records = audit.list({ newestFirst: true, limit: parsed.lines }).reverse();
        for (const record of records) io.out(JSON.stringify(record));
        return Promise.resolve(0);
      }
      case "export": {
        // Pages by seq so memory stays bounded however long the log is.
        for (let fromSeq = 1;;) {
          const page = audit.list({ fromSeq, limit: EXPORT_PAGE });
          for (const record of page) io.out(JSON.stringify(record));
          if (page.length < EXPORT_PAGE) break;
          fromSeq = page[page.length - 1]!.seq + 1;
        }
        return Promise.resolve(0);
      }
      case "head": {
        const head = audit.head();
        io.out(`${head.seq} ${head.hash}`);
        return Promise.resolve(0);
      }
      default:
        return assertNever(parsed.subcommand);
    }
  },
};

function parseAuditArgs(args: string[], io: CliIo): AuditArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        db: { type: "string" },
        "expected-head": { type: "string" },
        lines: { type: "string", short: "n" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const [name, ...extra] = parsed.positionals;
  if (name === undefined) throw new UsageError("missing subcommand");
  const subcommand = SUBCOMMANDS.find((known) => known === name);
  if (subcommand === undefined) throw new UsageError(`unknown subcommand '${name}'`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  const { db, "expected-head": headText, lines: linesText } = parsed.values;
  if (headText !== undefined && subcommand !== "verify") {
    throw new UsageError(`--expected-head applies to 'verify' only`);
  }
  if (linesText !== undefined && subcommand !== "tail") {
    throw new UsageError(`-n/--lines applies to 'tail' only`);
  }
  const path = dbPath(db, io);
  const lines = linesText === undefined
    ? 10
    : parseCount(linesText, "-n/--lines", 1, INPUT_LIMITS.listLimit);
  return headText === undefined
    ? { subcommand, path, lines }
    : { subcommand, path, lines, expectedHead: parseHead(headText) };
}

function parseHead(text: string): AuditHead {
  const match = /^(\d+):([0-9a-f]{64})$/.exec(text);
  if (match === null) {
    throw new UsageError(
      `--expected-head must be SEQ:HASH (64 lowercase hex digits), got '${text}'`,
    );
  }
  return { seq: parseCount(match[1] ?? "", "--expected-head SEQ"), hash: match[2] ?? "" };
}
