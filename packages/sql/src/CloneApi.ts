/**
 * CloneApi: the table-level workflows the runner calls (clone, drop, catalog
 * listings, partial restore), as an interface. `@bendsave/clone` implements
 * it (the CLI passes that module); tests may pass their own. The request and
 * result types are those of `@bendsave/clone`.
 */
import type { Cluster, Repository } from "@bendsave/core"
import type * as Effect from "effect/Effect"

export interface TableRef {
  readonly database: string
  readonly table: string
}

export type CloneMode = "SHALLOW" | "DEEP"
export type OnExists = "error" | "replace" | "ignore"

export type CloneSource =
  | { readonly kind: "live"; readonly cluster: Cluster; readonly table: TableRef; readonly version?: number }
  | { readonly kind: "backup"; readonly repo: Repository; readonly backupId?: string; readonly at?: Date; readonly table: TableRef }

export type CloneDatabaseSource =
  | { readonly kind: "live"; readonly cluster: Cluster; readonly database: string }
  | { readonly kind: "backup"; readonly repo: Repository; readonly backupId?: string; readonly at?: Date; readonly database: string }

export interface CloneTableRequest {
  readonly source: CloneSource
  readonly target: { readonly cluster: Cluster; readonly table: TableRef }
  readonly mode: CloneMode
  readonly onExists: OnExists
  readonly dryRun: boolean
}

export interface CloneDatabaseRequest {
  readonly source: CloneDatabaseSource
  readonly target: { readonly cluster: Cluster; readonly database: string }
  readonly mode: CloneMode
  readonly onExists: OnExists
  readonly dryRun: boolean
}

/** Databricks' clone metrics plus what was cloned (the runner shows every field it gets). */
export interface CloneResult {
  readonly source_table_size: number
  readonly source_num_of_files: number
  readonly num_removed_files: number
  readonly num_copied_files: number
  readonly removed_files_size: number
  readonly copied_files_size: number
  readonly target: string
  readonly source: string
  readonly mode: CloneMode
  readonly status: string
}

export interface RestoreTablesRequest {
  readonly repo: Repository
  readonly backupId?: string
  readonly at?: Date
  readonly database: string
  readonly table?: string
  readonly as?: TableRef
  readonly target: Cluster
  readonly dryRun: boolean
}

/** A workflow result: a JSON object (rendered as a table row) or a list of them. */
type Row = object

export interface CloneApi {
  readonly cloneTable: (request: CloneTableRequest) => Effect.Effect<CloneResult, unknown>
  readonly cloneDatabase: (request: CloneDatabaseRequest) => Effect.Effect<ReadonlyArray<CloneResult>, unknown>
  readonly dropTable: (
    cluster: Cluster,
    table: TableRef,
    options: { readonly ifExists: boolean; readonly purge: boolean; readonly dryRun?: boolean },
  ) => Effect.Effect<Row, unknown>
  readonly listDatabases: (cluster: Cluster) => Effect.Effect<ReadonlyArray<Row>, unknown>
  readonly listTables: (cluster: Cluster, database?: string) => Effect.Effect<ReadonlyArray<Row>, unknown>
  readonly describeTable: (cluster: Cluster, table: TableRef) => Effect.Effect<Row, unknown>
  readonly listClones: (cluster: Cluster, of?: TableRef) => Effect.Effect<ReadonlyArray<Row>, unknown>
  readonly restoreTables: (request: RestoreTablesRequest) => Effect.Effect<Row, unknown>
}

/** VACUUM BACKUPS: the retention policy and the plan-only switch; the result is shown as one row. */
export interface VacuumRequest {
  readonly repo: Repository
  readonly retentionDays?: number
  readonly minRetentionDays?: number
  readonly maxBackups?: number
  readonly minBackups?: number
  readonly dryRun: boolean
}

export type VacuumWorkflow = (request: VacuumRequest) => Effect.Effect<Row, unknown>
