/**
 * Pages: a backup's file list and meta snapshot, split into pages that are
 * stored as content-addressed blocks.
 *
 * Pages are cut at content-defined boundaries: after an entry whose key hashes
 * (FNV-1a, 32 bit) to a value with its low PAGE_CUT_BITS bits zero, or when a
 * page reaches PAGE_MAX_ENTRIES entries or PAGE_MAX_BYTES encoded bytes. An
 * unchanged run of files therefore produces the same pages, and the same
 * blocks, in every backup: unchanged pages are deduplicated like file data.
 * Readers load one page at a time, so memory does not grow with the cluster.
 */
import { create } from "@bufbuild/protobuf"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { BlobStoreError } from "./BlobStore.ts"
import { hashBlock } from "./Hash.ts"
import {
  type BackupFile,
  decodeFilePage,
  decodeMetaPage,
  encodeFilePage,
  encodeMetaPage,
  ManifestError,
  type PageRef,
  PageRefSchema,
} from "./Manifest.ts"
import type { MetaEntry } from "./MetaStore.ts"
import { displayKey } from "./MetaStore.ts"
import { getBlock, hasBlock, type IntegrityError, putBlock, type Repository } from "./Repository.ts"

export const PAGE_CUT_BITS = 10
export const PAGE_MAX_ENTRIES = 8192
export const PAGE_MAX_BYTES = 4 * 1024 * 1024

const fnv1a = (bytes: Uint8Array): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

const cutMask = (1 << PAGE_CUT_BITS) - 1
const encoder = new TextEncoder()

/** Counters of page blocks written by a PageWriter. */
export interface PageStats {
  pagesUploaded: number
  pageBytesUploaded: number
}

/** Stores one encoded page as a block (skipping it when it already exists). */
const storePage = Effect.fnUntraced(function* (repo: Repository, bytes: Uint8Array, entryCount: number, first: string, stats: PageStats) {
  const { id, bytes: hashed } = yield* hashBlock(bytes)
  if (!(yield* hasBlock(repo, id))) {
    // Pages are bookkeeping (control traffic for an upload limit): a page held behind queued data
    // would hold the page writer, and with it every checkpoint, for as long.
    if (yield* putBlock(repo, id, hashed, { control: true })) {
      stats.pagesUploaded++
      stats.pageBytesUploaded += hashed.length
    }
  }
  return create(PageRefSchema, { blockId: id, blockSize: BigInt(hashed.length), entryCount, first })
})

/** Accumulates entries in order and stores a page at each cut. */
const makePageWriter = <A>(
  repo: Repository,
  keyOf: (a: A) => Uint8Array,
  sizeOf: (a: A) => number,
  firstOf: (a: A) => string,
  encode: (entries: ReadonlyArray<A>) => Uint8Array,
  reuse: (entries: ReadonlyArray<A>) => PageRef | undefined = () => undefined,
  initial?: WriterState<A>,
) => {
  const pages: Array<PageRef> = [...(initial?.pages ?? [])]
  const stats: PageStats = { pagesUploaded: 0, pageBytesUploaded: 0 }
  let current: Array<A> = [...(initial?.open ?? [])]
  let currentBytes = current.reduce((n, entry) => n + sizeOf(entry), 0)
  const flush = Effect.suspend(() => {
    if (current.length === 0) return Effect.void
    const entries = current
    current = []
    currentBytes = 0
    // A page made of exactly the records of a parent page encodes to the same block: reuse its ref.
    const same = reuse(entries)
    if (same !== undefined) {
      pages.push(same)
      return Effect.void
    }
    return storePage(repo, encode(entries), entries.length, firstOf(entries[0]), stats).pipe(
      Effect.tap((ref) => Effect.sync(() => pages.push(ref))),
      Effect.asVoid,
    )
  })
  const add = (entry: A): Effect.Effect<void, BlobStoreError> =>
    Effect.suspend(() => {
      current.push(entry)
      currentBytes += sizeOf(entry)
      const cut = (fnv1a(keyOf(entry)) & cutMask) === 0 || current.length >= PAGE_MAX_ENTRIES || currentBytes >= PAGE_MAX_BYTES
      return cut ? flush : Effect.void
    })
  /** Adds entries in order; pages are stored as they fill up. */
  const addAll = (entries: ReadonlyArray<A>): Effect.Effect<void, BlobStoreError> =>
    Effect.gen(function* () {
      for (const entry of entries) {
        current.push(entry)
        currentBytes += sizeOf(entry)
        if ((fnv1a(keyOf(entry)) & cutMask) === 0 || current.length >= PAGE_MAX_ENTRIES || currentBytes >= PAGE_MAX_BYTES) {
          yield* flush
        }
      }
    })
  /**
   * The pages stored so far and the entries not cut into a page yet (copies).
   * Consistent only between calls of add/addAll/finish (the caller serializes).
   */
  const state = (): WriterState<A> => ({ pages: [...pages], open: [...current] })
  return { add, addAll, finish: flush.pipe(Effect.map(() => pages)), stats, state }
}

/** Where a page writer stands: stored pages, and entries of the page not cut yet. */
export interface WriterState<A> {
  readonly pages: ReadonlyArray<PageRef>
  readonly open: ReadonlyArray<A>
}

const fileRecordSize = (file: BackupFile) => file.path.length + 48 + file.blocks.length * 80

/** A writer of file pages; `initial` continues where another writer stood (a resumed backup). */
export const makeFilePageWriter = (
  repo: Repository,
  reuse?: (files: ReadonlyArray<BackupFile>) => PageRef | undefined,
  initial?: WriterState<BackupFile>,
) =>
  makePageWriter<BackupFile>(
    repo,
    (f) => encoder.encode(f.path),
    fileRecordSize,
    (f) => f.path,
    encodeFilePage,
    reuse,
    initial,
  )

/** Stores `files` as one file page (not cut at a content boundary: a checkpoint's open page). */
export const storeFilePage = (repo: Repository, files: ReadonlyArray<BackupFile>) =>
  storePage(repo, encodeFilePage(files), files.length, files[0]?.path ?? "", { pagesUploaded: 0, pageBytesUploaded: 0 })

export const makeMetaPageWriter = (repo: Repository) =>
  makePageWriter<MetaEntry>(
    repo,
    (e) => e.key,
    (e) => e.key.length + e.value.length + 8,
    (e) => displayKey(e.key),
    encodeMetaPage,
  )

/** Loads and decodes one file page (re-hashed on read). */
export const readFilePage = (repo: Repository, ref: PageRef) =>
  getBlock(repo, ref.blockId, Number(ref.blockSize)).pipe(
    Effect.flatMap((bytes) => {
      const page = decodeFilePage(bytes, `${repo.location}/data/${ref.blockId}`)
      return page instanceof ManifestError ? Effect.fail(page) : Effect.succeed(page.files)
    }),
  )

/** Every file record of a backup, in path order, one page in memory at a time. */
export const streamFiles = (
  repo: Repository,
  pages: ReadonlyArray<PageRef>,
): Stream.Stream<BackupFile, BlobStoreError | IntegrityError | ManifestError> =>
  Stream.fromIterable(pages).pipe(
    Stream.mapEffect((ref) => readFilePage(repo, ref)),
    Stream.flatMap((files) => Stream.fromIterable(files)),
  )

/** Every meta entry of a backup, in key order, one page in memory at a time. */
export const streamMetaEntries = (
  repo: Repository,
  pages: ReadonlyArray<PageRef>,
): Stream.Stream<MetaEntry, BlobStoreError | IntegrityError | ManifestError> =>
  Stream.fromIterable(pages).pipe(
    Stream.mapEffect((ref) =>
      getBlock(repo, ref.blockId, Number(ref.blockSize)).pipe(
        Effect.flatMap((bytes) => {
          const page = decodeMetaPage(bytes, `${repo.location}/data/${ref.blockId}`)
          return page instanceof ManifestError ? Effect.fail(page) : Effect.succeed(page.entries)
        }),
      ),
    ),
    Stream.flatMap((entries) => Stream.fromIterable(entries.map((e) => ({ key: e.key, value: e.value })))),
  )

/**
 * A forward-only cursor over a parent backup's file records, used to match
 * the (sorted) listing of the source against the parent without loading the
 * parent's whole file list.
 */
export const makeParentCursor = (repo: Repository, pages: ReadonlyArray<PageRef>) => {
  let pageIndex = 0
  let files: ReadonlyArray<BackupFile> = []
  let fileIndex = 0
  /** Looks in the loaded page; "load" when the next page must be read first. */
  const scan = (path: string): BackupFile | undefined | "load" => {
    while (fileIndex < files.length) {
      const c = comparePaths(files[fileIndex].path, path)
      if (c === 0) return files[fileIndex]
      if (c > 0) return undefined
      fileIndex++
    }
    // Skip whole pages whose successor starts at or before `path`.
    while (pageIndex + 1 < pages.length && comparePaths(pages[pageIndex + 1].first, path) <= 0) pageIndex++
    return pageIndex >= pages.length ? undefined : "load"
  }
  /** The parent's record of `path`; calls must come in ascending path order. */
  const find = (path: string): Effect.Effect<BackupFile | undefined, BlobStoreError | IntegrityError | ManifestError> => {
    const found = scan(path)
    if (found !== "load") return Effect.succeed(found)
    const ref = pages[pageIndex]
    return Effect.flatMap(readFilePage(repo, ref), (loaded) => {
      files = loaded
      fileIndex = 0
      pageIndex++
      recent.push({ files: loaded, ref })
      if (recent.length > 4) recent.shift()
      return find(path)
    })
  }
  // The last pages read, so a writer can tell when it re-emits one of them unchanged.
  const recent: Array<{ files: ReadonlyArray<BackupFile>; ref: PageRef }> = []
  /** The parent's ref of a page holding exactly these (identical) records, if any. */
  const samePage = (entries: ReadonlyArray<BackupFile>): PageRef | undefined => {
    const page = recent.find((p) => p.files.length === entries.length && p.files[0] === entries[0])
    if (page === undefined) return undefined
    for (let i = 1; i < entries.length; i++) if (page.files[i] !== entries[i]) return undefined
    return page.ref
  }
  return { find, samePage }
}

/** Bytewise (UTF-8) order of paths: the order of listings and file pages. */
export const comparePaths = (a: string, b: string): number => {
  if (a === b) return 0
  // UTF-16 code unit order equals UTF-8 byte order except around surrogates (U+10000 and up
  // sort below U+E000..U+FFFF in UTF-16); only then compare the encoded bytes.
  for (let i = 0; i < a.length && i < b.length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) {
      if (x >= 0xd800 || y >= 0xd800) return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))
      return x - y
    }
  }
  return a.length - b.length
}
