// `npm run demo`: runs examples/tutorial.ipynb (jobs, params, sweeps) and then
// examples/checkpoints.ipynb (checkpoints, an analysis over them, a plot) headless end to end, first starting
// the local cluster (profile "default", 2 workers) when none runs, and says where the executed
// copies went.
import { spawnSync } from "node:child_process";
import { join, relative } from "node:path";
import { DEFAULT_PROFILE, listClusterWorkers, processAlive, readWorkerPid } from "../runtime/shared/cluster-files";

const ROOT = join(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");
const NOTEBOOKS = ["tutorial", "checkpoints"];

function nbjob(...args: string[]): number {
  const run = spawnSync(process.execPath, [NBJOB, ...args], { stdio: "inherit", cwd: ROOT });
  return run.status ?? 1;
}

function main(): number {
  const running = listClusterWorkers(DEFAULT_PROFILE).filter((w) => {
    const pid = readWorkerPid(w);
    return pid !== undefined && processAlive(pid);
  });
  if (running.length === 0) {
    console.log("demo: no local cluster runs; starting one with 2 workers (stop it with: npx nbjob cluster stop)");
    const code = nbjob("cluster", "start", "-n", "2");
    if (code !== 0) return code;
  } else {
    console.log(`demo: using the running local cluster (${running.length} worker${running.length === 1 ? "" : "s"})`);
  }
  for (const name of NOTEBOOKS) {
    const notebook = join(ROOT, "examples", `${name}.ipynb`);
    const output = join(ROOT, "examples", `${name}.out.ipynb`);
    console.log(`demo: running ${relative(process.cwd(), notebook) || notebook} ...`);
    const code = nbjob("run", notebook, "-o", output);
    if (code !== 0) {
      console.error(`demo: ${name}.ipynb failed (exit ${code}); the notebook as far as it ran is in ${output}`);
      return code;
    }
    console.log(`demo: done. The executed notebook is ${output}`);
  }
  console.log("demo: list the jobs it made with: npx nbjob jobs   (the workers keep running: npx nbjob cluster stop)");
  return 0;
}

process.exitCode = main();
