/**
 * Verify: checks that backups can be restored.
 *
 * Structure (always): every manifest decodes, every page it names is present
 * and hashes to its id, file records are in path order with block sizes that
 * add up, and every block referenced exists with the recorded size.
 * Data (`readDataPercent`): additionally downloads and re-hashes that share of
 * the distinct blocks (100 = all of them), chosen at random.
 *
 * Problems are collected, not thrown: the result lists each one with the
 * backup and file it affects.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { BlobStoreError } from "./BlobStore.ts"
import { ManifestError, unsafePathProblem } from "./Manifest.ts"
import { comparePaths, readFilePage, streamMetaEntries } from "./Pages.ts"
import { blockKey, getBlock, IntegrityError, listBackupIds, type Repository, readManifest } from "./Repository.ts"

export interface VerifyProblem {
  readonly backup_id: string
  readonly path?: string
  readonly block_id?: string
  readonly problem: string
}

export interface VerifyProgress {
  readonly phase: "manifests" | "blocks" | "data"
  readonly done: number
  readonly total?: number
}

export interface VerifyOptions {
  /** Only these backups (default: all). */
  readonly backupIds?: ReadonlyArray<string>
  /** Share of distinct blocks to download and re-hash, 0-100 (default 0). */
  readonly readDataPercent?: number
  readonly onProgress?: (progress: VerifyProgress) => void
  /** Random source for sampling, for tests (default Math.random). */
  readonly random?: () => number
}

export interface VerifyResult {
  readonly ok: boolean
  readonly backups_checked: number
  readonly files_checked: number
  readonly blocks_checked: number
  readonly blocks_read: number
  readonly bytes_read: number
  readonly problems: ReadonlyArray<VerifyProblem>
  readonly duration_ms: number
}

const MAX_PROBLEMS = 1000

export const verify = Effect.fn("Verify.run")(function* (repo: Repository, options: VerifyOptions = {}) {
  const startedAt = Date.now()
  const report = options.onProgress ?? (() => {})
  const ids = options.backupIds ?? (yield* listBackupIds(repo))
  const problems: Array<VerifyProblem> = []
  const addProblem = (p: VerifyProblem) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p)
  }
  // Distinct data blocks: id -> size and the first place that references it.
  const blocks = new Map<string, { size: number; backupId: string; path: string }>()
  let filesChecked = 0
  let backupsChecked = 0
  const asProblem = (backupId: string, path?: string) => (e: BlobStoreError | IntegrityError | ManifestError) =>
    Effect.sync(() =>
      addProblem({
        backup_id: backupId,
        path,
        block_id: e instanceof IntegrityError ? e.blockId : undefined,
        problem: e.message,
      }),
    )

  for (const backupId of ids) {
    report({ phase: "manifests", done: backupsChecked, total: ids.length })
    backupsChecked++
    const manifest = yield* readManifest(repo, backupId).pipe(
      Effect.map((m) => m as typeof m | undefined),
      Effect.catchTags({
        ManifestError: (e) => Effect.as(asProblem(backupId)(e), undefined),
        BlobStoreError: (e) => Effect.as(asProblem(backupId)(e), undefined),
      }),
    )
    if (manifest === undefined) continue
    // Meta pages: present and hashing right (reading them checks both).
    yield* streamMetaEntries(repo, manifest.metasrv?.pages ?? []).pipe(
      Stream.runDrain,
      Effect.catch(asProblem(backupId, "<meta snapshot>")),
    )
    let previous: string | undefined
    for (const page of manifest.storage?.pages ?? []) {
      const files = yield* readFilePage(repo, page).pipe(
        Effect.map((f) => f as typeof f | undefined),
        Effect.catch((e) => Effect.as(asProblem(backupId, `<file page ${page.blockId}>`)(e), undefined)),
      )
      if (files === undefined) continue
      for (const file of files) {
        filesChecked++
        const unsafe = unsafePathProblem(file.path)
        if (unsafe !== undefined) addProblem({ backup_id: backupId, path: file.path, problem: `unsafe path: ${unsafe}` })
        if (previous !== undefined && comparePaths(previous, file.path) >= 0) {
          addProblem({ backup_id: backupId, path: file.path, problem: "file list is not in path order" })
        }
        previous = file.path
        let sum = 0
        for (const block of file.blocks) {
          const size = Number(block.blockSize)
          sum += size
          if (!blocks.has(block.blockId)) blocks.set(block.blockId, { size, backupId, path: file.path })
        }
        if (sum !== Number(file.size)) {
          addProblem({ backup_id: backupId, path: file.path, problem: `block sizes add up to ${sum}, not the file size ${file.size}` })
        }
      }
    }
  }

  // Every distinct block: present with the right size.
  let blocksChecked = 0
  const entries = [...blocks.entries()]
  yield* Effect.forEach(
    entries,
    ([id, ref]) =>
      repo.store.head(blockKey(id)).pipe(
        Effect.flatMap((info) =>
          info.size === ref.size
            ? Effect.void
            : Effect.sync(() =>
                addProblem({
                  backup_id: ref.backupId,
                  path: ref.path,
                  block_id: id,
                  problem: `block has ${info.size} bytes, the manifest says ${ref.size}`,
                }),
              ),
        ),
        Effect.catchIf(
          (e: BlobStoreError) => e.reason === "NotFound",
          () => Effect.sync(() => addProblem({ backup_id: ref.backupId, path: ref.path, block_id: id, problem: "block is missing" })),
        ),
        Effect.tap(() =>
          Effect.sync(() => {
            blocksChecked++
            if (blocksChecked % 256 === 0) report({ phase: "blocks", done: blocksChecked, total: entries.length })
          }),
        ),
      ),
    { concurrency: 16, discard: true },
  )

  // Data: re-hash a sample.
  const percent = Math.min(100, Math.max(0, options.readDataPercent ?? 0))
  const random = options.random ?? Math.random
  const sample = percent >= 100 ? entries : entries.filter(() => random() * 100 < percent)
  let blocksRead = 0
  let bytesRead = 0
  yield* Effect.forEach(
    sample,
    ([id, ref]) =>
      getBlock(repo, id, ref.size).pipe(
        Effect.tap((bytes) =>
          Effect.sync(() => {
            blocksRead++
            bytesRead += bytes.length
            report({ phase: "data", done: blocksRead, total: sample.length })
          }),
        ),
        Effect.asVoid,
        Effect.catchTag("IntegrityError", (e) =>
          Effect.sync(() => {
            blocksRead++
            if (e.reason !== "Missing") {
              addProblem({ backup_id: ref.backupId, path: ref.path, block_id: id, problem: e.detail })
            }
          }),
        ),
      ),
    { concurrency: 4, discard: true },
  )

  const result: VerifyResult = {
    ok: problems.length === 0,
    backups_checked: backupsChecked,
    files_checked: filesChecked,
    blocks_checked: blocksChecked,
    blocks_read: blocksRead,
    bytes_read: bytesRead,
    problems,
    duration_ms: Date.now() - startedAt,
  }
  return result
})

export { BlobStoreError, ManifestError }
