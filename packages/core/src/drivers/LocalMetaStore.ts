/**
 * LocalMetaStore: the embedded `local` meta driver.
 *
 * The whole keyspace lives in ONE file, `<dir>/meta.json`, that is replaced
 * atomically on every write. Location: `local://<absolute dir>`.
 *
 * # File format (version 1; also documented in `docs/local-meta-format.md`)
 * A UTF-8 JSON object:
 *
 *     {"format":"bendsave-local-meta","version":1,"revision":<integer>,"entries":[
 *     {"key":"<utf8>","value":"<utf8>"},
 *     {"key_b64":"<base64>","value_b64":"<base64>"}
 *     ]}
 *
 * - `format` is exactly `"bendsave-local-meta"`, `version` exactly `1`.
 * - `revision` is an integer >= 0. It increases by exactly 1 on every write
 *   that changes the keyspace (a `replace` with a non-empty diff, a
 *   successful `compareAndSwap` that sets or deletes something); calls that
 *   change nothing do not rewrite the file. A missing file is revision 0.
 * - `entries` holds every key of the file (full keys, whatever the store's
 *   prefix), sorted ascending bytewise by key bytes, no duplicates.
 * - Each entry has exactly one of `key` / `key_b64` and exactly one of
 *   `value` / `value_b64` and nothing else. The plain form holds the bytes as
 *   a JSON string when they are valid UTF-8 (a fatal decoder, BOM kept); the
 *   `_b64` form holds standard padded base64 (RFC 4648 §4) otherwise.
 * - Writers emit the layout above: the header on the first line, one entry
 *   per line, a trailing newline (`"entries":[]}` when empty). Readers accept
 *   any JSON with this structure. Anything else (bad UTF-8 or JSON, another
 *   format or version, unknown fields, unsorted or duplicate keys, bad base64,
 *   lone surrogates in a plain string) is reason `Corrupt`, and the file is
 *   never overwritten.
 *
 * # Crash safety and locking
 * A write goes to `<dir>/.meta.json.tmp-<random hex>` (mode 0600), is fsynced,
 * renamed over `meta.json`, then the directory is fsynced (best effort).
 * Readers never see a half-written file; a temp file left by a crash is
 * ignored. Writers in one process are serialized per directory with a
 * semaphore; across processes they take the advisory lock `<dir>/meta.lock`,
 * created exclusively and holding `{"pid","host","time","token"}` JSON. A lock
 * older than 30 s, or whose pid is dead on this host, is taken over;
 * otherwise the writer retries until `lockWaitMs` passes, then fails with
 * reason `Conflict`.
 *
 * # Prefix
 * With `prefix`, keys in the file stay full keys; the store hands out and
 * takes keys relative to the prefix and reads or changes only keys under it.
 * The revision is the file's, shared by every prefix.
 */
import { Buffer } from "node:buffer"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { hostname } from "node:os"
import * as path from "node:path"
import process from "node:process"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import {
  compareBytes,
  displayKey,
  type MetaDiff,
  type MetaEntry,
  type MetaStore,
  MetaStoreError,
  type MetaStoreErrorReason,
} from "../MetaStore.ts"
import { makeDirectoryTree } from "./Directories.ts"

export interface LocalMetaStoreOptions {
  /** Create the directory (recursively) when it is missing. Default false. */
  readonly create?: boolean
  /** Keys the store exposes are relative to this UTF-8 prefix. Default "". */
  readonly prefix?: string
  /** How long a writer waits for another process's live lock. Default 5000 ms. */
  readonly lockWaitMs?: number
}

export const LOCAL_META_FORMAT = "bendsave-local-meta"
export const LOCAL_META_VERSION = 1
export const LOCAL_META_FILE = "meta.json"
export const LOCAL_META_LOCK_FILE = "meta.lock"
/** A lock older than this is abandoned and taken over. */
export const LOCAL_META_STALE_LOCK_MS = 30_000

const DRIVER = "local"
const SAMPLE_SIZE = 5
const TEMP_PREFIX = ".meta.json.tmp-"

interface State {
  readonly revision: number
  /** Full keys, ascending bytewise, unique. */
  readonly entries: ReadonlyArray<MetaEntry>
}

const emptyState: State = { revision: 0, entries: [] }

// ---------------------------------------------------------------------------
// Byte <-> JSON string encoding

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const utf8Encoder = new TextEncoder()

const utf8Text = (bytes: Uint8Array): string | undefined => {
  try {
    return utf8Decoder.decode(bytes)
  } catch {
    return undefined
  }
}

const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64")

/** Strict standard base64: only canonical, padded text decodes. */
const fromBase64 = (text: string): Uint8Array | undefined => {
  const bytes = Buffer.from(text, "base64")
  return bytes.toString("base64") === text ? Uint8Array.from(bytes) : undefined
}

const loneSurrogate = /\p{Cs}/u

const encodeField = (name: "key" | "value", bytes: Uint8Array): string => {
  const text = utf8Text(bytes)
  return text === undefined ? `"${name}_b64":${JSON.stringify(toBase64(bytes))}` : `"${name}":${JSON.stringify(text)}`
}

const serialize = (state: State): string => {
  const header = `{"format":"${LOCAL_META_FORMAT}","version":${LOCAL_META_VERSION},"revision":${state.revision},"entries":[`
  if (state.entries.length === 0) return `${header}]}\n`
  const lines = state.entries.map((e) => `{${encodeField("key", e.key)},${encodeField("value", e.value)}}`)
  return `${header}\n${lines.join(",\n")}\n]}\n`
}

// ---------------------------------------------------------------------------
// Parsing (untrusted file content)

const Text = Schema.String
const FileEntry = Schema.Union([
  Schema.Struct({ key: Text, value: Text }),
  Schema.Struct({ key: Text, value_b64: Text }),
  Schema.Struct({ key_b64: Text, value: Text }),
  Schema.Struct({ key_b64: Text, value_b64: Text }),
])
const FileHeader = Schema.Struct({ format: Schema.Literal(LOCAL_META_FORMAT), version: Schema.Unknown })
const MetaFile = Schema.Struct({
  format: Schema.Literal(LOCAL_META_FORMAT),
  version: Schema.Literal(LOCAL_META_VERSION),
  revision: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  entries: Schema.Array(FileEntry),
})
const decodeHeader = Schema.decodeUnknownResult(FileHeader)
const decodeMetaFile = Schema.decodeUnknownResult(MetaFile, { onExcessProperty: "error" })

const decodeField = (entry: Record<string, string>, name: "key" | "value", index: number): Result.Result<Uint8Array, string> => {
  const plain = entry[name]
  if (plain !== undefined) {
    return loneSurrogate.test(plain)
      ? Result.fail(`entry ${index}: "${name}" holds a lone UTF-16 surrogate, which is not UTF-8 text`)
      : Result.succeed(utf8Encoder.encode(plain))
  }
  const bytes = fromBase64(entry[`${name}_b64`])
  return bytes === undefined ? Result.fail(`entry ${index}: "${name}_b64" is not canonical padded base64`) : Result.succeed(bytes)
}

/** Parses the bytes of meta.json, or says what is wrong with them. */
const parseFile = (bytes: Uint8Array): Result.Result<State, string> => {
  const text = utf8Text(bytes)
  if (text === undefined) return Result.fail("the file is not valid UTF-8")
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (cause) {
    return Result.fail(`the file is not valid JSON (${cause instanceof Error ? cause.message : String(cause)})`)
  }
  const header = decodeHeader(json)
  if (Result.isSuccess(header) && header.success.version !== LOCAL_META_VERSION) {
    return Result.fail(
      `format version ${JSON.stringify(header.success.version)} is not supported (this bendsave reads version ${LOCAL_META_VERSION})`,
    )
  }
  const decoded = decodeMetaFile(json)
  if (Result.isFailure(decoded)) {
    return Result.fail(`the file is not a ${LOCAL_META_FORMAT} document: ${decoded.failure.message.replace(/\n\s*/g, " ")}`)
  }
  const entries: Array<MetaEntry> = []
  for (const [index, raw] of decoded.success.entries.entries()) {
    const entry = raw as Record<string, string>
    const key = decodeField(entry, "key", index)
    if (Result.isFailure(key)) return Result.fail(key.failure)
    const value = decodeField(entry, "value", index)
    if (Result.isFailure(value)) return Result.fail(value.failure)
    const previous = entries.at(-1)
    if (previous !== undefined) {
      const order = compareBytes(previous.key, key.success)
      if (order === 0) return Result.fail(`entry ${index}: duplicate key '${displayKey(key.success)}'`)
      if (order > 0) {
        return Result.fail(
          `entry ${index}: key '${displayKey(key.success)}' sorts before the previous key '${displayKey(previous.key)}' (entries must be in ascending bytewise key order)`,
        )
      }
    }
    entries.push({ key: key.success, value: value.success })
  }
  return Result.succeed({ revision: decoded.success.revision, entries })
}

// ---------------------------------------------------------------------------
// Sorted-array helpers

const startsWith = (key: Uint8Array, prefix: Uint8Array): boolean => {
  if (key.length < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false
  return true
}

const concatBytes = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/** First index whose key is >= `key`. */
const lowerBound = (entries: ReadonlyArray<MetaEntry>, key: Uint8Array): number => {
  let lo = 0
  let hi = entries.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compareBytes(entries[mid].key, key) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** The index range [start, end) of the keys under `prefix` (they are contiguous). */
const prefixRange = (entries: ReadonlyArray<MetaEntry>, prefix: Uint8Array): readonly [number, number] => {
  const start = lowerBound(entries, prefix)
  let end = start
  while (end < entries.length && startsWith(entries[end].key, prefix)) end++
  return [start, end]
}

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === undefined || b === undefined ? a === b : compareBytes(a, b) === 0

/** Walks the old and new (both sorted, full keys) ranges and counts the differences. */
const computeDiff = (before: ReadonlyArray<MetaEntry>, after: ReadonlyArray<MetaEntry>, prefixLength: number): MetaDiff => {
  const sample = { added: [] as Array<string>, changed: [] as Array<string>, removed: [] as Array<string> }
  const counts = { added: 0, changed: 0, removed: 0, unchanged: 0 }
  const note = (kind: "added" | "changed" | "removed", key: Uint8Array) => {
    counts[kind]++
    if (sample[kind].length < SAMPLE_SIZE) sample[kind].push(displayKey(key.subarray(prefixLength)))
  }
  let i = 0
  let j = 0
  while (i < before.length || j < after.length) {
    const order = i === before.length ? 1 : j === after.length ? -1 : compareBytes(before[i].key, after[j].key)
    if (order < 0) note("removed", before[i++].key)
    else if (order > 0) note("added", after[j++].key)
    else {
      if (sameBytes(before[i].value, after[j].value)) counts.unchanged++
      else note("changed", after[j].key)
      i++
      j++
    }
  }
  return { ...counts, sample }
}

// ---------------------------------------------------------------------------
// Locking

interface LockInfo {
  readonly pid?: number
  readonly host?: string
  readonly time?: string
}

interface LockHolder {
  readonly content: string
  readonly info: LockInfo
  readonly ageMs: number
}

const isProcessAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return (cause as NodeJS.ErrnoException)?.code !== "ESRCH"
  }
}

/** Why a lock may be taken over, or undefined when its holder may still be working. */
const staleReason = (holder: LockHolder): string | undefined => {
  if (holder.ageMs > LOCAL_META_STALE_LOCK_MS) {
    return `it is ${Math.round(holder.ageMs / 1000)} s old (more than ${LOCAL_META_STALE_LOCK_MS / 1000} s)`
  }
  const { pid, host } = holder.info
  if (typeof pid === "number" && host === hostname() && !isProcessAlive(pid)) return `its pid ${pid} is not running`
  return undefined
}

const describeHolder = (holder: LockHolder): string => {
  const { pid, host, time } = holder.info
  const who = typeof pid === "number" ? `pid ${pid}${host ? ` on ${host}` : ""}` : "an unknown process"
  return `${who}${time ? ` since ${time}` : ""}`
}

// ---------------------------------------------------------------------------
// Errors

const errnoCode = (cause: unknown): string | undefined => (cause as NodeJS.ErrnoException | undefined)?.code

const reasonOfErrno = (code: string | undefined): MetaStoreErrorReason => {
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
      return "NotFound"
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return "PermissionDenied"
    case "EAGAIN":
    case "EBUSY":
    case "EMFILE":
    case "ENFILE":
    case "EIO":
      return "Unavailable"
    default:
      return "Unknown"
  }
}

/** Per-directory semaphores: every store instance on one directory in this process shares one. */
const writeSemaphores = new Map<string, Semaphore.Semaphore>()
const writeSemaphoreFor = (dir: string): Semaphore.Semaphore => {
  let semaphore = writeSemaphores.get(dir)
  if (semaphore === undefined) {
    semaphore = Semaphore.makeUnsafe(1)
    writeSemaphores.set(dir, semaphore)
  }
  return semaphore
}

/**
 * Opens the `local` meta store on `dir`. Fails with `NotFound` when the
 * directory is missing (unless `create`), `InvalidConfig` when it is not a
 * directory. The file itself is read on each operation, not here.
 */
export const makeLocalMetaStore = Effect.fnUntraced(function* (
  dir: string,
  options?: LocalMetaStoreOptions,
): Effect.fn.Return<MetaStore, MetaStoreError> {
  const root = path.resolve(dir)
  const metaPath = path.join(root, LOCAL_META_FILE)
  const lockPath = path.join(root, LOCAL_META_LOCK_FILE)
  const prefix = options?.prefix ?? ""
  const prefixBytes = utf8Encoder.encode(prefix)
  const lockWaitMs = options?.lockWaitMs ?? 5_000
  const semaphore = writeSemaphoreFor(root)

  const error = (operation: string, reason: MetaStoreErrorReason, detail: string, cause?: unknown) =>
    new MetaStoreError({ reason, driver: DRIVER, operation, detail, cause })

  const missingDirectory = (operation: string, cause?: unknown) =>
    error(
      operation,
      "NotFound",
      `the meta directory ${root} does not exist; create it (or open the store with create), ` +
        "run `bendsave meta import` to restore metadata into it, or check `[meta] path` in the cluster file",
      cause,
    )

  const fsError = (operation: string, what: string, cause: unknown) => {
    const code = errnoCode(cause)
    // Every path the store touches is directly in `root`, and the expected
    // ENOENTs (meta.json, meta.lock) are handled where they occur: any other
    // ENOENT means the directory itself is gone.
    if (code === "ENOENT") return missingDirectory(operation, cause)
    const message = cause instanceof Error ? cause.message : String(cause)
    return error(operation, reasonOfErrno(code), `${what}: ${message}`, cause)
  }

  const attempt = <A>(operation: string, what: string, run: () => Promise<A>) =>
    Effect.tryPromise({ try: run, catch: (cause) => fsError(operation, what, cause) })

  const directoryExists = async (): Promise<boolean> => {
    try {
      const stat = await fs.stat(root)
      return stat.isDirectory()
    } catch (cause) {
      if (errnoCode(cause) === "ENOENT") return false
      throw cause
    }
  }

  // Open: the directory must exist (or be created).
  const exists = yield* attempt("open", `cannot inspect ${root}`, () =>
    fs.stat(root).then(
      (stat) => (stat.isDirectory() ? "dir" : "other"),
      (cause) => {
        if (errnoCode(cause) === "ENOENT") return "missing" as const
        throw cause
      },
    ),
  )
  if (exists === "other") {
    return yield* error("open", "InvalidConfig", `${root} is not a directory; \`[meta] path\` must name a directory`)
  }
  if (exists === "missing") {
    if (!options?.create) return yield* missingDirectory("open")
    yield* attempt("open", `cannot create ${root}`, () => makeDirectoryTree(root))
  }

  /** Reads and parses meta.json; a missing file in an existing directory is the empty keyspace. */
  const readState = Effect.fnUntraced(function* (operation: string): Effect.fn.Return<State, MetaStoreError> {
    const bytes = yield* attempt(operation, `cannot read ${metaPath}`, async () => {
      try {
        return await fs.readFile(metaPath)
      } catch (cause) {
        if (errnoCode(cause) === "ENOENT" && (await directoryExists())) return undefined
        throw cause
      }
    })
    if (bytes === undefined) return emptyState
    const parsed = parseFile(bytes)
    if (Result.isFailure(parsed)) {
      return yield* error(
        operation,
        "Corrupt",
        `${metaPath} is corrupt: ${parsed.failure}. The file was left untouched; repair it or restore it with \`bendsave meta import\``,
      )
    }
    return parsed.success
  })

  /** Writes a complete new meta.json via temp file + fsync + rename + directory fsync. */
  const writeState = (operation: string, state: State) =>
    attempt(operation, `cannot write ${metaPath}`, async () => {
      const temp = path.join(root, `${TEMP_PREFIX}${randomBytes(8).toString("hex")}`)
      let handle: fs.FileHandle | undefined
      try {
        handle = await fs.open(temp, "wx", 0o600)
        await handle.writeFile(serialize(state), "utf8")
        await handle.sync()
        await handle.close()
        handle = undefined
        await fs.rename(temp, metaPath)
      } catch (cause) {
        await handle?.close().catch(() => undefined)
        await fs.rm(temp, { force: true }).catch(() => undefined)
        throw cause
      }
      try {
        const dirHandle = await fs.open(root, "r")
        try {
          await dirHandle.sync()
        } finally {
          await dirHandle.close()
        }
      } catch {
        // Directory fsync is not supported everywhere (e.g. Windows); the rename is still atomic.
      }
    }).pipe(Effect.uninterruptible)

  const readLock = (operation: string) =>
    attempt(operation, `cannot read ${lockPath}`, async (): Promise<LockHolder | undefined> => {
      try {
        const [content, stat] = await Promise.all([fs.readFile(lockPath, "utf8"), fs.stat(lockPath)])
        let info: LockInfo = {}
        try {
          const parsed: unknown = JSON.parse(content)
          if (parsed !== null && typeof parsed === "object") info = parsed as LockInfo
        } catch {
          // An empty or torn lock file: its holder crashed or is still writing it; judge by mtime.
        }
        const since = typeof info.time === "string" ? Date.parse(info.time) : Number.NaN
        const ageMs = Date.now() - (Number.isNaN(since) ? stat.mtimeMs : since)
        return { content, info, ageMs }
      } catch (cause) {
        if (errnoCode(cause) === "ENOENT") return undefined
        throw cause
      }
    })

  /** Creates the lock file exclusively; false when it already exists. */
  const tryCreateLock = (operation: string, content: string) =>
    attempt(operation, `cannot create ${lockPath}`, async () => {
      let handle: fs.FileHandle
      try {
        handle = await fs.open(lockPath, "wx", 0o644)
      } catch (cause) {
        if (errnoCode(cause) === "EEXIST") return false
        throw cause
      }
      try {
        await handle.writeFile(content, "utf8")
        await handle.close()
      } catch (cause) {
        await handle.close().catch(() => undefined)
        await fs.rm(lockPath, { force: true }).catch(() => undefined)
        throw cause
      }
      return true
    }).pipe(Effect.uninterruptible)

  /**
   * Removes a stale lock. It is renamed aside first and checked to be the same
   * lock that was judged stale; a fresh lock that another process created in
   * between is put back.
   */
  const takeOverLock = (operation: string, staleContent: string) =>
    attempt(operation, `cannot take over ${lockPath}`, async () => {
      const aside = `${lockPath}.stale-${randomBytes(6).toString("hex")}`
      try {
        await fs.rename(lockPath, aside)
      } catch (cause) {
        if (errnoCode(cause) === "ENOENT") return
        throw cause
      }
      const content = await fs.readFile(aside, "utf8").catch(() => staleContent)
      if (content !== staleContent) await fs.link(aside, lockPath).catch(() => undefined)
      await fs.rm(aside, { force: true })
    }).pipe(Effect.uninterruptible)

  const acquireLock = Effect.fnUntraced(function* (operation: string): Effect.fn.Return<string, MetaStoreError> {
    const deadline = Date.now() + lockWaitMs
    while (true) {
      const content = JSON.stringify({
        pid: process.pid,
        host: hostname(),
        time: new Date().toISOString(),
        token: randomBytes(8).toString("hex"),
      })
      if (yield* tryCreateLock(operation, content)) return content
      const holder = yield* readLock(operation)
      if (holder === undefined) continue
      if (staleReason(holder) !== undefined) {
        yield* takeOverLock(operation, holder.content)
        continue
      }
      if (Date.now() >= deadline) {
        return yield* error(
          operation,
          "Conflict",
          `${lockPath} is held by ${describeHolder(holder)}: another bendsave process is writing this metadata. ` +
            `Waited ${lockWaitMs} ms; retry when it is done, or delete the lock file if that process is gone`,
        )
      }
      yield* Effect.sleep(20 + Math.floor(Math.random() * 30))
    }
  })

  const releaseLock = (content: string) =>
    Effect.promise(async () => {
      try {
        if ((await fs.readFile(lockPath, "utf8")) === content) await fs.rm(lockPath, { force: true })
      } catch {
        // Already gone (taken over as stale): nothing to release.
      }
    })

  /**
   * Read-modify-write under the process semaphore and the lock file. `change`
   * returns the result and, when the keyspace changes, the new entries.
   */
  const mutate = <A>(
    operation: string,
    change: (state: State) => { readonly result: A; readonly entries?: ReadonlyArray<MetaEntry> },
  ): Effect.Effect<A, MetaStoreError> =>
    Semaphore.withPermit(
      semaphore,
      Effect.acquireUseRelease(
        acquireLock(operation),
        () =>
          Effect.gen(function* () {
            const state = yield* readState(operation)
            const { result, entries } = change(state)
            if (entries !== undefined) yield* writeState(operation, { revision: state.revision + 1, entries })
            return result
          }),
        releaseLock,
      ),
    )

  const underPrefix = (state: State): ReadonlyArray<MetaEntry> => {
    const [start, end] = prefixRange(state.entries, prefixBytes)
    return state.entries.slice(start, end)
  }

  const relative = (entry: MetaEntry): MetaEntry =>
    prefixBytes.length === 0 ? entry : { key: entry.key.subarray(prefixBytes.length), value: entry.value }

  const fullKey = (key: Uint8Array): Uint8Array => (prefixBytes.length === 0 ? key : concatBytes(prefixBytes, key))

  /** Drains the caller's entries, checking ascending bytewise order without duplicates. */
  const collectInput = Effect.fnUntraced(function* <E>(
    entries: Stream.Stream<MetaEntry, E>,
  ): Effect.fn.Return<Array<MetaEntry>, MetaStoreError | E> {
    const collected: Array<MetaEntry> = []
    let previous: Uint8Array | undefined
    yield* Stream.runForEachArray(entries, (chunk): Effect.Effect<void, MetaStoreError> => {
      for (const entry of chunk) {
        const order = previous === undefined ? -1 : compareBytes(previous, entry.key)
        if (previous !== undefined && order >= 0) {
          const problem =
            order === 0
              ? `duplicate key '${displayKey(entry.key)}'`
              : `key '${displayKey(entry.key)}' comes after '${displayKey(previous)}'`
          return Effect.fail(
            error(
              "replace",
              "InvalidInput",
              `entries must be in ascending bytewise key order without duplicates: ${problem} (entry ${collected.length}); nothing was written`,
            ),
          )
        }
        previous = entry.key
        collected.push({ key: fullKey(entry.key), value: entry.value })
      }
      return Effect.void
    })
    return collected
  })

  const store: MetaStore = {
    driver: DRIVER,
    location: `local://${root}`,
    prefix,

    snapshot: () =>
      Effect.map(readState("snapshot"), (state) => ({
        revision: state.revision,
        entries: Stream.fromIterable(underPrefix(state).map(relative)),
      })),

    replace: <E>(entries: Stream.Stream<MetaEntry, E>, replaceOptions?: { readonly dryRun?: boolean }) =>
      Effect.gen(function* () {
        const next = yield* collectInput(entries)
        const plan = (state: State) => {
          const [start, end] = prefixRange(state.entries, prefixBytes)
          const diff = computeDiff(state.entries.slice(start, end), next, prefixBytes.length)
          const changes = diff.added + diff.changed + diff.removed
          return {
            result: diff,
            entries: changes === 0 ? undefined : [...state.entries.slice(0, start), ...next, ...state.entries.slice(end)],
          }
        }
        if (replaceOptions?.dryRun) return plan(yield* readState("replace")).result
        return yield* mutate("replace", plan)
      }),

    get: (key) =>
      Effect.map(readState("get"), (state) => {
        const full = fullKey(key)
        const index = lowerBound(state.entries, full)
        const entry = state.entries[index]
        return entry !== undefined && compareBytes(entry.key, full) === 0 ? entry.value : undefined
      }),

    compareAndSwap: (key, expected, next) =>
      mutate("compareAndSwap", (state) => {
        const full = fullKey(key)
        const index = lowerBound(state.entries, full)
        const found = state.entries[index]
        const present = found !== undefined && compareBytes(found.key, full) === 0
        const current = present ? found.value : undefined
        if (!sameBytes(current, expected)) return { result: false }
        if (sameBytes(current, next)) return { result: true }
        const entries = [...state.entries]
        if (next === undefined) entries.splice(index, 1)
        else entries.splice(index, present ? 1 : 0, { key: full, value: next })
        return { result: true, entries }
      }),
  }
  return store
})
