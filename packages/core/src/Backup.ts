/**
 * Backup: the workflow that protects a cluster.
 *
 * 1. Snapshot the meta service at one revision and store it as meta pages.
 * 2. List the storage root in path order and match it against the parent
 *    backup (the newest backup of the same cluster in the repository): a file
 *    whose (path, size, etag, last_modified) equals the parent's record reuses
 *    its block list without being read.
 * 3. Read the other files in 8 MiB blocks, hash them, and upload each block
 *    that the repository does not have yet.
 * 4. Store the file list as pages, then commit the manifest create-only.
 *
 * Memory is bounded: at most BYTE_BUDGET bytes of block data are in flight,
 * and file records go to pages as they complete.
 */
import { create } from "@bufbuild/protobuf"
import { timestampFromMs } from "@bufbuild/protobuf/wkt"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { BlobStore, ObjectInfo } from "./BlobStore.ts"
import { BlobStoreError } from "./BlobStore.ts"
import { hashBlock } from "./Hash.ts"
import { acquireSharedLease, BACKUP_LEASE, type Lease, type LeaseRecord, waitWhileSweeping } from "./Lease.ts"
import { findLatestBackup } from "./List.ts"
import {
  type BackupFile,
  type BackupManifest,
  BackupManifestSchema,
  BackupType,
  backupIdOf,
  FORMAT_VERSION,
  lastModifiedMillis,
  makeBackupFile,
  READER_VERSION,
} from "./Manifest.ts"
import type { MetaStore } from "./MetaStore.ts"
import { makeFilePageWriter, makeMetaPageWriter, makeParentCursor } from "./Pages.ts"
import { BLOCK_SIZE, commitManifest, hasBlock, manifestKey, putBlock, type Repository } from "./Repository.ts"
import { TOOL_VERSION } from "./Version.ts"

/** Storage keys under this prefix belong to bendsave itself and are never backed up. */
export const RESERVED_STORAGE_PREFIX = ".bendsave/"

/** A cluster opened for a workflow: its meta service and storage root. */
export interface Cluster {
  readonly name: string
  readonly meta: MetaStore
  readonly storage: BlobStore
}

/** A source file changed or vanished while it was being backed up. */
export class SourceChangedError extends Schema.TaggedError<SourceChangedError>()("SourceChangedError", {
  path: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `source file '${this.path}' ${this.detail}`
  }
}

export interface BackupProgress {
  readonly phase: "meta" | "scan" | "files" | "commit"
  readonly filesDone: number
  readonly bytesDone: number
  /** Known once the storage was counted (only when a progress listener asked for totals). */
  readonly filesTotal?: number
  readonly bytesTotal?: number
}

export interface BackupOptions {
  /** Called as work proceeds; when set, the storage is counted first so totals (and ETA) are known. */
  readonly onProgress?: (progress: BackupProgress) => void
  /** Files processed at once (default 16). */
  readonly fileConcurrency?: number
  /** Bytes of block data in flight at once (default 128 MiB). */
  readonly byteBudget?: number
  /** The clock, for tests (default Date.now). */
  readonly now?: () => number
  /** Labels recorded in the manifest. */
  readonly labels?: Record<string, string>
  /** Called once if the backup has to wait for a vacuum that is deleting blocks. */
  readonly onVacuumWait?: (vacuum: LeaseRecord) => void
}

export interface BackupResult {
  readonly backup_id: string
  readonly manifest: string
  readonly parent_backup_id: string | null
  readonly backup_type: "full" | "incremental"
  readonly files_total: number
  readonly bytes_total: number
  readonly files_reused: number
  readonly files_read: number
  readonly bytes_read: number
  readonly blocks_uploaded: number
  readonly bytes_uploaded: number
  readonly blocks_deduplicated: number
  readonly meta_keys: number
  readonly meta_revision: number
  readonly duration_ms: number
}

const PERMIT_BYTES = 64 * 1024
/** Blocks up to this size are put create-only without a HEAD first (one request instead of two). */
const PUT_WITHOUT_HEAD = 512 * 1024

const sameFile = (info: ObjectInfo, record: BackupFile): boolean =>
  Number(record.size) === info.size && record.etag === info.etag && lastModifiedMillis(record) === info.lastModified

/**
 * Backs `cluster` up into `repo`, under a shared `backup` lease (taken first,
 * then waiting while a vacuum sweeps: the GC protocol of
 * docs/repository-format.md §10), checked again before the commit.
 */
export const backup = (cluster: Cluster, repo: Repository, options: BackupOptions = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      const lease = yield* acquireSharedLease(repo.store, BACKUP_LEASE, {
        operation: `backup of cluster ${cluster.name}`,
        details: { cluster: cluster.name },
      })
      yield* waitWhileSweeping(repo.store, options.onVacuumWait ? { onWait: options.onVacuumWait } : {})
      return yield* backupUnderLease(cluster, repo, options, lease)
    }),
  )

const backupUnderLease = Effect.fn("Backup.run")(function* (cluster: Cluster, repo: Repository, options: BackupOptions, lease: Lease) {
  const now = options.now ?? Date.now
  const startedAt = now()
  const report = options.onProgress ?? (() => {})
  const counters = {
    filesTotal: 0,
    bytesTotal: 0,
    filesReused: 0,
    filesRead: 0,
    bytesRead: 0,
    bytesDone: 0,
    filesDone: 0,
    blocksUploaded: 0,
    bytesUploaded: 0,
    blocksDeduplicated: 0,
    distinctBlocks: 0,
  }

  const parent = yield* findLatestBackup(repo, cluster.name)

  // 1. Meta snapshot at one revision.
  report({ phase: "meta", filesDone: 0, bytesDone: 0 })
  const snapshot = yield* cluster.meta.snapshot()
  const metaWriter = makeMetaPageWriter(repo)
  let metaKeys = 0
  let metaBytes = 0
  yield* snapshot.entries.pipe(
    Stream.runForEach((entry) => {
      metaKeys++
      metaBytes += entry.key.length + entry.value.length
      return metaWriter.add(entry)
    }),
  )
  const metaPages = yield* metaWriter.finish

  // 2. Optional count, for progress totals.
  const listing = cluster.storage.list("").pipe(Stream.filter((info) => !info.key.startsWith(RESERVED_STORAGE_PREFIX)))
  let totals: { files: number; bytes: number } | undefined
  if (options.onProgress !== undefined) {
    report({ phase: "scan", filesDone: 0, bytesDone: 0 })
    totals = yield* listing.pipe(
      Stream.runFold(
        () => ({ files: 0, bytes: 0 }),
        (acc, info) => ({ files: acc.files + 1, bytes: acc.bytes + info.size }),
      ),
    )
  }
  const progress = (): BackupProgress => ({
    phase: "files",
    filesDone: counters.filesDone,
    bytesDone: counters.bytesDone,
    filesTotal: totals?.files,
    bytesTotal: totals?.bytes,
  })

  // 3. Files.
  const budget = Math.max(Math.ceil((options.byteBudget ?? 128 * 1024 * 1024) / PERMIT_BYTES), BLOCK_SIZE / PERMIT_BYTES)
  const semaphore = yield* Semaphore.make(budget)
  const known = new Set<string>()
  const cursor = makeParentCursor(repo, parent?.manifest.storage?.pages ?? [])
  const fileWriter = makeFilePageWriter(repo, cursor.samePage)

  const storeBlock = Effect.fnUntraced(function* (info: ObjectInfo, index: number) {
    const offset = index * BLOCK_SIZE
    const length = Math.min(BLOCK_SIZE, info.size - offset)
    return yield* Effect.gen(function* () {
      const bytes = yield* cluster.storage.getRange(info.key, offset, length).pipe(
        Effect.catchIf(
          (e: BlobStoreError) => e.reason === "NotFound" || e.reason === "RangeNotSatisfiable",
          () =>
            Effect.fail(
              new SourceChangedError({
                path: info.key,
                detail: "vanished while the backup was reading it (deleted by the cluster?)",
                fix: "run the backup again; if the cluster's garbage collection is running, pause it or back up a quiet cluster",
              }),
            ),
        ),
      )
      if (bytes.length !== length) {
        return yield* new SourceChangedError({
          path: info.key,
          detail: `changed size while the backup was reading it (expected ${info.size} bytes)`,
          fix: "run the backup again; files must not be rewritten in place while a backup runs",
        })
      }
      counters.bytesRead += bytes.length
      const { id, bytes: hashed } = yield* hashBlock(bytes)
      if (known.has(id)) {
        counters.blocksDeduplicated++
      } else if (length > PUT_WITHOUT_HEAD && (yield* hasBlock(repo, id))) {
        // Large blocks are checked first (a HEAD is cheaper than sending them again); a small block
        // goes straight to the create-only put, which says "already there" just as well.
        known.add(id)
        counters.blocksDeduplicated++
      } else if (yield* putBlock(repo, id, hashed)) {
        known.add(id)
        counters.blocksUploaded++
        counters.bytesUploaded += length
      } else {
        known.add(id)
        counters.blocksDeduplicated++
      }
      counters.bytesDone += length
      report(progress())
      return { id, size: length }
    }).pipe(Semaphore.withPermits(semaphore, Math.max(1, Math.ceil(length / PERMIT_BYTES))))
  })

  const readFile = Effect.fnUntraced(function* (info: ObjectInfo) {
    const blockCount = Math.ceil(info.size / BLOCK_SIZE)
    const blocks = yield* Effect.forEach(
      Array.from({ length: blockCount }, (_, i) => i),
      (i) => storeBlock(info, i),
      { concurrency: 4 },
    )
    counters.filesRead++
    return makeBackupFile({ path: info.key, size: info.size, etag: info.etag, lastModified: info.lastModified, blocks })
  })

  // Files go through in the listing's batches: matching against the parent is sequential
  // (the cursor moves forward only), reading changed files is concurrent, and unchanged
  // files cost no more than a comparison.
  const fileConcurrency = options.fileConcurrency ?? 16
  const processBatch = (batch: ReadonlyArray<{ info: ObjectInfo; previous: BackupFile | undefined }>) => {
    const files: Array<BackupFile | undefined> = new Array(batch.length)
    const toRead: Array<number> = []
    for (let i = 0; i < batch.length; i++) {
      const { info, previous } = batch[i]
      counters.filesTotal++
      counters.bytesTotal += info.size
      if (previous !== undefined && sameFile(info, previous)) {
        files[i] = previous
        counters.filesReused++
        counters.filesDone++
        counters.bytesDone += info.size
      } else {
        toRead.push(i)
      }
    }
    report(progress())
    if (toRead.length === 0) return Effect.succeed(files as Array<BackupFile>)
    return Effect.forEach(
      toRead,
      (i) =>
        readFile(batch[i].info).pipe(
          Effect.tap((file) =>
            Effect.sync(() => {
              files[i] = file
              counters.filesDone++
            }),
          ),
        ),
      { concurrency: fileConcurrency, discard: true },
    ).pipe(Effect.as(files as Array<BackupFile>))
  }

  yield* listing.pipe(
    Stream.chunks,
    Stream.mapEffect((chunk) => Effect.forEach(chunk, (info) => Effect.map(cursor.find(info.key), (previous) => ({ info, previous })))),
    Stream.mapEffect(processBatch, { concurrency: 2 }),
    Stream.runForEach((files) => {
      for (const file of files) counters.distinctBlocks += file.blocks.length
      return fileWriter.addAll(files)
    }),
  )
  const filePages = yield* fileWriter.finish

  // 4. Commit.
  report({ ...progress(), phase: "commit" })
  const build = (backupId: string): BackupManifest =>
    create(BackupManifestSchema, {
      formatVersion: FORMAT_VERSION,
      minReaderVersion: READER_VERSION,
      requiredFeatures: [],
      backupMeta: {
        backupId,
        backupType: parent === undefined ? BackupType.FULL : BackupType.INCREMENTAL,
        parentBackupId: parent?.backupId ?? "",
        toolVersion: TOOL_VERSION,
        clusterName: cluster.name,
        startedAt: timestampFromMs(startedAt),
        completedAt: timestampFromMs(now()),
        metaDriver: cluster.meta.driver,
        storageDriver: cluster.storage.driver,
        labels: options.labels ?? {},
        totals: {
          files: BigInt(counters.filesTotal),
          bytes: BigInt(counters.bytesTotal),
          blocks: BigInt(counters.distinctBlocks),
          metaKeys: BigInt(metaKeys),
          filesReused: BigInt(counters.filesReused),
          blocksUploaded: BigInt(counters.blocksUploaded),
          bytesUploaded: BigInt(counters.bytesUploaded),
        },
      },
      metasrv: {
        revision: BigInt(snapshot.revision),
        driver: cluster.meta.driver,
        prefix: cluster.meta.prefix,
        keyCount: BigInt(metaKeys),
        bytes: BigInt(metaBytes),
        pages: metaPages,
      },
      storage: {
        fileCount: BigInt(counters.filesTotal),
        totalBytes: BigInt(counters.bytesTotal),
        pages: filePages,
      },
    })
  // The id is the backup's start time; if another backup took that second, use the next free one.
  let idTime = Math.floor(startedAt / 1000) * 1000
  if (parent !== undefined) idTime = Math.max(idTime, (parent.time ?? 0) + 1000)
  let backupId = backupIdOf(idTime)
  // The GC protocol: commit only while our lease is held (no sweep can have run beside us).
  yield* lease.check
  for (let attempt = 0; ; attempt++) {
    const committed = yield* commitManifest(repo, build(backupId)).pipe(
      Effect.as(true),
      Effect.catchIf(
        (e: BlobStoreError) => e.reason === "AlreadyExists" && attempt < 120,
        () => Effect.succeed(false),
      ),
    )
    if (committed) break
    idTime += 1000
    backupId = backupIdOf(idTime)
  }

  const result: BackupResult = {
    backup_id: backupId,
    manifest: manifestLocation(repo, backupId),
    parent_backup_id: parent?.backupId ?? null,
    backup_type: parent === undefined ? "full" : "incremental",
    files_total: counters.filesTotal,
    bytes_total: counters.bytesTotal,
    files_reused: counters.filesReused,
    files_read: counters.filesRead,
    bytes_read: counters.bytesRead,
    blocks_uploaded: counters.blocksUploaded,
    bytes_uploaded: counters.bytesUploaded,
    blocks_deduplicated: counters.blocksDeduplicated,
    meta_keys: metaKeys,
    meta_revision: snapshot.revision,
    duration_ms: now() - startedAt,
  }
  return result
})

/** Where a manifest is, in a form `restore --from` accepts (a path for fs repositories). */
export const manifestLocation = (repo: Repository, backupId: string): string => {
  const key = manifestKey(backupId)
  return repo.location.startsWith("fs://") ? `${repo.location.slice("fs://".length)}/${key}` : `${repo.location}/${key}`
}

export { BlobStoreError }
