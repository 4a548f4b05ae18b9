/**
 * Restore: puts a backup into a cluster (the one it came from or a new one).
 *
 * 1. Check the backup: every file path is safe (relative, no '..', stays
 *    inside the target root) and every block it needs is in the repository
 *    with the right size. Nothing is written before this passes.
 * 2. Plan: files to write (missing or different), files already identical
 *    (re-hashed in the target, skipped), extra files to delete, and the meta
 *    diff. Without `confirm` the plan is the result and nothing changes.
 * 3. With `confirm`: write each file from re-hashed blocks via the storage
 *    driver's atomic put (temp + rename: no half-written file is ever
 *    visible), delete the extra files, then replace the meta keyspace last.
 *
 * # Resume
 * A restore that was killed is finished by running it again: files it had
 * already written are identical to the backup (re-hashed block by block in
 * the plan) and are skipped (`files_skipped`), and the meta keyspace, which
 * is only replaced after every file is in place, is replaced then. While it
 * writes, a restore holds a shared `restore` lease naming the backup, so a
 * vacuum keeps that backup whatever its retention policy says.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { Cluster } from "./Backup.ts"
import { RESERVED_STORAGE_PREFIX } from "./Backup.ts"
import type { BlobStore, ObjectInfo } from "./BlobStore.ts"
import { BlobStoreError } from "./BlobStore.ts"
import { hashBlock } from "./Hash.ts"
import { acquireSharedLease, type Lease } from "./Lease.ts"
import { type BackupFile, type BackupManifest, ManifestError, type PageRef, unsafePathProblem } from "./Manifest.ts"
import type { MetaDiff } from "./MetaStore.ts"
import { comparePaths, readFilePage, streamMetaEntries } from "./Pages.ts"
import { BLOCK_SIZE, blockKey, getBlock, IntegrityError, type Repository } from "./Repository.ts"

export interface RestoreProgress {
  readonly phase: "check" | "plan" | "files" | "delete" | "meta"
  readonly filesDone: number
  readonly bytesDone: number
  readonly filesTotal?: number
  readonly bytesTotal?: number
}

export interface RestoreOptions {
  /** Apply the plan; without it nothing is changed. */
  readonly confirm?: boolean
  readonly onProgress?: (progress: RestoreProgress) => void
  /** Files written at once (default 16; large files are further limited by `byteBudget`). */
  readonly fileConcurrency?: number
  /** Bytes of block data in flight at once (default 128 MiB). */
  readonly byteBudget?: number
  /** The result of `checkBackup` for this manifest, when the caller already checked it. */
  readonly checked?: CheckedBackup
}

export interface RestorePlan {
  readonly backup_id: string
  readonly dry_run: boolean
  readonly files_total: number
  readonly bytes_total: number
  readonly files_to_write: number
  readonly bytes_to_write: number
  readonly files_identical: number
  readonly files_to_delete: number
  readonly sample_write: ReadonlyArray<string>
  readonly sample_delete: ReadonlyArray<string>
  readonly meta: MetaDiff
}

export interface RestoreResult extends RestorePlan {
  /** Files the target already held exactly (re-hashed), left as they were: e.g. written by an earlier, interrupted run. */
  readonly files_skipped: number
  readonly files_written: number
  readonly bytes_written: number
  readonly files_deleted: number
  readonly duration_ms: number
}

/** A restore that cannot go ahead; nothing was changed. */
export class RestoreError extends Schema.TaggedError<RestoreError>()("RestoreError", {
  reason: Schema.Literals(["UnsafePath", "TargetProblem"]),
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return this.detail
  }
}

const SAMPLE = 5

/**
 * Decoded file pages of a manifest, kept between the passes of one restore (check, plan, write
 * each go through the file list) up to PAGE_CACHE_FILES records in all; past that, pages are
 * read (and re-hashed) again in each pass, so memory stays bounded for any number of files.
 */
const PAGE_CACHE_FILES = 65_536
interface PageCache {
  readonly pages: Map<string, ReadonlyArray<BackupFile>>
  files: number
}
const pageCaches = new WeakMap<BackupManifest, PageCache>()

/** The file records of `manifest`, one page (in path order) at a time. */
const filePagesOf = (repo: Repository, manifest: BackupManifest) => {
  let cache = pageCaches.get(manifest)
  if (cache === undefined) {
    cache = { pages: new Map(), files: 0 }
    pageCaches.set(manifest, cache)
  }
  const pageCache = cache
  return Stream.fromIterable(manifest.storage?.pages ?? []).pipe(
    Stream.mapEffect((ref: PageRef) => {
      const cached = pageCache.pages.get(ref.blockId)
      if (cached !== undefined) return Effect.succeed(cached)
      return Effect.tap(readFilePage(repo, ref), (files) =>
        Effect.sync(() => {
          if (pageCache.files + files.length <= PAGE_CACHE_FILES) {
            pageCache.pages.set(ref.blockId, files)
            pageCache.files += files.length
          }
        }),
      )
    }),
  )
}

/** Whether the target already holds exactly `file` (same size and same block hashes). */
const isIdentical = Effect.fnUntraced(function* (storage: BlobStore, file: BackupFile, existing: ObjectInfo | undefined) {
  if (existing === undefined || existing.size !== Number(file.size)) return false
  for (let i = 0; i < file.blocks.length; i++) {
    const block = file.blocks[i]
    const bytes = yield* storage.getRange(file.path, i * BLOCK_SIZE, Number(block.blockSize))
    if (bytes.length !== Number(block.blockSize) || (yield* hashBlock(bytes)).id !== block.blockId) return false
  }
  return true
})

/**
 * Checks that a backup can be restored before anything is written: every file
 * path is safe (relative, no '..', outside the reserved prefix), the file list
 * is in order with block sizes that add up, and every block it needs is in the
 * repository with the recorded size (one HEAD per distinct block).
 */
export const checkBackup = Effect.fn("Restore.check")(function* (repo: Repository, manifest: BackupManifest) {
  const backupId = manifest.backupMeta?.backupId ?? ""
  const checked = new Set<string>()
  let filesTotal = 0
  let bytesTotal = 0
  let previousPath: string | undefined
  yield* filePagesOf(repo, manifest).pipe(
    Stream.runForEach((files) =>
      Effect.gen(function* () {
        // The page's records are checked in one pass, then its blocks not seen yet (each with the
        // first file that names it) with one HEAD each.
        const unchecked = new Map<string, { readonly size: number; readonly path: string }>()
        for (const file of files) {
          const problem = unsafePathProblem(file.path)
          if (problem !== undefined || file.path.startsWith(RESERVED_STORAGE_PREFIX)) {
            return yield* new RestoreError({
              reason: "UnsafePath",
              detail: `backup ${backupId} lists the file '${file.path}': ${problem ?? "it is inside bendsave's reserved prefix"}; refusing to restore it`,
              fix: "the manifest is damaged or was crafted; nothing was written. Restore another backup (`bendsave list`) and run `bendsave verify`",
            })
          }
          if (previousPath !== undefined && comparePaths(previousPath, file.path) >= 0) {
            return yield* new ManifestError({
              reason: "Corrupt",
              source: backupId,
              detail: `file list is not in path order at '${file.path}'`,
              fix: "the manifest is damaged; restore another backup",
            })
          }
          previousPath = file.path
          filesTotal++
          bytesTotal += Number(file.size)
          let sum = 0
          for (const block of file.blocks) {
            sum += Number(block.blockSize)
            if (!checked.has(block.blockId) && !unchecked.has(block.blockId)) {
              unchecked.set(block.blockId, { size: Number(block.blockSize), path: file.path })
            }
          }
          if (sum !== Number(file.size)) {
            return yield* new ManifestError({
              reason: "Corrupt",
              source: backupId,
              detail: `file '${file.path}' has blocks adding up to ${sum} bytes, not its size ${file.size}`,
              fix: "the manifest is damaged; restore another backup",
            })
          }
        }
        yield* Effect.forEach(
          unchecked,
          ([id, block]) =>
            repo.store.head(blockKey(id)).pipe(
              Effect.catchIf(
                (e: BlobStoreError) => e.reason === "NotFound",
                () =>
                  Effect.fail(
                    new IntegrityError({
                      reason: "Missing",
                      blockId: id,
                      location: repo.location,
                      detail: `block of '${block.path}' is missing from the repository; nothing was written`,
                      fix: "run `bendsave verify` on the repository; restore another backup",
                    }),
                  ),
              ),
              Effect.flatMap((info) =>
                info.size === block.size
                  ? Effect.sync(() => checked.add(id))
                  : Effect.fail(
                      new IntegrityError({
                        reason: "SizeMismatch",
                        blockId: id,
                        location: repo.location,
                        detail: `block of '${block.path}' has ${info.size} bytes, the manifest says ${block.size}; nothing was written`,
                        fix: "run `bendsave verify --read-data`; restore another backup",
                      }),
                    ),
              ),
            ),
          { concurrency: 16, discard: true },
        )
      }),
    ),
  )

  return { filesTotal, bytesTotal } satisfies CheckedBackup
})

/** What `checkBackup` found; pass it to `restore` to skip checking again. */
export interface CheckedBackup {
  readonly filesTotal: number
  readonly bytesTotal: number
}

/** The shared lease kind of a running restore (`details.backup_id` names the backup it reads). */
export const RESTORE_LEASE = "restore"

/**
 * The restore lease, when the repository takes one: a read-only repository
 * (no permission to write, or a read-only driver) is restored from without.
 */
const takeRestoreLease = (repo: Repository, backupId: string, cluster: string): Effect.Effect<Lease | undefined, never, Scope.Scope> =>
  acquireSharedLease(repo.store, RESTORE_LEASE, {
    operation: `restore of backup ${backupId} into cluster ${cluster}`,
    details: { backup_id: backupId, cluster },
  }).pipe(
    Effect.map((lease): Lease | undefined => lease),
    Effect.catch(() => Effect.succeed(undefined)),
  )

/** Restores (or, without `confirm`, plans restoring) `manifest` from `repo` into `target`. */
export const restore = (repo: Repository, manifest: BackupManifest, target: Cluster, options: RestoreOptions = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      if (options.confirm === true) {
        yield* takeRestoreLease(repo, manifest.backupMeta?.backupId ?? "", target.name)
        // Temp files an interrupted restore left in the target (fs) go first.
        if (target.storage.sweepLeftovers !== undefined) yield* target.storage.sweepLeftovers()
      }
      return yield* restoreRun(repo, manifest, target, options)
    }),
  )

const restoreRun = Effect.fn("Restore.run")(function* (
  repo: Repository,
  manifest: BackupManifest,
  target: Cluster,
  options: RestoreOptions = {},
) {
  const startedAt = Date.now()
  const report = options.onProgress ?? (() => {})
  const backupId = manifest.backupMeta?.backupId ?? ""
  const metaPages = manifest.metasrv?.pages ?? []

  // 1. Check: safe paths, every block present with the right size.
  report({ phase: "check", filesDone: 0, bytesDone: 0 })
  const { filesTotal, bytesTotal } = options.checked ?? (yield* checkBackup(repo, manifest))

  // 2. Plan (and, with confirm, write) file by file.
  report({ phase: "plan", filesDone: 0, bytesDone: 0, filesTotal, bytesTotal })
  const confirm = options.confirm === true
  const existing = new Map<string, ObjectInfo>()
  const targetListing = target.storage.list("").pipe(Stream.filter((i) => !i.key.startsWith(RESERVED_STORAGE_PREFIX)))
  const counters = { write: 0, writeBytes: 0, identical: 0, written: 0, writtenBytes: 0 }
  const sampleWrite: Array<string> = []

  // Each file in flight holds permits for the blocks it may buffer (up to BLOCKS_AHEAD of them).
  const PERMIT_BYTES = 64 * 1024
  const BLOCKS_AHEAD = 3
  const budget = Math.max(Math.ceil((options.byteBudget ?? 128 * 1024 * 1024) / PERMIT_BYTES), (BLOCKS_AHEAD * BLOCK_SIZE) / PERMIT_BYTES)
  const semaphore = yield* Semaphore.make(budget)
  const permitsFor = (file: BackupFile) => Math.max(1, Math.ceil(Math.min(Number(file.size), BLOCKS_AHEAD * BLOCK_SIZE) / PERMIT_BYTES))

  const writeFile = (file: BackupFile) =>
    file.blocks.length <= 1
      ? // One block (or none): read and re-hash it, then one put of the bytes (no stream).
        Effect.flatMap(
          file.blocks.length === 0
            ? Effect.succeed(new Uint8Array(0))
            : getBlock(repo, file.blocks[0].blockId, Number(file.blocks[0].blockSize)),
          (bytes) => target.storage.put(file.path, bytes),
        )
      : writeStreamed(file)
  const writeStreamed = (file: BackupFile) =>
    target.storage.put(
      file.path,
      Stream.fromIterable(file.blocks).pipe(
        Stream.mapEffect((block) => getBlock(repo, block.blockId, Number(block.blockSize)), { concurrency: BLOCKS_AHEAD - 1 }),
        Stream.rechunk(1),
        // put's body carries BlobStoreError only; integrity errors travel as their cause.
        Stream.mapError((e) =>
          e instanceof BlobStoreError
            ? e
            : new BlobStoreError({
                reason: "Unknown",
                driver: repo.store.driver,
                operation: "restore",
                key: file.path,
                detail: e.message,
                cause: e,
              }),
        ),
      ),
    )

  // Plan: which files differ from the target (re-hashing same-size target files) and which are extra.
  // Memory: the target's listing and the paths to write are held (not file contents).
  const toWrite = new Set<string>()
  const plan = (files: ReadonlyArray<BackupFile>) =>
    Effect.gen(function* () {
      // Only a target file of the same size needs reading; the verdicts are taken in path order.
      const identical: Array<boolean> = new Array(files.length).fill(false)
      const same: Array<{ readonly index: number; readonly info: ObjectInfo }> = []
      files.forEach((file, index) => {
        const info = existing.get(file.path)
        existing.delete(file.path)
        if (info !== undefined && info.size === Number(file.size)) same.push({ index, info })
      })
      yield* Effect.forEach(
        same,
        ({ index, info }) =>
          Effect.map(isIdentical(target.storage, files[index], info), (yes) => {
            identical[index] = yes
          }),
        { concurrency: 8, discard: true },
      )
      files.forEach((file, i) => {
        if (identical[i]) {
          counters.identical++
          return
        }
        toWrite.add(file.path)
        counters.write++
        counters.writeBytes += Number(file.size)
        if (sampleWrite.length < SAMPLE) sampleWrite.push(file.path)
      })
    })
  yield* targetListing.pipe(Stream.runForEach((info) => Effect.sync(() => existing.set(info.key, info))))
  yield* filePagesOf(repo, manifest).pipe(Stream.runForEach(plan))
  const toDelete = [...existing.keys()].sort(comparePaths)

  // 3. Extra files go first (a path that was a file may now be a directory, or the reverse),
  //    then the files are written, then the meta last.
  let deleted = 0
  if (confirm && toDelete.length > 0) {
    report({ phase: "delete", filesDone: 0, bytesDone: 0, filesTotal, bytesTotal })
    for (let i = 0; i < toDelete.length; i += 1000) {
      const batch = toDelete.slice(i, i + 1000)
      yield* target.storage.deleteMany(batch)
      deleted += batch.length
    }
  }
  const write = Effect.fnUntraced(function* (file: BackupFile) {
    yield* writeFile(file).pipe(
      Semaphore.withPermits(semaphore, permitsFor(file)),
      Effect.catchIf(
        (e): e is BlobStoreError => e instanceof BlobStoreError && (e.cause instanceof IntegrityError || e.cause instanceof ManifestError),
        (e) => Effect.fail(e.cause as IntegrityError | ManifestError),
      ),
    )
    counters.written++
    counters.writtenBytes += Number(file.size)
    report({
      phase: "files",
      filesDone: counters.written,
      bytesDone: counters.writtenBytes,
      filesTotal: counters.write,
      bytesTotal: counters.writeBytes,
    })
  })
  if (confirm && toWrite.size > 0) {
    yield* filePagesOf(repo, manifest).pipe(
      Stream.flattenIterable,
      Stream.filter((file) => toWrite.has(file.path)),
      Stream.mapEffect(write, { concurrency: options.fileConcurrency ?? 16 }),
      Stream.runDrain,
    )
  }
  report({ phase: "meta", filesDone: counters.written, bytesDone: counters.writtenBytes, filesTotal, bytesTotal })
  const metaDiff = yield* target.meta.replace(streamMetaEntries(repo, metaPages), { dryRun: !confirm })

  const result: RestoreResult = {
    backup_id: backupId,
    dry_run: !confirm,
    files_total: filesTotal,
    bytes_total: bytesTotal,
    files_to_write: counters.write,
    bytes_to_write: counters.writeBytes,
    files_identical: counters.identical,
    files_to_delete: toDelete.length,
    sample_write: sampleWrite,
    sample_delete: toDelete.slice(0, SAMPLE),
    meta: metaDiff,
    files_skipped: counters.identical,
    files_written: counters.written,
    bytes_written: counters.writtenBytes,
    files_deleted: deleted,
    duration_ms: Date.now() - startedAt,
  }
  return result
})
