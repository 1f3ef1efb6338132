// Kernel latency against two anchors run by the same script through Debian's jupyter_client:
// tslab (Node, TypeScript) and Deno's kernel. Prints start-up, median round trip of small cells,
// idle memory, and nbjob's ratio to each anchor. Run: node dist/bench/kernel-latency.js [rounds]
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { installKernelSpec } from "../kernel/kernelspec";

const checkout = resolve(__dirname, "..", "..");
// Anchors are installed here on demand, never as nbjob's dependencies (the folder is git-ignored).
const anchors = join(checkout, "bench", "anchors");

interface KernelRun {
  startup_ms: number;
  trivial_ms: number;
  declaration_ms: number;
  function_ms: number;
  idle_rss_mib: number;
}

function installAnchors(): void {
  if (existsSync(join(anchors, "node_modules", "tslab")) && existsSync(join(anchors, "node_modules", ".bin", "deno"))) return;
  mkdirSync(anchors, { recursive: true });
  if (!existsSync(join(anchors, "package.json"))) writeFileSync(join(anchors, "package.json"), '{ "name": "nbjob-bench-anchors", "private": true }\n');
  console.log("installing the anchors (tslab, deno) into bench/anchors ...");
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "tslab", "deno"], { cwd: anchors, stdio: "inherit" });
}

function writeAnchorSpecs(dataDir: string): void {
  const specs: Record<string, string[]> = {
    tslab: [process.execPath, join(anchors, "node_modules", "tslab", "bin", "tslab"), "kernel", "--config-path", "{connection_file}"],
    deno: [join(anchors, "node_modules", ".bin", "deno"), "jupyter", "--kernel", "--conn", "{connection_file}"],
  };
  for (const [name, argv] of Object.entries(specs)) {
    const dir = join(dataDir, "kernels", name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "kernel.json"), JSON.stringify({ argv, display_name: name, language: "typescript" }));
  }
}

// One kernel, measured from a real client. Declarations use fresh names each round, since not
// every kernel allows redeclaring a `let`.
const MEASURE = `
import json, sys, time, statistics
from jupyter_client.manager import start_new_kernel
name, rounds = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
km, kc = start_new_kernel(kernel_name=name, startup_timeout=120)
startup = (time.perf_counter() - t) * 1000
def timed(code):
    t = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: None)
    if reply["content"]["status"] != "ok":
        raise SystemExit("%s failed on %r: %s" % (name, code, reply["content"].get("evalue")))
    return (time.perf_counter() - t) * 1000
timed("1 + 1")  # the first cell pays for lazy set-up in every kernel; not what we compare
result = {"startup_ms": startup}
result["trivial_ms"] = statistics.median(timed("1 + 1") for i in range(rounds))
result["declaration_ms"] = statistics.median(timed("let v%d: number = %d;" % (i, i)) for i in range(rounds))
result["function_ms"] = statistics.median(timed("function f%d(x: number): number { return x * %d; }\\nf%d(2)" % (i, i, i)) for i in range(rounds))
time.sleep(1)
with open("/proc/%d/status" % km.provisioner.pid) as status:
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
result["idle_rss_mib"] = rss_kib / 1024
kc.stop_channels()
km.shutdown_kernel(now=False)
print("RESULT " + json.dumps(result))
`;

function measure(kernel: string, rounds: number, env: NodeJS.ProcessEnv): KernelRun {
  const out = execFileSync("/usr/bin/python3", ["-c", MEASURE, kernel, String(rounds)], { env, cwd: anchors, encoding: "utf8", timeout: 300_000 });
  const line = out.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`measuring ${kernel} printed no result:\n${out}`);
  return JSON.parse(line.slice("RESULT ".length)) as KernelRun;
}

function main(): void {
  const rounds = Number(process.argv[2] ?? 15);
  installAnchors();
  const dir = mkdtempSync(join(tmpdir(), "nbjob-bench-"));
  try {
    const env = { ...process.env, JUPYTER_DATA_DIR: join(dir, "jupyter"), NBJOB_HOME: join(dir, "home"), PYDEVD_DISABLE_FILE_VALIDATION: "1" };
    installKernelSpec({ kind: "user" }, env);
    writeAnchorSpecs(env.JUPYTER_DATA_DIR);
    // One kernel at a time: the machine is shared, and kernels measured together would slow each other.
    const runs: Record<string, KernelRun> = {};
    for (const kernel of ["nbjob", "tslab", "deno"]) {
      console.log(`measuring ${kernel} (${rounds} rounds per cell kind) ...`);
      runs[kernel] = measure(kernel, rounds, env);
    }
    const rows: Array<[keyof KernelRun, string]> = [
      ["startup_ms", "start-up (ms)"], ["trivial_ms", "1 + 1 (ms, median)"], ["declaration_ms", "let declaration (ms, median)"],
      ["function_ms", "function + call (ms, median)"], ["idle_rss_mib", "idle RSS (MiB)"],
    ];
    console.log(`\n${"".padEnd(30)}${"nbjob".padStart(10)}${"tslab".padStart(10)}${"deno".padStart(10)}${"nbjob/tslab".padStart(13)}${"nbjob/deno".padStart(12)}`);
    for (const [key, label] of rows) {
      const [n, t, d] = [runs.nbjob[key], runs.tslab[key], runs.deno[key]];
      console.log(`${label.padEnd(30)}${n.toFixed(1).padStart(10)}${t.toFixed(1).padStart(10)}${d.toFixed(1).padStart(10)}${(n / t).toFixed(2).padStart(13)}${(n / d).toFixed(2).padStart(12)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
