// Bundle signatures: who may make code that workers run. A bundle is signed with the cluster key
// (HMAC-SHA256 over its hash, params and entries: everything that decides what runs, since the
// hash covers the source); workers recompute the signature and refuse a bundle they cannot
// reproduce. The key is NBJOB_CLUSTER_KEY (or KERNEL_NBJOB_CLUSTER_KEY, the name a Jupyter
// gateway passes to kernels), else `$NBJOB_HOME/cluster.key`, created on first use. The key
// itself is never printed, logged or stored in the database; messages name where it came from.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nbjobHome } from "./config";
import { StoreError } from "./errors";
import { canonicalJson } from "./hash";
import type { Json } from "./types";

/** The environment variable that holds the key (wins over the key file). */
export const CLUSTER_KEY_ENV = "NBJOB_CLUSTER_KEY";
/**
 * The same key under the name Jupyter Kernel Gateway and Enterprise Gateway pass from a kernel
 * start request to the kernel (they forward only `KERNEL_*` variables); see runtime/gateway.ts.
 */
export const GATEWAY_CLUSTER_KEY_ENV = "KERNEL_NBJOB_CLUSTER_KEY";
/** Shorter keys are refused: a guessable key signs anything. */
const MIN_KEY_LENGTH = 16;

export interface ClusterKey {
  /** The key's text (trimmed), used as the HMAC key. */
  readonly key: Buffer;
  /** Where it came from, for messages: "NBJOB_CLUSTER_KEY" or the key file's path. */
  readonly from: string;
}

/** What a signature covers. */
export interface SignedBundle {
  hash: string;
  params: { [name: string]: Json } | Record<string, unknown>;
  entries: readonly string[];
}

/** `$NBJOB_HOME/cluster.key`. */
export function clusterKeyPath(home = nbjobHome()): string {
  return join(home, "cluster.key");
}

const fromFiles = new Map<string, ClusterKey>();

/**
 * The cluster key of this process: NBJOB_CLUSTER_KEY, else KERNEL_NBJOB_CLUSTER_KEY, else the key
 * file under NBJOB_HOME (created with mode 0600 when missing). Throws StoreError saying how to
 * fix a key that is too short or a key file others can read.
 */
export function clusterKey(): ClusterKey {
  for (const name of [CLUSTER_KEY_ENV, GATEWAY_CLUSTER_KEY_ENV]) {
    const value = process.env[name]?.trim();
    if (value) return { key: checkedKey(value, name), from: name };
  }
  const path = clusterKeyPath();
  let cached = fromFiles.get(path);
  if (!cached) {
    cached = { key: checkedKey(loadOrCreateKeyFile(path), path), from: path };
    fromFiles.set(path, cached);
  }
  return cached;
}

function checkedKey(text: string, from: string): Buffer {
  if (text.length < MIN_KEY_LENGTH) {
    throw new StoreError(`the cluster key from ${from} is ${text.length} characters long; it needs at least ${MIN_KEY_LENGTH} (e.g. the 64 hex digits of $NBJOB_HOME/cluster.key, or: openssl rand -hex 32)`);
  }
  return Buffer.from(text, "utf8");
}

/**
 * Reads the key file, or creates it: the key is written to a private temporary file that is then
 * hard-linked into place, which fails if the name exists. Two processes racing both end up
 * reading the one file that won, never a half-written one.
 */
function loadOrCreateKeyFile(path: string): string {
  const existing = readKeyFile(path);
  if (existing !== undefined) return existing;
  const home = join(path, "..");
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(temporary, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  try {
    linkSync(temporary, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new StoreError(`could not create the cluster key ${path}: ${(err as Error).message}; set ${CLUSTER_KEY_ENV} instead`, { cause: err });
    }
  } finally {
    unlinkSync(temporary);
  }
  const created = readKeyFile(path);
  if (created === undefined) throw new StoreError(`the cluster key ${path} vanished right after it was created; try again`);
  return created;
}

function readKeyFile(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new StoreError(`could not read the cluster key ${path}: ${(err as Error).message}`, { cause: err });
  }
  // Like ssh with a private key: a key others can read signs for them too.
  if (process.platform !== "win32" && (statSync(path).mode & 0o077) !== 0) {
    throw new StoreError(`the cluster key ${path} can be read by other users; make it private (chmod 600 ${path}) and try again`);
  }
  return text.trim();
}

function signedText(bundle: SignedBundle): string {
  // The params as the store gives them back (jsonb drops what JSON drops and reorders keys).
  const params = canonicalJson(JSON.parse(JSON.stringify(bundle.params ?? {})) as Json);
  return `nbjob bundle v1\n${bundle.hash}\n${params}\n${JSON.stringify(bundle.entries)}`;
}

/** The bundle's signature (64 hex digits) by `key`. */
export function signBundle(bundle: SignedBundle, key: ClusterKey = clusterKey()): string {
  return createHmac("sha256", key.key).update(signedText(bundle)).digest("hex");
}

/** True when `signature` is the bundle's signature by `key` (compared in constant time). */
export function verifyBundleSignature(bundle: SignedBundle, signature: string | null | undefined, key: ClusterKey = clusterKey()): boolean {
  if (typeof signature !== "string" || !/^[0-9a-f]{64}$/.test(signature)) return false;
  return timingSafeEqual(Buffer.from(signBundle(bundle, key), "hex"), Buffer.from(signature, "hex"));
}
