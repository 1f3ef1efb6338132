// A cell that prints a lot: every line reaches Debian's jupyter_client, nbconvert and `nbjob run`,
// with the idle status after it, in the order it was printed (stream text is batched as ipykernel
// does, and iopub waits for slow frontends instead of dropping); where a limit drops output, the
// cell says how much.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { kernelTestEnv, withJupyterClient, type KernelTestEnv } from "./kernel-helpers";

const LINES = 200_000;
const PRINT_LINES = `for (let i = 0; i < ${LINES}; i++) console.log("line " + i);`;
const ROOT = resolve(__dirname, "..", "..");

let kernel: KernelTestEnv;
before(() => {
  kernel = kernelTestEnv();
});
after(() => kernel.cleanup());

/** Python reading iopub for one request until its idle (at most 120 s); leaves `msgs` (type, name, text). */
const READ_UNTIL_IDLE = `
def until_idle(msg_id, limit=120):
    msgs = []
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=1)
        except Empty:
            continue
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        c = m["content"]
        msgs.append({"type": m["msg_type"], "name": c.get("name"), "text": c.get("text"), "state": c.get("execution_state")})
        if m["msg_type"] == "status" and c["execution_state"] == "idle":
            break
    return msgs
`;

interface IopubMsg {
  type: string;
  name?: string;
  text?: string;
  state?: string;
}

/** The stream text of `msgs` (both streams, in order) as lines. */
const linesOf = (msgs: IopubMsg[]) => msgs.filter((m) => m.type === "stream").map((m) => m.text).join("").split("\n").slice(0, -1);
const expectedLines = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}`);

function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(command, args, { env, cwd, timeout: 240_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolvePromise({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function notebookOf(path: string, sources: string[]): void {
  const cells = sources.map((source, i) => ({ cell_type: "code", id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null }));
  writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: { kernelspec: { name: "nbjob", display_name: "TypeScript (nbjob)", language: "typescript" } }, cells }));
}

interface SavedOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
}
const savedLines = (outputs: SavedOutput[]) =>
  outputs.filter((o) => o.output_type === "stream" && o.name === "stdout").map((o) => (Array.isArray(o.text) ? o.text.join("") : o.text ?? "")).join("").split("\n").slice(0, -1);

describe("a cell printing 200,000 lines", () => {
  test("jupyter_client gets every line, in a few batched messages, then the idle status", async () => {
    const result = await withJupyterClient(kernel, `${READ_UNTIL_IDLE}
started = time.time()
msgs = until_idle(kc.execute(${JSON.stringify(PRINT_LINES)}))
result["seconds"] = time.time() - started
result["msgs"] = msgs
`, 240_000);
    const msgs = result.msgs as IopubMsg[];
    const streams = msgs.filter((m) => m.type === "stream");
    const lines = linesOf(msgs);
    process.stdout.write(`# ${LINES} lines: ${streams.length} stream messages, ${(result.seconds as number).toFixed(2)} s to idle\n`);
    assert.equal(msgs.at(-1)?.state, "idle", "the idle status came");
    assert.equal(lines.length, LINES);
    assert.equal(lines[0], "line 0");
    assert.equal(lines.at(-1), `line ${LINES - 1}`);
    assert.deepEqual(lines, expectedLines(LINES), "every line once, in order");
    assert.ok(streams.every((m) => m.name === "stdout"));
    assert.ok(streams.length < 1000, `batched: ${streams.length} stream messages for ${LINES} lines`);
  });

  test("stdout, stderr and a display between them keep the order they were made in", async () => {
    // Enough lines around each switch that an unbatched, dropping iopub loses some.
    const code = [
      `for (let i = 0; i < 30000; i++) console.log("line " + i);`,
      `console.error("err A");`,
      `for (let i = 30000; i < 60000; i++) console.log("line " + i);`,
      `display.html("<b>between</b>");`,
      `for (let i = 60000; i < 90000; i++) console.log("line " + i);`,
      `for (let i = 0; i < 500; i++) { process.stdout.write("o" + i + "\\n"); process.stderr.write("e" + i + "\\n"); }`,
      `"the end"`,
    ].join("\n");
    const result = await withJupyterClient(kernel, `${READ_UNTIL_IDLE}
result["msgs"] = until_idle(kc.execute(${JSON.stringify(code)}))
`, 240_000);
    const msgs = (result.msgs as IopubMsg[]).filter((m) => m.type !== "execute_input");
    // Consecutive messages of one stream are one output (as a notebook shows them).
    const outputs: Array<{ kind: string; text: string }> = [];
    for (const m of msgs) {
      const kind = m.type === "stream" ? m.name! : m.type === "status" ? `status ${m.state}` : m.type;
      const last = outputs.at(-1);
      if (m.type === "stream" && last?.kind === kind) last.text += m.text;
      else outputs.push({ kind, text: m.text ?? "" });
    }
    const lines = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `line ${from + i}\n`).join("");
    const interleaved = Array.from({ length: 500 }, (_, i) => [{ kind: "stdout", text: `o${i}\n` }, { kind: "stderr", text: `e${i}\n` }]).flat();
    // The last 30,000 lines and the first "o0" are one stdout output.
    interleaved[0].text = lines(60000, 90000) + interleaved[0].text;
    assert.deepEqual(outputs.map((o) => o.kind), ["status busy", "stdout", "stderr", "stdout", "display_data", ...interleaved.map((o) => o.kind), "execute_result", "status idle"]);
    outputs.shift();
    assert.equal(outputs[0].text, lines(0, 30000));
    assert.equal(outputs[1].text, "err A\n");
    assert.equal(outputs[2].text, lines(30000, 60000));
    assert.deepEqual(outputs.slice(4, 4 + interleaved.length).map((o) => o.text), interleaved.map((o) => o.text));
  });

  test("jupyter nbconvert --execute keeps all of them", async () => {
    const path = join(kernel.dir, "print-many.ipynb");
    notebookOf(path, [PRINT_LINES, `"after"`]);
    const started = Date.now();
    const result = await runProcess("/usr/bin/jupyter", [
      "nbconvert", "--to", "notebook", "--execute", path, "--ExecutePreprocessor.kernel_name=nbjob",
      "--ExecutePreprocessor.timeout=200", "--output-dir", kernel.dir, "--output", "print-many.nbconvert",
    ], kernel.env, kernel.dir);
    process.stdout.write(`# nbconvert --execute of ${LINES} lines: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    assert.equal(result.code, 0, result.stderr);
    const notebook = JSON.parse(readFileSync(join(kernel.dir, "print-many.nbconvert.ipynb"), "utf8")) as { cells: Array<{ outputs: SavedOutput[] }> };
    const lines = savedLines(notebook.cells[0].outputs);
    assert.equal(lines.length, LINES);
    assert.equal(lines[0], "line 0");
    assert.equal(lines.at(-1), `line ${LINES - 1}`);
    assert.equal(notebook.cells[1].outputs.length, 1, "the next cell ran after it");
  });

  test("nbjob run keeps all of them and says nothing is missing", async () => {
    const path = join(kernel.dir, "print-many-run.ipynb");
    notebookOf(path, [PRINT_LINES, `"after"`]);
    const out = join(kernel.dir, "print-many-run.out.ipynb");
    const started = Date.now();
    const result = await runProcess(process.execPath, [join(ROOT, "bin", "nbjob.js"), "run", path, "-o", out], kernel.env, kernel.dir);
    process.stdout.write(`# nbjob run of ${LINES} lines: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stderr, /incomplete/);
    const notebook = JSON.parse(readFileSync(out, "utf8")) as { cells: Array<{ outputs: SavedOutput[] }> };
    const lines = savedLines(notebook.cells[0].outputs);
    assert.equal(lines.length, LINES);
    assert.equal(lines[0], "line 0");
    assert.equal(lines.at(-1), `line ${LINES - 1}`);
    assert.deepEqual(notebook.cells[0].outputs.map((o) => o.output_type), ["stream"]);
  });
});

describe("nbjob run and a kernel that never sends idle", () => {
  test("the cell's outputs are kept and a note says they may be incomplete (Debian's ipykernel made to skip its status)", async () => {
    const path = join(kernel.dir, "no-idle.ipynb");
    writeFileSync(path, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [
      { cell_type: "code", id: "c0", metadata: {}, source: "print('before')\nget_ipython().kernel._publish_status = lambda *a, **k: None", outputs: [], execution_count: null },
    ] }));
    const out = join(kernel.dir, "no-idle.out.ipynb");
    const result = await runProcess(process.execPath, [join(ROOT, "bin", "nbjob.js"), "run", path, "--kernel", "python3", "-o", out], kernel.env, kernel.dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /nbjob run: cell 1 \(`print\('before'\)`\) replied, but the kernel did not finish sending its output \(no idle status\); the outputs shown may be incomplete/);
    const notebook = JSON.parse(readFileSync(out, "utf8")) as { cells: Array<{ outputs: SavedOutput[] }> };
    const outputs = notebook.cells[0].outputs;
    assert.deepEqual(outputs.map((o) => [o.name, o.output_type]), [["stdout", "stream"], ["stderr", "stream"]]);
    assert.equal(outputs[0].text, "before\n");
    assert.match(String(outputs[1].text), /the outputs shown may be incomplete/);
  });
});

describe("iopub's limit for frontends that read slowly", () => {
  test("stream output past NBJOB_IOPUB_BUFFER_BYTES is dropped with a note saying how much; the idle status still comes", async () => {
    const limited: KernelTestEnv = { ...kernel, env: { ...kernel.env, NBJOB_IOPUB_BUFFER_BYTES: String(256 * 1024) } };
    // Alternating streams make one small message per write; the client reads nothing until
    // the reply, and its iopub socket holds 2 messages, so the kernel's queue fills up.
    const pairs = 20_000;
    const code = `for (let i = 0; i < ${pairs}; i++) { process.stdout.write("o" + i + "\\n"); process.stderr.write("e" + i + "\\n"); }`;
    const result = await withJupyterClient(limited, `${READ_UNTIL_IDLE}
import zmq
kc.stop_channels()
kc = km.client()
kc.context.setsockopt(zmq.RCVHWM, 2)
kc.start_channels()
kc.wait_for_ready(timeout=120)
while True:
    try:
        kc.get_iopub_msg(timeout=0.5)
    except Empty:
        break
msg_id = kc.execute(${JSON.stringify(code)})
kc.get_shell_msg(timeout=120)
time.sleep(1)
result["msgs"] = until_idle(msg_id)
`, 240_000);
    const msgs = result.msgs as IopubMsg[];
    assert.equal(msgs.at(-1)?.state, "idle", "the idle status came");
    const notes = msgs.filter((m) => m.type === "stream" && m.text?.includes("[nbjob:"));
    assert.ok(notes.length >= 1, `a note says output was dropped (${msgs.length} messages read, none a note)`);
    const dropped = notes.reduce((sum, m) => sum + Number(/\[nbjob: ([\d,]+) lines/.exec(m.text!)![1].replace(/,/g, "")), 0);
    assert.match(notes[0].text!, /lines \([\d,]+ bytes\) of output were dropped here: the frontend read them more slowly than the cell printed, and 0\.3 MiB were already waiting/);
    const received = msgs.filter((m) => m.type === "stream" && !notes.includes(m)).map((m) => m.text).join("").split("\n").length - 1;
    assert.ok(dropped > 0, "some output was dropped");
    assert.equal(received + dropped, 2 * pairs, `received ${received} + dropped ${dropped} lines`);
  });
});
