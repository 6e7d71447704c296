/**
 * `plm`, the command line of plm-engine-core.
 *
 * ```sh
 * deno run -A jsr:@tracepulse/plm-engine-core/cli --help
 * ```
 *
 * @example Run a command in-process
 * ```ts
 * import { main } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const code = await main(["--version"], {
 *   out: (line) => lines.push(line),
 *   err: () => {},
 *   readStdin: () => Promise.resolve(""),
 *   env: () => undefined,
 * });
 * assert.equal(code, 0);
 * assert.match(lines[0] ?? "", /^plm \d+\.\d+\.\d+/);
 * ```
 *
 * @module
 */
import { checkText, invalidArgument, PlmError } from "./shared/mod.ts";
import { type CliCommand, type CliIo, denoIo, redactPasswords, UsageError } from "./cli/io.ts";
import { demoCommand } from "./cli/demo.ts";
import { dbCommand } from "./cli/db.ts";
import { auditCommand } from "./cli/audit.ts";
import { authCommand } from "./cli/auth.ts";
import { runsCommand } from "./cli/runs.ts";
import { policyCommand } from "./cli/policy.ts";
import { workerCommand } from "./cli/worker.ts";
import { approvalsCommand } from "./cli/approvals.ts";
import { serveCommand } from "./cli/serve.ts";

export type { CliIo } from "./cli/io.ts";
export { denoIo } from "./cli/io.ts";

/**
 * The package version printed by `plm --version`.
 *
 * @example The version that `--version` prints
 * ```ts
 * import { main, VERSION } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const io = {
 *   out: (line: string) => lines.push(line),
 *   err: () => {},
 *   readStdin: () => Promise.resolve(""),
 *   env: () => undefined,
 * };
 * assert.equal(await main(["--version"], io), 0);
 * assert.deepEqual(lines, [`plm ${VERSION}`]);
 * ```
 */
export const VERSION = "0.1.0";

const COMMANDS: Readonly<Record<string, CliCommand>> = {
  demo: demoCommand,
  db: dbCommand,
  audit: auditCommand,
  auth: authCommand,
  runs: runsCommand,
  policy: policyCommand,
  worker: workerCommand,
  approvals: approvalsCommand,
  serve: serveCommand,
};

const HELP = `plm ${VERSION}: govern and run AI-agent work

USAGE:
  plm <command> [options]

COMMANDS:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n")}

OPTIONS:
  -h, --help     Show this help
  -V, --version  Show the version`;

/**
 * Runs the `plm` command line and returns the exit code; it never exits the
 * process itself. Exit codes: 0 success, 1 runtime error (one line
 * `error: <code>: <message>` on stderr), 2 usage error (the help on stderr);
 * with `--json`, the error is one JSON line on stderr,
 * `{"error": {"code", "message"}}` (`ERR_USAGE` for a usage error), and no help.
 * An argument that is not valid UTF-8 (Deno decodes it to U+FFFD), or that
 * holds U+0000 or a lone surrogate, is refused with `ERR_INVALID_ARGUMENT`
 * before any command runs; a refused file or environment access is
 * `ERR_PERMISSION`.
 *
 * @param args The arguments after the program name.
 * @param io Where to read and write. Defaults to the real process streams.
 * @returns The exit code.
 *
 * @example Print the help
 * ```ts
 * import { main } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const out: string[] = [];
 * const io = { out: (l: string) => out.push(l), err: () => {}, readStdin: () => Promise.resolve(""), env: () => undefined };
 * assert.equal(await main(["--help"], io), 0);
 * assert.match(out.join("\n"), /USAGE:/);
 * ```
 *
 * @example Refuse an argument that was not valid UTF-8
 * ```ts
 * import { main } from "@tracepulse/plm-engine-core/cli";
 * import assert from "node:assert/strict";
 *
 * const err: string[] = [];
 * const io = { out: () => {}, err: (l: string) => err.push(l), readStdin: () => Promise.resolve(""), env: () => undefined };
 * assert.equal(await main(["db", "migrate", "--db", "plm\uFFFD.db"], io), 1);
 * assert.match(err[0] ?? "", /^error: ERR_INVALID_ARGUMENT: Invalid --db: /);
 * ```
 */
export async function main(args: string[], io: CliIo = denoIo()): Promise<number> {
  const [name, ...given] = args;
  // `deno task demo -- --db URL` passes the `--` on: right after the command it ends nothing.
  const rest = given[0] === "--" ? given.slice(1) : given;
  try {
    checkArguments(args);
    if (name === undefined || name === "-h" || name === "--help" || name === "help") {
      (name === undefined ? io.err : io.out)(HELP);
      return name === undefined ? 2 : 0;
    }
    if (name === "-V" || name === "--version") {
      io.out(`plm ${VERSION}`);
      return 0;
    }
    const command = COMMANDS[name];
    if (command === undefined) throw new UsageError(`unknown command '${name}'`);
    if (rest.includes("--help") || rest.includes("-h")) {
      io.out(command.help);
      return 0;
    }
    return await command.run(rest, io);
  } catch (err) {
    // With --json, an error is one JSON line on stderr: {"error": {"code", "message"}}.
    const json = rest.includes("--json");
    if (err instanceof UsageError) {
      io.err(
        json
          ? JSON.stringify({ error: { code: "ERR_USAGE", message: redactPasswords(err.message) } })
          : `error: ${redactPasswords(err.message)}\n\n${COMMANDS[name ?? ""]?.help ?? HELP}`,
      );
      return 2;
    }
    const [code, message] = describe(err);
    // A driver's message may quote the --db URL: its password is never printed.
    io.err(
      json
        ? JSON.stringify({ error: { code, message: redactPasswords(message) } })
        : `error: ${code}: ${redactPasswords(message)}`,
    );
    return 1;
  }
}

/** The code and message a runtime error is printed with. */
function describe(err: unknown): [string, string] {
  if (err instanceof PlmError) return [err.code, err.message];
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
    return ["ERR_PERMISSION", message];
  }
  return ["ERR_INTERNAL", message];
}

/**
 * Refuses an argument that cannot be stored as given. `Deno.args` decodes
 * invalid UTF-8 to U+FFFD, so a U+FFFD is taken as bytes that were lost.
 */
function checkArguments(args: readonly string[]): void {
  args.forEach((arg, index) => {
    const previous = args[index - 1];
    const field = arg.startsWith("--")
      ? arg.replace(/=[\s\S]*$/, "")
      : previous?.startsWith("-") && !previous.includes("=")
      ? previous
      : `argument ${index + 1}`;
    if (arg.includes("\uFFFD")) {
      throw invalidArgument(field, "not valid UTF-8 (it holds U+FFFD, the replacement character)");
    }
    checkText(field, arg, Number.MAX_SAFE_INTEGER);
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
