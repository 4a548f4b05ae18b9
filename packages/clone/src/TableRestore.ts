/**
 * TableRestore: RESTORE DATABASE db / RESTORE TABLE db.t [AS db.t2] from a
 * backup into a cluster (partial restore), without touching the rest of the
 * target's catalog.
 *
 * A table is put back in place (its id, location and snapshot path as in the
 * backup; files already in the target with the right size are not written
 * again) when the target has no table of that name or the same table (same
 * id), and no database of that name or the same database. Otherwise (another
 * table or database now holds the name, or AS names a new one) its files are
 * copied out of the backup into a location of the target table, as a DEEP
 * clone without clone records would. Files first, then the database entry,
 * then the table entry by compare-and-swap. Tables of the target that the
 * backup does not have are left alone.
 */
import { type BackupFile, BlobStoreError, type Cluster, type IntegrityError, type ManifestError, type Repository } from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import {
  backupDatabaseNames,
  backupFileStream,
  findBackupFiles,
  type PickedBackup,
  readBackupDatabase,
  readBackupSnapshot,
  withBackup,
} from "./BackupSource.ts"
import { type CloneFailure, copyTableFromBackup } from "./Clone.ts"
import { CloneError } from "./CloneError.ts"
import {
  checkDatabaseName,
  checkTableRef,
  displayTable,
  headOrUndefined,
  keyBytes,
  readDatabase,
  readTable,
  type TableRef,
} from "./Layout.ts"

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

/** Restores a database, or one table, out of a backup into `target`. */
export const restoreTables: (req: RestoreTablesRequest) => Effect.Effect<RestoreTablesResult, CloneFailure> = Effect.fn("TableRestore.run")(
  function* (req: RestoreTablesRequest) {
    yield* checkDatabaseName(req.database)
    if (req.table !== undefined) yield* checkTableRef({ database: req.database, table: req.table })
    if (req.as !== undefined) {
      if (req.table === undefined) {
        return yield* new CloneError({
          reason: "InvalidName",
          detail: "AS names a target table, so it needs RESTORE TABLE db.t (not RESTORE DATABASE)",
          fix: "write RESTORE TABLE db.t AS db.t2 ...",
        })
      }
      yield* checkTableRef(req.as)
    }
    const what = req.table === undefined ? `database ${req.database}` : `table ${req.database}.${req.table}`
    return yield* withBackup(
      req.repo,
      req,
      { kind: "restore", operation: `restore of ${what} into ${req.target.name}`, dryRun: req.dryRun },
      (picked) => restorePicked(req, picked),
    )
  },
)

const restorePicked = Effect.fnUntraced(function* (req: RestoreTablesRequest, picked: PickedBackup) {
  const { backupId, manifest } = picked
  const { db, tables } = yield* readBackupDatabase(req.repo, manifest, req.database, req.table)
  if (db === undefined) {
    const names = yield* backupDatabaseNames(req.repo, manifest)
    return yield* new CloneError({
      reason: "DatabaseNotFound",
      detail: `backup ${backupId} has no database '${req.database}'`,
      fix: `its databases are: ${names.join(", ") || "(none)"}`,
    })
  }
  if (req.table !== undefined && tables.length === 0) {
    const all = yield* readBackupDatabase(req.repo, manifest, req.database)
    return yield* new CloneError({
      reason: "TableNotFound",
      detail: `backup ${backupId} has no table ${req.database}.${req.table}`,
      fix: `tables of ${req.database} in that backup: ${all.tables.map((t) => t.ref.table).join(", ") || "(none)"}`,
    })
  }
  const counters = { files_written: 0, bytes_written: 0, files_skipped: 0 }
  const restored: Array<string> = []
  const target = req.target
  for (const t of tables) {
    const targetRef: TableRef = req.as ?? t.ref
    const targetDb = yield* readDatabase(target, targetRef.database)
    const existing = yield* readTable(target, targetRef)
    const inPlace =
      req.as === undefined &&
      (targetDb === undefined || targetDb.entry.id === db.entry.id) &&
      (existing === undefined || existing.entry.id === t.entry.id)
    if (!inPlace) {
      const r = yield* copyTableFromBackup(picked, t.ref, { cluster: target, table: targetRef }, req.dryRun)
      counters.files_written += r.num_copied_files
      counters.bytes_written += r.copied_files_size
      counters.files_skipped += r.source_num_of_files - r.num_copied_files
      restored.push(displayTable(targetRef))
      continue
    }
    const snapshot = yield* readBackupSnapshot(req.repo, manifest, backupId, t.entry.snapshot)
    // Data files first, the snapshot object last.
    const paths = [...snapshot.files.map((f) => f.path), t.entry.snapshot]
    const records = yield* findBackupFiles(req.repo, manifest, paths)
    const missing = paths.filter((p) => !records.has(p))
    if (missing.length > 0) {
      return yield* new CloneError({
        reason: "InvalidLayout",
        detail: `backup ${backupId} lacks ${missing.length} file(s) that ${displayTable(t.ref)} lists (e.g. ${missing[0]})`,
        fix: "the cluster was not consistent when it was backed up; use another backup",
      })
    }
    const plan = yield* Effect.forEach(
      paths,
      (path) =>
        headOrUndefined(target.storage, path).pipe(
          Effect.map((info) => ({
            path,
            size: Number(records.get(path)?.size ?? 0),
            present: info !== undefined && info.size === Number(records.get(path)?.size),
          })),
        ),
      { concurrency: 8 },
    )
    const toWrite = plan.filter((p) => !p.present)
    counters.files_skipped += plan.length - toWrite.length
    counters.files_written += toWrite.length
    counters.bytes_written += toWrite.reduce((n, p) => n + p.size, 0)
    restored.push(displayTable(targetRef))
    if (req.dryRun) continue
    const write = (path: string): Effect.Effect<void, BlobStoreError | IntegrityError | ManifestError> => {
      const record = records.get(path) as BackupFile
      const body = backupFileStream(req.repo, record).pipe(
        Stream.mapError((e) =>
          e._tag === "BlobStoreError"
            ? e
            : new BlobStoreError({
                reason: "Unknown",
                driver: target.storage.driver,
                operation: "restore",
                key: path,
                detail: e.message,
                cause: e,
              }),
        ),
      )
      return target.storage.put(path, body).pipe(
        Effect.asVoid,
        Effect.catchIf(
          (e: BlobStoreError) =>
            typeof e.cause === "object" &&
            e.cause !== null &&
            "_tag" in e.cause &&
            (e.cause._tag === "IntegrityError" || e.cause._tag === "ManifestError"),
          (e) => Effect.fail(e.cause as IntegrityError | ManifestError),
        ),
      )
    }
    yield* Effect.forEach(
      toWrite.filter((p) => p.path !== t.entry.snapshot),
      (p) => write(p.path),
      { concurrency: 8, discard: true },
    )
    if (toWrite.some((p) => p.path === t.entry.snapshot)) yield* write(t.entry.snapshot)
    if (targetDb === undefined) {
      const created = yield* target.meta.compareAndSwap(keyBytes(`catalog/databases/${targetRef.database}`), undefined, keyBytes(db.raw))
      const now = created ? undefined : yield* readDatabase(target, targetRef.database)
      if (now !== undefined && now.entry.id !== db.entry.id) {
        return yield* new CloneError({
          reason: "Conflict",
          detail: `database '${targetRef.database}' was created by another writer during the restore`,
          fix: "run the statement again",
        })
      }
    }
    if (existing?.raw !== t.raw) {
      const swapped = yield* target.meta.compareAndSwap(
        keyBytes(t.key),
        existing === undefined ? undefined : keyBytes(existing.raw),
        keyBytes(t.raw),
      )
      if (!swapped) {
        return yield* new CloneError({
          reason: "Conflict",
          detail: `${displayTable(targetRef)} changed in cluster '${target.name}' during the restore; its entry was not replaced`,
          fix: "run the statement again",
        })
      }
    }
  }
  return { backup_id: backupId, tables: restored.length, ...counters, dry_run: req.dryRun, restored } satisfies RestoreTablesResult
})
