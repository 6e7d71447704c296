/**
 * The one place the CLI's commands (`runs submit|cancel`, `approvals
 * approve|reject`, `worker`) get the policy set they decide under.
 *
 * @module
 */
import { loadPolicySet, type PolicySet, PolicyStore, type Store } from "../control_plane/mod.ts";
import { readArgumentFile } from "./io.ts";

/**
 * The policy set a command decides under: the `--policy` file when one is
 * given (else `$PLM_POLICY`, which the caller resolves), validated by
 * `loadPolicySet`: an author's override; otherwise the version in force in
 * the store (`plm policy apply`); a store with none gives no rules (every
 * action denied).
 *
 * @param path The `--policy` file, if any.
 * @param store The store whose active version applies without a file.
 * @returns The policy set, and whether it came from the store (a long-running command then
 * follows the store's new versions).
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `--policy` when the file cannot be read or
 * is not a valid policy set; `ERR_STORE_CORRUPT` when the stored version does not match its hash.
 */
export async function loadPolicies(
  path: string | undefined,
  store: Store,
): Promise<{ policies: PolicySet; fromStore: boolean }> {
  if (path !== undefined && path !== "") {
    return { policies: loadPolicySet(await readArgumentFile("--policy", path)), fromStore: false };
  }
  const active = await new PolicyStore(store).active();
  return { policies: active?.policySet ?? { rules: [] }, fromStore: true };
}
