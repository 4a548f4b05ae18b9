/**
 * BackupSource: a table as it was inside a backup. The catalog entries come
 * from the backup's meta pages, the snapshot object and the data files from
 * its file pages and blocks (every block re-hashed on read). Also the pins
 * (`pins/<backup-id>/<uuid>.json`) that keep a backup from being vacuumed
 * while clones made from it exist (docs/repository-format.md, "Pins").
 */
import {
  type BackupFile,
  type BackupManifest,
  type BlobStoreError,
  comparePaths,
  findBackupAt,
  getBlock,
  type IntegrityError,
  listBackupIds,
  type ManifestError,
  makeParentCursor,
  PIN_PREFIX,
  type Repository,
  readManifest,
  streamMetaEntries,
  waitWhileExpiring,
  withSharedLease,
} from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { CloneError } from "./CloneError.ts"
import {
  type CatalogTable,
  DATABASE_PREFIX,
  type DatabaseEntry,
  databaseKey,
  jsonBytes,
  newId,
  parseDatabaseEntry,
  parseSnapshot,
  parseTableEntry,
  TABLE_PREFIX,
  textOf,
} from "./Layout.ts"

/** The repository pin prefix; core Pins.ts owns the layout. */
export { PIN_PREFIX }

/** The content of a pin object. */
export interface Pin {
  readonly backup_id: string
  readonly reason: "clone"
  /** Name of the cluster the clone was made in. */
  readonly cluster: string
  /** `db.table` of the clone. */
  readonly table: string
  /** `db.table` of the source table inside the backup. */
  readonly source: string
  readonly created_at: string
}

/** Picks the backup id: `backupId`, else the newest at or before `at`, else the latest. */
export const pickBackupId = Effect.fnUntraced(function* (repo: Repository, options: { readonly backupId?: string; readonly at?: Date }) {
  const ids = yield* listBackupIds(repo)
  let backupId: string | undefined
  if (options.backupId !== undefined) {
    if (!ids.includes(options.backupId)) {
      return yield* new CloneError({
        reason: "VersionNotFound",
        detail: `repository ${repo.location} has no backup '${options.backupId}'`,
        fix: `run SHOW BACKUPS IN '<repo>' (or \`bendsave list\`) to see its backups${ids.length > 0 ? `; the latest is ${ids[ids.length - 1]}` : ""}`,
      })
    }
    backupId = options.backupId
  } else if (options.at !== undefined) {
    if (Number.isNaN(options.at.getTime())) {
      return yield* new CloneError({
        reason: "VersionNotFound",
        detail: "the timestamp is not a valid date",
        fix: "write it as ISO 8601, e.g. '2025-01-14 20:15:00Z'",
      })
    }
    backupId = yield* findBackupAt(repo, options.at.getTime())
    if (backupId === undefined) {
      return yield* new CloneError({
        reason: "VersionNotFound",
        detail: `repository ${repo.location} has no backup at or before ${options.at.toISOString()}`,
        fix: ids.length > 0 ? `the oldest backup is ${ids[0]}; pick a later timestamp` : "the repository has no backups yet",
      })
    }
  } else {
    backupId = ids[ids.length - 1]
    if (backupId === undefined) {
      return yield* new CloneError({
        reason: "VersionNotFound",
        detail: `repository ${repo.location} has no backups`,
        fix: "back the cluster up first (BACKUP CLUSTER ... TO '<repo>'), or check the repository URL",
      })
    }
  }
  return backupId
})

/** A backup picked and its manifest read. */
export interface PickedBackup {
  readonly repo: Repository
  readonly backupId: string
  readonly manifest: BackupManifest
}

/**
 * Picks a backup and runs `use` on it. Unless `dryRun`, a shared lease of
 * `kind` (`clone`, `restore`) naming the backup (`details.backup_id`) is held
 * meanwhile, so a vacuum keeps that backup (docs/repository-format.md
 * sections 9-11); a dry run writes nothing into the repository.
 */
export const withBackup = <A, E>(
  repo: Repository,
  options: { readonly backupId?: string; readonly at?: Date },
  lease: { readonly kind: "clone" | "restore"; readonly operation: string; readonly dryRun: boolean },
  use: (picked: PickedBackup) => Effect.Effect<A, E>,
) =>
  Effect.gen(function* () {
    const backupId = yield* pickBackupId(repo, options)
    const run = Effect.flatMap(readManifest(repo, backupId), (manifest) => use({ repo, backupId, manifest }))
    if (lease.dryRun) return yield* run
    return yield* withSharedLease(repo.store, lease.kind, { operation: lease.operation, details: { backup_id: backupId } }, () => run)
  })

/** The catalog of a backup, restricted to one database: its entry and its tables (key order). */
export const readBackupDatabase = Effect.fnUntraced(function* (
  repo: Repository,
  manifest: BackupManifest,
  database: string,
  table?: string,
) {
  const dbKey = databaseKey(database)
  const tablePrefix = `${TABLE_PREFIX}${database}/`
  let db: { raw: string; entry: DatabaseEntry } | undefined
  const tables: Array<CatalogTable> = []
  yield* streamMetaEntries(repo, manifest.metasrv?.pages ?? []).pipe(
    Stream.runForEach((e) =>
      Effect.suspend(() => {
        const key = textOf(e.key)
        if (key === dbKey) {
          const raw = textOf(e.value)
          const entry = parseDatabaseEntry(raw, key)
          if (entry instanceof CloneError) return Effect.fail(entry)
          db = { raw, entry }
        } else if (key.startsWith(tablePrefix)) {
          const name = key.slice(tablePrefix.length)
          if (name.includes("/") || name === "" || (table !== undefined && name !== table)) return Effect.void
          const raw = textOf(e.value)
          const entry = parseTableEntry(raw, key)
          if (entry instanceof CloneError) return Effect.fail(entry)
          tables.push({ ref: { database, table: name }, key, raw, entry })
        }
        return Effect.void
      }),
    ),
  )
  return { db, tables }
})

/** The databases a backup's catalog has (for error messages). */
export const backupDatabaseNames = (repo: Repository, manifest: BackupManifest) =>
  streamMetaEntries(repo, manifest.metasrv?.pages ?? []).pipe(
    Stream.map((e) => textOf(e.key)),
    Stream.filter((k) => k.startsWith(DATABASE_PREFIX)),
    Stream.map((k) => k.slice(DATABASE_PREFIX.length)),
    Stream.runCollect,
    Effect.map((names) => [...names]),
  )

/** The file records of `paths` in a backup (absent paths are missing from the map). */
export const findBackupFiles = Effect.fnUntraced(function* (repo: Repository, manifest: BackupManifest, paths: Iterable<string>) {
  const cursor = makeParentCursor(repo, manifest.storage?.pages ?? [])
  const found = new Map<string, BackupFile>()
  for (const path of [...new Set(paths)].sort(comparePaths)) {
    const file = yield* cursor.find(path)
    if (file !== undefined) found.set(path, file)
  }
  return found
})

/** A backed-up file's bytes as a stream of its blocks (each re-hashed). */
export const backupFileStream = (
  repo: Repository,
  file: BackupFile,
): Stream.Stream<Uint8Array, BlobStoreError | IntegrityError | ManifestError> =>
  Stream.fromIterable(file.blocks).pipe(
    Stream.mapEffect((block) => getBlock(repo, block.blockId, Number(block.blockSize)), { concurrency: 2 }),
  )

/** A backed-up file's whole content (for small objects: snapshot objects). */
export const readBackupFile = (repo: Repository, file: BackupFile) =>
  backupFileStream(repo, file).pipe(
    Stream.runCollect,
    Effect.map((chunks) => Buffer.concat([...chunks])),
  )

/** Reads and checks the snapshot object `path` from a backup. */
export const readBackupSnapshot = Effect.fnUntraced(function* (repo: Repository, manifest: BackupManifest, backupId: string, path: string) {
  const files = yield* findBackupFiles(repo, manifest, [path])
  const file = files.get(path)
  if (file === undefined) {
    return yield* new CloneError({
      reason: "InvalidLayout",
      detail: `backup ${backupId} has the table's catalog entry but not its snapshot object ${path}`,
      fix: "the cluster was not consistent when it was backed up (or the snapshot was garbage-collected); use another backup",
    })
  }
  const snapshot = parseSnapshot(yield* readBackupFile(repo, file), path)
  if (snapshot instanceof CloneError) return yield* snapshot
  return snapshot
})

/**
 * Writes a pin for `backupId` (create-only `pins/<backup-id>/<uuid>.json`),
 * then checks that the backup's manifest is still there (a vacuum may have
 * removed it before the pin existed). Returns the pin's key.
 */
export const writePin = Effect.fnUntraced(function* (repo: Repository, pin: Pin) {
  const key = `${PIN_PREFIX}${pin.backup_id}/${newId()}.json`
  yield* repo.store.put(key, jsonBytes(pin), { ifNotExists: true, control: true })
  // A vacuum that listed pins before ours landed may be deleting manifests: let it finish (§11).
  yield* waitWhileExpiring(repo.store)
  const ids = yield* listBackupIds(repo)
  if (!ids.includes(pin.backup_id)) {
    yield* repo.store.delete(key)
    return yield* new CloneError({
      reason: "VersionNotFound",
      detail: `backup ${pin.backup_id} was removed from ${repo.location} (vacuum) while the clone started`,
      fix: "pick another backup (SHOW BACKUPS IN '<repo>')",
    })
  }
  return key
})

/** Every pin of a repository (or of one backup), with its key. */
export const listPins = Effect.fnUntraced(function* (repo: Repository, backupId?: string) {
  const infos = yield* repo.store.list(backupId === undefined ? PIN_PREFIX : `${PIN_PREFIX}${backupId}/`).pipe(Stream.runCollect)
  const pins: Array<{ readonly key: string; readonly pin: Pin }> = []
  for (const info of infos) {
    if (!info.key.endsWith(".json")) continue
    const bytes = yield* repo.store.get(info.key)
    try {
      pins.push({ key: info.key, pin: JSON.parse(textOf(bytes)) as Pin })
    } catch {
      pins.push({
        key: info.key,
        pin: { backup_id: info.key.split("/")[1] ?? "", reason: "clone", cluster: "", table: "", source: "", created_at: "" },
      })
    }
  }
  return pins
})
