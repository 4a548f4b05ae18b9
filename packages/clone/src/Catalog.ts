/**
 * Catalog: SHOW DATABASES, SHOW TABLES, DESCRIBE TABLE, SHOW CLONES and
 * DROP TABLE [PURGE] over the table layout of a live cluster.
 */
import type { Cluster } from "@bendsave/core"
import * as Effect from "effect/Effect"
import type { CloneFailure } from "./Clone.ts"
import type { CloneMode, CloneOf, TableRef } from "./Layout.ts"

export interface DatabaseInfo {
  readonly name: string
  readonly id: string
  readonly created_at: string
  readonly tables: number
}

export interface TableInfo {
  readonly database: string
  readonly table: string
  readonly files: number
  readonly bytes: number
  /** `db.table` the table was cloned from. */
  readonly clone_of?: string
}

export interface TableDescription {
  readonly database: string
  readonly table: string
  readonly id: string
  readonly location: string
  readonly snapshot: string
  readonly version: number
  readonly files: number
  readonly bytes: number
  readonly schema?: ReadonlyArray<{ readonly name: string; readonly type: string }>
  readonly clone_of?: CloneOf
}

export interface CloneInfo {
  /** `db.table` of the clone. */
  readonly clone: string
  /** `db.table` of the source (with `<cluster>.` when another cluster). */
  readonly source: string
  readonly mode: CloneMode
  readonly source_backup?: string
  readonly created_at: string
}

export interface DropResult {
  readonly dropped: boolean
  readonly files_deleted: number
  readonly bytes_deleted: number
  /** Files under the dropped table's location that a clone still lists, kept. */
  readonly files_kept_for_clones: number
}

export const listDatabases = (_cluster: Cluster): Effect.Effect<ReadonlyArray<DatabaseInfo>, CloneFailure> =>
  Effect.die("not implemented yet")

export const listTables = (_cluster: Cluster, _database?: string): Effect.Effect<ReadonlyArray<TableInfo>, CloneFailure> =>
  Effect.die("not implemented yet")

export const describeTable = (_cluster: Cluster, _table: TableRef): Effect.Effect<TableDescription, CloneFailure> =>
  Effect.die("not implemented yet")

export const listClones = (_cluster: Cluster, _of?: TableRef): Effect.Effect<ReadonlyArray<CloneInfo>, CloneFailure> =>
  Effect.die("not implemented yet")

export const dropTable = (
  _cluster: Cluster,
  _table: TableRef,
  _opts: { readonly ifExists: boolean; readonly purge: boolean; readonly dryRun?: boolean },
): Effect.Effect<DropResult, CloneFailure> => Effect.die("not implemented yet")
