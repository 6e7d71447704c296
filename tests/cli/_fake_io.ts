import type { CliIo } from "../../cli.ts";

/** A {@link CliIo} that records what a command prints. */
export interface FakeIo extends CliIo {
  readonly stdout: string[];
  readonly stderr: string[];
}

/** An in-memory {@link CliIo} with the given environment and standard input. */
export function fakeIo(env: Record<string, string> = {}, stdin = ""): FakeIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (line) => void stdout.push(line),
    err: (line) => void stderr.push(line),
    readStdin: () => Promise.resolve(stdin),
    env: (name) => env[name],
  };
}
