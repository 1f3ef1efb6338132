// `npm run demo`: runs examples/tutorial.ipynb headless end to end, first starting the local
// cluster (profile "default", 2 workers) when none runs, and says where the executed copy went.
import { spawnSync } from "node:child_process";
import { join, relative } from "node:path";
import { DEFAULT_PROFILE, listClusterWorkers, processAlive, readWorkerPid } from "../runtime/worker/cluster-files";

const ROOT = join(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");
const NOTEBOOK = join(ROOT, "examples", "tutorial.ipynb");
const OUTPUT = join(ROOT, "examples", "tutorial.out.ipynb");

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
  console.log(`demo: running ${relative(process.cwd(), NOTEBOOK) || NOTEBOOK} ...`);
  const code = nbjob("run", NOTEBOOK, "-o", OUTPUT);
  if (code !== 0) {
    console.error(`demo: the tutorial failed (exit ${code}); the notebook as far as it ran is in ${OUTPUT}`);
    return code;
  }
  console.log(`demo: done. The executed notebook is ${OUTPUT}`);
  console.log("demo: list the jobs it made with: npx nbjob jobs   (the workers keep running: npx nbjob cluster stop)");
  return 0;
}

process.exitCode = main();
