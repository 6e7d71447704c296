/**
 * The input and output a CLI command runs against, injectable for tests.
 *
 * @module
 */
import { invalidArgument } from "../shared/mod.ts";
import { redactUrls } from "../control_plane/store/postgres/mod.ts";

/**
 * Where a command reads and writes. {@link denoIo} is the real one.
 */
export interface CliIo {
  /** Writes a line (a newline is added) to standard output. */
  out(line: string): void;
  /** Writes a line (a newline is added) to standard error. */
  err(line: string): void;
  /** Reads all of standard input as text. */
  readStdin(): Promise<string>;
  /** Reads an environment variable. */
  env(name: string): string | undefined;
}

/**
 * The process's real standard streams and environment.
 *
 * @returns An {@link CliIo} on `Deno.stdout`, `Deno.stderr`, `Deno.stdin` and `Deno.env`.
 *
 * @example Write a line
 * ```ts
 * import { denoIo } from "@tracepulse/plm-engine-core/cli";
 *
 * denoIo().err("hello from the example");
 * ```
 */
export function denoIo(): CliIo {
  const encoder = new TextEncoder();
  return {
    out: (line) => void Deno.stdout.writeSync(encoder.encode(line + "\n")),
    err: (line) => void Deno.stderr.writeSync(encoder.encode(line + "\n")),
    readStdin: () => new Response(Deno.stdin.readable).text(),
    env: (name) => Deno.env.get(name),
  };
}

/** One `plm` subcommand group: its one-line summary, its help text and how it runs. */
export interface CliCommand {
  /** One line for `plm --help`. */
  readonly summary: string;
  /** The `--help` text, with `USAGE:` and `OPTIONS:`. */
  readonly help: string;
  /** Runs the command and returns its exit code. */
  run(args: string[], io: CliIo): Promise<number>;
}

/** A usage error: the command prints its help to stderr and exits 2. */
export class UsageError extends Error {
  /**
   * Creates a usage error.
   *
   * @param message What is wrong with the arguments.
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * The store a command works on: `--db`, else `$PLM_DB`, else `plm.db` in the
 * current directory. A location is what `openStore` takes: a SQLite file
 * path, `:memory:`, or a `postgres://` / `postgresql://` URL.
 *
 * @param flag The `--db` value, if given.
 * @param io Where `PLM_DB` is read.
 * @returns The location.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `--db` when the location is empty, holds a
 * control character, or is a URL of another scheme or one that does not parse (its password
 * is never in the message).
 */
export function storeLocation(flag: string | undefined, io: CliIo): string {
  const location = flag ?? io.env("PLM_DB") ?? "plm.db";
  if (location === "") throw invalidArgument("--db", "expected a file path or a postgres:// URL");
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(location)) {
    throw invalidArgument("--db", "a control character is not allowed");
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1]?.toLowerCase();
  if (scheme === undefined) return location;
  if (scheme !== "postgres" && scheme !== "postgresql") {
    throw invalidArgument(
      "--db",
      `unknown scheme ${scheme}://; expected postgres:// or a file path`,
    );
  }
  if (!URL.canParse(location)) throw invalidArgument("--db", "the postgres:// URL does not parse");
  return location;
}

/**
 * Text as it may be printed: the password of every `postgres://` URL in it replaced by `***`.
 *
 * @param text A location, or a message that may quote one.
 * @returns The text without passwords.
 */
export function redactPasswords(text: string): string {
  return redactUrls(text);
}

/**
 * Parses a whole number argument within `[min, max]`.
 *
 * @param text The argument as typed.
 * @param name The option's name for the error.
 * @param min The smallest allowed value.
 * @param max The largest allowed value.
 * @returns The number.
 * @throws {UsageError} When `text` is not a whole number in the range.
 */
export function parseCount(
  text: string,
  name: string,
  min = 0,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
    throw new UsageError(`${name} must be an integer ${range}, got '${text}'`);
  }
  return value;
}

/**
 * Reads a file named by an option. A refused permission is rethrown (`main`
 * reports it as `ERR_PERMISSION`); any other failure is `ERR_INVALID_ARGUMENT`
 * naming the option and the path.
 *
 * @param flag The option, as typed (`--policy`).
 * @param path The file.
 * @returns The file's text.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` when the file cannot be read.
 */
export async function readArgumentFile(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw err; // ERR_PERMISSION
    }
    throw invalidArgument(`${flag} ${path}`, `cannot read it (${(err as Error).message})`);
  }
}
