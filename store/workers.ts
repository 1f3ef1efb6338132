// Worker registry: each worker upserts its row on every heartbeat; a worker whose heartbeat is
// old is presumed gone (its running jobs can then be marked lost).
import type { Db } from "./db";
import type { DbWorker } from "./types";

export interface WorkerHeartbeat {
  id: string;
  host: string;
  pid?: number | null;
  profile?: string;
}

/** Registers the worker or refreshes its heartbeat; returns its row. */
export async function heartbeatWorker(db: Db, worker: WorkerHeartbeat): Promise<DbWorker> {
  const { rows } = await db.query<DbWorker>(
    `INSERT INTO nbjob.workers (id, host, pid, profile) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, profile = EXCLUDED.profile,
       last_heartbeat_at = now(),
       started_at = CASE WHEN nbjob.workers.pid IS DISTINCT FROM EXCLUDED.pid THEN now() ELSE nbjob.workers.started_at END
     RETURNING *`,
    [worker.id, worker.host, worker.pid ?? null, worker.profile ?? "default"],
  );
  return rows[0];
}

/** Workers, newest heartbeat first; `aliveWithinMs` keeps only those heard from recently. */
export async function listWorkers(db: Db, filter: { profile?: string; aliveWithinMs?: number } = {}): Promise<DbWorker[]> {
  const { rows } = await db.query<DbWorker>(
    `SELECT * FROM nbjob.workers
      WHERE ($1::text IS NULL OR profile = $1)
        AND ($2::double precision IS NULL OR last_heartbeat_at > now() - make_interval(secs => $2 / 1000.0))
      ORDER BY last_heartbeat_at DESC`,
    [filter.profile ?? null, filter.aliveWithinMs ?? null],
  );
  return rows;
}

/** One worker's row (its last heartbeat), or undefined when it never checked in. */
export async function getWorker(db: Db, id: string): Promise<DbWorker | undefined> {
  const { rows } = await db.query<DbWorker>("SELECT * FROM nbjob.workers WHERE id = $1", [id]);
  return rows[0];
}

export async function removeWorker(db: Db, id: string): Promise<boolean> {
  const { rowCount } = await db.query("DELETE FROM nbjob.workers WHERE id = $1", [id]);
  return rowCount === 1;
}
