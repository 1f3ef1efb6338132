// `nbjob export JOB DIR`: writes the job as a standalone TypeScript project (runtime/export.ts).
import type { Command } from "./args";
import { parseCommandArgs, UsageError } from "./args";
import { STORE_FLAGS, STORE_FLAGS_USAGE, withCliStore } from "./db";
import { exportJob } from "../runtime/export";
import { shellQuote } from "../runtime/shell-quote";

const USAGE = `usage: nbjob export JOB DIR

Writes job JOB as a standalone TypeScript project into DIR (a new or empty directory): job.ts
(its code, parameters and entries), nbjob-runtime.ts (params and jobtracker; checkpoints go to
files under DIR/checkpoints), package.json (the packages it imports, at the versions its worker
had, and tsx) and a README. Then: cd DIR && npm install && npx tsx job.ts
${STORE_FLAGS_USAGE}`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args: argv, allowPositionals: true, strict: true, options: STORE_FLAGS }, USAGE);
  const [jobText, dir, extra] = positionals;
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}" (usage: nbjob export JOB DIR)`);
  if (jobText === undefined || dir === undefined) throw new UsageError(`nbjob export needs a job id and a directory (usage: nbjob export JOB DIR)`);
  if (!/^\d+$/.test(jobText) || Number(jobText) < 1 || !Number.isSafeInteger(Number(jobText))) {
    throw new UsageError(`JOB must be a job id (a positive integer, see "nbjob jobs"), got "${jobText}"`);
  }
  const project = await withCliStore(values, (store) => exportJob(store, Number(jobText), dir));
  const lines = [`job ${jobText} exported to ${shellQuote(project.dir)}: ${project.files.join(", ")}`];
  if (project.unpinned.length) lines.push(`not pinned (no recorded version): ${project.unpinned.join(", ")}`);
  if (project.localImports.length) lines.push(`imports local files that are not in the export, copy them where job.ts expects them: ${project.localImports.join(", ")}`);
  if (project.resumeNote) lines.push(project.resumeNote.replace("the one below", "the stored one"));
  lines.push(`run it: cd ${shellQuote(project.dir)} && npm install && npx tsx job.ts`);
  console.log(lines.join("\n"));
  return 0;
}

export const command: Command = { summary: "write a job as a standalone TypeScript project", usage: USAGE, run };
