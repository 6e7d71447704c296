/**
 * The one place the CLI's commands (`runs submit|cancel`, `approvals
 * approve|reject`, `worker`) get the policy set they decide under.
 *
 * @module
 */
import { loadPolicySet, type PolicySet } from "../control_plane/mod.ts";
import { readArgumentFile } from "./io.ts";

/**
 * The policy set a command decides under: today the `--policy` file (else
 * `$PLM_POLICY`, which the caller resolves), validated by `loadPolicySet`; no
 * file gives no rules. Once policies live in the store, this is where the
 * store's active version is read instead.
 *
 * @param path The `--policy` file, if any.
 * @returns The policy set.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `--policy` when the file cannot be read or
 * is not a valid policy set.
 */
export async function loadPolicies(path: string | undefined): Promise<PolicySet> {
  if (path === undefined || path === "") return { rules: [] };
  return loadPolicySet(await readArgumentFile("--policy", path));
}
