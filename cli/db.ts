/**
 * `plm db`: create and migrate the store (a SQLite file or a PostgreSQL database).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { openStore, type Store } from "../control_plane/mod.ts";
import { assertNever, isPlmError, PlmError } from "../shared/mod.ts";
import { type CliCommand, type CliIo, storeLocation, UsageError } from "./io.ts";

const HELP = `plm db: manage the store

USAGE:
  plm db migrate [--db LOCATION] [--json]

COMMANDS:
  migrate  Create the store if needed, apply pending migrations, print the schema version

OPTIONS:
      --db LOCATION  A SQLite file or a postgres://user@host/db URL
                     (default: $PLM_DB, else plm.db in the current directory)
      --json         Print {"schemaVersion": N} instead
  -h, --help         Show this help`;

/**
 * The `plm db` command: `plm db migrate [--db LOCATION]`.
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
  summary: "Create and migrate the store",
  help: HELP,
  async run(args, io) {
    const { subcommand, location, json } = parseDbArgs(args, io);
    switch (subcommand) {
      case "migrate": {
        await using store = await openStore(location);
        const version = await store.schemaVersion();
        io.out(json ? JSON.stringify({ schemaVersion: version }) : `schema version ${version}`);
        return 0;
      }
      default:
        return assertNever(subcommand);
    }
  },
};

function parseDbArgs(
  args: string[],
  io: CliIo,
): { subcommand: "migrate"; location: string; json: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { db: { type: "string" }, json: { type: "boolean" } },
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
  return {
    subcommand,
    location: storeLocation(parsed.values.db, io),
    json: parsed.values.json === true,
  };
}

/**
 * Opens the store of a command that only reads (`audit`, `runs list`,
 * `runs show`): read-only, never created, written or migrated.
 *
 * @param location The `--db` location.
 * @returns The open store.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` for `:memory:`, `ERR_STORE_NOT_FOUND` naming
 * `--db` when the file is missing, and the codes of `openStore`.
 */
export async function openForReading(location: string): Promise<Store> {
  if (location === ":memory:") {
    throw new PlmError("ERR_INVALID_ARGUMENT", "Invalid --db: an in-memory database is empty");
  }
  try {
    return await openStore(location, { readOnly: true });
  } catch (err) {
    if (!isPlmError(err, "ERR_STORE_NOT_FOUND")) throw err;
    throw new PlmError(
      "ERR_STORE_NOT_FOUND",
      `${err.message} (--db or PLM_DB names it; 'plm db migrate' creates it)`,
      { cause: err },
    );
  }
}
