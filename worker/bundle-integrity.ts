// What a worker checks before it runs a bundle it did not build: that the source still hashes to
// the bundle's hash (nobody changed the code in the store) and that the bundle carries the
// cluster key's signature over hash, params and entries (someone holding the key made it).
// Every path that runs stored code calls this: the claim, comm runs of stored jobs, analyses.
import { clusterKey, CLUSTER_KEY_ENV, sha256, verifyBundleSignature } from "../store";
import type { ClusterKey } from "../store";

/** A bundle as loaded from the store (or sent by a notebook that loaded it there). */
export interface LoadedBundle {
  hash: string;
  source: string;
  params: Record<string, unknown>;
  entries: readonly string[];
  signature: string | null | undefined;
}

/** A bundle the worker will not run; `name` is what the job's error_name says. */
export class BundleRefusedError extends Error {
  constructor(name: "BundleAltered" | "BundleUnsigned" | "BundleSignatureMismatch" | "ClusterKeyError", message: string) {
    super(message);
    this.name = name;
  }
}

function keyOrRefuse(): ClusterKey {
  try {
    return clusterKey();
  } catch (err) {
    throw new BundleRefusedError("ClusterKeyError", `this worker cannot check bundle signatures: ${(err as Error).message}`);
  }
}

/**
 * Throws BundleRefusedError unless `bundle` is intact and signed with this worker's key.
 * `jobId` goes into the advice (`nbjob rerun JOB --sign`).
 */
export function checkLoadedBundle(bundle: LoadedBundle, jobId: number | string): void {
  const actual = sha256(bundle.source);
  if (actual !== bundle.hash) {
    throw new BundleRefusedError("BundleAltered",
      `bundle ${bundle.hash} was altered in the store: its source now hashes to ${actual}, so it is not the code the job was made with, and it was not run. ` +
      `Create the job again from its notebook (that stores the bundle again, as the notebook has it).`);
  }
  const key = keyOrRefuse();
  const where = key.from === CLUSTER_KEY_ENV || key.from.startsWith("KERNEL_") ? `the ${key.from} of this worker` : `${key.from} (this worker's NBJOB_HOME)`;
  if (bundle.signature === null || bundle.signature === undefined) {
    throw new BundleRefusedError("BundleUnsigned",
      `bundle ${bundle.hash} is not signed (stored before nbjob signed bundles, or inserted into the store by hand), so it was not run. ` +
      `If you trust its code, sign it with the cluster key and run it again: npx nbjob rerun ${jobId} --sign (where the key is ${where}).`);
  }
  if (!verifyBundleSignature(bundle, bundle.signature, key)) {
    throw new BundleRefusedError("BundleSignatureMismatch",
      `bundle ${bundle.hash} is not signed with this worker's cluster key (from ${where}), so it was not run: it was made with another key, or its params or entries were changed in the store. ` +
      `Give notebooks and workers the same key: the same NBJOB_HOME (its cluster.key) or the same ${CLUSTER_KEY_ENV}; if you trust the bundle as stored, re-sign it: npx nbjob rerun ${jobId} --sign.`);
  }
}
