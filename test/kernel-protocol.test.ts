// The notebook kernel as a Jupyter frontend sees it, driven by Debian's jupyter_client:
// signatures, heartbeat and control while a cell runs, interrupt with state kept, bad input.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernelTestEnv, portsForRestart, withJupyterClient, type KernelTestEnv } from "./kernel-helpers";

type Ran = { reply: Record<string, unknown>; outputs: Array<{ type: string; content: Record<string, unknown> }> };

/** text/plain of a cell's execute_result, as the frontend shows it. */
function resultText(ran: Ran): string | undefined {
  const result = ran.outputs.find((o) => o.type === "execute_result");
  return (result?.content.data as Record<string, string> | undefined)?.["text/plain"];
}

describe("nbjob kernel over the Jupyter protocol", () => {
  let env: KernelTestEnv;
  before(() => {
    env = kernelTestEnv();
  });
  after(() => env.cleanup());

  test("kernel_info names TypeScript, protocol 5.3, on shell and on control", async () => {
    const r = await withJupyterClient(env, `
result["shell"] = kc.kernel_info(reply=True, timeout=10)["content"]
kc.control_channel.send(kc.session.msg("kernel_info_request"))
result["control"] = kc.get_control_msg(timeout=10)
`);
    const shell = r.shell as { status: string; protocol_version: string; implementation: string; banner: string; language_info: { name: string; version: string; file_extension: string } };
    assert.equal(shell.status, "ok");
    assert.equal(shell.protocol_version, "5.3");
    assert.equal(shell.implementation, "nbjob");
    assert.equal(shell.language_info.name, "typescript");
    assert.equal(shell.language_info.file_extension, ".ts");
    // The compiler that checks cells is the typescript package nbjob depends on, and says so.
    const typescriptVersion = (require("typescript/package.json") as { version: string }).version;
    assert.equal(shell.language_info.version, typescriptVersion);
    assert.match(shell.banner, new RegExp(`TypeScript ${typescriptVersion.replace(/\./g, "\\.")} on Node`));
    const control = r.control as { msg_type: string; content: { status: string } };
    assert.equal(control.msg_type, "kernel_info_reply");
    assert.equal(control.content.status, "ok");
  });

  test("a forged or unsigned request is not executed, and the kernel keeps serving", async () => {
    const r = await withJupyterClient(env, `
run("(globalThis as any).forged = 0")
import uuid
for key in (b"not-the-key", b""):
    bad = km.client()
    bad.session.key = key
    # An outsider has a session of its own: a client sharing kc's session id would be its
    # routing identity too, and the kernel's Routers hand an identity over to the newest
    # connection (as ipykernel's do), cutting kc off whatever the key.
    bad.session.session = str(uuid.uuid4())
    bad.start_channels()
    bad.execute("(globalThis as any).forged = 1")
    time.sleep(1)
    bad.stop_channels()
result["after"] = text_of(run("(globalThis as any).forged"))
`);
    assert.equal(r.after, "0");
  });

  test("heartbeat and control requests are answered while a cell spins for three seconds", async () => {
    const r = await withJupyterClient(env, `
msg_id = kc.execute("const spinUntil = Date.now() + 3000; while (Date.now() < spinUntil) {}")
time.sleep(0.5)
beats, control_ms = [], []
for _ in range(3):
    beats.append(kc.hb_channel.is_beating())
    t = time.time()
    kc.control_channel.send(kc.session.msg("kernel_info_request"))
    kc.get_control_msg(timeout=5)
    control_ms.append((time.time() - t) * 1000)
    time.sleep(0.3)
reply = kc.get_shell_msg(timeout=20)
result["beats"] = beats
result["control_ms"] = control_ms
result["cell_status"] = reply["content"]["status"]
`);
    assert.deepEqual(r.beats, [true, true, true]);
    for (const ms of r.control_ms as number[]) assert.ok(ms < 1000, `control reply took ${ms} ms while the cell ran`);
    assert.equal(r.cell_status, "ok");
  });

  test("interrupt (message or SIGINT) stops a synchronous loop, a pending await and a loop after an await; declarations survive; an idle interrupt is harmless", async () => {
    const r = await withJupyterClient(env, `
run("let survivor = 41")
kc.execute("while (true) {}")
time.sleep(1)
km.interrupt_kernel()
result["loop"] = kc.get_shell_msg(timeout=10)["content"]
kc.execute("await new Promise(() => {})")
time.sleep(1)
km.interrupt_kernel()
result["await"] = kc.get_shell_msg(timeout=10)["content"]
kc.execute("await new Promise((r) => setTimeout(r, 10))\\nwhile (true) {}")
time.sleep(1)
km.interrupt_kernel()
result["after_await"] = kc.get_shell_msg(timeout=10)["content"]
kc.execute("while (true) {}")
time.sleep(1)
km.signal_kernel(signal.SIGINT)
result["sigint"] = kc.get_shell_msg(timeout=10)["content"]
# An interrupt with no cell running must not end the kernel either.
km.signal_kernel(signal.SIGINT)
km.interrupt_kernel()
# Give those idle interrupts time to land before the next cell, which they would rightly stop.
time.sleep(2)
result["after"] = text_of(run("survivor + 1"))
`);
    for (const key of ["loop", "await", "after_await", "sigint"]) {
      const reply = r[key] as { status: string; ename: string; evalue: string; traceback: string[] };
      assert.equal(reply.status, "error", `${key}: ${JSON.stringify(reply)}`);
      assert.ok(reply.ename && reply.evalue !== undefined && Array.isArray(reply.traceback), `${key} reply lacks ename/evalue/traceback`);
    }
    assert.equal(r.after, "42");
  });

  test("comm_info is answered with comm_info_reply; a comm to an unknown target is closed", async () => {
    const r = await withJupyterClient(env, `
reply = kc.comm_info(reply=True, timeout=10)
result["type"] = reply["msg_type"]
result["content"] = reply["content"]
open_msg = kc.session.msg("comm_open", {"comm_id": "c-1", "target_name": "no.such.target", "data": {}})
kc.shell_channel.send(open_msg)
result["iopub"] = iopub_until_idle(open_msg["header"]["msg_id"])
`);
    assert.equal(r.type, "comm_info_reply");
    assert.deepEqual(r.content, { status: "ok", comms: {} });
    const closes = (r.iopub as Ran["outputs"]).filter((m) => m.type === "comm_close");
    assert.equal(closes.length, 1);
    assert.equal(closes[0].content.comm_id, "c-1");
  });

  test("an unknown request type and a malformed request get error replies; the kernel keeps its state", async () => {
    const r = await withJupyterClient(env, `
run("const kept = 'still here'")
kc.shell_channel.send(kc.session.msg("frobnicate_request", {}))
unknown = kc.get_shell_msg(timeout=10)
result["unknown_type"] = unknown["msg_type"]
result["unknown"] = unknown["content"]
# A correctly signed execute_request whose content frame is not JSON.
header = json.dumps(kc.session.msg_header("execute_request"), default=str).encode()
parts = [header, b"{}", b"{}", b"{this is not json"]
mac = hmac.new(kc.session.key, digestmod=hashlib.sha256)
for p in parts:
    mac.update(p)
kc.shell_channel.socket.send_multipart([b"<IDS|MSG>", mac.hexdigest().encode()] + parts)
malformed = kc.get_shell_msg(timeout=10)
result["malformed_type"] = malformed["msg_type"]
result["malformed"] = malformed["content"]
# An execute_request without code.
kc.shell_channel.send(kc.session.msg("execute_request", {"silent": False}))
result["no_code"] = kc.get_shell_msg(timeout=10)["content"]
result["after"] = text_of(run("kept"))
`);
    assert.equal(r.unknown_type, "frobnicate_reply");
    const unknown = r.unknown as Record<string, string>;
    assert.equal(unknown.status, "error");
    assert.equal(unknown.ename, "UnknownMessageType");
    assert.match(unknown.evalue, /frobnicate_request/);
    assert.equal(r.malformed_type, "execute_reply");
    const malformed = r.malformed as Record<string, string>;
    assert.equal(malformed.status, "error");
    assert.equal(malformed.ename, "MalformedMessage");
    const noCode = r.no_code as Record<string, string>;
    assert.equal(noCode.status, "error");
    assert.match(noCode.evalue, /content\.code/);
    assert.equal(r.after, "'still here'");
  });

  test("input() asks on stdin and returns the answer; without allow_stdin it fails clearly", async () => {
    const r = await withJupyterClient(env, `
prompts = []
def answer(msg):
    prompts.append(msg["content"]["prompt"])
    kc.input("Ada")
result["ok"] = run("const who = await input('name? '); who.toUpperCase()", allow_stdin=True, stdin_hook=answer)
result["prompts"] = prompts
result["refused"] = run("await input('again? ')", allow_stdin=False)["reply"]
`);
    assert.deepEqual(r.prompts, ["name? "]);
    const ok = r.ok as Ran;
    assert.equal(ok.reply.status, "ok");
    assert.equal(resultText(ok), "'ADA'");
    const refused = r.refused as Record<string, string>;
    assert.equal(refused.status, "error");
    assert.match(refused.evalue, /allow_stdin|stdin/);
  });

  test("display.html(...).update(...) sends display_data then update_display_data with the same display id", async () => {
    const r = await withJupyterClient(env, `
result["ran"] = run("const d = display.html('<b>1</b>'); d.update('<b>2</b>');")
`);
    const ran = r.ran as Ran;
    assert.equal(ran.reply.status, "ok");
    const shown = ran.outputs.find((o) => o.type === "display_data");
    const updated = ran.outputs.find((o) => o.type === "update_display_data");
    assert.ok(shown && updated, `outputs: ${JSON.stringify(ran.outputs)}`);
    const id = (shown.content.transient as { display_id?: string }).display_id;
    assert.ok(id);
    assert.equal((updated.content.transient as { display_id?: string }).display_id, id);
    assert.equal((updated.content.data as Record<string, string>)["text/html"], "<b>2</b>");
  });

  test("a client that disconnects and reconnects finds the kernel as it was; restart gives a fresh kernel whose first outputs wait for the client's iopub", async () => {
    const r = await withJupyterClient(env, `
run("let visits = 1")
kc.stop_channels()
kc = km.client()
# This client's iopub reconnects 1.5-3 s after losing the kernel, its shell after 0.1 s, as
# happens to a busy frontend across a restart.
import zmq
kc.context.setsockopt(zmq.RECONNECT_IVL, 1500)
kc.iopub_channel
kc.context.sockopts.pop(zmq.RECONNECT_IVL)
kc.start_channels()
kc.wait_for_ready(timeout=30)
result["reconnected"] = text_of(run("++visits"))
km.restart_kernel(now=False)
# Only the shell is known to be back: the kernel must hold the outputs until iopub is.
kc.kernel_info(reply=True, timeout=60)
print("KERNEL_PID %d" % km.provisioner.pid, flush=True)
result["after_restart"] = run("visits")
result["history"] = kc.history(hist_access_type="search", pattern="let visits*", output=False, reply=True, timeout=10)["content"]["history"]
`, undefined, await portsForRestart());
    assert.equal(r.reconnected, "2");
    const restarted = r.after_restart as Ran;
    // A fresh kernel has never heard of `visits`.
    assert.equal(restarted.reply.status, "error");
    assert.match(String(restarted.reply.evalue), /visits/);
    // History outlives the restart: the new session can find what the old one ran.
    const rows = r.history as Array<[number, number, string]>;
    assert.equal(rows.length, 1);
    assert.equal(rows[0][2], "let visits = 1");
  });

  test("a client reconnecting at once under the same session is answered every time (40 reconnects)", async () => {
    // jupyter_client's sockets carry the session id as their routing identity, so a reconnect
    // can reach the kernel before the old connection is gone. Without the Router's handover the
    // kernel ignored the new connection: about 1 reconnect in 15 got no reply at all.
    const r = await withJupyterClient(env, `
answered = []
for i in range(40):
    kc.stop_channels()
    kc = km.client()
    kc.start_channels()
    kc.kernel_info()
    try:
        answered.append(kc.get_shell_msg(timeout=5)["msg_type"])
    except Empty:
        answered.append("no reply")
result["answered"] = answered
result["still"] = text_of(run("6 * 7"))
`, 300_000);
    assert.deepEqual(r.answered, Array(40).fill("kernel_info_reply"));
    assert.equal(r.still, "42");
  });

  test("the compiler's code cache is written once the kernel has run a cell and idled; the next kernel uses it as is", async () => {
    const own = kernelTestEnv();
    try {
      const cacheDir = join(own.env.NBJOB_HOME!, "cache");
      // A cache of an earlier compiler or Node version is removed when the new one is written.
      mkdirSync(cacheDir, { recursive: true });
      const stale = join(cacheDir, "typescript-kernel-0000000000000000.v8cache");
      writeFileSync(stale, "stale");
      // Written a second after the cell, once other processes leave a core spare (the tests
      // running alongside may keep the machine busy for a while): the stale file goes right after.
      await withJupyterClient(own, `run("1 + 1")\ndeadline = time.time() + 90\nwhile os.path.exists(${JSON.stringify(stale)}) and time.time() < deadline:\n    time.sleep(0.2)`, 150_000);
      const caches = readdirSync(cacheDir).filter((name) => name.startsWith("typescript-kernel-"));
      assert.equal(caches.length, 1, `one kernel cache, the stale one gone: ${caches.join(", ")}`);
      const cache = join(cacheDir, caches[0]!);
      assert.ok(statSync(cache).size > 1 << 20, "the cache holds the compiled compiler (MBs)");
      const written = statSync(cache).mtimeMs;
      const r = await withJupyterClient(own, `result["four"] = text_of(run("2 + 2"))\ntime.sleep(2.5)`);
      assert.equal(r.four, "4");
      // A kernel that V8 let use the cache has nothing to write; one that was refused it writes anew.
      assert.equal(statSync(cache).mtimeMs, written);
    } finally {
      own.cleanup();
    }
  });

  test("silent cells send no outputs and do not advance the execution count; errors are one error output", async () => {
    const r = await withJupyterClient(env, `
first = run("1")
silent = run("console.log('hidden'); 2", silent=True)
second = run("3")
failed = run("throw new RangeError('too far')")
result.update(first=first, silent=silent, second=second, failed=failed)
`);
    const first = r.first as Ran, silent = r.silent as Ran, second = r.second as Ran, failed = r.failed as Ran;
    assert.deepEqual(silent.outputs, []);
    assert.equal(second.reply.execution_count, (first.reply.execution_count as number) + 1);
    assert.equal(failed.reply.status, "error");
    assert.equal(failed.reply.ename, "RangeError");
    assert.equal(failed.reply.evalue, "too far");
    assert.deepEqual(failed.outputs.map((o) => o.type), ["error"]);
  });

  test("a traceback shows the notebook's code, not nbjob's frames nor Node's; NBJOB_DEBUG=1 shows them", async () => {
    const cells = `
failing = {
    "afterAwait": "async function failLater() {\\n  await null\\n  throw new RangeError('late')\\n}\\nawait failLater()",
    "inRuntime": "new SnippetCollector(5 as any)",
    "inCell": "const nothing: any = undefined\\nnothing.field",
}
for name, code in failing.items():
    result[name] = run(code)["reply"]["traceback"]
`;
    const plain = await withJupyterClient(env, cells) as Record<string, string[]>;
    const debug = await withJupyterClient({ ...env, env: { ...env.env, NBJOB_DEBUG: "1" } }, cells) as Record<string, string[]>;
    for (const [name, traceback] of Object.entries(plain)) {
      const frames = traceback.filter((line) => line.trimStart().startsWith("at "));
      assert.ok(frames.length > 0 && frames.every((line) => /\(cell \d+:\d+:\d+\)$|at cell \d+:\d+:\d+$/.test(line)), `${name}:\n${traceback.join("\n")}`);
    }
    assert.match(plain.afterAwait!.join("\n"), /at failLater \(cell \d+:3:9\)/);
    const debugText = Object.values(debug).flat().join("\n");
    for (const file of ["/dist/kernel/", "/dist/runtime/snippets.js", "node:"]) assert.ok(debugText.includes(file), `${file} in\n${debugText}`);
  });

  test("in a kernel started in nbjob's own checkout (examples/), \"nbjob\" is the kernel's runtime, for the type check and at run time", async () => {
    const examples = join(__dirname, "..", "..", "examples");
    const r = await withJupyterClient({ ...env, dir: examples }, `
result["imported"] = run('import { SnippetCollector as Collector, display as shown } from "nbjob"\\nimport * as everything from "nbjob"\\n[Collector === SnippetCollector, shown === display, typeof everything.DBWrapper]')
result["required"] = run('require("nbjob").SnippetCollector === SnippetCollector')
result["typed"] = run('import type { Snippet } from "nbjob"\\nconst wrong: Snippet = 1')
result["missing"] = run('import { noSuchExport } from "nbjob"')
`) as Record<string, Ran>;
    assert.equal(resultText(r.imported!), "[ true, true, 'function' ]", JSON.stringify(r.imported));
    assert.equal(resultText(r.required!), "true", JSON.stringify(r.required));
    assert.match(String(r.typed!.reply.evalue), /^2:7 Type 'number' is not assignable to type 'Snippet'/);
    assert.match(String(r.missing!.reply.evalue), /has no exported member named 'noSuchExport'|has no exported member 'noSuchExport'/);
  });

  test("after a failing cell, cells already queued behind it (Run All) get an error reply naming it; later cells run", async () => {
    const r = await withJupyterClient(env, `
ids = [kc.execute(code) for code in ("throw new Error('first')", "1", "2")]
replies = {}
while len(replies) < 3:
    m = kc.get_shell_msg(timeout=30)
    if m["msg_type"] == "execute_reply":
        replies[m["parent_header"]["msg_id"]] = m["content"]
result["replies"] = [replies[i] for i in ids]
result["later"] = text_of(run("3"))
`);
    const [failed, second, third] = r.replies as Array<Record<string, string>>;
    assert.equal(failed.status, "error");
    assert.equal(failed.evalue, "first");
    for (const refused of [second, third]) {
      assert.equal(refused.status, "error");
      assert.equal(refused.ename, "CellNotRun");
      assert.match(refused.evalue, /failed before it/);
    }
    assert.equal(r.later, "3");
  });

  test("shutdown while a cell spins ends the kernel promptly instead of waiting for the cell", async () => {
    const r = await withJupyterClient(env, `
kc.execute("while (true) {}")
time.sleep(0.5)
t = time.time()
kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": False}))
result["reply"] = kc.get_control_msg(timeout=5)["content"]
while km.is_alive() and time.time() - t < 10:
    time.sleep(0.05)
result["alive"] = km.is_alive()
result["seconds"] = time.time() - t
`);
    assert.deepEqual(r.reply, { status: "ok", restart: false });
    assert.equal(r.alive, false);
    assert.ok((r.seconds as number) < 2, `the kernel took ${r.seconds} s to exit`);
  });

  test("a comm target registered by a cell gets comm_open and comm_msg, answers, and is listed by comm_info until closed", async () => {
    const kernelIndex = JSON.stringify(join(__dirname, "..", "kernel", "index"));
    const r = await withJupyterClient(env, `
setup = run('''import { registerCommTarget } from ${kernelIndex};
registerCommTarget("echo", (comm, open) => {
  comm.send({ opened: open.data });
  comm.onMsg((data) => comm.send({ echo: data }));
});''')
result["setup"] = setup["reply"]
open_msg = kc.session.msg("comm_open", {"comm_id": "echo-1", "target_name": "echo", "data": {"x": 1}})
kc.shell_channel.send(open_msg)
result["opened"] = iopub_until_idle(open_msg["header"]["msg_id"])
result["info_open"] = kc.comm_info(target_name="echo", reply=True, timeout=10)["content"]
msg = kc.session.msg("comm_msg", {"comm_id": "echo-1", "data": {"hello": "there"}})
kc.shell_channel.send(msg)
result["echoed"] = iopub_until_idle(msg["header"]["msg_id"])
close = kc.session.msg("comm_close", {"comm_id": "echo-1", "data": {}})
kc.shell_channel.send(close)
iopub_until_idle(close["header"]["msg_id"])
result["info_closed"] = kc.comm_info(reply=True, timeout=10)["content"]
`);
    assert.equal((r.setup as Record<string, string>).status, "ok", JSON.stringify(r.setup));
    const commMsgs = (key: string) => (r[key] as Ran["outputs"]).filter((m) => m.type === "comm_msg").map((m) => m.content);
    assert.deepEqual(commMsgs("opened"), [{ comm_id: "echo-1", data: { opened: { x: 1 } } }]);
    assert.deepEqual(r.info_open, { status: "ok", comms: { "echo-1": { target_name: "echo" } } });
    assert.deepEqual(commMsgs("echoed"), [{ comm_id: "echo-1", data: { echo: { hello: "there" } } }]);
    assert.deepEqual(r.info_closed, { status: "ok", comms: {} });
  });

  test("with an empty key in the connection file signing is off, and unsigned messages are served", async () => {
    const r = await withJupyterClient(env, `
from jupyter_client import KernelManager
km2 = KernelManager(kernel_name="nbjob")
km2.session.key = b""
km2.start_kernel()
print("KERNEL_PID %d" % km2.provisioner.pid, flush=True)
try:
    kc2 = km2.client()
    kc2.start_channels()
    kc2.wait_for_ready(timeout=60)
    with open(km2.connection_file) as f:
        result["key"] = json.load(f)["key"]
    result["value"] = text_of(run("6 * 7", client=kc2))
    kc2.stop_channels()
finally:
    km2.shutdown_kernel(now=False)
`);
    assert.equal(r.key, "");
    assert.equal(r.value, "42");
  });
});

// The kernel loads its engine while its socket thread binds: a failed bind must still end it,
// naming the address and what to do (not leave it running with an engine and no sockets).
describe("a kernel that cannot bind its sockets", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "nbjob-kernel-bind-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const startWith = (name: string, connection: Record<string, unknown>) => {
    const file = join(dir, name);
    writeFileSync(file, JSON.stringify({ transport: "tcp", key: "k", signature_scheme: "hmac-sha256", ...connection }));
    const run = spawnSync(process.execPath, [join(__dirname, "..", "..", "bin", "nbjob.js"), "kernel", "--connection-file", file], { encoding: "utf8", timeout: 60_000 });
    assert.equal(run.signal, null, "the kernel ended by itself");
    assert.notEqual(run.status, 0);
    return run.stderr;
  };

  test("an address this host does not have: it exits, naming the address", () => {
    const said = startWith("elsewhere.json", { ip: "192.0.2.1", shell_port: 50001, iopub_port: 50002, stdin_port: 50003, control_port: 50004, hb_port: 50005 });
    assert.match(said, /cannot bind the kernel's shell socket to tcp:\/\/192\.0\.2\.1:50001: .*; 192\.0\.2\.1 is not an address of this machine; use one it has \(127\.0\.0\.1 for this machine only\)/);
  });

  test("a port another process holds: it exits, saying the port is taken", async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    try {
      const port = (holder.address() as AddressInfo).port;
      const said = startWith("taken.json", { ip: "127.0.0.1", shell_port: port, iopub_port: 0, stdin_port: 0, control_port: 0, hb_port: 0 });
      assert.match(said, new RegExp(`cannot bind the kernel's shell socket to tcp://127\\.0\\.0\\.1:${port}: .*; the port is taken: is another kernel using this connection file\\?`));
    } finally {
      holder.close();
    }
  });
});
