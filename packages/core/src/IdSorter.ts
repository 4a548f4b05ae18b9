/**
 * IdSorter: a set of block ids that does not have to fit in memory.
 *
 * Ids (64 lowercase hex digits) are added in any order, with repeats. They
 * are collected in a chunk of at most `chunkIds` strings; a full chunk is
 * sorted, deduplicated and written to a temporary file as a RUN of 32-byte
 * binary ids. `finish` merges the runs (and the last chunk, kept in memory)
 * into one cursor that yields every distinct id once, in ascending order:
 * the order of a BlobStore listing of `data/`, so a vacuum can walk both side
 * by side.
 *
 * Memory: the chunk (about 90 bytes per id in V8, so ~24 MiB at the default
 * 262 144 ids) plus, while merging, one read buffer of `bufferIds` ids per
 * run. Disk: 32 bytes per distinct id per run. When everything fits in one
 * chunk, nothing is written.
 */
import { randomBytes } from "node:crypto"
import { mkdtemp, open, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

const ID_BYTES = 32
export const DEFAULT_CHUNK_IDS = 262_144
const DEFAULT_BUFFER_IDS = 4096

export interface IdSorterOptions {
  /** Ids held in memory before a run is written (default 262 144). */
  readonly chunkIds?: number
  /** Ids read at once from each run while merging (default 4096). */
  readonly bufferIds?: number
  /** Directory for the runs (default: a new directory under the OS temp dir, removed with the scope). */
  readonly tempDir?: string
}

/** Ascending, distinct ids, pulled one at a time. */
export interface IdCursor {
  /** The smallest id not consumed yet, or undefined at the end. */
  readonly peek: () => string | undefined
  /** Consumes the current id; may read the next buffer of a run. */
  readonly next: Effect.Effect<void>
  /** Consumes ids below `id`; true when `id` itself is in the set. */
  readonly seek: (id: string) => Effect.Effect<boolean>
}

export interface IdSorter {
  readonly add: (id: string) => Effect.Effect<void>
  /** Adds many ids (one page's worth): a run is written at most once, after them. */
  readonly addAll: (ids: ReadonlyArray<string>) => Effect.Effect<void>
  /** Ids added so far (with repeats). */
  readonly added: () => number
  /** Runs written to disk so far. */
  readonly runs: () => number
  /** Ends adding; the cursor reads the runs while the scope is open. */
  readonly finish: Effect.Effect<IdCursor, never, Scope.Scope>
}

const sortUnique = (ids: Array<string>): Array<string> => {
  ids.sort()
  let w = 0
  for (let r = 0; r < ids.length; r++) if (r === 0 || ids[r] !== ids[r - 1]) ids[w++] = ids[r]
  ids.length = w
  return ids
}

/** A sorted run on disk, read `bufferIds` at a time. */
interface RunReader {
  buffer: Array<string>
  index: number
  readonly refill: Effect.Effect<void>
}

const openRun = (file: string, bufferIds: number): Effect.Effect<RunReader, never, Scope.Scope> =>
  Effect.gen(function* () {
    const handle = yield* Effect.acquireRelease(
      Effect.promise(() => open(file, "r")),
      (h) => Effect.promise(() => h.close()),
    )
    const bytes = Buffer.alloc(bufferIds * ID_BYTES)
    let position = 0
    const reader: RunReader = {
      buffer: [],
      index: 0,
      refill: Effect.promise(async () => {
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, position)
        position += bytesRead
        const ids: Array<string> = []
        for (let o = 0; o + ID_BYTES <= bytesRead; o += ID_BYTES) ids.push(bytes.toString("hex", o, o + ID_BYTES))
        reader.buffer = ids
        reader.index = 0
      }),
    }
    yield* reader.refill
    return reader
  })

/** An in-memory sorted array as a run. */
const memoryRun = (ids: Array<string>): RunReader => ({ buffer: ids, index: 0, refill: Effect.sync(() => {}) })

const headOf = (r: RunReader): string | undefined => r.buffer[r.index]

/**
 * A k-way merge of sorted runs with a binary heap keyed by each run's head;
 * equal ids from several runs come out once.
 */
const mergeRuns = (readers: Array<RunReader>): IdCursor => {
  const heap = readers.filter((r) => headOf(r) !== undefined)
  const less = (a: RunReader, b: RunReader) => (headOf(a) as string) < (headOf(b) as string)
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < heap.length && less(heap[l], heap[m])) m = l
      if (r < heap.length && less(heap[r], heap[m])) m = r
      if (m === i) return
      ;[heap[i], heap[m]] = [heap[m], heap[i]]
      i = m
    }
  }
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i)
  /** Advances the top run by one id (refilling from disk when its buffer ends). */
  const popTop = Effect.gen(function* () {
    const top = heap[0]
    top.index++
    if (top.index >= top.buffer.length) yield* top.refill
    if (headOf(top) === undefined) {
      const last = heap.pop() as RunReader
      if (heap.length > 0 && last !== top) heap[0] = last
    }
    if (heap.length > 0) down(0)
  })
  const peek = () => (heap.length === 0 ? undefined : headOf(heap[0]))
  const next = Effect.gen(function* () {
    const current = peek()
    if (current === undefined) return
    while (peek() === current) yield* popTop
  })
  const seek = (id: string) =>
    Effect.gen(function* () {
      for (;;) {
        const current = peek()
        if (current === undefined || current > id) return false
        if (current === id) return true
        yield* next
      }
    })
  return { peek, next, seek }
}

/** Makes a sorter whose temporary files live as long as the scope. */
export const makeIdSorter = (options: IdSorterOptions = {}): Effect.Effect<IdSorter, never, Scope.Scope> =>
  Effect.gen(function* () {
    const chunkIds = Math.max(2, options.chunkIds ?? DEFAULT_CHUNK_IDS)
    const bufferIds = Math.max(1, options.bufferIds ?? DEFAULT_BUFFER_IDS)
    let dir: string | undefined
    const runFiles: Array<string> = []
    let chunk: Array<string> = []
    let added = 0
    let ownDir = false
    // Whatever was written goes with the scope (the runs, and the directory when it is ours).
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        if (dir === undefined) return
        if (ownDir) await rm(dir, { recursive: true, force: true })
        else await Promise.all(runFiles.map((f) => rm(f, { force: true })))
      }),
    )
    const tempDir = Effect.gen(function* () {
      if (dir !== undefined) return dir
      if (options.tempDir === undefined) {
        dir = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "bendsave-ids-")))
        ownDir = true
      } else dir = options.tempDir
      return dir
    })
    const spill = Effect.gen(function* () {
      const ids = sortUnique(chunk)
      chunk = []
      const bytes = Buffer.alloc(ids.length * ID_BYTES)
      for (let i = 0; i < ids.length; i++) bytes.write(ids[i], i * ID_BYTES, ID_BYTES, "hex")
      const file = join(yield* tempDir, `run-${runFiles.length}-${randomBytes(4).toString("hex")}.ids`)
      yield* Effect.promise(async () => {
        const handle = await open(file, "wx")
        try {
          await handle.writeFile(bytes)
        } finally {
          await handle.close()
        }
      })
      runFiles.push(file)
    })
    const add = (id: string) =>
      Effect.suspend(() => {
        chunk.push(id)
        added++
        return chunk.length >= chunkIds ? spill : Effect.void
      })
    const addAll = (ids: ReadonlyArray<string>) =>
      Effect.suspend(() => {
        for (const id of ids) chunk.push(id)
        added += ids.length
        return chunk.length >= chunkIds ? spill : Effect.void
      })
    const finish = Effect.gen(function* () {
      const readers: Array<RunReader> = []
      for (const file of runFiles) readers.push(yield* openRun(file, bufferIds))
      readers.push(memoryRun(sortUnique(chunk)))
      chunk = []
      return mergeRuns(readers)
    })
    return { add, addAll, added: () => added, runs: () => runFiles.length, finish } satisfies IdSorter
  })
