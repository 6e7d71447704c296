/** Helpers for the boundary linter's tests: throwaway trees on disk. */

/** The repository root. */
export const REPO: string = decodeURIComponent(new URL("../../", import.meta.url).pathname).replace(
  /\/$/,
  "",
);

/** Writes `files` (path → text) under a new temp dir with the repo's boundaries.json. */
export async function makeTree(
  files: Record<string, string>,
  config?: unknown,
): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "boundaries_fixture_" });
  const json = config ?? JSON.parse(await Deno.readTextFile(`${REPO}/boundaries.json`));
  await Deno.writeTextFile(`${root}/boundaries.json`, JSON.stringify(json, null, 2));
  for (const [path, text] of Object.entries(files)) {
    const dir = path.includes("/") ? `${root}/${path.slice(0, path.lastIndexOf("/"))}` : root;
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${root}/${path}`, text);
  }
  return root;
}

/** Runs `deno task lint:boundaries` in `cwd` and returns its exit code and output. */
export async function runTask(
  cwd: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "lint:boundaries", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}
