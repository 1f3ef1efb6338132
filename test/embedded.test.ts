// The embedded default in temporary NBJOB_HOMEs: two processes starting it at once end with one
// server, the server outlives the processes, stops, starts again with its data intact, and
// (as root) runs as the postgres user even when NBJOB_HOME sits in a private directory.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { openStore, putBundle, createJob, transitionJob, appendLogs, putCheckpoint, readCheckpoint, readLogs, stopEmbeddedServer, embeddedLayout, outsideClusterDir, sha256 } from "../store";

const BIN = join(__dirname, "..", "..", "bin", "nbjob.js");
const homes: string[] = [];
const extraDirs: string[] = [];

/** A temporary NBJOB_HOME the postgres user can reach (mkdtemp makes it private). */
function tempHome(): string {
  const home = mkdtempSync(join(tmpdir(), "nbjob-embedded-"));
  chmodSync(home, 0o711);
  homes.push(home);
  return home;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function nbjob(args: string[], home: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, NBJOB_HOME: home, NBJOB_DEBUG: "" };
  delete env.NBJOB_DATABASE_URL;
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Postmasters (not their child processes) serving this NBJOB_HOME's data directory. */
function postmastersFor(home: string): number[] {
  return postmastersOf(realpathSync(embeddedLayout(home).dataDir));
}

function postmastersOf(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of require("node:fs").readdirSync("/proc") as string[]) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv[0].endsWith("/postgres") && argv.includes(dataDir)) pids.push(Number(entry));
    } catch {
      // process ended while we looked
    }
  }
  return pids;
}

after(async () => {
  for (const home of homes) {
    await stopEmbeddedServer({ home }).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  }
  for (const dir of extraDirs) rmSync(dir, { recursive: true, force: true });
});

describe("the embedded PostgreSQL", () => {
  test("two `nbjob db start` at once end with one server on one port", async () => {
    const home = tempHome();
    const [a, b] = await Promise.all([nbjob(["db", "start"], home), nbjob(["db", "start"], home)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const outputs = [a.stdout, b.stdout].sort();
    assert.match(outputs[0], /^already running: embedded PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:(\d+)\/nbjob/);
    assert.match(outputs[1], /^started embedded PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:(\d+)\/nbjob/);
    const ports = outputs.map((o) => /127\.0\.0\.1:(\d+)/.exec(o)![1]);
    assert.equal(ports[0], ports[1]);
    const recorded = JSON.parse(readFileSync(join(home, "postgres", "server.json"), "utf8")) as { port: number };
    assert.equal(String(recorded.port), ports[0], "the port is recorded under NBJOB_HOME");
    assert.equal(postmastersFor(home).length, 1, "one server");
    assert.ok(!existsSync(join(home, "postgres", "start.lock")), "the start lock is released");
    assert.equal((readFileSync(join(home, "postgres", "password"), "utf8").trim().length > 20), true);
    assert.doesNotMatch(a.stdout + b.stdout, new RegExp(readFileSync(join(home, "postgres", "password"), "utf8").trim()), "the password is never printed");
  });

  test("the first commands to need the database start it once, it outlives them, stops, and starts again with its data", async () => {
    const home = tempHome();
    // Two processes that merely need the database, at once, on a fresh NBJOB_HOME.
    const [a, b] = await Promise.all([nbjob(["jobs"], home), nbjob(["jobs"], home)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(a.stdout.trim(), "no jobs yet");
    assert.equal(postmastersFor(home).length, 1, "one server, still running after both exited");

    const store = openStore({ home });
    try {
      const hash = await putBundle(store, { source: "const answer = 42;\nanswer;\n", snippets: [{ kind: "variable", names: ["answer"], source: "const answer = 42;" }], params: {}, entries: ["answer"] });
      const job = await createJob(store, { bundleHash: hash, name: "kept" });
      await transitionJob(store, job.id, "running");
      await transitionJob(store, job.id, "done", { result: 42, resultText: "42" });
    } finally {
      await store.close();
    }

    const stop = await nbjob(["db", "stop"], home);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /^stopped the embedded PostgreSQL/);
    assert.deepEqual(postmastersFor(home), []);
    const status = await nbjob(["db", "status"], home);
    assert.match(status.stdout, /server:\s+stopped/);
    const again = await nbjob(["db", "stop"], home);
    assert.match(again.stdout, /was not running/);

    // The next command that needs it starts it again; the job is still there.
    const list = await nbjob(["jobs"], home);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^\d+\s+done\s+kept/m);
    const show = await nbjob(["show", "1"], home);
    assert.match(show.stdout, /result\n  42/);
    const running = await nbjob(["db", "status"], home);
    assert.match(running.stdout, /server:\s+running, pid \d+, postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/nbjob/);
    assert.match(running.stdout, /jobs:\s+1 \(1 done\)/);
  });

  test("nbjob db dump from one embedded store and db restore into another, fresh one: every job, line and checkpoint comes back", async () => {
    const [fromHome, toHome] = [tempHome(), tempHome()];
    const from = openStore({ home: fromHome });
    const big = randomBytes(3 * 1024 * 1024 + 17);
    let jobId: number;
    try {
      const hash = await putBundle(from, { source: "let w = new Uint8Array(0);\nw.length;\n", snippets: [{ kind: "variable", names: ["w"], source: "let w = new Uint8Array(0);" }], params: {}, entries: ["w.length"] });
      const job = await createJob(from, { bundleHash: hash, name: "backed up", tags: ["keep"] });
      jobId = job.id;
      await transitionJob(from, job.id, "running");
      await appendLogs(from, job.id, [{ stream: "stdout", line: "before the backup" }]);
      await putCheckpoint(from, job.id, 0, { w: big });
      await transitionJob(from, job.id, "done", { result: big.length, resultText: String(big.length) });
    } finally {
      await from.close();
    }
    const file = join(tempHome(), "backup.jsonl");
    const dump = await nbjob(["db", "dump", file], fromHome);
    assert.equal(dump.code, 0, dump.stderr);
    assert.match(dump.stdout, /^dumped \d+ rows of \d+ tables to .*backup\.jsonl/);

    // The other NBJOB_HOME has no server yet: restore starts its embedded one, as any command would.
    const restore = await nbjob(["db", "restore", file], toHome);
    assert.equal(restore.code, 0, restore.stderr);
    assert.match(restore.stdout, /^restored \d+ rows \(1 job\)/);
    assert.equal(postmastersFor(toHome).length, 1);
    const to = openStore({ home: toHome });
    try {
      assert.ok((await readCheckpoint(to, jobId, 0)).w.equals(big), "the checkpoint is byte-exact");
      assert.deepEqual((await readLogs(to, jobId)).map((l) => l.line), ["before the backup"]);
    } finally {
      await to.close();
    }
    const show = await nbjob(["show", String(jobId)], toHome);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /backed up/);
    assert.match(show.stdout, new RegExp(`result\\n  ${big.length}`));
  });

  test("a NBJOB_HOME on a full disk is one clear line and leaves no half-made server", { skip: process.getuid?.() !== 0 && "needs root to mount a small disk" }, async (t) => {
    const home = mkdtempSync(join(tmpdir(), "nbjob-fulldisk-"));
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m,mode=0711", "tmpfs", home], { stdio: "ignore" });
    } catch {
      rmSync(home, { recursive: true, force: true });
      return t.skip("mount is not allowed here");
    }
    try {
      const run = await nbjob(["db", "start"], home);
      assert.notEqual(run.code, 0);
      assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
      assert.match(run.stderr, /^nbjob: could not initialise the embedded PostgreSQL in .*the disk holding .* is full: free space or set NBJOB_HOME to another disk/);
      assert.ok(!existsSync(join(home, "postgres", "cluster", "data")), "no half-initialised data directory");
      assert.ok(!existsSync(join(home, "postgres", "start.lock")));
    } finally {
      execFileSync("umount", [home]);
      rmSync(home, { recursive: true, force: true });
    }
  });

  test("as root, a private NBJOB_HOME whose parents others can enter keeps the data inside it; db destroy removes it", { skip: process.getuid?.() !== 0 && "needs root" }, async () => {
    // mkdtemp makes the home 700 (as nbjob's own recursive mkdirs did); /tmp lets everyone through.
    const home = mkdtempSync(join(tmpdir(), "nbjob-mkdtemp-"));
    homes.push(home);
    extraDirs.push(outsideClusterDir(home));
    const start = await nbjob(["db", "start"], home);
    assert.equal(start.code, 0, start.stderr);
    const cluster = join(home, "postgres", "cluster");
    assert.ok(!lstatSync(cluster).isSymbolicLink(), `the data stays under NBJOB_HOME (${realpathSync(cluster)})`);
    assert.ok(!existsSync(outsideClusterDir(home)), "nothing outside NBJOB_HOME");
    assert.match(start.stdout, new RegExp(`; data in ${join(home, "postgres")}\n$`));
    assert.equal(postmastersFor(home).length, 1);

    const refused = await nbjob(["db", "destroy"], home);
    assert.equal(refused.code, 2);
    assert.equal(refused.stderr, `nbjob: nbjob db destroy would stop the embedded PostgreSQL and delete ${join(home, "postgres")} with every job, log and checkpoint in it; run "nbjob db destroy --yes" to do it\n`);
    assert.equal(postmastersFor(home).length, 1, "refused: still running");
    const dataDir = realpathSync(embeddedLayout(home).dataDir);
    const destroyed = await nbjob(["db", "destroy", "--yes"], home);
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.equal(destroyed.stdout, `stopped the embedded PostgreSQL and deleted ${join(home, "postgres")}\n`);
    assert.deepEqual(postmastersOf(dataDir), []);
    assert.ok(!existsSync(join(home, "postgres")));
  });

  test("as root, a NBJOB_HOME inside a private directory still works, and every message says where its data is", { skip: process.getuid?.() !== 0 && "needs root" }, async () => {
    const privateDir = mkdtempSync(join(tmpdir(), "nbjob-private-"));
    const home = join(privateDir, "home"); // privateDir is 0700: the postgres user cannot enter it
    homes.push(home, privateDir); // in this order: stop the server before removing its directory
    const outside = outsideClusterDir(home);
    assert.equal(outside, join("/var/lib/nbjob", sha256(home).slice(0, 16)));
    extraDirs.push(outside);
    const start = await nbjob(["db", "start"], home);
    assert.equal(start.code, 0, start.stderr);
    const cluster = join(home, "postgres", "cluster");
    assert.ok(lstatSync(cluster).isSymbolicLink(), "the cluster lives where the postgres user can reach it");
    assert.equal(realpathSync(cluster), outside);
    assert.equal(postmastersFor(home).length, 1);
    const where = `${outside}, outside NBJOB_HOME as the postgres user cannot reach ${home} ("nbjob db destroy --yes" removes it)`;
    assert.ok(start.stdout.endsWith(`; data in ${where}\n`), start.stdout);
    const status = await nbjob(["db", "status"], home);
    assert.ok(status.stdout.startsWith(`database:  embedded PostgreSQL in ${join(home, "postgres")}, data in ${where}\n`), status.stdout);
    const stop = await nbjob(["db", "stop"], home);
    assert.equal(stop.stdout, `stopped the embedded PostgreSQL; data kept in ${where}\n`);
    const again = await nbjob(["db", "stop"], home);
    assert.equal(again.stdout, `the embedded PostgreSQL was not running; data in ${where}\n`);

    // NBJOB_HOME deleted while its server runs: the data outside is still named, and destroy ends both.
    assert.equal((await nbjob(["db", "start"], home)).code, 0);
    const dataDir = join(outside, "data");
    assert.equal(postmastersOf(dataDir).length, 1);
    rmSync(home, { recursive: true, force: true });
    const orphan = await nbjob(["db", "status"], home);
    assert.match(orphan.stdout, new RegExp(`^data:\\s+left behind in ${outside} \\("nbjob db destroy --yes" removes it\\)$`, "m"));
    const refused = await nbjob(["db", "destroy"], home);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, new RegExp(`^nbjob: nbjob db destroy would stop the embedded PostgreSQL and delete ${outside} with every job`));
    const destroyed = await nbjob(["db", "destroy", "--yes"], home);
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.equal(destroyed.stdout, `stopped the embedded PostgreSQL and deleted ${outside}\n`);
    assert.deepEqual(postmastersOf(dataDir), []);
    assert.ok(!existsSync(outside));
    const nothing = await nbjob(["db", "destroy", "--yes"], home);
    assert.match(nothing.stdout, /^nothing to destroy/);
  });
});
