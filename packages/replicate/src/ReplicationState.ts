/**
 * ReplicationState: what a replication remembers between rounds, stored with
 * the TARGET under its reserved storage prefix `.bendsave/` (the layout is
 * specified in docs/replication.md):
 *
 * ```
 * .bendsave/replication/<stream>/state.json                       the last committed round
 * .bendsave/replication/<stream>/status.json                      status of the last round (ReplicationStatus.ts)
 * .bendsave/replication/<stream>/rounds/<round>/files-<n>.jsonl   file list of a round, path order
 * .bendsave/replication/<stream>/rounds/<round>/meta-<n>.jsonl    source meta of a round (direct mode)
 * .bendsave/replication/<stream>/journal/<round>/<seq>.jsonl      files that landed in a round not yet committed
 * ```
 *
 * The file list maps each replicated path's SOURCE identity (size, etag,
 * last-modified: compared only with the source's next listing) to its
 * TARGET identity (etag: compared only with the target's next listing) and
 * the SHA-256 of its bytes (computed while copying; the manifest hashes are
 * made of it). It is paged, so no round holds it whole. The journal is
 * written while files land, so a killed round's copies are not repeated.
 * All keys here are relative to the `.bendsave/` view of the target storage.
 */
import {
  type BlobStore,
  BlobStoreError,
  compareKeysBytewise,
  formatMetaLine,
  type MetaEntry,
  MetaLinesError,
  parseMetaLines,
} from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"

export const REPLICATION_PREFIX = "replication/"

/** Where one replication stream (cluster, database or table) keeps its state. */
export const streamPrefix = (stream: string): string => `${REPLICATION_PREFIX}${stream}/`
export const stateKey = (stream: string): string => `${streamPrefix(stream)}state.json`
export const statusKey = (stream: string): string => `${streamPrefix(stream)}status.json`
const pad = (n: number, width: number) => String(n).padStart(width, "0")
export const roundPrefix = (stream: string, round: number): string => `${streamPrefix(stream)}rounds/${pad(round, 10)}/`
export const journalPrefix = (stream: string): string => `${streamPrefix(stream)}journal/`
const journalRoundPrefix = (stream: string, round: number): string => `${journalPrefix(stream)}${pad(round, 10)}/`

/** One replicated file: its source identity, its target identity and the SHA-256 of its bytes. */
export interface FileRecord {
  readonly path: string
  readonly size: number
  /** Source etag and last-modified (ms), as the source's listing gave them. */
  readonly etag: string
  readonly lastModified: number
  /** Lowercase hex SHA-256 of the bytes. */
  readonly sha256: string
  /** The target's etag after the copy. */
  readonly targetEtag: string
}

interface FileLine {
  readonly p: string
  readonly s: number
  readonly e: string
  readonly m: number
  readonly h: string
  readonly t: string
}

/** One record line (`{"p","s","e","m","h","t"}`), or undefined when it is not one. Checked by hand: lists run to millions of lines. */
const parseFileLine = (line: string): FileLine | undefined => {
  let l: unknown
  try {
    l = JSON.parse(line)
  } catch {
    return undefined
  }
  if (typeof l !== "object" || l === null) return undefined
  const x = l as Record<string, unknown>
  return typeof x.p === "string" &&
    typeof x.s === "number" &&
    typeof x.e === "string" &&
    typeof x.m === "number" &&
    typeof x.h === "string" &&
    typeof x.t === "string"
    ? (x as unknown as FileLine)
    : undefined
}

const formatFileLine = (r: FileRecord): string =>
  JSON.stringify({ p: r.path, s: r.size, e: r.etag, m: r.lastModified, h: r.sha256, t: r.targetEtag })

/** The replication state could not be read: damaged or written by a newer bendsave. */
export class ReplicationStateError extends Schema.TaggedError<ReplicationStateError>()("ReplicationStateError", {
  location: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `replication state ${this.location}: ${this.detail}`
  }
}

const stateFix = (stream: string) =>
  `the replication state is damaged; delete '.bendsave/${streamPrefix(stream)}' in the target storage and run replicate again (the next round compares every file again and copies only what differs by identity)`

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const parseFileLines = (text: string, location: string, stream: string): Effect.Effect<Array<FileRecord>, ReplicationStateError> =>
  Effect.suspend(() => {
    const out: Array<FileRecord> = []
    const lines = text.split("\n")
    for (let i = 0; i < lines.length; i++) {
      if (lines[i] === "") continue
      const l = parseFileLine(lines[i])
      if (l === undefined) {
        return Effect.fail(
          new ReplicationStateError({ location: `${location}:${i + 1}`, detail: "not a file record", fix: stateFix(stream) }),
        )
      }
      out.push({ path: l.p, size: l.s, etag: l.e, lastModified: l.m, sha256: l.h, targetEtag: l.t })
    }
    return Effect.succeed(out)
  })

// ---------------------------------------------------------------------------
// The committed state

export const ReplicationScopeJson = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("cluster") }),
  Schema.Struct({ kind: Schema.Literal("database"), database: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("table"), database: Schema.String, table: Schema.String }),
])

/** `state.json`: the last round that committed. */
export const CommittedState = Schema.Struct({
  format: Schema.Literal("bendsave-replication-state"),
  version: Schema.Literal(1),
  stream: Schema.String,
  scope: ReplicationScopeJson,
  round: Schema.Number,
  /** Which source it came from (a different source makes the recorded source identities meaningless). */
  source: Schema.Struct({ name: Schema.String, meta: Schema.String, storage: Schema.String }),
  source_revision: Schema.Number,
  source_time: Schema.String,
  committed_at: Schema.String,
  /** Keys (relative to `.bendsave/`) of the round's file list pages, in path order. */
  file_pages: Schema.Array(Schema.String),
  /** Keys of the round's source meta pages (direct mode; empty with a repository in between). */
  meta_pages: Schema.Array(Schema.String),
  files: Schema.Number,
  bytes: Schema.Number,
  source_manifest_hash: Schema.String,
  target_manifest_hash: Schema.String,
})
export type CommittedState = typeof CommittedState.Type
const decodeState = Schema.decodeUnknownExit(Schema.fromJsonString(CommittedState))

/** The stream's committed state, or undefined before its first round. */
export const readCommittedState = (
  store: BlobStore,
  stream: string,
): Effect.Effect<CommittedState | undefined, BlobStoreError | ReplicationStateError> =>
  store.get(stateKey(stream)).pipe(
    Effect.flatMap((bytes) => {
      const exit = decodeState(decoder.decode(bytes))
      return exit._tag === "Success"
        ? Effect.succeed<CommittedState | undefined>(exit.value)
        : Effect.fail(
            new ReplicationStateError({
              location: `${store.location}/${stateKey(stream)}`,
              detail: "state.json is not a bendsave replication state (version 1)",
              fix: stateFix(stream),
            }),
          )
    }),
    Effect.catchIf(
      (e): e is BlobStoreError => e._tag === "BlobStoreError" && e.reason === "NotFound",
      () => Effect.succeed(undefined),
    ),
  )

/** Commits a round: its pages are already stored; this one put makes them the state. */
export const writeCommittedState = (store: BlobStore, state: CommittedState) =>
  store.put(stateKey(state.stream), encoder.encode(`${JSON.stringify(state, null, 2)}\n`))

/** The records of a file list, in path order, one page in memory at a time. */
export const streamFileRecords = (store: BlobStore, stream: string, pages: ReadonlyArray<string>) =>
  Stream.fromIterable(pages).pipe(
    Stream.mapEffect((key) =>
      store.get(key).pipe(
        Effect.catchIf(
          (e) => e.reason === "NotFound",
          () =>
            Effect.fail(
              new ReplicationStateError({
                location: `${store.location}/${key}`,
                detail: "a page of the file list is missing",
                fix: stateFix(stream),
              }),
            ),
        ),
        Effect.flatMap((bytes) => parseFileLines(decoder.decode(bytes), `${store.location}/${key}`, stream)),
      ),
    ),
    Stream.flatMap((records) => Stream.fromIterable(records)),
  )

const PAGE_RECORDS = 5000
const PAGE_BYTES = 2 * 1024 * 1024

/** Writes lines into numbered pages under `prefix` as they fill up. */
const makeLinePageWriter = (store: BlobStore, prefix: string, name: string) => {
  const pages: Array<string> = []
  let lines: Array<string> = []
  let bytes = 0
  const flush = Effect.suspend(() => {
    if (lines.length === 0) return Effect.void
    const key = `${prefix}${name}-${pad(pages.length, 6)}.jsonl`
    const body = encoder.encode(`${lines.join("\n")}\n`)
    lines = []
    bytes = 0
    pages.push(key)
    return Effect.asVoid(store.put(key, body))
  })
  const add = (line: string): Effect.Effect<void, BlobStoreError> =>
    Effect.suspend(() => {
      lines.push(line)
      bytes += line.length + 1
      return lines.length >= PAGE_RECORDS || bytes >= PAGE_BYTES ? flush : Effect.void
    })
  /** Adds many lines; a page is written each time one fills up. */
  const addAll = (all: ReadonlyArray<string>): Effect.Effect<void, BlobStoreError> =>
    Effect.gen(function* () {
      for (const line of all) {
        lines.push(line)
        bytes += line.length + 1
        if (lines.length >= PAGE_RECORDS || bytes >= PAGE_BYTES) yield* flush
      }
    })
  return { add, addAll, finish: Effect.map(flush, () => pages as ReadonlyArray<string>) }
}

/** The file list of a round being written: records must come in path order. */
export const makeFileListWriter = (store: BlobStore, stream: string, round: number) => {
  const writer = makeLinePageWriter(store, roundPrefix(stream, round), "files")
  let last: string | undefined
  const inOrder = (record: FileRecord) => {
    if (last !== undefined && compareKeysBytewise(last, record.path) >= 0) {
      throw new Error(`replication file list out of order at '${record.path}' after '${last}'`)
    }
    last = record.path
    return formatFileLine(record)
  }
  return {
    add: (record: FileRecord) => Effect.suspend(() => writer.add(inOrder(record))),
    /** Adds records (in path order, after those added before). */
    addAll: (records: ReadonlyArray<FileRecord>) => Effect.suspend(() => writer.addAll(records.map(inOrder))),
    finish: writer.finish,
  }
}

/** The source meta entries of a round, stored so the target's `replace` can read them more than once. */
export const makeMetaPageWriter = (store: BlobStore, stream: string, round: number) => {
  const writer = makeLinePageWriter(store, roundPrefix(stream, round), "meta")
  return { add: (entry: MetaEntry) => writer.add(formatMetaLine(entry)), finish: writer.finish }
}

/** The meta entries of stored meta pages, in the order written. */
export const streamMetaPages = (store: BlobStore, stream: string, pages: ReadonlyArray<string>) =>
  Stream.fromIterable(pages).pipe(
    Stream.mapEffect((key) =>
      store.get(key).pipe(
        Effect.flatMap((bytes) => {
          const parsed = parseMetaLines(decoder.decode(bytes), `${store.location}/${key}`)
          return parsed instanceof MetaLinesError
            ? Effect.fail(
                new ReplicationStateError({ location: `${store.location}/${key}`, detail: parsed.message, fix: stateFix(stream) }),
              )
            : Effect.succeed(parsed)
        }),
      ),
    ),
    Stream.flatMap((entries) => Stream.fromIterable(entries)),
  )

/** Deletes every object under `prefix` (best effort is the caller's choice). */
export const deletePrefix = (store: BlobStore, prefix: string): Effect.Effect<number, BlobStoreError> =>
  store.list(prefix).pipe(
    Stream.map((info) => info.key),
    Stream.grouped(1000),
    Stream.runFoldEffect(
      () => 0,
      (n, keys) => Effect.as(store.deleteMany(keys), n + keys.length),
    ),
  )

/** Deletes the pages of committed rounds other than `keep`. */
export const deleteOtherRounds = (store: BlobStore, stream: string, keep: number): Effect.Effect<void, BlobStoreError> =>
  Effect.gen(function* () {
    const keepPrefix = roundPrefix(stream, keep)
    const stale = yield* store.list(`${streamPrefix(stream)}rounds/`).pipe(
      Stream.map((i) => i.key),
      Stream.filter((k) => !k.startsWith(keepPrefix)),
      Stream.runCollect,
    )
    for (let i = 0; i < stale.length; i += 1000) yield* store.deleteMany(stale.slice(i, i + 1000))
  })

// ---------------------------------------------------------------------------
// The journal of a round in progress

/** What landed before a round was interrupted: path -> record (the newest wins). */
export const readJournal = (
  store: BlobStore,
  stream: string,
): Effect.Effect<{ readonly records: Map<string, FileRecord>; readonly objects: number }, BlobStoreError | ReplicationStateError> =>
  Effect.gen(function* () {
    const records = new Map<string, FileRecord>()
    const keys = yield* store.list(journalPrefix(stream)).pipe(
      Stream.map((i) => i.key),
      Stream.runCollect,
    )
    for (const key of keys) {
      const bytes = yield* store.get(key).pipe(
        Effect.catchIf(
          (e) => e.reason === "NotFound",
          () => Effect.succeed(new Uint8Array(0)),
        ),
      )
      // A journal object is written whole (atomic put); a damaged one is ignored (its files are compared again).
      const parsed = yield* Effect.result(parseFileLines(decoder.decode(bytes), `${store.location}/${key}`, stream))
      if (parsed._tag === "Success") for (const r of parsed.success) records.set(r.path, r)
    }
    return { records, objects: keys.length }
  })

export interface Journal {
  /** Records a file that landed; written out within a second (or sooner, by size). */
  readonly add: (record: FileRecord) => Effect.Effect<void, BlobStoreError>
  /** Writes out what is pending (also run when the round is interrupted). */
  readonly flush: Effect.Effect<void, BlobStoreError>
}

const JOURNAL_MAX_RECORDS = 256
const JOURNAL_MAX_BYTES = 32 * 1024 * 1024
const JOURNAL_MAX_AGE_MS = 1000

/** The journal of round `round`: each flush writes one new object (stores cannot append). */
export const makeJournal = (store: BlobStore, stream: string, round: number): Effect.Effect<Journal, BlobStoreError> =>
  Effect.gen(function* () {
    const prefix = journalRoundPrefix(stream, round)
    // Earlier attempts of the same round wrote objects already: number after them.
    const existing = yield* store.list(prefix).pipe(Stream.runCollect)
    let seq = existing.length === 0 ? 0 : Number(existing[existing.length - 1].key.slice(prefix.length, -".jsonl".length)) + 1
    if (!Number.isSafeInteger(seq)) seq = existing.length
    const lock = yield* Semaphore.make(1)
    let pending: Array<FileRecord> = []
    let pendingBytes = 0
    let since = Date.now()
    const flush = Semaphore.withPermit(
      lock,
      Effect.suspend(() => {
        if (pending.length === 0) return Effect.void
        const records = pending
        pending = []
        pendingBytes = 0
        since = Date.now()
        const key = `${prefix}${pad(seq++, 8)}.jsonl`
        return Effect.asVoid(store.put(key, encoder.encode(`${records.map(formatFileLine).join("\n")}\n`)))
      }),
    )
    const add = (record: FileRecord) =>
      Effect.suspend(() => {
        pending.push(record)
        pendingBytes += record.size
        const due = pending.length >= JOURNAL_MAX_RECORDS || pendingBytes >= JOURNAL_MAX_BYTES || Date.now() - since >= JOURNAL_MAX_AGE_MS
        return due ? flush : Effect.void
      })
    return { add, flush }
  })

export { BlobStoreError }
