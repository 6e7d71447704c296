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
import { PlmError } from "./shared/mod.ts";
import { type CliCommand, type CliIo, denoIo, UsageError } from "./cli/io.ts";
import { demoCommand } from "./cli/demo.ts";
import { dbCommand } from "./cli/db.ts";
import { auditCommand } from "./cli/audit.ts";
import { authCommand } from "./cli/auth.ts";
import { runsCommand } from "./cli/runs.ts";

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
 * process itself. Exit codes: 0 success, 1 runtime error
 * (`error: <code>: <message>` on stderr), 2 usage error.
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
 */
export async function main(args: string[], io: CliIo = denoIo()): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    (name === undefined ? io.err : io.out)(HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === "-V" || name === "--version") {
    io.out(`plm ${VERSION}`);
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.err(`error: unknown command '${name}'\n\n${HELP}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    io.out(command.help);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`error: ${err.message}\n\n${command.help}`);
      return 2;
    }
    if (err instanceof PlmError) {
      io.err(`error: ${err.code}: ${err.message}`);
      return 1;
    }
    io.err(`error: ERR_INTERNAL: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
