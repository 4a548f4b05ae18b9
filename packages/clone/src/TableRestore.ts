/**
 * TableRestore: RESTORE DATABASE db / RESTORE TABLE db.t [AS db.t2] from a
 * backup into a cluster (partial restore), without touching the rest of the
 * target's catalog.
 */
import type { Cluster, Repository } from "@bendsave/core"
import * as Effect from "effect/Effect"
import type { CloneFailure } from "./Clone.ts"
import type { TableRef } from "./Layout.ts"

export interface RestoreTablesRequest {
  readonly repo: Repository
  /** AT BACKUP '<id>'. */
  readonly backupId?: string
  /** AT TIMESTAMP: the newest backup at or before it. Neither: the latest backup. */
  readonly at?: Date
  readonly database: string
  /** One table of `database`; absent: every table of the database in the backup. */
  readonly table?: string
  /** RESTORE TABLE db.t AS db.t2: restore under another name (only with `table`). */
  readonly as?: TableRef
  readonly target: Cluster
  readonly dryRun: boolean
}

export interface RestoreTablesResult {
  readonly backup_id: string
  readonly tables: number
  readonly files_written: number
  readonly bytes_written: number
  /** Files already in the target with the right size, not written again. */
  readonly files_skipped: number
  readonly dry_run: boolean
  /** `db.table` of every restored table (target names). */
  readonly restored: ReadonlyArray<string>
}

export const restoreTables = (_req: RestoreTablesRequest): Effect.Effect<RestoreTablesResult, CloneFailure> =>
  Effect.die("not implemented yet")
