// `nbjob db retention`: the checkpoint retention policy stored in the store, applied by `nbjob gc`
// (and the collection after `nbjob rm`). db.ts hands over the store flags and opener (this file
// imports nothing from it: no cycle).
import { parseCommandArgs, UsageError } from "./args";
import type { Store } from "../store";
import { getRetention, parseDuration, setRetention } from "../store/cleanup";
import type { RetentionPolicy } from "../store/cleanup";

export const RETENTION_USAGE = `usage: nbjob db retention [--checkpoints keep-last N --older-than AGE | --off]

Without options: shows the policy. With them: of jobs that ended more than AGE ago (30d, 12h, 2w)
and are not tagged keep, "nbjob gc" deletes every checkpoint but the last N (their analysis rows
too), then collects the values only those held. --off removes the policy.`;

function describe(policy: RetentionPolicy | undefined): string {
  if (!policy) return "retention: none (every checkpoint is kept)";
  const days = policy.olderThanMs / 86_400_000;
  const age = Number.isInteger(days) ? `${days}d` : `${Math.round(policy.olderThanMs / 1000)}s`;
  return `retention: jobs that ended more than ${age} ago keep their last ${policy.keepLast} checkpoint${policy.keepLast === 1 ? "" : "s"} (applied by nbjob gc)`;
}

export async function retentionCommand(
  argv: string[],
  storeFlags: Record<string, { type: "string" }>,
  withStore: <T>(flags: { "database-url"?: string; home?: string }, body: (store: Store) => Promise<T>) => Promise<T>,
): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { ...storeFlags, checkpoints: { type: "string" }, "older-than": { type: "string" }, off: { type: "boolean" } },
  }, RETENTION_USAGE);
  const v = values as { checkpoints?: string; "older-than"?: string; off?: boolean; "database-url"?: string; home?: string };
  let policy: RetentionPolicy | undefined;
  const setting = v.checkpoints !== undefined || v["older-than"] !== undefined;
  if (setting) {
    if (v.off) throw new UsageError("give either --off or a policy, not both");
    // "--checkpoints keep-last 5": the number arrives as a positional.
    if (v.checkpoints === "keep-last" && positionals.length === 1 && /^-?\d+$/.test(positionals[0]) && Number(positionals[0]) < 1) {
      throw new UsageError(`keep-last N needs N of at least 1 (a job's last checkpoint is always kept), got ${positionals[0]}; e.g. --checkpoints keep-last 1 --older-than 14d`);
    }
    if (v.checkpoints !== "keep-last" || positionals.length !== 1 || !/^\d+$/.test(positionals[0]) || Number(positionals[0]) < 1) {
      throw new UsageError(`write the policy as --checkpoints keep-last N --older-than AGE, e.g. --checkpoints keep-last 5 --older-than 14d`);
    }
    if (v["older-than"] === undefined) throw new UsageError("--older-than AGE is needed with --checkpoints (e.g. 14d): running and recent jobs keep every checkpoint");
    let olderThanMs: number;
    try {
      olderThanMs = parseDuration(v["older-than"]);
    } catch (err) {
      throw new UsageError(`--older-than: ${(err as Error).message}`);
    }
    policy = { keepLast: Number(positionals[0]), olderThanMs };
  } else if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}" (${RETENTION_USAGE.split("\n", 1)[0]})`);
  }
  return withStore(v, async (store) => {
    if (setting || v.off) await setRetention(store, policy);
    console.log(describe(setting || v.off ? policy : await getRetention(store)));
    return 0;
  });
}
