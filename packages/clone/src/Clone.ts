/**
 * Clone: Databricks-style SHALLOW and DEEP CLONE of a table or a database,
 * from a live table (optionally VERSION AS OF n) or from a table inside a
 * backup (AT BACKUP / AT TIMESTAMP), into the same or another cluster.
 *
 * Semantics (docs/table-layout.md section 7):
 * - SHALLOW writes a new table entry and snapshot listing the source's files
 *   by their paths; zero data bytes are copied. Only within one storage root.
 * - DEEP copies every file into the target table's own location (server-side
 *   copy on one store, streamed otherwise). Re-running OR REPLACE DEEP CLONE
 *   copies only the files the target lacks and drops from the target's
 *   snapshot what the source no longer has.
 * - Crash safety: data files and the snapshot object are written first
 *   (create-only), the catalog entry last by compare-and-swap.
 */
import type { BlobStoreError, Cluster, IntegrityError, ManifestError, MetaStoreError, Repository, RepositoryError } from "@bendsave/core"
import * as Effect from "effect/Effect"
import type { CloneError } from "./CloneError.ts"
import type { CloneMode, TableRef } from "./Layout.ts"

/** Where a clone reads from. */
export type CloneSource =
  | {
      readonly kind: "live"
      readonly cluster: Cluster
      readonly table: TableRef
      /** VERSION AS OF n (default: the current snapshot). */
      readonly version?: number
    }
  | {
      readonly kind: "backup"
      readonly repo: Repository
      /** AT BACKUP '<id>'. */
      readonly backupId?: string
      /** AT TIMESTAMP: the newest backup at or before it. Neither: the latest backup. */
      readonly at?: Date
      readonly table: TableRef
    }

/** plain CREATE / CREATE OR REPLACE / CREATE ... IF NOT EXISTS */
export type OnExists = "error" | "replace" | "ignore"

/** Databricks' clone metrics. */
export interface CloneMetrics {
  source_table_size: number
  source_num_of_files: number
  num_removed_files: number
  num_copied_files: number
  removed_files_size: number
  copied_files_size: number
}

export interface CloneResult extends CloneMetrics {
  /** `db.table` of the target. */
  target: string
  /** `db.table` of the source (prefixed by `<cluster>.` when another cluster, suffixed by `@<backup id>` from a backup). */
  source: string
  mode: CloneMode
  /** "skipped": IF NOT EXISTS and the target existed; "planned": dry run, nothing written. */
  status: "cloned" | "skipped" | "planned"
  /** Version of the source snapshot that was cloned. */
  source_version: number
  /** Version of the target's new snapshot (0 when skipped). */
  target_version: number
  /** The backup the source was read from. */
  source_backup?: string
}

export interface CloneTableRequest {
  readonly source: CloneSource
  readonly target: { readonly cluster: Cluster; readonly table: TableRef }
  readonly mode: CloneMode
  readonly onExists: OnExists
  readonly dryRun: boolean
}

export type CloneDatabaseSource =
  | { readonly kind: "live"; readonly cluster: Cluster; readonly database: string }
  | { readonly kind: "backup"; readonly repo: Repository; readonly backupId?: string; readonly at?: Date; readonly database: string }

export interface CloneDatabaseRequest {
  readonly source: CloneDatabaseSource
  readonly target: { readonly cluster: Cluster; readonly database: string }
  readonly mode: CloneMode
  readonly onExists: OnExists
  readonly dryRun: boolean
}

/** Every error a table-level workflow can fail with. */
export type CloneFailure = CloneError | BlobStoreError | MetaStoreError | RepositoryError | ManifestError | IntegrityError

/** CREATE [OR REPLACE] TABLE [IF NOT EXISTS] target {SHALLOW|DEEP} CLONE source ... */
export const cloneTable = (_req: CloneTableRequest): Effect.Effect<CloneResult, CloneFailure> =>
  Effect.die("cloneTable: not implemented yet")

/** CREATE [OR REPLACE] DATABASE [IF NOT EXISTS] target {SHALLOW|DEEP} CLONE source ...: every table of the database. */
export const cloneDatabase = (_req: CloneDatabaseRequest): Effect.Effect<ReadonlyArray<CloneResult>, CloneFailure> =>
  Effect.die("cloneDatabase: not implemented yet")
