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
import { createHash } from "node:crypto"
import {
  type BackupFile,
  type BackupManifest,
  BLOCK_SIZE,
  type BlobStore,
  BlobStoreError,
  type Cluster,
  hashBlock,
  type IntegrityError,
  lastModifiedMillis,
  type ManifestError,
  type MetaStoreError,
  type Repository,
  type RepositoryError,
} from "@bendsave/core"
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
  writePin,
} from "./BackupSource.ts"
import { CloneError } from "./CloneError.ts"
import {
  type CloneMode,
  type CloneOf,
  checkDatabaseName,
  checkTableRef,
  type DatabaseEntry,
  databaseKey,
  dataFilePath,
  displayTable,
  EXTERNAL_CLONE_PREFIX,
  type ExternalCloneRecord,
  headOrUndefined,
  jsonBytes,
  keyBytes,
  newId,
  readCatalog,
  readDatabase,
  readSnapshot,
  readTable,
  requireTable,
  type Snapshot,
  type SnapshotFile,
  sameMeta,
  sameStorage,
  snapshotPath,
  snapshotVersionOf,
  type TableEntry,
  type TableRef,
  tableKey,
  totals,
} from "./Layout.ts"

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

/** Files copied at once by a DEEP clone. */
const COPY_CONCURRENCY = 8

/** A resolved clone source: the table entry and snapshot, and how to read its files. */
interface ResolvedSource {
  readonly ref: TableRef
  readonly entry: TableEntry
  readonly snapshotPath: string
  readonly snapshot: Snapshot
  /** Display name, e.g. `sales.orders`, `prod.sales.orders`. */
  readonly display: string
  readonly live?: { readonly cluster: Cluster; readonly raw: string }
  readonly backup?: {
    readonly repo: Repository
    readonly backupId: string
    readonly manifest: BackupManifest
    /** The backup's records of the snapshot's data files. */
    readonly files: ReadonlyMap<string, BackupFile>
  }
}

const checkVersion = (version: number | undefined): Effect.Effect<void, CloneError> =>
  version === undefined || (Number.isSafeInteger(version) && version >= 1)
    ? Effect.void
    : Effect.fail(
        new CloneError({
          reason: "VersionNotFound",
          detail: `VERSION AS OF ${version} is not a version: versions are whole numbers from 1`,
          fix: "use DESCRIBE TABLE to see the table's current version",
        }),
      )

const resolveLive = Effect.fnUntraced(function* (cluster: Cluster, ref: TableRef, version: number | undefined, target: Cluster) {
  yield* checkTableRef(ref)
  yield* checkVersion(version)
  const table = yield* requireTable(cluster, ref)
  const current = snapshotVersionOf(table.entry.snapshot) ?? 0
  const path = version === undefined ? table.entry.snapshot : snapshotPath(table.entry.location, version)
  const snapshot = yield* readSnapshot(cluster.storage, path).pipe(
    Effect.catchIf(
      (e): e is BlobStoreError => e._tag === "BlobStoreError" && e.reason === "NotFound",
      () =>
        Effect.fail(
          version !== undefined && version > current
            ? new CloneError({
                reason: "VersionNotFound",
                detail: `${displayTable(ref)} has no version ${version}; its current version is ${current}`,
                fix: `use VERSION AS OF a number from 1 to ${current}`,
              })
            : new CloneError({
                reason: version === undefined ? "InvalidLayout" : "VersionNotFound",
                detail: `the snapshot object ${path} of ${displayTable(ref)} is missing from the storage of '${cluster.name}'`,
                fix:
                  version === undefined
                    ? "the table's current snapshot is gone: restore the table from a backup (RESTORE TABLE ...)"
                    : `version ${version} was garbage-collected; clone it from a backup (FROM '<repo>' AT TIMESTAMP ...) or use a later version (current: ${current})`,
              }),
        ),
    ),
  )
  const display = sameMeta(cluster, target) ? displayTable(ref) : `${cluster.name}.${displayTable(ref)}`
  return { ref, entry: table.entry, snapshotPath: path, snapshot, display, live: { cluster, raw: table.raw } } satisfies ResolvedSource
})

const resolveFromBackup = Effect.fnUntraced(function* (picked: PickedBackup, ref: TableRef) {
  yield* checkTableRef(ref)
  const { repo, backupId, manifest } = picked
  const { db, tables } = yield* readBackupDatabase(repo, manifest, ref.database, ref.table)
  if (db === undefined) {
    const names = yield* backupDatabaseNames(repo, manifest)
    return yield* new CloneError({
      reason: "DatabaseNotFound",
      detail: `backup ${backupId} has no database '${ref.database}'`,
      fix: names.length > 0 ? `its databases are: ${names.join(", ")}` : "the backup's cluster has no databases in the table layout",
    })
  }
  const table = tables[0]
  if (table === undefined) {
    const all = yield* readBackupDatabase(repo, manifest, ref.database)
    return yield* new CloneError({
      reason: "TableNotFound",
      detail: `backup ${backupId} has no table ${displayTable(ref)}`,
      fix:
        all.tables.length > 0
          ? `tables of ${ref.database} in that backup: ${all.tables.map((t) => t.ref.table).join(", ")}; or pick another backup`
          : "pick another backup (SHOW BACKUPS IN '<repo>')",
    })
  }
  const snapshot = yield* readBackupSnapshot(repo, manifest, backupId, table.entry.snapshot)
  const files = yield* findBackupFiles(
    repo,
    manifest,
    snapshot.files.map((f) => f.path),
  )
  const missing = snapshot.files.filter((f) => files.get(f.path) === undefined)
  if (missing.length > 0) {
    return yield* new CloneError({
      reason: "InvalidLayout",
      detail: `backup ${backupId} lacks ${missing.length} data file(s) that ${displayTable(ref)} lists (e.g. ${missing[0].path})`,
      fix: "the cluster was not consistent when it was backed up; use another backup",
    })
  }
  return {
    ref,
    entry: table.entry,
    snapshotPath: table.entry.snapshot,
    snapshot,
    display: displayTable(ref),
    backup: { repo, backupId, manifest, files },
  } satisfies ResolvedSource
})

/**
 * The name of a DEEP clone's copy of a source file: a UUID (version 8,
 * "custom") derived from the source path, size and sha256, so a re-run finds
 * the copies it already made and copies only what is missing.
 */
export const deepFileId = (file: SnapshotFile): string => {
  const h = createHash("sha256")
    .update(`bendsave-deep-clone\0${file.path}\0${file.size}\0${file.sha256 ?? ""}`)
    .digest("hex")
  const variant = ((Number.parseInt(h[16], 16) & 0x3) | 0x8).toString(16)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`
}

/** Whether `target` storage holds the backed-up file `record` itself (same object, or the same bytes). */
const holdsBackedUpFile = Effect.fnUntraced(function* (storage: BlobStore, record: BackupFile) {
  const info = yield* headOrUndefined(storage, record.path)
  if (info === undefined || info.size !== Number(record.size)) return false
  if (info.etag === record.etag && info.lastModified === lastModifiedMillis(record)) return true
  for (let i = 0; i < record.blocks.length; i++) {
    const block = record.blocks[i]
    const bytes = yield* storage.getRange(record.path, i * BLOCK_SIZE, Number(block.blockSize))
    if (bytes.length !== Number(block.blockSize) || (yield* hashBlock(bytes)).id !== block.blockId) return false
  }
  return true
})

/** Creates `catalog/databases/<db>` when absent (CAS); returns the database id. */
const ensureDatabase = Effect.fnUntraced(function* (cluster: Cluster, database: string) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = yield* readDatabase(cluster, database)
    if (existing !== undefined) return existing.entry.id
    const entry: DatabaseEntry = { id: newId(), created_at: new Date().toISOString() }
    if (yield* cluster.meta.compareAndSwap(keyBytes(databaseKey(database)), undefined, jsonBytes(entry))) return entry.id
  }
  return yield* new CloneError({
    reason: "Conflict",
    detail: `could not create database '${database}': it keeps changing`,
    fix: "run the statement again",
  })
})

/** The highest snapshot version written under a location (committed or not). */
const maxSnapshotVersion = (storage: BlobStore, location: string) =>
  storage.list(`${location}_ss/`).pipe(
    Stream.runFold(
      () => 0,
      (max, info) => Math.max(max, snapshotVersionOf(info.key) ?? 0),
    ),
  )

/** Wraps any error into the BlobStoreError a put body may fail with (unwrapped again after the put). */
const asBodyError =
  (driver: string, key: string) =>
  (e: BlobStoreError | IntegrityError | ManifestError | CloneError): BlobStoreError =>
    e._tag === "BlobStoreError"
      ? e
      : new BlobStoreError({ reason: "Unknown", driver, operation: "clone", key, detail: e.message, cause: e })

const unwrapBodyError = <A, R>(effect: Effect.Effect<A, BlobStoreError, R>) =>
  effect.pipe(
    Effect.catchIf(
      (e: BlobStoreError) =>
        e.cause instanceof CloneError ||
        (typeof e.cause === "object" &&
          e.cause !== null &&
          "_tag" in e.cause &&
          (e.cause._tag === "IntegrityError" || e.cause._tag === "ManifestError")),
      (e) => Effect.fail(e.cause as CloneError | IntegrityError | ManifestError),
    ),
  )

/** Copies one source file to `to` in the target storage (create-only; an existing complete copy is kept). */
const copyFile = Effect.fnUntraced(
  function* (source: ResolvedSource, file: SnapshotFile, target: BlobStore, to: string) {
    const existing = yield* headOrUndefined(target, to)
    if (existing !== undefined && existing.size === file.size) return
    if (existing !== undefined) yield* target.delete(to)
    const sizeError = (actual: number) =>
      new CloneError({
        reason: "SourceChanged",
        detail: `copying ${file.path} gave ${actual} bytes, the source snapshot says ${file.size}`,
        fix: "the source file was changed or damaged (data files must be immutable); check the source table, then run the statement again",
      })
    let info: { readonly size: number }
    if (source.backup !== undefined) {
      const record = source.backup.files.get(file.path) as BackupFile
      const body = backupFileStream(source.backup.repo, record).pipe(Stream.mapError(asBodyError(target.driver, to)))
      info = yield* unwrapBodyError(target.put(to, body, { ifNotExists: true }))
    } else {
      const storage = (source.live as { cluster: Cluster }).cluster.storage
      if (sameStorage(storage, target) && target.capabilities.serverSideCopy) {
        info = yield* target.copy(file.path, to)
      } else {
        const hash = file.sha256 === undefined ? undefined : createHash("sha256")
        const body = storage.getStream(file.path).pipe(Stream.tap((chunk) => Effect.sync(() => hash?.update(chunk))))
        info = yield* target.put(to, body, { ifNotExists: true })
        if (hash !== undefined && info.size === file.size && hash.digest("hex") !== file.sha256) {
          yield* target.delete(to)
          return yield* new CloneError({
            reason: "SourceChanged",
            detail: `the bytes of ${file.path} do not match the sha256 its snapshot lists`,
            fix: "the source file was changed or damaged (data files must be immutable); check the source table",
          })
        }
      }
    }
    if (info.size !== file.size) {
      yield* target.delete(to)
      return yield* sizeError(info.size)
    }
  },
  (effect) =>
    effect.pipe(
      Effect.catchIf(
        (e): e is BlobStoreError => e._tag === "BlobStoreError" && e.reason === "AlreadyExists",
        () => Effect.void,
      ),
    ),
)

interface CloneInternals {
  /** Record clone_of and (from a backup) a pin; false for RESTORE TABLE ... AS. */
  readonly record: boolean
}

const cloneResolved = Effect.fnUntraced(function* (
  source: ResolvedSource,
  req: Omit<CloneTableRequest, "source">,
  internals: CloneInternals,
) {
  const target = req.target.cluster
  const targetRef = req.target.table
  yield* checkTableRef(targetRef)
  const sourceSize = totals(source.snapshot)
  const base = {
    target: displayTable(targetRef),
    source: source.display,
    mode: req.mode,
    source_version: source.snapshot.version,
    ...(source.backup !== undefined ? { source_backup: source.backup.backupId } : {}),
    source_table_size: sourceSize.bytes,
    source_num_of_files: sourceSize.files,
  }
  if (source.live !== undefined && sameMeta(source.live.cluster, target) && displayTable(source.ref) === displayTable(targetRef)) {
    return yield* new CloneError({
      reason: "InvalidName",
      detail: `${displayTable(targetRef)} cannot be cloned onto itself`,
      fix: "name another target table",
    })
  }
  const existing = yield* readTable(target, targetRef)
  if (existing !== undefined && req.onExists === "error") {
    return yield* new CloneError({
      reason: "TableExists",
      detail: `table ${displayTable(targetRef)} already exists in cluster '${target.name}'`,
      fix: "use CREATE OR REPLACE TABLE to replace it (a DEEP re-clone copies only what changed), CREATE TABLE IF NOT EXISTS to keep it, or another name",
    })
  }
  if (existing !== undefined && req.onExists === "ignore") {
    return {
      ...base,
      status: "skipped",
      target_version: 0,
      num_removed_files: 0,
      num_copied_files: 0,
      removed_files_size: 0,
      copied_files_size: 0,
    } satisfies CloneResult
  }

  // SHALLOW: the target must be able to read the source's files by their paths.
  if (req.mode === "SHALLOW") {
    if (source.live !== undefined && !sameStorage(source.live.cluster.storage, target.storage)) {
      return yield* new CloneError({
        reason: "ShallowNotPossible",
        detail: `a SHALLOW clone references the source's files by path, but '${source.live.cluster.name}' (${source.live.cluster.storage.location}) and '${target.name}' (${target.storage.location}) do not share a storage root`,
        fix: `use DEEP CLONE to copy the files into '${target.name}'`,
      })
    }
    if (source.backup !== undefined) {
      const backup = source.backup
      const results = yield* Effect.forEach(
        source.snapshot.files,
        (f) => holdsBackedUpFile(target.storage, backup.files.get(f.path) as BackupFile),
        { concurrency: COPY_CONCURRENCY },
      )
      const missing = source.snapshot.files.filter((_, i) => !results[i])
      if (missing.length > 0) {
        return yield* new CloneError({
          reason: "ShallowNotPossible",
          detail: `a SHALLOW clone from backup ${backup.backupId} references the backed-up files in place, but ${missing.length} of ${source.snapshot.files.length} are not in the storage of '${target.name}' any more (e.g. ${missing[0].path})`,
          fix: "use DEEP CLONE, which copies the files out of the backup",
        })
      }
    }
  }

  const oldSnapshot = existing === undefined ? undefined : yield* readSnapshot(target.storage, existing.entry.snapshot)
  // Where the target lives: its own location when replacing, else a new one (needs the database id).
  const targetDb = yield* readDatabase(target, targetRef.database)
  const tableId = existing?.entry.id ?? newId()
  const plannedLocation = (dbId: string) => existing?.entry.location ?? `${dbId}/${tableId}/`
  const planFiles = (location: string): ReadonlyArray<SnapshotFile> =>
    req.mode === "SHALLOW"
      ? source.snapshot.files
      : source.snapshot.files.map((f) => ({ ...f, path: dataFilePath(location, deepFileId(f)) }))
  const metrics = (location: string) => {
    const files = planFiles(location)
    const oldPaths = new Set((oldSnapshot?.files ?? []).map((f) => f.path))
    const newPaths = new Set(files.map((f) => f.path))
    const copied = req.mode === "SHALLOW" ? [] : files.filter((f) => !oldPaths.has(f.path))
    const removed = (oldSnapshot?.files ?? []).filter((f) => !newPaths.has(f.path))
    return {
      files,
      copied,
      num_removed_files: removed.length,
      removed_files_size: removed.reduce((n, f) => n + f.size, 0),
      num_copied_files: copied.length,
      copied_files_size: copied.reduce((n, f) => n + f.size, 0),
    }
  }

  if (req.dryRun) {
    const m = metrics(plannedLocation(targetDb?.entry.id ?? "00000000-0000-0000-0000-000000000000"))
    const { files: _f, copied: _c, ...counts } = m
    const nextVersion = existing === undefined ? 1 : (snapshotVersionOf(existing.entry.snapshot) ?? 0) + 1
    return { ...base, ...counts, status: "planned", target_version: nextVersion } satisfies CloneResult
  }

  const dbId = targetDb?.entry.id ?? (yield* ensureDatabase(target, targetRef.database))
  const location = plannedLocation(dbId)
  const plan = metrics(location)
  const createdAt = new Date().toISOString()

  // A pin keeps the backup from being vacuumed while this clone exists (and while it copies).
  let pin: string | undefined
  if (internals.record && source.backup !== undefined) {
    pin = yield* writePin(source.backup.repo, {
      backup_id: source.backup.backupId,
      reason: "clone",
      cluster: target.name,
      table: displayTable(targetRef),
      source: displayTable(source.ref),
      created_at: createdAt,
    })
  }

  // 1. Data files (DEEP), then 2. the snapshot object, both create-only, then 3. the catalog entry by CAS.
  const written: Array<string> = []
  const cleanupNewLocation = Effect.suspend(() =>
    existing === undefined ? target.storage.deleteMany([...written]).pipe(Effect.ignore) : Effect.void,
  )
  const abandon = <E>(error: E) =>
    cleanupNewLocation.pipe(
      Effect.andThen(
        pin !== undefined && source.backup !== undefined ? source.backup.repo.store.delete(pin).pipe(Effect.ignore) : Effect.void,
      ),
      Effect.andThen(Effect.fail(error)),
    )
  const work = Effect.gen(function* () {
    if (req.mode === "DEEP") {
      const byPath = new Map(source.snapshot.files.map((f) => [dataFilePath(location, deepFileId(f)), f]))
      yield* Effect.forEach(
        plan.copied,
        (f) =>
          Effect.suspend(() => {
            written.push(f.path)
            return copyFile(source, byPath.get(f.path) as SnapshotFile, target.storage, f.path)
          }),
        { concurrency: COPY_CONCURRENCY, discard: true },
      )
    }
    const version =
      existing === undefined
        ? 1
        : Math.max(snapshotVersionOf(existing.entry.snapshot) ?? 0, yield* maxSnapshotVersion(target.storage, location)) + 1
    const newSnapshotPath = snapshotPath(location, version)
    const snapshot: Snapshot = { version, files: plan.files }
    yield* target.storage.put(newSnapshotPath, jsonBytes(snapshot), { ifNotExists: true }).pipe(
      Effect.catchIf(
        (e) => e.reason === "AlreadyExists",
        () =>
          Effect.fail(
            new CloneError({
              reason: "Conflict",
              detail: `another writer committed to ${displayTable(targetRef)} at the same time (snapshot version ${version} exists)`,
              fix: "nothing of this statement was committed; run it again",
            }),
          ),
      ),
    )
    written.push(newSnapshotPath)
    return { version, newSnapshotPath }
  })
  const { version, newSnapshotPath } = yield* work.pipe(Effect.catch(abandon))

  const cloneOf: CloneOf | undefined = internals.record
    ? {
        database: source.ref.database,
        table: source.ref.table,
        table_id: source.entry.id,
        snapshot: source.snapshotPath,
        mode: req.mode,
        version: source.snapshot.version,
        ...(source.live !== undefined && !sameMeta(source.live.cluster, target) ? { cluster: source.live.cluster.name } : {}),
        ...(source.backup !== undefined
          ? {
              ...(source.backup.manifest.backupMeta?.clusterName && source.backup.manifest.backupMeta.clusterName !== target.name
                ? { cluster: source.backup.manifest.backupMeta.clusterName }
                : {}),
              source_backup: source.backup.backupId,
              repository: source.backup.repo.location,
              ...(pin !== undefined ? { pin } : {}),
            }
          : {}),
        created_at: createdAt,
      }
    : undefined
  const { clone_of: _oldCloneOf, schema: _oldSchema, properties: _oldProperties, ...kept } = existing?.entry ?? {}
  const entry: TableEntry = {
    ...kept,
    id: tableId,
    location,
    snapshot: newSnapshotPath,
    ...(source.entry.schema !== undefined ? { schema: source.entry.schema } : {}),
    ...(source.entry.properties !== undefined ? { properties: source.entry.properties } : {}),
    ...(cloneOf !== undefined ? { clone_of: cloneOf } : {}),
  }
  const raw = JSON.stringify(entry)

  // A shallow clone in another catalog sharing the storage: record the dependency in the source's catalog first.
  let externalKey: string | undefined
  const liveSource = source.live
  if (req.mode === "SHALLOW" && liveSource !== undefined && !sameMeta(liveSource.cluster, target)) {
    externalKey = `${EXTERNAL_CLONE_PREFIX}${source.entry.id}/${newId()}`
    const record: ExternalCloneRecord = {
      cluster: target.name,
      database: targetRef.database,
      table: targetRef.table,
      table_id: tableId,
      source: { database: source.ref.database, table: source.ref.table },
      created_at: createdAt,
    }
    yield* liveSource.cluster.meta.compareAndSwap(keyBytes(externalKey), undefined, jsonBytes(record))
    const still = yield* readTable(liveSource.cluster, source.ref)
    if (still?.entry.id !== source.entry.id) {
      yield* liveSource.cluster.meta.compareAndSwap(keyBytes(externalKey), jsonBytes(record), undefined).pipe(Effect.ignore)
      return yield* abandon(sourceDropped(source))
    }
  }

  const swapped = yield* target.meta.compareAndSwap(
    keyBytes(tableKey(targetRef)),
    existing === undefined ? undefined : keyBytes(existing.raw),
    keyBytes(raw),
  )
  if (!swapped) {
    if (externalKey !== undefined)
      yield* (liveSource as { cluster: Cluster }).cluster.meta
        .compareAndSwap(keyBytes(externalKey), undefined, undefined)
        .pipe(Effect.ignore)
    const now = yield* readTable(target, targetRef)
    if (existing === undefined && now !== undefined && req.onExists === "ignore") {
      yield* cleanupNewLocation
      if (pin !== undefined && source.backup !== undefined) yield* source.backup.repo.store.delete(pin).pipe(Effect.ignore)
      return {
        ...base,
        status: "skipped",
        target_version: 0,
        num_removed_files: 0,
        num_copied_files: 0,
        removed_files_size: 0,
        copied_files_size: 0,
      } satisfies CloneResult
    }
    return yield* abandon(
      existing === undefined && now !== undefined && req.onExists === "error"
        ? new CloneError({
            reason: "TableExists",
            detail: `table ${displayTable(targetRef)} was created in cluster '${target.name}' by another writer while this clone ran; nothing of this clone was committed`,
            fix: "use CREATE OR REPLACE TABLE to replace it, or another name",
          })
        : new CloneError({
            reason: "Conflict",
            detail: `another writer changed ${displayTable(targetRef)} in cluster '${target.name}' while this clone ran; nothing of this clone was committed`,
            fix: "run the statement again",
          }),
    )
  }

  // A SHALLOW clone in the source's own catalog: if the source was dropped meanwhile, a PURGE may
  // not have seen this clone; undo the commit rather than reference files that may be deleted.
  if (req.mode === "SHALLOW" && liveSource !== undefined && sameMeta(liveSource.cluster, target)) {
    const still = yield* readTable(liveSource.cluster, source.ref)
    if (still?.entry.id !== source.entry.id) {
      yield* target.meta
        .compareAndSwap(keyBytes(tableKey(targetRef)), keyBytes(raw), existing === undefined ? undefined : keyBytes(existing.raw))
        .pipe(Effect.ignore)
      return yield* abandon(sourceDropped(source))
    }
  }

  const { files: _files, copied: _copied, ...counts } = plan
  return { ...base, ...counts, status: "cloned", target_version: version } satisfies CloneResult
})

const sourceDropped = (source: ResolvedSource) =>
  new CloneError({
    reason: "Conflict",
    detail: `the source table ${source.display} was dropped while it was being cloned; nothing was committed`,
    fix: "clone it from a backup (FROM '<repo>' AT BACKUP '<id>'), or restore it first",
  })

/** CREATE [OR REPLACE] TABLE [IF NOT EXISTS] target {SHALLOW|DEEP} CLONE source ... */
export const cloneTable: (req: CloneTableRequest) => Effect.Effect<CloneResult, CloneFailure> = Effect.fn("Clone.table")(function* (
  req: CloneTableRequest,
) {
  const source = req.source
  if (source.kind === "live") {
    return yield* cloneResolved(yield* resolveLive(source.cluster, source.table, source.version, req.target.cluster), req, { record: true })
  }
  const operation = `clone of ${displayTable(source.table)} into ${req.target.cluster.name}.${displayTable(req.target.table)}`
  return yield* withBackup(source.repo, source, { kind: "clone", operation, dryRun: req.dryRun }, (picked) =>
    Effect.flatMap(resolveFromBackup(picked, source.table), (resolved) => cloneResolved(resolved, req, { record: true })),
  )
})

/** A DEEP copy of a table out of an already picked backup, without clone records (RESTORE TABLE ... AS). */
export const copyTableFromBackup = Effect.fnUntraced(function* (
  picked: PickedBackup,
  ref: TableRef,
  target: { readonly cluster: Cluster; readonly table: TableRef },
  dryRun: boolean,
) {
  const source = yield* resolveFromBackup(picked, ref)
  return yield* cloneResolved(source, { target, mode: "DEEP", onExists: "replace", dryRun }, { record: false })
})

/**
 * CREATE [OR REPLACE] DATABASE [IF NOT EXISTS] target {SHALLOW|DEEP} CLONE
 * source ...: every table of the source database, one clone each (the target
 * database is created when missing; OR REPLACE / IF NOT EXISTS apply per table).
 */
export const cloneDatabase: (req: CloneDatabaseRequest) => Effect.Effect<ReadonlyArray<CloneResult>, CloneFailure> = Effect.fn(
  "Clone.database",
)(function* (req: CloneDatabaseRequest) {
  yield* checkDatabaseName(req.source.database)
  yield* checkDatabaseName(req.target.database)
  const results: Array<CloneResult> = []
  const targetOf = (table: string) => ({ cluster: req.target.cluster, table: { database: req.target.database, table } })
  const common = { mode: req.mode, onExists: req.onExists, dryRun: req.dryRun }
  if (req.source.kind === "live") {
    const source = req.source
    const catalog = yield* readCatalog(source.cluster)
    if (!catalog.databases.has(source.database)) {
      return yield* new CloneError({
        reason: "DatabaseNotFound",
        detail: `cluster '${source.cluster.name}' has no database '${source.database}'`,
        fix: `its databases are: ${[...catalog.databases.keys()].join(", ") || "(none)"}`,
      })
    }
    for (const t of catalog.tables.filter((t) => t.ref.database === source.database)) {
      const resolved = yield* resolveLive(source.cluster, t.ref, undefined, req.target.cluster)
      results.push(yield* cloneResolved(resolved, { target: targetOf(t.ref.table), ...common }, { record: true }))
    }
  } else {
    const source = req.source
    const operation = `clone of database ${source.database} into ${req.target.cluster.name}.${req.target.database}`
    yield* withBackup(source.repo, source, { kind: "clone", operation, dryRun: req.dryRun }, (picked) =>
      Effect.gen(function* () {
        const { db, tables } = yield* readBackupDatabase(picked.repo, picked.manifest, source.database)
        if (db === undefined) {
          const names = yield* backupDatabaseNames(picked.repo, picked.manifest)
          return yield* new CloneError({
            reason: "DatabaseNotFound",
            detail: `backup ${picked.backupId} has no database '${source.database}'`,
            fix: `its databases are: ${names.join(", ") || "(none)"}`,
          })
        }
        for (const t of tables) {
          const resolved = yield* resolveFromBackup(picked, t.ref)
          results.push(yield* cloneResolved(resolved, { target: targetOf(t.ref.table), ...common }, { record: true }))
        }
      }),
    )
  }
  if (!req.dryRun) yield* ensureDatabase(req.target.cluster, req.target.database)
  return results
})
