// Connection files: where a kernel's five sockets live and the key that signs its messages.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";

export interface ConnectionInfo {
  transport: "tcp" | "ipc";
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: string;
  kernel_name?: string;
}

export type Channel = "shell" | "control" | "stdin" | "iopub" | "hb";

export function socketAddress(info: ConnectionInfo, channel: Channel): string {
  const port = info[`${channel}_port` as const];
  return info.transport === "ipc" ? `ipc://${info.ip}-${port}` : `tcp://${info.ip}:${port}`;
}

export function readConnectionFile(path: string): ConnectionInfo {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read connection file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; pass the path of an existing kernel-*.json`, { cause: err });
  }
  let info: Partial<ConnectionInfo>;
  try {
    info = JSON.parse(text);
  } catch (err) {
    throw new Error(`connection file ${path} is not JSON; it should be what Jupyter writes for a kernel`, { cause: err });
  }
  for (const field of ["ip", "shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"] as const) {
    if (info[field] === undefined) throw new Error(`connection file ${path} has no "${field}"; it should be what Jupyter writes for a kernel`);
  }
  return {
    transport: info.transport ?? "tcp",
    signature_scheme: info.signature_scheme ?? "hmac-sha256",
    key: info.key ?? "",
    ...info,
  } as ConnectionInfo;
}

async function freePort(ip: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, ip, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A fresh connection (free ports on `ip`, a random key), as a kernel launcher would write. */
export async function newConnectionInfo(ip = "127.0.0.1", kernelName = "nbjob"): Promise<ConnectionInfo> {
  const ports: number[] = [];
  while (ports.length < 5) {
    const port = await freePort(ip);
    if (!ports.includes(port)) ports.push(port);
  }
  const [shell_port, iopub_port, stdin_port, control_port, hb_port] = ports;
  return { ...anyPortsConnectionInfo(ip, kernelName), shell_port, iopub_port, stdin_port, control_port, hb_port };
}

/**
 * A fresh connection whose ports are 0 (a random key): a kernel binding it lets the system pick
 * free ports, so nothing can take them between choosing and binding, and writes them back.
 */
export function anyPortsConnectionInfo(ip: string, kernelName: string): ConnectionInfo {
  return {
    transport: "tcp", ip, shell_port: 0, iopub_port: 0, stdin_port: 0, control_port: 0, hb_port: 0,
    key: randomBytes(32).toString("hex"), signature_scheme: "hmac-sha256", kernel_name: kernelName,
  };
}

export function writeConnectionFile(path: string, info: ConnectionInfo): void {
  // The key signs every message: readable by the owner only.
  writeFileSync(path, JSON.stringify(info, null, 2), { mode: 0o600 });
}
