/**
 * `plm db`: create and migrate the SQLite database.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type Database, openDatabase } from "../control_plane/store/mod.ts";
import { assertNever, isPlmError, PlmError } from "../shared/mod.ts";
import { type CliCommand, type CliIo, dbPath, UsageError } from "./io.ts";

const HELP = `plm db: manage the SQLite database

USAGE:
  plm db migrate [--db PATH]

COMMANDS:
  migrate  Create the database if needed, apply pending migrations, print the schema version

OPTIONS:
      --db PATH  The database file (default: $PLM_DB, else plm.db in the current directory)
  -h, --help     Show this help`;

/**
 * The `plm db` command: `plm db migrate [--db PATH]`.
 *
 * @example Migrate an in-memory database
 * ```ts
 * import { main } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const out: string[] = [];
 * const io = { out: (l: string) => out.push(l), err: () => {}, readStdin: () => Promise.resolve(""), env: () => undefined };
 * assert.equal(await main(["db", "migrate", "--db", ":memory:"], io), 0);
 * assert.match(out[0] ?? "", /^schema version \d+$/);
 * ```
 */
export const dbCommand: CliCommand = {
  summary: "Create and migrate the SQLite database",
  help: HELP,
  run(args, io) {
    const { subcommand, path } = parseDbArgs(args, io);
    switch (subcommand) {
      case "migrate": {
        using db = openDatabase(path);
        io.out(`schema version ${db.schemaVersion}`);
        return Promise.resolve(0);
      }
      default:
        return assertNever(subcommand);
    }
  },
};

function parseDbArgs(args: string[], io: CliIo): { subcommand: "migrate"; path: string } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { db: { type: "string" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const [subcommand, ...extra] = parsed.positionals;
  if (subcommand === undefined) throw new UsageError("missing subcommand");
  if (subcommand !== "migrate") throw new UsageError(`unknown subcommand '${subcommand}'`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  return { subcommand, path: dbPath(parsed.values.db, io) };
}

/**
 * Opens the database of a command that only reads (`audit`, `runs list`,
 * `runs show`): read-only, never created, written or migrated.
 *
 * @param path The `--db` path.
 * @returns The open database.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` for `:memory:`, `ERR_STORE_NOT_FOUND` naming
 * `--db` when the file is missing, and the codes of {@link openDatabase}.
 */
export function openForReading(path: string): Database {
  if (path === ":memory:") {
    throw new PlmError("ERR_INVALID_ARGUMENT", "Invalid --db: an in-memory database is empty");
  }
  try {
    return openDatabase(path, { readOnly: true });
  } catch (err) {
    if (!isPlmError(err, "ERR_STORE_NOT_FOUND")) throw err;
    throw new PlmError(
      "ERR_STORE_NOT_FOUND",
      `${err.message} (--db or PLM_DB names it; 'plm db migrate' creates it)`,
      { cause: err },
    );
  }
}
