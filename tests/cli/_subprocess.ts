import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** Options for {@link runPlm}. */
export interface RunPlmOptions {
  /** Extra environment variables; the rest of the environment is cleared. */
  env?: Record<string, string>;
  /** Text piped to standard input (default: none). */
  stdin?: string;
  /** The Deno permission flags (default: `-A`). */
  permissions?: string[];
  /**
   * Make file modes apply even when the tests run as root: the child runs
   * without `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH` (default: off).
   */
  honourFileModes?: boolean;
  /**
   * A `printf` format whose output is passed as the last argument, for bytes
   * a string cannot carry, such as invalid UTF-8 (default: none).
   */
  printfArg?: string;
}

/** What {@link runPlm} returns. */
export interface PlmResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `deno run cli.ts ...args` in a subprocess, in a clean environment. */
export async function runPlm(args: string[], options: RunPlmOptions = {}): Promise<PlmResult> {
  const { env = {}, stdin, permissions = ["-A"], honourFileModes = false, printfArg } = options;
  // A clean environment, so that a PLM_JWT_SECRET or PLM_DB of the caller cannot leak in.
  const keep: Record<string, string> = {};
  for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) keep[name] = value;
  }
  let command = [Deno.execPath(), "run", "--no-prompt", ...permissions, "cli.ts", ...args];
  if (printfArg !== undefined) {
    command = ["bash", "-c", 'exec "$@" "$(printf "$PLM_PRINTF_ARG")"', "bash", ...command];
  }
  if (honourFileModes && Deno.uid() === 0) {
    command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", ...command];
  }
  const [program = "", ...rest] = command;
  const child = new Deno.Command(program, {
    args: rest,
    cwd: REPO,
    clearEnv: true,
    env: {
      ...keep,
      NO_COLOR: "1",
      ...(printfArg === undefined ? {} : { PLM_PRINTF_ARG: printfArg }),
      ...env,
    },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}
