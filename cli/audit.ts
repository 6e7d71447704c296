/**
 * `plm audit`: verify the hash chain of the audit log, print its head and its
 * newest records, and sign and check checkpoints of it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type AuditCheckpoint,
  type AuditHead,
  AuditLog,
  type CheckpointKey,
  generateCheckpointKeys,
  importCheckpointPrivateKey,
  importCheckpointPublicKey,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
} from "../control_plane/audit/mod.ts";
import { assertNever, INPUT_LIMITS, invalidArgument, PlmError } from "../shared/mod.ts";
import { openForReading } from "./db.ts";
import {
  type CliCommand,
  type CliIo,
  parseCount,
  readArgumentFile,
  storeLocation,
  UsageError,
} from "./io.ts";

const HELP = `plm audit: check and read the hash-chained audit log

USAGE:
  plm audit verify [--db LOCATION] [--expected-head SEQ:HASH]
                   [--checkpoint FILE... --public-key FILE...] [--json]
  plm audit tail [--db LOCATION] [-n N]
  plm audit head [--db LOCATION] [--json]
  plm audit export [--db LOCATION] [--since SEQ] [--run ID] [--actor SUBJECT] [--action PREFIX]
  plm audit checkpoint --key FILE [--db LOCATION] [--out FILE] [--json]
  plm audit keygen --out-private FILE --out-public FILE [--json]

COMMANDS:
  verify      Check every record's link and hash; print "N records valid", or the first
              bad seq and why (exit 1). With checkpoints, check their signatures first
              (a bad one is ERR_CHECKPOINT_INVALID, exit 1), then that the log reaches
              each checkpoint's record with its hash
  tail        Print the newest records as JSON lines, oldest first
  head        Print the newest record's seq and hash as "SEQ:HASH", exactly what
              'verify --expected-head' takes (0 and 64 zeros when empty)
  export      Print the records as JSON lines, oldest first. Unfiltered, the export is the
              whole chain: tools/verify_audit.ts checks it outside (see docs/AUDIT.md).
              With a filter it is a selection, NOT a chain: the outside verifier refuses
              it (records are missing between links); only the whole export verifies.
              --since SEQ continues an earlier export: its first record's prevHash is the
              hash of record SEQ
  checkpoint  Sign the head (seq, hash and time) with an Ed25519 private key and print the
              checkpoint as JSON, or write it to --out; keep it away from the database
  keygen      Create an Ed25519 key pair for checkpoints, as PEM files (the private one
              with mode 0600); print its key id

OPTIONS:
      --db LOCATION             A SQLite file or a postgres://user@host/db URL
                                (default: $PLM_DB, else plm.db in the current directory);
                                it must exist, and is only read
      --expected-head SEQ:HASH  verify: also require record SEQ to have hash HASH, as printed
                                by 'plm audit head' earlier; catches truncation (default: none)
      --checkpoint FILE         verify: a checkpoint written by 'plm audit checkpoint';
                                repeat for several (default: none)
      --public-key FILE         verify: a trusted public key (SPKI PEM or JWK); repeat to
                                trust several, after a rotation (required with --checkpoint)
      --key FILE                checkpoint: the private key (PKCS#8 PEM or JWK) (required)
      --out FILE                checkpoint: write the checkpoint to FILE, which must not
                                exist (default: print it to stdout)
      --out-private FILE        keygen: where to write the private key; must not exist
      --out-public FILE         keygen: where to write the public key; must not exist
  -n, --lines N                 tail: how many records to print, 1..1000 (default: 10)
      --since SEQ               export: only records after record SEQ (default: from the first)
      --run ID                  export: only the records of this run (default: all)
      --actor SUBJECT           export: only the records of this actor subject (default: all)
      --action PREFIX           export: only records whose action starts with PREFIX, such as
                                run. or approval.decided (default: all)
      --json                    stdout is JSON only: verify: {"ok","checked","head":"SEQ:HASH"
                                (null when not ok), "firstBadSeq","problem","reason" when not
                                ok, "checkpoints"}; head: {"seq","hash","expectedHead":"SEQ:HASH"};
                                checkpoint: the checkpoint, or {"checkpoint","out"} with --out;
                                keygen: {"keyId","privateKey","publicKey"}; tail and export
                                always print JSON lines
  -h, --help                    Show this help

EXIT CODES:
  0  done; verify: the chain (and every checkpoint) holds
  1  verify: the chain is broken (or a checkpoint is invalid); any runtime error
  2  a usage error`;

const SUBCOMMANDS = ["verify", "tail", "head", "export", "checkpoint", "keygen"] as const;
/** Records per page when exporting. */
const EXPORT_PAGE = 1_000;
type AuditSubcommand = typeof SUBCOMMANDS[number];

interface AuditArgs {
  readonly subcommand: AuditSubcommand;
  readonly location: string;
  readonly expectedHead?: AuditHead;
  readonly lines: number;
  /** verify: checkpoint files. */
  readonly checkpoints: readonly string[];
  /** verify: public key files. */
  readonly publicKeys: readonly string[];
  /** checkpoint: the private key file. */
  readonly key?: string;
  /** checkpoint: the output file. */
  readonly out?: string;
  /** keygen: the two output files. */
  readonly outPrivate?: string;
  readonly outPublic?: string;
  /** Print JSON only. */
  readonly json: boolean;
  /** export: the filters. */
  readonly since?: number;
  readonly runId?: string;
  readonly actor?: string;
  readonly actionPrefix?: string;
}

/**
 * The `plm audit` command: `verify`, `tail`, `head`, `export`, `checkpoint` and `keygen`.
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
 * assert.equal(out[1], `0:${"0".repeat(64)}`);
 * ```
 */
export const auditCommand: CliCommand = {
  summary: "Verify and read the hash-chained audit log",
  help: HELP,
  async run(args, io) {
    const parsed = parseAuditArgs(args, io);
    if (parsed.subcommand === "keygen") return await keygen(parsed, io);
    // Checkpoints are read and their signatures checked before the database is opened.
    const checkpoints = parsed.subcommand === "verify" ? await verifiedCheckpoints(parsed) : [];
    const privateKey = parsed.subcommand === "checkpoint"
      ? await signingKey(parsed.key ?? "")
      : undefined;
    await using store = await openForReading(parsed.location);
    const audit = new AuditLog(store);
    switch (parsed.subcommand) {
      case "verify": {
        const result = await audit.verify({
          ...(parsed.expectedHead === undefined ? {} : { expectedHead: parsed.expectedHead }),
          checkpoints,
        });
        if (parsed.json) {
          io.out(JSON.stringify({
            ok: result.ok,
            checked: result.checked,
            head: result.ok ? `${result.head.seq}:${result.head.hash}` : null,
            ...(result.ok ? {} : {
              firstBadSeq: result.firstBadSeq,
              problem: result.problem,
              reason: result.reason,
              ...(result.checkpointIndex === undefined
                ? {}
                : { checkpoint: parsed.checkpoints[result.checkpointIndex] }),
            }),
            checkpoints: result.ok
              ? checkpoints.map((c, i) => ({
                file: parsed.checkpoints[i],
                seq: c.seq,
                keyId: c.keyId,
                at: c.at,
              }))
              : [],
          }));
          return result.ok ? 0 : 1;
        }
        io.out(`${result.checked} ${result.checked === 1 ? "record" : "records"} valid`);
        if (!result.ok) {
          const file = result.checkpointIndex === undefined
            ? ""
            : ` (--checkpoint ${parsed.checkpoints[result.checkpointIndex]})`;
          io.out(
            `record ${result.firstBadSeq} invalid: ${result.problem}: ${result.reason}${file}`,
          );
          return 1;
        }
        checkpoints.forEach((checkpoint, index) => {
          io.out(
            `checkpoint ${
              parsed.checkpoints[index]
            } holds: record ${checkpoint.seq}, signed by ${checkpoint.keyId} at ${
              new Date(checkpoint.at).toISOString()
            }`,
          );
        });
        return 0;
      }
      case "checkpoint": {
        // Sign only a chain that verifies: never vouch for a log already broken.
        const result = await audit.verify();
        if (!result.ok) {
          io.out(`record ${result.firstBadSeq} invalid: ${result.problem}: ${result.reason}`);
          io.err("error: nothing signed: the chain does not verify");
          return 1;
        }
        const checkpoint = await signCheckpoint(result.head, { privateKey: privateKey! });
        const text = JSON.stringify(checkpoint);
        if (parsed.out === undefined) {
          io.out(text);
        } else {
          await writeNewFile("--out", parsed.out, text + "\n");
          io.out(
            parsed.json
              ? JSON.stringify({ checkpoint, out: parsed.out })
              : `checkpoint of record ${checkpoint.seq} written to ${parsed.out}`,
          );
        }
        return 0;
      }
      case "tail": {
        const records = (await audit.list({ newestFirst: true, limit: parsed.lines })).reverse();
        for (const record of records) io.out(JSON.stringify(record));
        return 0;
      }
      case "export": {
        // Pages by seq so memory stays bounded however long the log is; the filters are
        // applied by the store.
        const filter = {
          ...(parsed.runId === undefined ? {} : { runId: parsed.runId }),
          ...(parsed.actor === undefined ? {} : { actorSubject: parsed.actor }),
          ...(parsed.actionPrefix === undefined ? {} : { actionPrefix: parsed.actionPrefix }),
        };
        for (let fromSeq = (parsed.since ?? 0) + 1;;) {
          const page = await audit.list({ ...filter, fromSeq, limit: EXPORT_PAGE });
          for (const record of page) io.out(JSON.stringify(record));
          if (page.length < EXPORT_PAGE) break;
          fromSeq = page[page.length - 1]!.seq + 1;
        }
        return 0;
      }
      case "head": {
        const head = await audit.head();
        const expectedHead = `${head.seq}:${head.hash}`;
        io.out(
          parsed.json
            ? JSON.stringify({ seq: head.seq, hash: head.hash, expectedHead })
            : expectedHead,
        );
        return 0;
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
        checkpoint: { type: "string", multiple: true },
        "public-key": { type: "string", multiple: true },
        key: { type: "string" },
        out: { type: "string" },
        "out-private": { type: "string" },
        "out-public": { type: "string" },
        since: { type: "string" },
        run: { type: "string" },
        actor: { type: "string" },
        action: { type: "string" },
        json: { type: "boolean" },
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
  const {
    db,
    "expected-head": headText,
    lines: linesText,
    checkpoint: checkpoints = [],
    "public-key": publicKeys = [],
    key,
    out,
    "out-private": outPrivate,
    "out-public": outPublic,
    since,
    run: runId,
    actor,
    action: actionPrefix,
    json = false,
  } = parsed.values;
  const only: [string, unknown, AuditSubcommand][] = [
    ["--expected-head", headText, "verify"],
    ["-n/--lines", linesText, "tail"],
    ["--checkpoint", checkpoints[0], "verify"],
    ["--public-key", publicKeys[0], "verify"],
    ["--key", key, "checkpoint"],
    ["--out", out, "checkpoint"],
    ["--out-private", outPrivate, "keygen"],
    ["--out-public", outPublic, "keygen"],
    ["--since", since, "export"],
    ["--run", runId, "export"],
    ["--actor", actor, "export"],
    ["--action", actionPrefix, "export"],
  ];
  for (const [flag, value] of [["--run", runId], ["--actor", actor], ["--action", actionPrefix]]) {
    if (value === "") throw new UsageError(`${flag} must not be empty`);
  }
  for (const [flag, value, owner] of only) {
    if (value !== undefined && subcommand !== owner) {
      throw new UsageError(`${flag} applies to '${owner}' only`);
    }
  }
  if ((checkpoints.length > 0) !== (publicKeys.length > 0)) {
    throw new UsageError("--checkpoint and --public-key go together");
  }
  if (subcommand === "checkpoint" && key === undefined) {
    throw new UsageError("'checkpoint' needs --key FILE");
  }
  if (subcommand === "keygen") {
    if (outPrivate === undefined || outPublic === undefined) {
      throw new UsageError("'keygen' needs --out-private FILE and --out-public FILE");
    }
    if (outPrivate === outPublic) {
      throw new UsageError("--out-private and --out-public must differ");
    }
  }
  const location = storeLocation(db, io);
  const lines = linesText === undefined
    ? 10
    : parseCount(linesText, "-n/--lines", 1, INPUT_LIMITS.listLimit);
  return {
    subcommand,
    location,
    lines,
    checkpoints,
    publicKeys,
    json,
    ...(since === undefined ? {} : { since: parseCount(since, "--since") }),
    ...(runId === undefined ? {} : { runId }),
    ...(actor === undefined ? {} : { actor }),
    ...(actionPrefix === undefined ? {} : { actionPrefix }),
    ...(headText === undefined ? {} : { expectedHead: parseHead(headText) }),
    ...(key === undefined ? {} : { key }),
    ...(out === undefined ? {} : { out }),
    ...(outPrivate === undefined ? {} : { outPrivate }),
    ...(outPublic === undefined ? {} : { outPublic }),
  };
}

/**
 * Reads the `--public-key` and `--checkpoint` files and checks every
 * checkpoint's signature.
 *
 * @throws {PlmError} `ERR_CHECKPOINT_INVALID` naming the file when a signature does not
 * hold or no trusted key has its key id; `ERR_INVALID_ARGUMENT` naming the file when a
 * file cannot be read or is not a key or a checkpoint.
 */
async function verifiedCheckpoints(args: AuditArgs): Promise<AuditCheckpoint[]> {
  const keys: CheckpointKey[] = [];
  for (const file of args.publicKeys) {
    const text = await readArgumentFile("--public-key", file);
    keys.push(await importCheckpointPublicKey(text, { field: `--public-key ${file}` }));
  }
  const verified: AuditCheckpoint[] = [];
  for (const file of args.checkpoints) {
    const field = `--checkpoint ${file}`;
    const checkpoint = parseCheckpoint(await readArgumentFile("--checkpoint", file), field);
    const result = await verifyCheckpoint(checkpoint, keys);
    if (!result.ok) {
      throw new PlmError(
        "ERR_CHECKPOINT_INVALID",
        `Invalid ${field}: ${result.problem}: ${result.reason}`,
      );
    }
    verified.push(result.checkpoint);
  }
  return verified;
}

/** `plm audit keygen`: both files are new; the private one is written first, mode 0600. */
async function keygen(args: AuditArgs, io: CliIo): Promise<number> {
  const outPrivate = args.outPrivate ?? "";
  const outPublic = args.outPublic ?? "";
  const pair = await generateCheckpointKeys();
  await writeNewFile("--out-private", outPrivate, pair.privateKeyPem, 0o600);
  try {
    await writeNewFile("--out-public", outPublic, pair.publicKeyPem);
  } catch (err) {
    await Deno.remove(outPrivate); // written just above: leave no half of a pair behind
    throw err;
  }
  io.out(
    args.json
      ? JSON.stringify({ keyId: pair.keyId, privateKey: outPrivate, publicKey: outPublic })
      : `key id ${pair.keyId}`,
  );
  return 0;
}

/**
 * Reads the signing key, refusing one that group or others may read (as ssh
 * does): a key anyone can read signs checkpoints for anyone.
 */
async function signingKey(path: string): Promise<CheckpointKey> {
  const text = await readArgumentFile("--key", path);
  const key = await importCheckpointPrivateKey(text, { field: `--key ${path}` });
  const { mode } = await Deno.stat(path);
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new PlmError(
      "ERR_PERMISSION",
      `Invalid --key ${path}: group or others may read it (mode ${
        (mode & 0o777).toString(8)
      }); run chmod 600 ${path}`,
    );
  }
  return key;
}

/**
 * Writes a file that must not exist yet (a key or a checkpoint is never
 * overwritten), with `mode` set whatever the umask.
 */
async function writeNewFile(flag: string, path: string, text: string, mode = 0o644): Promise<void> {
  try {
    await Deno.writeTextFile(path, text, { createNew: true, mode });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw invalidArgument(`${flag} ${path}`, "the file exists; refusing to overwrite it");
    }
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw err; // ERR_PERMISSION
    }
    throw invalidArgument(`${flag} ${path}`, `cannot write it (${(err as Error).message})`);
  }
  await Deno.chmod(path, mode);
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
