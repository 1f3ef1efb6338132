// The embedded server's disk reserve. PostgreSQL on a full disk cannot help itself: a checkpoint
// that cannot write PANICs and stops the server, recovery then needs room to finish, and VACUUM
// of a table never vacuumed must create its visibility map before it can record freed space, so
// `nbjob rm` + `nbjob gc` free nothing. nbjob therefore keeps a file of NBJOB_DISK_RESERVE_MB
// (default 32; 0 disables) in the data directory, made while there is room. When the store
// reports a full disk (53100, "No space left on device", or the server stopped for it), the file
// is deleted: the server gets that room to recover and to run rm's DELETE and gc's VACUUM. A
// marker records the release; until a `gc` has finished since (or the reserve is back) a worker
// holds new checkpoints as if the disk were still full, so a waiting job does not eat the room
// meant for cleaning up. The reserve is made again once the disk has room for it.
import { chownSync, closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statfsSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

const MiB = 1024 * 1024;
/** Room left over after making the reserve, so making it never fills the disk itself. */
const MARGIN_BYTES = 4 * MiB;
export const RESERVE_FILE = "nbjob_disk_reserve";
const RELEASED_FILE = "nbjob_disk_reserve.released";

/** The reserve's size in bytes from NBJOB_DISK_RESERVE_MB (default 32 MiB); 0 when disabled. */
export function reserveBytes(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.NBJOB_DISK_RESERVE_MB;
  if (raw === undefined || raw.trim() === "") return 32 * MiB;
  const mb = Number(raw);
  if (!Number.isFinite(mb) || mb < 0) throw new Error(`NBJOB_DISK_RESERVE_MB must be a number of MiB (0 disables the reserve), got "${raw}"`);
  return Math.round(mb * MiB);
}

interface Released {
  /** When the reserve was deleted, and why. */
  at: string;
  bytes: number;
  reason: string;
  /** When a gc finished after the release (the freed rows' room is reusable). */
  gcAt?: string;
}

export interface ReserveState {
  present: boolean;
  released?: Released;
  /** Bytes free on the disk of the data directory (for a non-root user). */
  free: number;
}

function freeBytes(dataDir: string): number {
  const fs = statfsSync(dataDir);
  return fs.bavail * fs.bsize;
}

function readReleased(dataDir: string): Released | undefined {
  try {
    return JSON.parse(readFileSync(join(dataDir, RELEASED_FILE), "utf8")) as Released;
  } catch {
    return undefined;
  }
}

export function reserveState(dataDir: string): ReserveState {
  return { present: existsSync(join(dataDir, RESERVE_FILE)), released: readReleased(dataDir), free: freeBytes(dataDir) };
}

/**
 * Makes the reserve when it is missing and the disk has room for it and a margin; clears a
 * release marker once it is back. Written with real zeros (not a sparse file) and renamed into
 * place when complete. Returns whether the reserve is there now. Never throws: a reserve that
 * cannot be made is retried next time.
 */
export function ensureReserve(dataDir: string, bytes = reserveBytes()): boolean {
  if (bytes <= 0 || !existsSync(join(dataDir, "PG_VERSION"))) return false;
  const file = join(dataDir, RESERVE_FILE);
  if (existsSync(file)) return true;
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    // Just after a release the room is the reserve's own: take it back only once as much again is free.
    const released = readReleased(dataDir);
    const needed = bytes + MARGIN_BYTES + (released && !released.gcAt ? bytes : 0);
    if (freeBytes(dataDir) < needed) return false;
    const fd = openSync(temporary, "w", 0o600);
    try {
      const zeros = Buffer.alloc(Math.min(bytes, MiB));
      for (let written = 0; written < bytes; ) written += writeSync(fd, zeros, 0, Math.min(zeros.length, bytes - written));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // Owned like the data directory (as root, by the user the server runs as), so that tools
    // reading the whole directory as that user (pg_basebackup, pg_checksums) are not refused.
    const owner = statSync(dataDir);
    if (process.getuid?.() === 0) chownSync(temporary, owner.uid, owner.gid);
    renameSync(temporary, file);
    rmSync(join(dataDir, RELEASED_FILE), { force: true });
    return true;
  } catch {
    rmSync(temporary, { force: true });
    return false;
  }
}

/**
 * Deletes the reserve (if there is one) and records why. Returns the bytes freed (0 when there
 * was no reserve to release).
 */
export function releaseReserve(dataDir: string, reason: string): number {
  const file = join(dataDir, RESERVE_FILE);
  let bytes: number;
  try {
    bytes = statSync(file).size;
    rmSync(file);
  } catch {
    return 0;
  }
  try {
    const released: Released = { at: new Date().toISOString(), bytes, reason };
    writeFileSync(join(dataDir, RELEASED_FILE), JSON.stringify(released) + "\n");
  } catch {
    // The disk filled again before the marker could be written: the reserve is still gone, and
    // without the marker checkpoints are not held back; they wait on the server's own errors.
  }
  return bytes;
}

/** A gc finished: the room of the rows it freed is reusable, so checkpoints may go on; tries to make the reserve again. */
export function noteCleanedUp(dataDir: string): void {
  if (ensureReserve(dataDir)) return;
  const released = readReleased(dataDir);
  if (!released || released.gcAt) return;
  try {
    writeFileSync(join(dataDir, RELEASED_FILE), JSON.stringify({ ...released, gcAt: new Date().toISOString() }) + "\n");
  } catch {
    // No room even for the marker: checkpoints keep waiting; the next gc tries again.
  }
}

/**
 * Whether new checkpoints must wait: the reserve was released for a full disk, it is not back
 * and no gc has finished since. Tries to make the reserve first (room may have come back).
 */
export function checkpointsHeld(dataDir: string): { held: false } | { held: true; released: Released; free: number } {
  const released = readReleased(dataDir);
  if (!released || released.gcAt || reserveBytes() === 0) return { held: false };
  if (ensureReserve(dataDir)) return { held: false };
  return { held: true, released, free: freeBytes(dataDir) };
}

export function formatMiB(bytes: number): string {
  return `${(bytes / MiB).toFixed(bytes >= 10 * MiB ? 0 : 1)} MiB`;
}
