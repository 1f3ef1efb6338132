// `nbjob run` as a user runs it: a subprocess on real notebooks, with the nbjob kernel (and
// Debian's ipykernel for the kernel-independent parts), checked against Jupyter's nbconvert.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";

const ROOT = resolve(__dirname, "..", "..");
const NBJOB = join(ROOT, "bin", "nbjob.js");
const BASICS = join(ROOT, "examples", "basics.ipynb");
const work = mkdtempSync(join(tmpdir(), "nbjob-run-test-"));
const env = { ...process.env, NBJOB_HOME: join(work, "home"), JUPYTER_DATA_DIR: join(work, "jupyter-data") };
const children = new Set<ChildProcess>();

after(() => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], options: { onStart?: (child: ChildProcess) => void } = {}): Promise<Finished> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => {
      children.delete(child);
      resolvePromise({ code, stdout, stderr });
    });
    options.onStart?.(child);
  });
}

const nbjob = (...args: string[]) => run(process.execPath, [NBJOB, ...args]);

interface Output {
  output_type: string;
  name?: string;
  text?: string;
  data?: Record<string, unknown>;
  ename?: string;
}
interface Cell {
  cell_type: string;
  id?: string;
  source: string | string[];
  metadata: { tags?: string[] };
  outputs?: Output[];
  execution_count?: number | null;
}
interface Notebook {
  nbformat: number;
  nbformat_minor: number;
  metadata: Record<string, unknown>;
  cells: Cell[];
}

const readNotebook = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Notebook;
const cellById = (notebook: Notebook, id: string) => notebook.cells.find((cell) => cell.id === id)!;
// nbformat may store multi-line text as a list of lines (nbconvert does); both mean the same.
const joined = (value: unknown) => (Array.isArray(value) ? value.join("") : value);
const plain = (cell: Cell) =>
  (cell.outputs ?? []).map((o) => joined(o.output_type === "stream" ? o.text : o.data?.["text/plain"] ?? o.data?.["text/html"] ?? o.ename)).join("|");

function pythonNotebook(name: string, sources: string[]): string {
  const path = join(work, name);
  const cells = sources.map((source, i) => ({ cell_type: "code", id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null }));
  writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }));
  return path;
}

/** nbformat's own validator (Debian's python3-nbformat) says whether Jupyter can open the file. */
async function assertValidNotebook(path: string): Promise<void> {
  const check = await run("/usr/bin/python3", ["-c", "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], 4))", path]);
  assert.equal(check.code, 0, `nbformat rejects ${path}: ${check.stderr}`);
}

/** What examples/basics.ipynb must show, whichever client ran it. */
function assertBasicsOutputs(notebook: Notebook, steps: number): void {
  assert.equal(plain(cellById(notebook, "declare")), "hello 2\n");
  assert.equal(plain(cellById(notebook, "redeclare")), "'hello again'");
  assert.equal(plain(cellById(notebook, "types")), "5");
  assert.equal(plain(cellById(notebook, "await")), "42");
  assert.equal(plain(cellById(notebook, "builtin")), "'run.json'");
  const doubled = Array.from({ length: steps }, (_, i) => i * 2);
  assert.equal(plain(cellById(notebook, "sweep")), `[ ${doubled.join(", ")} ]`);
  const display = cellById(notebook, "display").outputs ?? [];
  assert.deepEqual(display.map((o) => o.output_type), ["display_data", "display_data"]);
  assert.equal(joined(display[0].data?.["text/html"]), "<b>count</b> is 2");
  assert.equal(joined(display[1].data?.["text/plain"]), "step 2 of 2", "the update replaced the first text");
  const counts = notebook.cells.filter((c) => c.cell_type === "code").map((c) => c.execution_count);
  assert.ok(counts.every((count, i) => typeof count === "number" && (i === 0 || count > counts[i - 1]!)), `every code cell ran, in order: ${counts}`);
}

describe("nbjob run with the nbjob kernel", () => {
  test("executes examples/basics.ipynb into basics.nbconvert.ipynb beside a copy", async () => {
    const copy = join(work, "basics.ipynb");
    writeFileSync(copy, readFileSync(BASICS));
    const result = await nbjob("run", copy);
    assert.equal(result.code, 0, result.stderr);
    const written = join(work, "basics.nbconvert.ipynb");
    assert.equal(result.stdout.trim(), `executed notebook written to ${written}`);
    const notebook = readNotebook(written);
    assertBasicsOutputs(notebook, 3);
    const counts = notebook.cells.filter((c) => c.cell_type === "code").map((c) => c.execution_count);
    assert.deepEqual(counts, counts.map((_, i) => i + 1), "one fresh kernel ran each code cell once");
    assert.equal((notebook.metadata.kernelspec as { name: string }).name, "nbjob");
    assert.equal((notebook.metadata.language_info as { name: string }).name, "typescript");
    await assertValidNotebook(written);
    assert.deepEqual(readNotebook(copy), JSON.parse(readFileSync(BASICS, "utf8")), "the input notebook is left alone");
  });

  test("-p injects a cell after the cell tagged parameters", async () => {
    const out = join(work, "basics-steps5.ipynb");
    const result = await nbjob("run", BASICS, "-o", out, "-p", "steps=5");
    assert.equal(result.code, 0, result.stderr);
    const notebook = readNotebook(out);
    const at = notebook.cells.findIndex((c) => c.metadata.tags?.includes("injected-parameters"));
    assert.equal(notebook.cells[at - 1].id, "params");
    assert.match(String(notebook.cells[at].source), /let steps = 5;/);
    assert.doesNotMatch(result.stderr, /unknown parameter/, "steps is declared by the parameters cell");
    assertBasicsOutputs({ ...notebook, cells: notebook.cells.filter((_, i) => i !== at) }, 5);
    await assertValidNotebook(out);
  });

  test("-p and -f names the cell tagged parameters does not declare are warned about on stderr, and still injected (as papermill does)", async () => {
    const file = join(work, "misspelt.yaml");
    writeFileSync(file, "stpes: 4\n");
    const out = join(work, "basics-unknown.ipynb");
    const result = await nbjob("run", BASICS, "-o", out, "-f", file, "-p", "steps=2", "-p", "y=2");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, `nbjob run: warning: unknown parameters stpes (-f ${file}), y (-p): the cell tagged "parameters" declares steps; they are injected anyway, as papermill does (check the spelling)\n`);
    const notebook = readNotebook(out);
    const at = notebook.cells.findIndex((c) => c.metadata.tags?.includes("injected-parameters"));
    assert.match(String(notebook.cells[at].source), /let stpes = 4;\nlet steps = 2;\nlet y = 2;/);

    // A ParamLogger parameters cell: its names are the params.N it sets, or the fields of new ParamLogger({ ... }).
    const notebookWith = (name: string, source: string) => {
      const path = join(work, name);
      const cells = [{ cell_type: "code", id: "p", metadata: { tags: ["parameters"] }, source, outputs: [], execution_count: null }];
      writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }));
      return path;
    };
    const untyped = await nbjob("run", notebookWith("set-params.ipynb", 'const params = new ParamLogger();\nparams.lr = 0.1;\nparams.name = "a";'), "-p", "lr=0.5", "-p", "nmae=b");
    assert.equal(untyped.code, 0, untyped.stderr);
    assert.match(untyped.stderr, /^nbjob run: warning: unknown parameter nmae \(-p\): the cell tagged "parameters" declares lr, name; it is injected anyway/);
    const typed = await nbjob("run", notebookWith("typed-params.ipynb", 'const params = new ParamLogger({ lr: 0.1, "name": "a" });'), "-p", "lr=0.5", "-p", "name=b");
    assert.equal(typed.code, 0, typed.stderr);
    assert.doesNotMatch(typed.stderr, /unknown parameter/);
  });

  test("-p without a parameters cell gives the notebook a ParamLogger named params", async () => {
    const path = join(work, "uses-params.ipynb");
    const cells = [{ cell_type: "code", id: "show", metadata: {}, source: "[params.lr, params.name, params.grid]", outputs: [], execution_count: null }];
    writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }));
    const result = await nbjob("run", path, "-p", "lr=0.01", "-p", "name=Ada", "-p", "grid=[1,2]");
    assert.equal(result.code, 0, result.stderr);
    const notebook = readNotebook(join(work, "uses-params.nbconvert.ipynb"));
    assert.deepEqual(notebook.cells[0].metadata.tags, ["injected-parameters"]);
    assert.equal(plain(cellById(notebook, "show")), "[ 0.01, 'Ada', [ 1, 2 ] ]");
  });

  test("-f params.json sets parameters and -p wins over it", async () => {
    const path = join(work, "file-params.ipynb");
    const cells = [{ cell_type: "code", id: "show", metadata: {}, source: "[params.lr, params.name, params.grid]", outputs: [], execution_count: null }];
    writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }));
    const file = join(work, "params.json");
    writeFileSync(file, JSON.stringify({ lr: 0.5, name: "Ada", grid: [1, 2] }));
    const result = await nbjob("run", path, "-f", file, "-p", "lr=0.01");
    assert.equal(result.code, 0, result.stderr);
    const notebook = readNotebook(join(work, "file-params.nbconvert.ipynb"));
    assert.match(String(notebook.cells[0].source), /new ParamLogger\(\{ "lr": 0\.01, "name": "Ada", "grid": \[1,2\] \}\)/, "one entry per name, -p's value");
    assert.equal(plain(cellById(notebook, "show")), "[ 0.01, 'Ada', [ 1, 2 ] ]");
  });

  test("-f params.yaml fills the cell tagged parameters", async () => {
    const file = join(work, "params.yaml");
    writeFileSync(file, "# papermill-style parameters\nsteps: 4\n");
    const out = join(work, "basics-yaml.ipynb");
    const result = await nbjob("run", BASICS, "-o", out, "--parameters-file", file);
    assert.equal(result.code, 0, result.stderr);
    const notebook = readNotebook(out);
    const at = notebook.cells.findIndex((c) => c.metadata.tags?.includes("injected-parameters"));
    assert.equal(notebook.cells[at - 1].id, "params");
    assert.match(String(notebook.cells[at].source), /let steps = 4;/);
    assertBasicsOutputs({ ...notebook, cells: notebook.cells.filter((_, i) => i !== at) }, 4);
  });

  test("a failing cell exits 1 naming the cell and its error", async () => {
    const path = join(work, "fails.ipynb");
    const sources = ["const ok = 1;", "// the second cell\nthrow new RangeError(\"steps must be positive\");", "ok"];
    const cells = sources.map((source, i) => ({ cell_type: "code", id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null }));
    writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }));
    const result = await nbjob("run", path);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^nbjob run: cell 2 \(`\/\/ the second cell`\) failed: RangeError: steps must be positive/);
    const notebook = readNotebook(join(work, "fails.nbconvert.ipynb"));
    assert.equal(notebook.cells[1].outputs?.[0].ename, "RangeError");
    assert.equal(notebook.cells[2].execution_count, null, "cells after the failure did not run");
  });
});

describe("jupyter nbconvert with the installed nbjob kernelspec", () => {
  test("executes examples/basics.ipynb with the same outputs", async () => {
    const install = await nbjob("install", "--user");
    assert.equal(install.code, 0, install.stderr);
    const result = await run("/usr/bin/jupyter", [
      "nbconvert", "--to", "notebook", "--execute", BASICS, "--ExecutePreprocessor.kernel_name=nbjob",
      "--ExecutePreprocessor.timeout=120", "--output-dir", work, "--output", "basics.nbconvert-jupyter",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assertBasicsOutputs(readNotebook(join(work, "basics.nbconvert-jupyter.ipynb")), 3);
  });
});

describe("nbjob run, independent of the kernel (Debian's ipykernel)", () => {
  test("--help documents the -p convention", async () => {
    const result = await nbjob("run", "--help");
    assert.equal(result.code, 0);
    assert.match(result.stdout, /-p, --param N=V/);
    assert.match(result.stdout, /read as JSON when it parses/);
    assert.match(result.stdout, /-f, --parameters-file FILE/);
    assert.match(result.stdout, /NOTEBOOK\.nbconvert\.ipynb/);
  });

  test("bad arguments are one line and exit 2", async () => {
    for (const [args, message] of [
      [["run"], /^nbjob: expected one notebook, got 0; e\.g\. nbjob run analysis\.ipynb\n$/],
      [["run", join(work, "missing.ipynb")], /^nbjob: cannot read notebook .*missing\.ipynb: ENOENT; pass the path of an \.ipynb file\n$/],
      [["run", BASICS, "-p", "steps"], /^nbjob: -p steps: expected name=value, e\.g\. -p lr=0\.01\n$/],
      [["run", BASICS, "--kernel", "no-such-kernel"], /^nbjob: could not start kernel "no-such-kernel": no kernelspec named "no-such-kernel" in .*\n$/],
    ] as const) {
      const result = await nbjob(...args);
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
  });

  test("bad parameters files are one line and exit 2, before any kernel starts", async () => {
    const file = (name: string, text: string) => {
      writeFileSync(join(work, name), text);
      return join(work, name);
    };
    for (const [path, message] of [
      [join(work, "no-such-params.yaml"), /^nbjob: -f .*no-such-params\.yaml: cannot read it \(ENOENT\); pass the path of a \.yaml or \.json parameters file\n$/],
      [file("bad.json", '{\n  "lr": 0.1,\n}\n'), /^nbjob: -f .*bad\.json: not valid JSON at line 3, column 1 \(.*\); fix the file or use a \.yaml file\n$/],
      [file("bad.yaml", "lr: [0.1,\nsteps: 2\n"), /^nbjob: -f .*bad\.yaml: not valid YAML at line 2, column 1 \(.*\); fix the file\n$/],
      [file("twice.yml", "lr: 0.1\nlr: 0.2\n"), /^nbjob: -f .*twice\.yml: not valid YAML at line 2, column 1 \(Map keys must be unique\); fix the file\n$/],
      [file("list.yaml", "- 0.1\n- 0.2\n"), /^nbjob: -f .*list\.yaml: expected a mapping of parameter names to values at the top level, got a list; write e\.g\. lr: 0\.01\n$/],
      [file("scalar.json", "5"), /^nbjob: -f .*scalar\.json: expected a mapping .* got a number; write e\.g\. \{"lr": 0\.01\}\n$/],
      [file("name.json", '{"learning-rate": 0.1}'), /^nbjob: -f .*name\.json: "learning-rate" is not a valid TypeScript identifier; use letters, digits, _ and \$\n$/],
      [file("inf.yaml", "limits:\n  top: .inf\n"), /^nbjob: -f .*inf\.yaml: limits\.top is Infinity, which JSON cannot hold; use a finite number or a string\n$/],
    ] as const) {
      const result = await nbjob("run", BASICS, "-f", path);
      assert.equal(result.code, 2, `${path}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
  });

  test("--kernel python3: outputs, blank cells skipped, --allow-errors", async () => {
    const path = pythonNotebook("py.ipynb", ["import os\nprint(os.getcwd())\n6*7", "", "1/0", "print('after')"]);
    const stopped = await nbjob("run", path, "--kernel", "python3");
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /^nbjob run: cell 3 \(`1\/0`\) failed: ZeroDivisionError: division by zero\n/);
    const partial = readNotebook(join(work, "py.nbconvert.ipynb"));
    assert.equal(plain(partial.cells[0]), `${work}\n|42`, "the kernel runs in the notebook's directory");
    assert.deepEqual([partial.cells[1].execution_count, partial.cells[1].outputs], [null, []]);
    assert.equal(partial.cells[3].execution_count, null);
    await assertValidNotebook(join(work, "py.nbconvert.ipynb"));

    const out = join(work, "py-all.ipynb");
    const all = await nbjob("run", path, "--kernel", "python3", "--allow-errors", "-o", out);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(plain(readNotebook(out).cells[3]), "after\n");
    // Every cell after a failing one runs: ipykernel aborts the requests that come within
    // stop_on_error_timeout of an error (0 s by default: a race, seen in CI as an empty "after"
    // cell) unless they were sent without stop_on_error. A kernel with a 2 s window takes the race every time.
    const spec = join(env.JUPYTER_DATA_DIR, "kernels", "python3-aborts");
    mkdirSync(spec, { recursive: true });
    writeFileSync(join(spec, "kernel.json"), JSON.stringify({
      argv: ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}", "--IPythonKernel.stop_on_error_timeout=2"],
      display_name: "Python 3 (aborts for 2 s after an error)", language: "python",
    }));
    const pairs = pythonNotebook("py-pairs.ipynb", Array.from({ length: 3 }, (_, i) => ["1/0", `print('after ${i}')`]).flat());
    const pairsOut = join(work, "py-pairs-all.ipynb");
    const ran = await nbjob("run", pairs, "--kernel", "python3-aborts", "--allow-errors", "-o", pairsOut);
    assert.equal(ran.code, 0, ran.stderr);
    const cells = readNotebook(pairsOut).cells;
    assert.deepEqual(Array.from({ length: 3 }, (_, i) => plain(cells[2 * i + 1])), Array.from({ length: 3 }, (_, i) => `after ${i}\n`));
  });

  test("a kernel that dies mid-run fails the run naming the cell and the exit", async () => {
    const path = pythonNotebook("dies.ipynb", ["print('before')", "import os\nos._exit(3)", "print('never')"]);
    const result = await nbjob("run", path, "--kernel", "python3");
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^nbjob run: cell 2 \(`import os`\) lost its kernel: kernel "python3" \(pid \d+\) exited with code 3/);
    assert.equal(plain(readNotebook(join(work, "dies.nbconvert.ipynb")).cells[0]), "before\n");
  });

  test("Ctrl-C shuts the kernel down and exits 130", async () => {
    const pidFile = join(work, "kernel.pid");
    const path = pythonNotebook("slow.ipynb", [`import os, time\nopen(${JSON.stringify(pidFile)}, 'w').write(str(os.getpid()))\ntime.sleep(60)`]);
    const finished = await run(process.execPath, [NBJOB, "run", path, "--kernel", "python3"], {
      onStart: (child) => {
        const poll = setInterval(() => {
          if (!existsSync(pidFile) || readFileSync(pidFile, "utf8") === "") return;
          clearInterval(poll);
          child.kill("SIGINT");
        }, 100);
        // A run that ends before the kernel wrote its pid must not leave the test file polling forever.
        child.once("exit", () => clearInterval(poll));
      },
    });
    assert.equal(finished.code, 130, finished.stderr);
    const kernelPid = Number(readFileSync(pidFile, "utf8"));
    assert.throws(() => process.kill(kernelPid, 0), /ESRCH/, "the kernel process is gone");
    assert.equal(existsSync(join(work, "slow.nbconvert.ipynb")), false);
  });
});
