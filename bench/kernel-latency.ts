// Kernel latency against two anchors run by the same script through Debian's jupyter_client:
// tslab (Node, TypeScript) and Deno's kernel. Prints start-up to the first result, median round
// trip of small cells, idle memory (medians), and nbjob's ratio to each anchor; each kernel is
// measured alone, as a user runs one. Then tslab's cells alone and next to an nbjob kernel (its
// background work must not slow other processes).
// Run: node dist/bench/kernel-latency.js [rounds, default 3] [cells of each kind per round, default 25]
//        [--together: the old way, all three kernels alive at once] [--no-neighbour] [--only-neighbour]
//        [--timeline: also when each message of a cell arrives (busy, execute_input, result, reply, idle)]
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { installKernelSpec } from "../kernel/kernelspec";

const checkout = resolve(__dirname, "..", "..");
// Anchors are installed here on demand, never as nbjob's dependencies (the folder is git-ignored).
const anchors = join(checkout, "bench", "anchors");

interface KernelRun {
  /** The nbjob kernel's own CPU time (all its threads) while tslab's cells ran next to it. */
  nbjob_cpu_s: number;
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

// Measured from one real client (Debian's jupyter_client). "alone" (the default, what a user
// sees): one kernel at a time is started, timed to its first result, left 2 s to settle, given
// `cells` cells of each kind, then shut down before the next kernel starts; the order rotates per
// round. "together" (the old way): every kernel alive at once, cells alternating between them,
// so one kernel's background work lands on another's timings. "neighbour": tslab's cells alone,
// next to a just-started nbjob kernel, next to an idle one (a fresh tslab kernel for each). Medians.
const MEASURE = `
import json, os, sys, time, statistics
from jupyter_client.manager import start_new_kernel
mode, names, starts, cells = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
KINDS = ["trivial_ms", "declaration_ms", "function_ms"]
samples = {}
def sample(group, key, value):
    samples.setdefault(group, {}).setdefault(key, []).append(value)
def timed(name, kc, code):
    t = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=120, output_hook=lambda m: None)
    if reply["content"]["status"] != "ok":
        raise SystemExit("%s failed on %r: %s" % (name, code, reply["content"].get("evalue")))
    return (time.perf_counter() - t) * 1000
serial = 0
def cell_codes():
    # Declarations use fresh names each time, since not every kernel allows redeclaring a \`let\`.
    global serial
    serial += 1
    return [("trivial_ms", "1 + 1"), ("declaration_ms", "let v%d: number = %d;" % (serial, serial)),
            ("function_ms", "function f%d(x: number): number { return x * %d; }\\nf%d(2)" % (serial, serial, serial))]
alive = []
def start(name):
    # Start-up is until the first result: a kernel that answers kernel_info early but makes the
    # first cell wait is not faster to use.
    t = time.perf_counter()
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=120)
    alive.append((km, kc))
    timed(name, kc, "1 + 1")
    return km, kc, (time.perf_counter() - t) * 1000
def rss(km):
    with open("/proc/%d/status" % km.provisioner.pid) as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
def stop(km, kc):
    alive.remove((km, kc))
    kc.stop_channels()
    km.shutdown_kernel(now=False)
def stop_all():
    # A failed measurement must not leave kernels behind (they hold this script's stdout open).
    for km, kc in list(alive):
        try:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        except Exception:
            pass
import atexit
atexit.register(stop_all)
def cells_of(group, name, kc, count):
    for _ in range(count):
        for key, code in cell_codes():
            sample(group, key, timed(name, kc, code))
for s in range(starts):
    order = names[s % len(names):] + names[:s % len(names)]
    if mode == "alone":
        # One kernel at a time: nothing else of ours runs while it is timed.
        for name in order:
            km, kc, startup = start(name)
            sample(name, "startup_ms", startup)
            time.sleep(2)  # settle: what a kernel does after its first result is its own business
            cells_of(name, name, kc, cells)
            time.sleep(1)
            sample(name, "idle_rss_mib", rss(km))
            stop(km, kc)
    elif mode == "together":
        # The old way: every kernel alive at once, cells alternating between them.
        running = {}
        for name in order:
            km, kc, startup = start(name)
            sample(name, "startup_ms", startup)
            running[name] = (km, kc)
            time.sleep(3)
        for i in range(cells):
            for name in order:
                kc = running[name][1]
                for key, code in cell_codes():
                    sample(name, key, timed(name, kc, code))
        time.sleep(2)
        for name in order:
            sample(name, "idle_rss_mib", rss(running[name][0]))
        for name in order:
            stop(*running[name])
    elif mode == "neighbour":
        # tslab's cells alone, next to an nbjob kernel just started (its warm-up and idle
        # collection run then), and next to an nbjob kernel idle for a while. Each phase has a
        # tslab kernel of its own with as many cells (tslab's cells slow down as its history grows).
        # "Alone" comes first in even rounds and last in odd ones, so a drift of the machine over a
        # round does not land on one side; nbjob's own CPU time in each phase is recorded.
        def tslab_alone():
            km, kc, _ = start("tslab")
            time.sleep(2)
            cells_of("tslab alone", "tslab", kc, cells)
            stop(km, kc)
        def cpu_seconds(km):
            with open("/proc/%d/stat" % km.provisioner.pid) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if s % 2 == 0:
            tslab_alone()
        km, kc, _ = start("tslab")
        time.sleep(2)
        nkm, nkc, _ = start("nbjob")
        before = cpu_seconds(nkm)
        cells_of("tslab, nbjob just started", "tslab", kc, cells)
        sample("tslab, nbjob just started", "nbjob_cpu_s", cpu_seconds(nkm) - before)
        stop(km, kc)
        km, kc, _ = start("tslab")
        time.sleep(2)
        before = cpu_seconds(nkm)
        cells_of("tslab, nbjob idle", "tslab", kc, cells)
        sample("tslab, nbjob idle", "nbjob_cpu_s", cpu_seconds(nkm) - before)
        stop(km, kc)
        stop(nkm, nkc)
        if s % 2 == 1:
            tslab_alone()
    elif mode == "timeline":
        # Where a round trip goes: one kernel at a time, cells sent on a socket of our own and
        # every message's arrival stamped as the poller sees it (execute_interactive reads the
        # reply only after idle, so it cannot say when the reply came).
        import zmq
        from jupyter_client.session import Session
        for name in order:
            km, kc, _ = start(name)
            time.sleep(2)
            info = km.get_connection_info()
            session = Session(key=info["key"], signature_scheme=info["signature_scheme"])
            context = zmq.Context()
            shell = context.socket(zmq.DEALER)
            shell.connect("%s://%s:%d" % (info["transport"], info["ip"], info["shell_port"]))
            iopub = context.socket(zmq.SUB)
            iopub.setsockopt(zmq.SUBSCRIBE, b"")
            iopub.connect("%s://%s:%d" % (info["transport"], info["ip"], info["iopub_port"]))
            time.sleep(0.5)  # the subscription reaches the kernel
            poller = zmq.Poller()
            poller.register(shell, zmq.POLLIN)
            poller.register(iopub, zmq.POLLIN)
            for _ in range(cells):
                for key, code in cell_codes():
                    t0 = time.perf_counter()
                    msg_id = session.send(shell, "execute_request", {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})["header"]["msg_id"]
                    seen = {}
                    while "execute_reply" not in seen or "idle" not in seen:
                        ready = dict(poller.poll(120000))
                        if not ready:
                            raise SystemExit("%s did not answer %r" % (name, code))
                        for sock in ready:
                            _, frames = session.feed_identities(sock.recv_multipart())
                            m = session.deserialize(frames)
                            if m["parent_header"].get("msg_id") != msg_id:
                                continue
                            event = m["content"]["execution_state"] if m["msg_type"] == "status" else m["msg_type"]
                            seen.setdefault(event, (time.perf_counter() - t0) * 1000)
                    for event, ms in seen.items():
                        sample(name, "%s %s" % (key, event), ms)
            shell.close(0)
            iopub.close(0)
            context.term()
            stop(km, kc)
    print("round %d of %d done" % (s + 1, starts), file=sys.stderr, flush=True)
print("RESULT " + json.dumps({g: {k: statistics.median(v) for k, v in d.items()} for g, d in samples.items()}), flush=True)
os._exit(0)  # the clients are closed; their finalizers would only print noise at interpreter exit
`;

type Samples = Record<string, Partial<KernelRun>>;

function measure(mode: "alone" | "together" | "neighbour" | "timeline", kernels: string[], starts: number, cells: number, env: NodeJS.ProcessEnv): Samples {
  const out = execFileSync("/usr/bin/python3", ["-c", MEASURE, mode, kernels.join(","), String(starts), String(cells)], {
    env, cwd: anchors, encoding: "utf8", timeout: 3_600_000, stdio: ["ignore", "pipe", "inherit"],
  });
  const line = out.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`measuring printed no result:\n${out}`);
  return JSON.parse(line.slice("RESULT ".length)) as Samples;
}

function printKernels(title: string, runs: Samples): void {
  const rows: Array<[keyof KernelRun, string]> = [
    ["startup_ms", "start-up to 1st result (ms)"], ["trivial_ms", "1 + 1 (ms, median)"], ["declaration_ms", "let declaration (ms, median)"],
    ["function_ms", "function + call (ms, median)"], ["idle_rss_mib", "idle RSS (MiB)"],
  ];
  console.log(`\n${title}`);
  console.log(`${"".padEnd(30)}${"nbjob".padStart(10)}${"tslab".padStart(10)}${"deno".padStart(10)}${"nbjob/tslab".padStart(13)}${"nbjob/deno".padStart(12)}`);
  for (const [key, label] of rows) {
    const [n, t, d] = [runs.nbjob[key]!, runs.tslab[key]!, runs.deno[key]!];
    console.log(`${label.padEnd(30)}${n.toFixed(1).padStart(10)}${t.toFixed(1).padStart(10)}${d.toFixed(1).padStart(10)}${(n / t).toFixed(2).padStart(13)}${(n / d).toFixed(2).padStart(12)}`);
  }
}

/** Per cell kind, when each kernel's messages arrived after the request (medians). */
function printTimeline(runs: Samples): void {
  const events = ["busy", "execute_input", "execute_result", "execute_reply", "idle"];
  const kinds: Array<[string, string]> = [["trivial_ms", "1 + 1"], ["declaration_ms", "let declaration"], ["function_ms", "function + call"]];
  const at = (kernel: string, kind: string, event: string) => (runs[kernel] as Record<string, number | undefined>)[`${kind} ${event}`];
  for (const [kind, label] of kinds) {
    console.log(`${label.padEnd(30)}${events.map((e) => e.padStart(15)).join("")}`);
    for (const kernel of ["nbjob", "tslab", "deno"]) {
      console.log(`  ${kernel.padEnd(28)}${events.map((e) => (at(kernel, kind, e)?.toFixed(2) ?? "-").padStart(15)).join("")}`);
    }
  }
}

function main(): void {
  const args = process.argv.slice(2);
  const together = args.includes("--together");
  const neighbour = !args.includes("--no-neighbour");
  const onlyNeighbour = args.includes("--only-neighbour");
  const timeline = args.includes("--timeline");
  const [starts, cells] = args.filter((a) => !a.startsWith("--")).map(Number);
  const rounds = starts || 3;
  const perKind = cells || 25;
  installAnchors();
  const dir = mkdtempSync(join(tmpdir(), "nbjob-bench-"));
  try {
    const env = { ...process.env, JUPYTER_DATA_DIR: join(dir, "jupyter"), NBJOB_HOME: join(dir, "home"), PYDEVD_DISABLE_FILE_VALIDATION: "1" };
    installKernelSpec({ kind: "user" }, env);
    writeAnchorSpecs(env.JUPYTER_DATA_DIR);
    const load = () => loadavg().map((l) => l.toFixed(1)).join(", ");
    console.log(`load average before: ${load()} on ${cpus().length} cores`);
    if (onlyNeighbour) {
      // Only the last part below.
    } else if (together) {
      console.log(`the old way: nbjob, tslab and deno alive at once, ${rounds} start-ups each, ${perKind} cells of each kind per start-up, alternating ...`);
      const runs = measure("together", ["nbjob", "tslab", "deno"], rounds, perKind, env);
      printKernels(`all three kernels alive at once (load average now ${load()}):`, runs);
    } else {
      console.log(`each kernel alone: ${rounds} rounds (nbjob, tslab, deno, order rotated), each: start, first result, 2 s settle, ${perKind} cells of each kind, shut down ...`);
      const runs = measure("alone", ["nbjob", "tslab", "deno"], rounds, perKind, env);
      printKernels(`each kernel alone (load average now ${load()}):`, runs);
    }
    if (timeline) {
      console.log(`\nwhere a round trip goes: each kernel alone, ${rounds} rounds, ${perKind} cells of each kind, every message's arrival after the request (ms, median) ...`);
      const runs = measure("timeline", ["nbjob", "tslab", "deno"], rounds, perKind, env);
      printTimeline(runs);
    }
    if (neighbour) {
      console.log(`\ntslab's cells next to an nbjob kernel (${rounds} rounds, ${perKind} cells of each kind per phase) ...`);
      const runs = measure("neighbour", ["tslab"], rounds, perKind, env);
      const phases = ["tslab alone", "tslab, nbjob just started", "tslab, nbjob idle"];
      console.log(`${"tslab's cells (ms, median)".padEnd(30)}${"1 + 1".padStart(10)}${"let".padStart(10)}${"function".padStart(10)}${"vs alone".padStart(10)}${"nbjob's CPU s in the phase".padStart(28)}`);
      const alone = runs["tslab alone"];
      for (const phase of phases) {
        const r = runs[phase];
        const vs = ((r.trivial_ms! + r.declaration_ms! + r.function_ms!) / (alone.trivial_ms! + alone.declaration_ms! + alone.function_ms!)).toFixed(2);
        const nbjobCpu = r.nbjob_cpu_s === undefined ? "-" : r.nbjob_cpu_s.toFixed(2);
        console.log(`${phase.padEnd(30)}${r.trivial_ms!.toFixed(1).padStart(10)}${r.declaration_ms!.toFixed(1).padStart(10)}${r.function_ms!.toFixed(1).padStart(10)}${vs.padStart(10)}${nbjobCpu.padStart(28)}`);
      }
    }
    console.log(`\nload average after: ${load()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
