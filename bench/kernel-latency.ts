// Kernel latency against two anchors run by the same script through Debian's jupyter_client:
// tslab (Node, TypeScript) and Deno's kernel. Prints start-up, median round trip of small cells,
// idle memory (medians), and nbjob's ratio to each anchor.
// Run: node dist/bench/kernel-latency.js [start-up rounds, default 5] [cells of each kind per start-up, default 10]
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

// All kernels measured from one real client, interleaved so that a burst of load on the shared
// machine hits every kernel alike: each start-up round starts the kernels one after another
// (order rotated per round), then runs every cell kind alternating between kernels, then reads
// idle RSS. Figures are medians over all rounds. Declarations use fresh names each time, since
// not every kernel allows redeclaring a `let`.
const MEASURE = `
import json, os, sys, time, statistics
from jupyter_client.manager import start_new_kernel
names, starts, rounds = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
samples = {n: {"startup_ms": [], "trivial_ms": [], "declaration_ms": [], "function_ms": [], "idle_rss_mib": []} for n in names}
def timed(name, kc, code):
    t = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: None)
    if reply["content"]["status"] != "ok":
        raise SystemExit("%s failed on %r: %s" % (name, code, reply["content"].get("evalue")))
    return (time.perf_counter() - t) * 1000
serial = 0
for s in range(starts):
    order = names[s % len(names):] + names[:s % len(names)]
    running = {}
    for name in order:
        t = time.perf_counter()
        km, kc = start_new_kernel(kernel_name=name, startup_timeout=120)
        # Start-up is until the first result: a kernel that answers kernel_info early but
        # makes the first cell wait is not faster to use.
        timed(name, kc, "1 + 1")
        samples[name]["startup_ms"].append((time.perf_counter() - t) * 1000)
        running[name] = (km, kc)
        # What a kernel does in the background after its first result (nbjob warms its compiler
        # for about a second) must not slow down the next kernel's start-up.
        time.sleep(3)
    for i in range(rounds):
        for name in order:
            kc = running[name][1]
            serial += 1
            samples[name]["trivial_ms"].append(timed(name, kc, "1 + 1"))
            samples[name]["declaration_ms"].append(timed(name, kc, "let v%d: number = %d;" % (serial, serial)))
            samples[name]["function_ms"].append(timed(name, kc, "function f%d(x: number): number { return x * %d; }\\nf%d(2)" % (serial, serial, serial)))
    time.sleep(2)
    for name in order:
        with open("/proc/%d/status" % running[name][0].provisioner.pid) as status:
            rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        samples[name]["idle_rss_mib"].append(rss_kib / 1024)
    for name in order:
        km, kc = running[name]
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    print("round %d of %d done" % (s + 1, starts), file=sys.stderr, flush=True)
print("RESULT " + json.dumps({n: {k: statistics.median(v) for k, v in samples[n].items()} for n in names}), flush=True)
os._exit(0)  # the clients are closed; their finalizers would only print noise at interpreter exit
`;

function measure(kernels: string[], starts: number, rounds: number, env: NodeJS.ProcessEnv): Record<string, KernelRun> {
  const out = execFileSync("/usr/bin/python3", ["-c", MEASURE, kernels.join(","), String(starts), String(rounds)], {
    env, cwd: anchors, encoding: "utf8", timeout: 1_800_000, stdio: ["ignore", "pipe", "inherit"],
  });
  const line = out.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`measuring printed no result:\n${out}`);
  return JSON.parse(line.slice("RESULT ".length)) as Record<string, KernelRun>;
}

function main(): void {
  // Start-up rounds (each starts every kernel once) and cells of each kind per start-up round.
  const starts = Number(process.argv[2] ?? 5);
  const rounds = Number(process.argv[3] ?? 10);
  installAnchors();
  const dir = mkdtempSync(join(tmpdir(), "nbjob-bench-"));
  try {
    const env = { ...process.env, JUPYTER_DATA_DIR: join(dir, "jupyter"), NBJOB_HOME: join(dir, "home"), PYDEVD_DISABLE_FILE_VALIDATION: "1" };
    installKernelSpec({ kind: "user" }, env);
    writeAnchorSpecs(env.JUPYTER_DATA_DIR);
    console.log(`measuring nbjob, tslab and deno interleaved: ${starts} start-ups each, ${rounds} cells of each kind per start-up ...`);
    const runs = measure(["nbjob", "tslab", "deno"], starts, rounds, env);
    const rows: Array<[keyof KernelRun, string]> = [
      ["startup_ms", "start-up to 1st result (ms)"], ["trivial_ms", "1 + 1 (ms, median)"], ["declaration_ms", "let declaration (ms, median)"],
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
