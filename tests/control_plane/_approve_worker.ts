/** A second process that decides an approval: `deno run -A _approve_worker.ts DB ID SUBJECT DIGEST NOW`. */
import { ApprovalService, AuditLog, openStore } from "../../control_plane/mod.ts";
import { FakeClock, isPlmError } from "../../shared/mod.ts";

const [path, id, subject, digest, now] = Deno.args;
const clock = new FakeClock(Number(now));
await using store = await openStore(path!);
const approvals = new ApprovalService(store, { audit: new AuditLog(store, { clock }), clock });
try {
  const after = await approvals.decide(id!, "approve", {
    identity: { subject: subject!, actorKind: "human", roles: ["lead"], scopes: [] },
    digest: digest!,
  });
  console.log(`ok ${after.state}`);
} catch (err) {
  console.log(isPlmError(err) ? err.code : String(err));
}
