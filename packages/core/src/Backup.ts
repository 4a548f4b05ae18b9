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
 *
 * # Resume
 * Progress is checkpointed into the repository (Checkpoint.ts): right after
 * the meta snapshot is stored (which also reserves the backup id), then every
 * few seconds or few hundred MiB. A backup that finds an unfinished
 * checkpoint of the same cluster that no live process holds resumes it: it
 * keeps the checkpoint's backup id, start time, parent and meta snapshot,
 * takes the finished files' records from the checkpoint without reading them,
 * continues partly read files after their last stored block, and lists the
 * rest of the storage afresh. Its manifest is the one an uninterrupted run
 * that took the whole time would have written (same pages, same blocks).
 */
import { hostname } from "node:os"
import { create } from "@bufbuild/protobuf"
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { BlobStore, ObjectInfo } from "./BlobStore.ts"
import { BlobStoreError } from "./BlobStore.ts"
import {
  backupLeases,
  checkpointKey,
  encodeCheckpoint,
  holderAlive,
  holderText,
  isCommitted,
  leasesOf,
  listCheckpointIds,
  markLeaseEnded,
  readCheckpoint,
} from "./Checkpoint.ts"
import { hashBlock } from "./Hash.ts"
import { acquireSharedLease, BACKUP_LEASE, type Lease, type LeaseRecord, waitWhileSweeping } from "./Lease.ts"
import { findLatestBackup } from "./List.ts"
import {
  type BackupFile,
  type BackupManifest,
  BackupManifestSchema,
  BackupType,
  backupIdOf,
  backupIdTime,
  FORMAT_VERSION,
  lastModifiedMillis,
  makeBackupFile,
  type PageRef,
  READER_VERSION,
} from "./Manifest.ts"
import type { MetaStore } from "./MetaStore.ts"
import {
  comparePaths as comparePathsBytewise,
  makeFilePageWriter,
  makeMetaPageWriter,
  makeParentCursor,
  readFilePage,
  storeFilePage,
} from "./Pages.ts"
import {
  BLOCK_SIZE,
  commitManifest,
  hasBlock,
  manifestKey,
  putBlock,
  type Repository,
  readManifest,
  sweepRepositoryLeftovers,
} from "./Repository.ts"
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
  /** A checkpoint is written at least this often while there is progress (default 5 s). */
  readonly checkpointIntervalMs?: number
  /** ... and after this many bytes of files were read since the last one (default 256 MiB; files reused from the parent do not count). */
  readonly checkpointBytes?: number
  /** Called once, before any file work, when this run resumes an unfinished backup. */
  readonly onResume?: (resume: ResumeInfo) => void
  /** Called with remarks a user should see (an unfinished backup left alone because it is running...). */
  readonly onNotice?: (text: string) => void
}

/** What a resumed backup continues from. */
export interface ResumeInfo {
  readonly backup_id: string
  readonly cluster: string
  readonly started_at: string
  readonly checkpointed_at: string
  /** Files finished before (their records come from the checkpoint). */
  readonly files_done: number
  readonly bytes_done: number
  /** Files that were partly read (continued after their last stored block). */
  readonly files_partial: number
  readonly meta_revision: number
  /** Times this backup was resumed before this run. */
  readonly resumes: number
}

export interface BackupResult {
  readonly backup_id: string
  readonly manifest: string
  readonly parent_backup_id: string | null
  readonly backup_type: "full" | "incremental"
  readonly files_total: number
  readonly bytes_total: number
  /** Files whose records were reused from the parent (over all runs of this backup). */
  readonly files_reused: number
  /** Files this run read (in whole or in part). */
  readonly files_read: number
  readonly bytes_read: number
  /** Blocks and bytes this run uploaded. */
  readonly blocks_uploaded: number
  readonly bytes_uploaded: number
  readonly blocks_deduplicated: number
  readonly meta_keys: number
  readonly meta_revision: number
  readonly duration_ms: number
  /** Whether this run continued an unfinished backup (then `resumed_from` is its id). */
  readonly resumed: boolean
  readonly resumed_from: string | null
  /** Files whose records this run took from the checkpoint without reading them. */
  readonly files_resumed: number
  /** Checkpoints this run wrote. */
  readonly checkpoints_written: number
  /** Temp files that killed writers had left in the repository, removed by this run (fs repositories). */
  readonly temp_files_removed: number
}

const PERMIT_BYTES = 64 * 1024
/** Listed files matched against the parent and then read as one batch (two batches in flight). */
const FILE_BATCH = 256
/** Blocks up to this size are put create-only without a HEAD first (one request instead of two). */
const PUT_WITHOUT_HEAD = 512 * 1024
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 5_000
export const DEFAULT_CHECKPOINT_BYTES = 256 * 1024 * 1024

const sameFile = (info: ObjectInfo, record: BackupFile): boolean =>
  Number(record.size) === info.size && record.etag === info.etag && lastModifiedMillis(record) === info.lastModified

/**
 * Backs `cluster` up into `repo`, under a shared `backup` lease (taken first,
 * then waiting while a vacuum sweeps: the GC protocol of
 * docs/repository-format.md §10), checked again before the commit. Resumes
 * the newest unfinished backup of the same cluster that no live process holds.
 */
/** How long a finished backup still waits for its sweep of temp files (see `backup`). */
const SWEEP_GRACE_MS = 250

export const backup = (cluster: Cluster, repo: Repository, options: BackupOptions = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      const lease = yield* acquireSharedLease(repo.store, BACKUP_LEASE, {
        operation: `backup of cluster ${cluster.name}`,
        details: { cluster: cluster.name },
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => markLeaseEnded(lease.key)))
      // Temp files of killed writers (fs) go while the backup runs; they are never referenced, so this is outside
      // the GC protocol. The sweep only uses the backup's own time: a backup that ends first does not wait for
      // it (a walk of a repository of millions of blocks) and stops it; the next backup or a vacuum goes on.
      const sweep = yield* Effect.forkScoped(sweepRepositoryLeftovers(repo))
      yield* waitWhileSweeping(repo.store, options.onVacuumWait ? { onWait: options.onVacuumWait } : {})
      const result = yield* backupUnderLease(cluster, repo, options, lease)
      const removed = yield* Fiber.join(sweep).pipe(
        Effect.timeoutOption(SWEEP_GRACE_MS),
        Effect.map((o) => (o._tag === "Some" ? o.value : 0)),
      )
      return { ...result, temp_files_removed: removed } satisfies BackupResult
    }),
  )

const exists = (store: BlobStore, key: string) =>
  store.head(key).pipe(
    Effect.as(true),
    Effect.catchIf(
      (e) => e.reason === "NotFound",
      () => Effect.succeed(false),
    ),
  )

const iso = (ms: number) => new Date(ms).toISOString()

/**
 * The unfinished backup of `cluster` to resume, if any: the newest checkpoint
 * of the cluster that no live process holds, claimed by writing its id into
 * our lease (of two processes claiming at once, the one whose lease is older
 * keeps it).
 */
const findResumable = Effect.fnUntraced(function* (cluster: Cluster, repo: Repository, lease: Lease, notice: (text: string) => void) {
  const ids = yield* listCheckpointIds(repo.store)
  if (ids.length === 0) return undefined
  const leases = yield* backupLeases(repo.store)
  for (const id of [...ids].reverse()) {
    const checkpoint = yield* readCheckpoint(repo, id).pipe(
      Effect.catchTag("ManifestError", (e) =>
        Effect.sync(() => {
          notice(
            `the checkpoint of incomplete backup ${id} cannot be read (${e.detail}); left alone: abandon it with \`bendsave abandon ${repo.location} ${id}\``,
          )
          return undefined
        }),
      ),
    )
    if (checkpoint === undefined || checkpoint.backupMeta?.clusterName !== cluster.name) continue
    const holders = leasesOf(leases, id, lease.key)
    const alive = holders.find(holderAlive)
    if (alive !== undefined) {
      notice(
        `backup ${id} of cluster ${cluster.name} is running now (${holderText(alive)}), so this run does not resume it and makes a backup of its own; ` +
          `if that process is gone, its lease expires at ${alive.record.expires_at} and the next run resumes it`,
      )
      continue
    }
    if (yield* isCommitted(repo, checkpoint)) {
      // Killed between its commit and the deletion of its checkpoint: only a leftover.
      yield* repo.store.delete(checkpointKey(id))
      continue
    }
    const meta = checkpoint.metasrv
    if (meta?.driver !== cluster.meta.driver || meta?.prefix !== cluster.meta.prefix) {
      notice(
        `incomplete backup ${id} of cluster ${cluster.name} snapshotted the meta service ${meta?.driver} under '${meta?.prefix}', ` +
          `but the cluster file now names ${cluster.meta.driver} under '${cluster.meta.prefix}'; it is left alone (abandon it with \`bendsave abandon ${repo.location} ${id}\`)`,
      )
      continue
    }
    // Leases of processes killed on this host would only hold vacuum back.
    const dead = holders.filter((l) => l.live && !holderAlive(l)).map((l) => l.key)
    if (dead.length > 0) yield* repo.store.deleteMany(dead).pipe(Effect.ignore)
    yield* lease.update({ backup_id: id, resumed: "true" })
    const mine = yield* lease.current
    const rivals = leasesOf(yield* backupLeases(repo.store), id, lease.key).filter(holderAlive)
    if (rivals.some((r) => r.record.acquired_at < mine.acquired_at || (r.record.acquired_at === mine.acquired_at && r.key < lease.key))) {
      notice(`another process started resuming backup ${id} at the same moment; this run makes a backup of its own`)
      yield* lease.update({ backup_id: "", resumed: "" })
      continue
    }
    return checkpoint
  }
  return undefined
})

interface InFlight {
  readonly info: ObjectInfo
  readonly blocks: Array<{ id: string; size: number } | undefined>
}

const backupUnderLease = Effect.fn("Backup.run")(function* (cluster: Cluster, repo: Repository, options: BackupOptions, lease: Lease) {
  const now = options.now ?? Date.now
  const runStartedAt = now()
  const report = options.onProgress ?? (() => {})
  const notice = options.onNotice ?? (() => {})
  const checkpointInterval = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS
  const checkpointBytes = options.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES

  // 0. An unfinished backup of this cluster to continue?
  const resumed = yield* findResumable(cluster, repo, lease, notice)
  const state = resumed?.checkpoint
  const startedAt = resumed?.backupMeta?.startedAt ? timestampMs(resumed.backupMeta.startedAt) : runStartedAt

  // The parent: the resumed backup's own (so the result is what the first run would have made).
  let parentId: string
  let parent: { readonly backupId: string; readonly time: number | undefined; readonly manifest: BackupManifest } | undefined
  if (resumed !== undefined) {
    parentId = resumed.backupMeta?.parentBackupId ?? ""
    parent =
      parentId === ""
        ? undefined
        : yield* readManifest(repo, parentId).pipe(
            Effect.map((manifest) => ({ backupId: parentId, time: backupIdTime(parentId), manifest })),
            Effect.catchTag("ManifestError", (e) =>
              Effect.sync(() => {
                notice(`the parent backup ${parentId} is gone (${e.detail}): the remaining files are read in full`)
                return undefined
              }),
            ),
          )
  } else {
    parent = yield* findLatestBackup(repo, cluster.name)
    parentId = parent?.backupId ?? ""
  }
  const backupType = parentId === "" ? BackupType.FULL : BackupType.INCREMENTAL

  // Finished files (in the page writer) and work counters; a resumed backup starts from its checkpoint's.
  const totals = resumed?.backupMeta?.totals
  const done = {
    files: Number(totals?.files ?? 0n),
    bytes: Number(totals?.bytes ?? 0n),
    blocks: Number(totals?.blocks ?? 0n),
    reused: Number(totals?.filesReused ?? 0n),
  }
  const uploadedBefore = { blocks: Number(totals?.blocksUploaded ?? 0n), bytes: Number(totals?.bytesUploaded ?? 0n) }
  const readBefore = { files: Number(state?.filesRead ?? 0n), bytes: Number(state?.bytesRead ?? 0n) }
  const counters = {
    filesRead: 0,
    bytesRead: 0,
    filesResumed: 0,
    bytesDone: done.bytes,
    filesDone: done.files,
    blocksUploaded: 0,
    bytesUploaded: 0,
    blocksDeduplicated: 0,
    checkpoints: 0,
  }

  // 1. Meta snapshot at one revision (a resumed backup keeps the one of its first start).
  let meta: { revision: bigint; keyCount: bigint; bytes: bigint; pages: ReadonlyArray<PageRef> }
  if (resumed?.metasrv !== undefined) {
    const m = resumed.metasrv
    meta = { revision: m.revision, keyCount: m.keyCount, bytes: m.bytes, pages: m.pages }
  } else {
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
    meta = { revision: BigInt(snapshot.revision), keyCount: BigInt(metaKeys), bytes: BigInt(metaBytes), pages: yield* metaWriter.finish }
  }

  let sequence = Number(state?.sequence ?? 0n)
  const resumes = (state?.resumes ?? 0) + (resumed !== undefined ? 1 : 0)
  const writer = `${hostname()} pid ${process.pid}`

  /** The manifest (or, with `checkpoint`, the checkpoint) of this backup; `finished` counts the files in `filePages`. */
  const build = (
    backupId: string,
    filePages: ReadonlyArray<PageRef>,
    finished: { readonly files: number; readonly bytes: number; readonly blocks: number; readonly reused: number },
    checkpoint:
      | { resumeAfter: string; lastPageOpen: boolean; partialFiles: ReadonlyArray<BackupFile>; filesRead: number; bytesRead: number }
      | undefined,
    completedAt?: number,
  ): BackupManifest =>
    create(BackupManifestSchema, {
      formatVersion: FORMAT_VERSION,
      minReaderVersion: READER_VERSION,
      requiredFeatures: [],
      backupMeta: {
        backupId,
        backupType,
        parentBackupId: parentId,
        toolVersion: TOOL_VERSION,
        clusterName: cluster.name,
        startedAt: timestampFromMs(startedAt),
        ...(completedAt !== undefined ? { completedAt: timestampFromMs(completedAt) } : {}),
        metaDriver: cluster.meta.driver,
        storageDriver: cluster.storage.driver,
        labels: options.labels ?? resumed?.backupMeta?.labels ?? {},
        totals: {
          files: BigInt(finished.files),
          bytes: BigInt(finished.bytes),
          blocks: BigInt(finished.blocks),
          metaKeys: meta.keyCount,
          filesReused: BigInt(finished.reused),
          blocksUploaded: BigInt(uploadedBefore.blocks + counters.blocksUploaded),
          bytesUploaded: BigInt(uploadedBefore.bytes + counters.bytesUploaded),
        },
      },
      metasrv: {
        revision: meta.revision,
        driver: cluster.meta.driver,
        prefix: cluster.meta.prefix,
        keyCount: meta.keyCount,
        bytes: meta.bytes,
        pages: [...meta.pages],
      },
      storage: {
        fileCount: BigInt(finished.files),
        totalBytes: BigInt(finished.bytes),
        pages: [...filePages],
      },
      ...(checkpoint !== undefined
        ? {
            checkpoint: {
              writtenAt: timestampFromMs(now()),
              sequence: BigInt(sequence),
              resumeAfter: checkpoint.resumeAfter,
              lastPageOpen: checkpoint.lastPageOpen,
              partialFiles: [...checkpoint.partialFiles],
              filesRead: BigInt(checkpoint.filesRead),
              bytesRead: BigInt(checkpoint.bytesRead),
              resumes,
              writer,
            },
          }
        : {}),
    })

  // The backup id: a resumed backup keeps its own; a new one reserves the start second (or the
  // next free one) by creating its first checkpoint create-only, which holds the meta snapshot.
  let backupId: string
  if (resumed !== undefined) {
    backupId = resumed.backupMeta?.backupId ?? ""
    options.onResume?.({
      backup_id: backupId,
      cluster: cluster.name,
      started_at: iso(startedAt),
      checkpointed_at: state?.writtenAt ? iso(timestampMs(state.writtenAt)) : "",
      files_done: done.files,
      bytes_done: done.bytes,
      files_partial: state?.partialFiles.length ?? 0,
      meta_revision: Number(meta.revision),
      resumes: state?.resumes ?? 0,
    })
  } else {
    let idTime = Math.floor(startedAt / 1000) * 1000
    if (parent?.time !== undefined) idTime = Math.max(idTime, parent.time + 1000)
    for (let attempt = 0; ; attempt++) {
      backupId = backupIdOf(idTime)
      yield* lease.update({ backup_id: backupId, parent: parentId })
      if (!(yield* exists(repo.store, manifestKey(backupId)))) {
        sequence = 1
        const first = build(backupId, [], done, { resumeAfter: "", lastPageOpen: false, partialFiles: [], filesRead: 0, bytesRead: 0 })
        const reserved = yield* repo.store.put(checkpointKey(backupId), encodeCheckpoint(first), { ifNotExists: true, control: true }).pipe(
          Effect.as(true),
          Effect.catchIf(
            (e) => e.reason === "AlreadyExists",
            () => Effect.succeed(false),
          ),
        )
        if (reserved) {
          counters.checkpoints++
          break
        }
      }
      if (attempt >= 600) {
        return yield* new BlobStoreError({
          reason: "AlreadyExists",
          driver: repo.store.driver,
          operation: "backup",
          key: checkpointKey(backupId),
          detail: "no free backup id within 10 minutes of the start time (every one has a manifest or checkpoint)",
        })
      }
      idTime += 1000
    }
  }
  const key = checkpointKey(backupId)

  // 2. Optional count, for progress totals.
  const resumeAfter = state?.resumeAfter ? state.resumeAfter : undefined
  const partialOf = new Map((state?.partialFiles ?? []).map((f) => [f.path, f]))
  const listing = cluster.storage.list("").pipe(Stream.filter((info) => !info.key.startsWith(RESERVED_STORAGE_PREFIX)))
  let fileTotals: { files: number; bytes: number } | undefined
  if (options.onProgress !== undefined) {
    report({ phase: "scan", filesDone: counters.filesDone, bytesDone: counters.bytesDone })
    fileTotals = yield* listing.pipe(
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
    filesTotal: fileTotals?.files,
    bytesTotal: fileTotals?.bytes,
  })

  // 3. Files.
  const budget = Math.max(Math.ceil((options.byteBudget ?? 128 * 1024 * 1024) / PERMIT_BYTES), BLOCK_SIZE / PERMIT_BYTES)
  const semaphore = yield* Semaphore.make(budget)
  const known = new Set<string>()
  const cursor = makeParentCursor(repo, parent?.manifest.storage?.pages ?? [])
  // A resumed backup's writer continues from the checkpoint: its pages, and its open page's records.
  const resumedPages = resumed?.storage?.pages ?? []
  const openPage = state?.lastPageOpen === true && resumedPages.length > 0 ? resumedPages[resumedPages.length - 1] : undefined
  const fileWriter = makeFilePageWriter(repo, cursor.samePage, {
    pages: openPage === undefined ? resumedPages : resumedPages.slice(0, -1),
    open: openPage === undefined ? [] : yield* readFilePage(repo, openPage),
  })
  /** Serializes the writer's steps with the checkpoint's snapshot of it. */
  const writerLock = yield* Semaphore.make(1)
  /** Files being read, with the blocks stored so far (a checkpoint records their stored prefix). */
  const inFlight = new Map<string, InFlight>()
  let lastPath = resumeAfter ?? ""
  let changes = 0
  let writerBroken = false

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
                fix: "run the backup again: it starts afresh from a new meta snapshot (blocks already stored are not uploaded again); if the cluster's garbage collection is running, pause it or back up a quiet cluster",
              }),
            ),
        ),
      )
      if (bytes.length !== length) {
        return yield* new SourceChangedError({
          path: info.key,
          detail: `changed size while the backup was reading it (expected ${info.size} bytes)`,
          fix: "run the backup again (it starts afresh from a new meta snapshot); files must not be rewritten in place while a backup runs",
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
      changes++
      report(progress())
      return { id, size: length }
    }).pipe(Semaphore.withPermits(semaphore, Math.max(1, Math.ceil(length / PERMIT_BYTES))))
  })

  /** The blocks of a checkpoint's partly read file that are still stored (a prefix), when the source is unchanged. */
  const partialPrefix = Effect.fnUntraced(function* (info: ObjectInfo) {
    const partial = partialOf.get(info.key)
    if (partial === undefined || !sameFile(info, partial)) return []
    const present = yield* Effect.forEach(partial.blocks, (b) => hasBlock(repo, b.blockId), { concurrency: 8 })
    const stored = present.indexOf(false)
    return partial.blocks.slice(0, stored < 0 ? partial.blocks.length : stored).map((b) => ({ id: b.blockId, size: Number(b.blockSize) }))
  })

  const readFile = Effect.fnUntraced(function* (info: ObjectInfo) {
    const blockCount = Math.ceil(info.size / BLOCK_SIZE)
    const entry: InFlight = { info, blocks: new Array(blockCount).fill(undefined) }
    const prefix = yield* partialPrefix(info)
    prefix.forEach((b, i) => {
      entry.blocks[i] = b
      counters.bytesDone += b.size
    })
    inFlight.set(info.key, entry)
    const todo: Array<number> = []
    for (let i = prefix.length; i < blockCount; i++) todo.push(i)
    if (todo.length > 0 || prefix.length === 0) counters.filesRead++
    else counters.filesResumed++
    yield* Effect.forEach(
      todo,
      (i) =>
        Effect.map(storeBlock(info, i), (block) => {
          entry.blocks[i] = block
        }),
      { concurrency: 4, discard: true },
    )
    return makeBackupFile({
      path: info.key,
      size: info.size,
      etag: info.etag,
      lastModified: info.lastModified,
      blocks: entry.blocks as Array<{ id: string; size: number }>,
    })
  })

  // Files go through in the listing's batches: matching against the parent is sequential
  // (the cursor moves forward only), reading changed files is concurrent, and unchanged
  // files cost no more than a comparison.
  const fileConcurrency = options.fileConcurrency ?? 16
  const processBatch = (batch: ReadonlyArray<{ info: ObjectInfo; previous: BackupFile | undefined }>) => {
    const files: Array<BackupFile | undefined> = new Array(batch.length)
    const toRead: Array<number> = []
    let reused = 0
    for (let i = 0; i < batch.length; i++) {
      const { info, previous } = batch[i]
      if (previous !== undefined && sameFile(info, previous)) {
        files[i] = previous
        reused++
        counters.filesDone++
        counters.bytesDone += info.size
      } else {
        toRead.push(i)
      }
    }
    report(progress())
    const result = { files: files as Array<BackupFile>, reused }
    if (toRead.length === 0) return Effect.succeed(result)
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
    ).pipe(Effect.as(result))
  }

  /** Hands finished files (in path order) to the page writer. */
  const accept = ({ files, reused }: { files: ReadonlyArray<BackupFile>; reused: number }) =>
    Semaphore.withPermit(
      writerLock,
      Effect.suspend(() => {
        for (const file of files) {
          inFlight.delete(file.path)
          done.files++
          done.bytes += Number(file.size)
          done.blocks += file.blocks.length
        }
        done.reused += reused
        if (files.length > 0) lastPath = files[files.length - 1].path
        changes++
        return fileWriter.addAll(files).pipe(
          // A page that failed to store leaves the writer short of what the counters say: no more checkpoints.
          Effect.tapError(() =>
            Effect.sync(() => {
              writerBroken = true
            }),
          ),
        )
      }),
    )

  // Checkpoints: written by one fiber, from a consistent view of the writer and the files in flight.
  const checkpointLock = yield* Semaphore.make(1)
  let stopped = false
  // Bytes read from the source since the last checkpoint (files reused from the parent cost a rerun nothing).
  let lastCheckpoint = { at: Date.now(), bytes: counters.bytesRead, changes }
  const writeCheckpoint = Semaphore.withPermit(
    checkpointLock,
    Effect.gen(function* () {
      if (stopped || writerBroken) return
      const view = yield* Semaphore.withPermit(
        writerLock,
        Effect.sync(() => ({
          writer: fileWriter.state(),
          finished: { ...done },
          resumeAfter: lastPath,
          changes,
          bytes: counters.bytesRead,
          partial: [...inFlight.values()].flatMap(({ info, blocks }) => {
            const stored = blocks.indexOf(undefined)
            const prefix = (stored < 0 ? blocks : blocks.slice(0, stored)) as Array<{ id: string; size: number }>
            return prefix.length === 0
              ? []
              : [makeBackupFile({ path: info.key, size: info.size, etag: info.etag, lastModified: info.lastModified, blocks: prefix })]
          }),
        })),
      )
      let pages = view.writer.pages
      if (view.writer.open.length > 0) pages = [...pages, yield* storeFilePage(repo, view.writer.open)]
      sequence++
      const record = build(backupId, pages, view.finished, {
        resumeAfter: view.resumeAfter,
        lastPageOpen: view.writer.open.length > 0,
        partialFiles: view.partial,
        filesRead: readBefore.files + counters.filesRead,
        bytesRead: readBefore.bytes + counters.bytesRead,
      })
      yield* repo.store.put(key, encodeCheckpoint(record), { control: true })
      counters.checkpoints++
      lastCheckpoint = { at: Date.now(), bytes: view.bytes, changes: view.changes }
    }),
  )
  const due = () =>
    changes !== lastCheckpoint.changes &&
    (Date.now() - lastCheckpoint.at >= checkpointInterval || counters.bytesRead - lastCheckpoint.bytes >= checkpointBytes)
  const ticker = yield* Effect.forkScoped(
    Effect.forever(
      Effect.sleep(Math.max(10, Math.min(250, checkpointInterval / 4))).pipe(
        Effect.andThen(Effect.suspend(() => (due() ? Effect.ignore(writeCheckpoint) : Effect.void))),
      ),
    ),
  )
  const stopCheckpoints = Semaphore.withPermit(
    checkpointLock,
    Effect.sync(() => {
      stopped = true
    }),
  ).pipe(Effect.andThen(Fiber.interrupt(ticker)))

  const files = Effect.gen(function* () {
    yield* listing.pipe(
      Stream.filter((info) => resumeAfter === undefined || comparePathsBytewise(info.key, resumeAfter) > 0),
      // Batches of FILE_BATCH whatever chunks the driver's listing comes in (one key per chunk
      // would leave a single file per batch and only two files in flight).
      Stream.rechunk(FILE_BATCH),
      Stream.chunks,
      Stream.mapEffect((chunk) => Effect.forEach(chunk, (info) => Effect.map(cursor.find(info.key), (previous) => ({ info, previous })))),
      Stream.mapEffect(processBatch, { concurrency: 2 }),
      Stream.runForEach(accept),
    )
    return yield* Semaphore.withPermit(writerLock, fileWriter.finish)
  }).pipe(
    Effect.tapError((error) =>
      error instanceof SourceChangedError
        ? // The storage moved on from the meta snapshot: a rerun must start afresh, not resume it.
          stopCheckpoints.pipe(Effect.andThen(repo.store.delete(key)), Effect.ignore)
        : // Keep what was done for the rerun (best effort: the store may be what failed).
          writeCheckpoint.pipe(Effect.andThen(stopCheckpoints), Effect.ignore),
    ),
  )
  const filePages = yield* files
  yield* stopCheckpoints

  // 4. Commit (only while our lease is held: no sweep can have run beside us).
  report({ ...progress(), phase: "commit" })
  yield* lease.check
  let finalId = backupId
  for (let attempt = 0; ; attempt++) {
    const manifest = build(finalId, filePages, done, undefined, now())
    const committed = yield* commitManifest(repo, manifest).pipe(
      Effect.as(true),
      Effect.catchIf(
        (e: BlobStoreError) => e.reason === "AlreadyExists" && attempt < 600,
        () => Effect.succeed(false),
      ),
    )
    if (committed) break
    // Another process resuming this same backup committed it first: the same backup.
    if (finalId === backupId && (yield* isCommitted(repo, manifest))) break
    // A foreign manifest holds the id: take the next second with neither manifest nor checkpoint.
    let idTime = (backupIdTime(finalId) ?? startedAt) + 1000
    while ((yield* exists(repo.store, manifestKey(backupIdOf(idTime)))) || (yield* exists(repo.store, checkpointKey(backupIdOf(idTime))))) {
      idTime += 1000
    }
    finalId = backupIdOf(idTime)
  }
  yield* repo.store.delete(key).pipe(Effect.ignore)

  const result: Omit<BackupResult, "temp_files_removed"> = {
    backup_id: finalId,
    manifest: manifestLocation(repo, finalId),
    parent_backup_id: parentId === "" ? null : parentId,
    backup_type: backupType === BackupType.FULL ? "full" : "incremental",
    files_total: done.files,
    bytes_total: done.bytes,
    files_reused: done.reused,
    files_read: counters.filesRead,
    bytes_read: counters.bytesRead,
    blocks_uploaded: counters.blocksUploaded,
    bytes_uploaded: counters.bytesUploaded,
    blocks_deduplicated: counters.blocksDeduplicated,
    meta_keys: Number(meta.keyCount),
    meta_revision: Number(meta.revision),
    duration_ms: now() - runStartedAt,
    resumed: resumed !== undefined,
    resumed_from: resumed === undefined ? null : backupId,
    files_resumed: (resumed === undefined ? 0 : Number(totals?.files ?? 0n)) + counters.filesResumed,
    checkpoints_written: counters.checkpoints,
  }
  return result
})

/** Where a manifest is, in a form `restore --from` accepts (a path for fs repositories). */
export const manifestLocation = (repo: Repository, backupId: string): string => {
  const key = manifestKey(backupId)
  return repo.location.startsWith("fs://") ? `${repo.location.slice("fs://".length)}/${key}` : `${repo.location}/${key}`
}

export { BlobStoreError }
