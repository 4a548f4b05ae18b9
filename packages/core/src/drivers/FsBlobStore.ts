/**
 * FsBlobStore: a BlobStore over a local directory (driver "fs").
 *
 * # Layout
 * A key maps to the file `<root>/<segment>/.../<segment>`. Because a file and
 * a directory cannot share a path, this driver cannot hold both `a` and `a/x`;
 * a put that would need that fails with reason `InvalidKey`.
 *
 * # Writes
 * A put streams the body into a temp file `.<basename>.tmp-<16 hex>` in the
 * target's directory, fsyncs it and then renames it over the target (or, for
 * `ifNotExists`, hard-links it to the target, which fails with EEXIST if the
 * target exists: an atomic create-only write), and finally fsyncs the
 * directory (puts landing in one directory at the same time share that
 * fsync; each still returns only after a sync that began after its rename).
 * A missing directory is created (and its parents fsynced) when the temp
 * file's open finds it missing. A put that fails or is interrupted removes
 * its temp file (a successful one has moved it). Readers therefore see the
 * previous file or the whole new one. A process killed mid-write leaves its
 * temp file; the name carries a tag of the host and the writer's pid
 * (`.<name>.tmp-<host 4 hex><pid 6 hex><counter 6 hex>`), and
 * `sweepLeftovers` removes those that no live writer can still be writing:
 * written on this host by a pid that no longer runs, or not modified for an
 * hour (a writer on another host, or a pid reused since); never one this
 * process is writing. Create-only puts need a file system with hard links.
 *
 * # Listing
 * `list` walks the tree lazily, one directory at a time, ordering each
 * directory's entries by the UTF-8 bytes of `name` (files) or `name + "/"`
 * (directories), which yields keys in ascending bytewise order. Temp files
 * are skipped, and a key whose last segment looks like a temp name is
 * rejected with `InvalidKey` so no object can hide behind that rule.
 *
 * # Symlinks
 * Symbolic links are not objects: `list` skips them (and never descends into
 * linked directories), `head` reports them as missing and reads open the
 * final path component with O_NOFOLLOW. Keys are validated and resolved
 * against the root, so a key can never name a path outside it.
 *
 * Only `node:fs` is used, so the driver runs on Node, Bun and Deno.
 */
import { Buffer } from "node:buffer"
import { createHash, randomBytes } from "node:crypto"
import type { BigIntStats, Dir, Dirent } from "node:fs"
import {
  close as closeFd,
  constants as fsConstants,
  fstat as fstatFd,
  fsync as fsyncFd,
  lstatSync,
  open as openFd,
  read as readFd,
  write as writeFd,
} from "node:fs"
import * as fs from "node:fs/promises"
import { hostname } from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import type * as Arr from "effect/Array"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Stream from "effect/Stream"
import type { BlobStore, BlobStoreErrorReason, Body, Capabilities, ObjectInfo, PutOptions } from "../BlobStore.ts"
import { BlobStoreError, keyProblem } from "../BlobStore.ts"
import { makeDirectoryTree } from "./Directories.ts"

const driver = "fs"

const capabilities: Capabilities = {
  conditionalPut: true,
  rangeRead: true,
  batchDelete: false,
  serverSideCopy: true,
  maxObjectSize: Number.MAX_SAFE_INTEGER,
}

/** Size of the chunks `getStream` reads. */
const streamChunkSize = 1024 * 1024
/** How many keys `list` stats and emits at a time. */
const listBatchSize = 256
/** How many deletes `deleteMany` runs at once. */
const deleteConcurrency = 16
/** How often a write re-creates its directory when a concurrent delete pruned it. */
const missingDirRetries = 3

const tempNamePattern = /^\..*\.tmp-[0-9a-f]{16}$/
/** 4 hex digits naming this host in temp names (so a sweep can tell its own host's dead writers). */
const hostTag = (createHash("sha256").update(hostname()).digest("hex") as string).slice(0, 4)
/**
 * `.<basename>.tmp-<host tag: 4 hex><pid: 6 hex><counter: 6 hex>`; the counter starts at a random
 * value (an O_EXCL open fails rather than share a name).
 */
const tempPrefix = `${hostTag}${(process.pid & 0xffffff).toString(16).padStart(6, "0")}`
let tempCounter = randomBytes(3).readUIntBE(0, 3)
const tempName = (basename: string): string => {
  tempCounter = (tempCounter + 1) & 0xffffff
  return `.${basename}.tmp-${tempPrefix}${tempCounter.toString(16).padStart(6, "0")}`
}
/** Temp files this process is writing now (absolute paths): a sweep never removes them. */
const ownTemps = new Set<string>()
/**
 * A temp file not modified for this long is a leftover whoever wrote it: a live
 * writer writes its body without pause and renames it right after the fsync.
 */
export const STALE_TEMP_AGE_MS = 60 * 60 * 1000

/** Whether process `pid` of this host is gone (EPERM: it runs, as another user). */
const pidGone = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return false
  } catch (cause) {
    return errnoCode(cause) === "ESRCH"
  }
}

/**
 * Whether no live writer can still be writing the temp file `name`: written on
 * this host by a pid (not ours) that no longer runs, or not modified for
 * `STALE_TEMP_AGE_MS` (another host's writer, a reused pid, our own pid from
 * an earlier process, an unknown tag).
 */
const tempIsStale = (name: string, mtimeMs: number, now: number): boolean => {
  const tag = name.slice(-16)
  if (tag.slice(0, 4) === hostTag) {
    const pid = Number.parseInt(tag.slice(4, 10), 16)
    if (pid > 0 && pid !== (process.pid & 0xffffff) && pidGone(pid)) return true
  }
  return now - mtimeMs > STALE_TEMP_AGE_MS
}

/**
 * Removes stale temp files under `root` (see `tempIsStale`); returns how many.
 * Directories are read as streams (memory stays flat for a directory of
 * millions of blocks); symlinks are never followed.
 */
const sweepTempFiles = async (root: string): Promise<number> => {
  let removed = 0
  const visit = async (dir: string): Promise<void> => {
    let handle: Dir
    try {
      handle = await fs.opendir(dir, { bufferSize: 256 })
    } catch {
      return
    }
    const subdirectories: Array<string> = []
    for await (const entry of handle) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) subdirectories.push(full)
      else if (entry.isFile() && tempNamePattern.test(entry.name) && !ownTemps.has(full)) {
        const stats = await fs.lstat(full).catch(() => undefined)
        if (stats?.isFile() && tempIsStale(entry.name, stats.mtimeMs, Date.now())) {
          await fs.unlink(full).then(
            () => removed++,
            () => undefined,
          )
        }
      }
    }
    for (const sub of subdirectories) await visit(sub)
  }
  await visit(root)
  return removed
}

// ---------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------

/** What `classifyError` needs to know about the failed call. */
export interface ErrorContext {
  readonly operation: string
  readonly key?: string | undefined
  /**
   * "write" when the failing call created or replaced the key's file: a path
   * that is (or runs through) the wrong kind of file is then a key conflict
   * (`InvalidKey`) rather than a missing object (`NotFound`). Default "read".
   */
  readonly access?: "read" | "write" | undefined
}

const errnoCode = (cause: unknown): string | undefined =>
  Predicate.hasProperty(cause, "code") && Predicate.isString(cause.code) ? cause.code : undefined

/** Maps a failure of a `node:fs` call to a BlobStoreError; the one place errno codes become reasons. */
export const classifyError = (cause: unknown, context: ErrorContext): BlobStoreError => {
  if (cause instanceof BlobStoreError) return cause
  const code = errnoCode(cause)
  const osMessage = cause instanceof Error ? cause.message : String(cause)
  const fail = (reason: BlobStoreErrorReason, detail: string) =>
    new BlobStoreError({
      reason,
      driver,
      operation: context.operation,
      key: context.key,
      detail: `${detail} (${osMessage})`,
      cause,
    })
  switch (code) {
    case "ENOENT":
      return fail("NotFound", "no such object or directory")
    case "EEXIST":
      return fail("AlreadyExists", "the object already exists")
    case "EACCES":
    case "EPERM":
      return fail("PermissionDenied", "the operating system denied access")
    case "EROFS":
      return fail("PermissionDenied", "the file system is read-only")
    case "ENOSPC":
      return fail("Unknown", "no space left on device")
    case "EDQUOT":
      return fail("Unknown", "disk quota exceeded")
    case "EMFILE":
    case "ENFILE":
    case "EAGAIN":
    case "EBUSY":
      return fail("Unavailable", "the file system is temporarily busy or out of file descriptors")
    case "ENOTDIR":
    case "EISDIR":
    case "ELOOP":
      return context.access === "write"
        ? fail("InvalidKey", "the key conflicts with an existing object or directory (the fs driver cannot store both 'a' and 'a/...')")
        : fail("NotFound", "no such object")
    case "ENAMETOOLONG":
      return fail("InvalidKey", "a key segment is too long for the file system")
    case "ENOTSUP":
    case "EOPNOTSUPP":
      return fail("Unsupported", "the file system does not support this operation (create-only puts need hard links)")
    default:
      return fail("Unknown", code === undefined ? "unexpected failure" : `unexpected error ${code}`)
  }
}

const attempt = <A>(context: ErrorContext, run: () => Promise<A>): Effect.Effect<A, BlobStoreError> =>
  Effect.tryPromise({ try: run, catch: (cause) => classifyError(cause, context) })

const invalidKey = (operation: string, key: string, detail: string) =>
  new BlobStoreError({ reason: "InvalidKey", driver, operation, key, detail })

const notFound = (operation: string, key: string) =>
  new BlobStoreError({ reason: "NotFound", driver, operation, key, detail: "no such object" })

// ---------------------------------------------------------------------------
// Plain file-system steps (promises; wrapped in Effect by the store methods)
// ---------------------------------------------------------------------------

const objectInfo = (key: string, stats: BigIntStats): ObjectInfo => ({
  key,
  size: Number(stats.size),
  etag: `${stats.ino.toString(16)}-${stats.size.toString(16)}-${stats.mtimeNs.toString(16)}`,
  lastModified: Number(stats.mtimeMs),
})

/** fsync a directory so entries created or renamed in it survive a crash; a no-op where directories cannot be synced. */
const syncDirectory = (dir: string): Promise<void> =>
  // Plain descriptors and callbacks: a FileHandle costs several times more per call, and this runs once per put.
  new Promise<void>((resolve, reject) => {
    const unsupported = (cause: unknown) => {
      const code = errnoCode(cause)
      return code === "EINVAL" || code === "EISDIR" || code === "EPERM"
    }
    openFd(dir, "r", (openError, fd) => {
      if (openError !== null) return unsupported(openError) ? resolve() : reject(openError)
      fsyncFd(fd, (syncError) => closeFd(fd, () => (syncError !== null && !unsupported(syncError) ? reject(syncError) : resolve())))
    })
  })

/**
 * Directory fsyncs shared by concurrent writers ("group commit"): a writer
 * that asks while a sync of the same directory is running waits for the NEXT
 * sync (the running one may have started before its rename), and everyone
 * who asks during one sync shares the next. Each caller still returns only
 * once a sync that started after its request has finished, so a put is
 * durable when it returns, with far fewer fsyncs when puts land side by side.
 */
interface Waiter {
  readonly promise: Promise<void>
  readonly resolve: () => void
  readonly reject: (cause: unknown) => void
}
const makeWaiter = (): Waiter => {
  let resolve!: () => void
  let reject!: (cause: unknown) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}
const directorySyncs = new Map<string, { next: Waiter | undefined }>()
const syncDirectoryShared = (dir: string): Promise<void> => {
  const running = directorySyncs.get(dir)
  if (running !== undefined) {
    running.next ??= makeWaiter()
    return running.next.promise
  }
  const state: { next: Waiter | undefined } = { next: undefined }
  directorySyncs.set(dir, state)
  const first = makeWaiter()
  void (async () => {
    for (let current: Waiter | undefined = first; current !== undefined; current = state.next) {
      state.next = undefined
      try {
        await syncDirectory(dir)
        current.resolve()
      } catch (cause) {
        current.reject(cause)
      }
    }
    directorySyncs.delete(dir)
  })()
  return first.promise
}

/**
 * `mkdir -p`, then fsync the parents of every directory it created. A file
 * in the way is reported as ENOTDIR (mkdir says EEXIST when it is `dir` itself).
 */
const makeDirectories = async (dir: string): Promise<void> => {
  const firstCreated = await makeDirectoryTree(dir)
  if (firstCreated === undefined) return
  let current = dir
  while (current !== firstCreated) {
    current = path.dirname(current)
    await syncDirectory(current)
  }
  await syncDirectory(path.dirname(firstCreated))
}

/** Runs `step`, re-creating `dir` and retrying when it fails with ENOENT (a concurrent delete pruned `dir`). */
const inDirectory = async <A>(dir: string, step: () => Promise<A>): Promise<A> => {
  for (let attempt = 0; ; attempt++) {
    try {
      return await step()
    } catch (cause) {
      if (errnoCode(cause) !== "ENOENT" || attempt >= missingDirRetries) throw cause
      await makeDirectories(dir)
    }
  }
}

/** Removes a temp file, ignoring errors (it may never have been created). */
const removeQuietly = (file: string): Effect.Effect<void> => Effect.promise(() => fs.unlink(file).catch(() => undefined))

/** After a put or copy: its temp file is no longer ours; a failed or interrupted one removes it (a successful one moved it). */
const settleTemp = (temp: string, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
  ownTemps.delete(temp)
  return exit._tag === "Failure" ? removeQuietly(temp) : Effect.void
}

const closeQuietly = (handle: fs.FileHandle): Effect.Effect<void> => Effect.promise(() => handle.close().catch(() => undefined))

/** Reads into `target` from `position` until it is full or the file ends; returns the bytes read. */
const readFully = async (handle: fs.FileHandle, target: Uint8Array, position: number): Promise<number> => {
  let filled = 0
  while (filled < target.length) {
    const { bytesRead } = await handle.read(target, filled, target.length - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

// Plain descriptors for the one-call paths (a whole get, a put of bytes): a FileHandle costs
// several times more per call than a descriptor and a callback, and these run once per object.
const openP = promisify(openFd)
const fstatP = promisify(fstatFd)
const fsyncP = promisify(fsyncFd)
const readP = promisify(readFd)
const writeP = promisify(writeFd)
const closeFdQuietly = (fd: number): Promise<void> => new Promise((resolve) => closeFd(fd, () => resolve()))

const readFdFully = async (fd: number, target: Uint8Array, position: number): Promise<number> => {
  let filled = 0
  while (filled < target.length) {
    const { bytesRead } = await readP(fd, target, filled, target.length - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

const writeFdFully = async (fd: number, bytes: Uint8Array): Promise<void> => {
  let written = 0
  while (written < bytes.length) {
    const { bytesWritten } = await writeP(fd, bytes, written, bytes.length - written)
    written += bytesWritten
  }
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

interface DirEntry {
  readonly name: string
  readonly isDirectory: boolean
  readonly sortKey: Buffer
}

interface DirFrame {
  /** Key prefix of the directory's entries ("" for the root, else ending in "/"). */
  readonly keyPrefix: string
  readonly entries: ReadonlyArray<DirEntry>
  index: number
  /** Reads of the subdirectories just ahead of `index`, started early (by entry index). */
  readonly prefetched: Map<number, Promise<DirFrame | undefined>>
}

/** Subdirectories read ahead of the walk in each directory, and stat batches in flight. */
const DIRECTORIES_AHEAD = 8
const STAT_BATCHES_AHEAD = 2

/** One directory's entries that can start a key with `namePrefix`, in bytewise key order; undefined if it is gone. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/**
 * Reads one directory, sorted bytewise. A file or directory whose name cannot
 * be a key (not UTF-8, a backslash, ...) fails the listing with InvalidKey
 * naming it: silently leaving it out would make a backup incomplete.
 */
const readSortedDirectory = async (root: string, keyPrefix: string, namePrefix: string): Promise<DirFrame | undefined> => {
  const dir = path.join(root, keyPrefix)
  let dirents: Array<Dirent>
  try {
    dirents = await fs.readdir(dir, { withFileTypes: true })
  } catch (cause) {
    const code = errnoCode(cause)
    if (code === "ENOENT" || code === "ENOTDIR") return undefined
    throw cause
  }
  // A name that is not UTF-8 comes back with U+FFFD in it; read the raw names to tell.
  if (dirents.some((d) => d.name.includes("\uFFFD"))) {
    for (const raw of await fs.readdir(dir, { encoding: "buffer" })) {
      try {
        strictUtf8.decode(raw)
      } catch {
        throw invalidKey(
          "list",
          `${keyPrefix}${raw.toString("latin1")}`,
          `the name ${JSON.stringify(raw.toString("latin1"))} in ${dir} is not valid UTF-8, so it cannot be listed or backed up; rename it`,
        )
      }
    }
  }
  const entries: Array<DirEntry> = []
  for (const dirent of dirents) {
    const name = dirent.name
    if (!name.startsWith(namePrefix)) continue
    // Symlinks, sockets, FIFOs and devices are not objects: skipped.
    const isDirectory = dirent.isDirectory()
    if (!isDirectory && (!dirent.isFile() || tempNamePattern.test(name))) continue
    const problem = keyProblem(name)
    if (problem !== undefined) {
      throw invalidKey("list", `${keyPrefix}${name}`, `${problem}: it cannot be listed or backed up; rename it`)
    }
    entries.push({ name, isDirectory, sortKey: Buffer.from(isDirectory ? `${name}/` : name) })
  }
  entries.sort((a, b) => Buffer.compare(a.sortKey, b.sortKey))
  return { keyPrefix, entries, index: 0, prefetched: new Map() }
}

/**
 * A buffer for `n` bytes that are about to be read into it: not zero-filled
 * (only the bytes actually read are ever handed out) and with an ArrayBuffer of
 * its own (never a slice of Node's shared pool).
 */
const uninitialized = (n: number): Uint8Array => Buffer.allocUnsafeSlow(n)

/** Stats a batch of listed keys; keys deleted (or replaced by non-files) since the directory was read are dropped. */
const statKeys = async (root: string, keys: ReadonlyArray<string>): Promise<Array<ObjectInfo>> => {
  // Synchronous lstat: a batch takes a millisecond or two, several times less than the
  // same calls through the thread pool, and the walk runs between batches anyway.
  const infos: Array<ObjectInfo> = []
  for (const key of keys) {
    let stats: BigIntStats
    try {
      stats = lstatSync(path.join(root, key), { bigint: true })
    } catch (cause) {
      const code = errnoCode(cause)
      if (code === "ENOENT" || code === "ENOTDIR") continue
      throw cause
    }
    if (stats.isFile()) infos.push(objectInfo(key, stats))
  }
  return infos
}

/**
 * Depth-first walk yielding non-empty batches of keys starting with `prefix`
 * in ascending bytewise order. Memory holds one directory listing per level of
 * the current path, never the whole tree.
 */
async function* walkKeys(root: string, prefix: string): AsyncGenerator<Arr.NonEmptyReadonlyArray<ObjectInfo>> {
  const cut = prefix.lastIndexOf("/") + 1
  const startPrefix = prefix.slice(0, cut)
  // A prefix whose directory part breaks the key rules matches no valid key.
  if (startPrefix !== "" && keyProblem(startPrefix.slice(0, -1)) !== undefined) return
  const start = await readSortedDirectory(root, startPrefix, prefix.slice(cut))
  if (start === undefined) return
  const stack: Array<DirFrame> = [start]
  let pending: Array<string> = []
  // Stat batches run while the walk goes on; they are yielded in order.
  const inFlight: Array<Promise<Array<ObjectInfo>>> = []
  const startStats = (keys: ReadonlyArray<string>) => {
    const batch = statKeys(root, keys)
    batch.catch(() => {}) // observed when its turn to be yielded comes
    inFlight.push(batch)
  }
  const readAhead = (frame: DirFrame) => {
    for (let i = frame.index, seen = 0; i < frame.entries.length && seen < DIRECTORIES_AHEAD; i++) {
      const entry = frame.entries[i]
      if (!entry.isDirectory) continue
      seen++
      if (!frame.prefetched.has(i)) {
        const read = readSortedDirectory(root, `${frame.keyPrefix}${entry.name}/`, "")
        read.catch(() => {}) // observed when the walk reaches it
        frame.prefetched.set(i, read)
      }
    }
  }
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]
    if (frame.index >= frame.entries.length) {
      stack.pop()
      continue
    }
    const index = frame.index++
    const entry = frame.entries[index]
    const key = frame.keyPrefix + entry.name
    if (entry.isDirectory) {
      readAhead(frame)
      const read = frame.prefetched.get(index) ?? readSortedDirectory(root, `${key}/`, "")
      frame.prefetched.delete(index)
      const child = await read
      if (child !== undefined) stack.push(child)
      continue
    }
    pending.push(key)
    if (pending.length >= listBatchSize) {
      startStats(pending)
      pending = []
      if (inFlight.length > STAT_BATCHES_AHEAD) {
        const infos = await inFlight.shift()!
        if (infos.length > 0) yield infos as Arr.NonEmptyArray<ObjectInfo>
      }
    }
  }
  if (pending.length > 0) startStats(pending)
  for (const batch of inFlight) {
    const infos = await batch
    if (infos.length > 0) yield infos as Arr.NonEmptyArray<ObjectInfo>
  }
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

/** Opens a BlobStore over the directory `root`; with `create: true` the directory is created if missing. */
export const makeFsBlobStore = Effect.fnUntraced(function* (
  root: string,
  options?: { readonly create?: boolean },
): Effect.fn.Return<BlobStore, BlobStoreError> {
  const rootDir = path.resolve(root)
  const rootWithSep = rootDir.endsWith(path.sep) ? rootDir : rootDir + path.sep
  if (options?.create === true) {
    yield* Effect.tryPromise({
      try: () => makeDirectories(rootDir),
      catch: (cause) => {
        const inTheWay = (cause as { path?: unknown }).path
        if (errnoCode(cause) === "ENOTDIR" && typeof inTheWay === "string") {
          return new BlobStoreError({
            reason: "InvalidConfig",
            driver,
            operation: "open",
            detail: `cannot create the directory ${rootDir}: ${inTheWay === rootDir ? "it" : inTheWay} is a file, not a directory`,
            fix: `give the path of a directory (a missing one is created), or move the file ${inTheWay} out of the way`,
            cause,
          })
        }
        const error = classifyError(cause, { operation: "open", access: "write" })
        return new BlobStoreError({
          reason: error.reason,
          driver,
          operation: "open",
          detail: `cannot create the directory ${rootDir}: ${error.detail}`,
          fix:
            error.reason === "PermissionDenied"
              ? "choose a directory this user may write to, or give it the permission"
              : "check the path: a missing directory is created inside an existing, writable one",
          cause,
        })
      },
    })
  }
  const rootStats = yield* attempt({ operation: "open" }, () => fs.stat(rootDir)).pipe(
    Effect.mapError((error) =>
      error.reason === "NotFound"
        ? new BlobStoreError({
            reason: "NotFound",
            driver,
            operation: "open",
            detail: `the directory ${rootDir} does not exist; create it (mkdir -p '${rootDir}') or open the store with { create: true }`,
            cause: error.cause,
          })
        : error,
    ),
  )
  if (!rootStats.isDirectory()) {
    return yield* new BlobStoreError({
      reason: "InvalidConfig",
      driver,
      operation: "open",
      detail: `${rootDir} is a file, not a directory`,
      fix: "give the path of a directory, not of a file",
    })
  }

  /** Validates `key` and returns its absolute path, which is always inside the root. */
  const resolveKey = (operation: string, key: string): Effect.Effect<string, BlobStoreError> => {
    const problem = keyProblem(key)
    if (problem !== undefined) return Effect.fail(invalidKey(operation, key, problem))
    const segments = key.split("/")
    if (tempNamePattern.test(segments[segments.length - 1])) {
      return Effect.fail(invalidKey(operation, key, "the last segment looks like a temp file of the fs driver"))
    }
    const file = path.resolve(rootDir, ...segments)
    if (!file.startsWith(rootWithSep)) {
      return Effect.fail(invalidKey(operation, key, "the key resolves to a path outside the store's root"))
    }
    return Effect.succeed(file)
  }

  /** Opens the object for reading, with its size; missing, directory or symlink -> NotFound. */
  const openObject = Effect.fnUntraced(function* (operation: string, key: string) {
    const file = yield* resolveKey(operation, key)
    const handle = yield* attempt({ operation, key }, () => fs.open(file, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0)))
    const stats = yield* attempt({ operation, key }, () => handle.stat({ bigint: true })).pipe(Effect.tapError(() => closeQuietly(handle)))
    if (!stats.isFile()) {
      yield* closeQuietly(handle)
      return yield* notFound(operation, key)
    }
    return { handle, size: Number(stats.size) }
  })

  const withObject = <A>(
    operation: string,
    key: string,
    use: (handle: fs.FileHandle, size: number) => Effect.Effect<A, BlobStoreError>,
  ): Effect.Effect<A, BlobStoreError> =>
    Effect.acquireUseRelease(
      openObject(operation, key),
      ({ handle, size }) => use(handle, size),
      ({ handle }) => closeQuietly(handle),
    )

  const get = (key: string) =>
    Effect.flatMap(resolveKey("get", key), (file) =>
      attempt({ operation: "get", key }, async () => {
        const fd = await openP(file, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0))
        try {
          const stats = await fstatP(fd)
          if (!stats.isFile()) throw notFound("get", key)
          const bytes = uninitialized(stats.size)
          const read = await readFdFully(fd, bytes, 0)
          return read === bytes.length ? bytes : bytes.slice(0, read)
        } finally {
          await closeFdQuietly(fd)
        }
      }),
    )

  const getRange = (key: string, offset: number, length: number) =>
    withObject("getRange", key, (handle, size) => {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
        return Effect.fail(
          new BlobStoreError({
            reason: "RangeNotSatisfiable",
            driver,
            operation: "getRange",
            key,
            detail: `offset and length must be non-negative integers (got ${offset}, ${length})`,
          }),
        )
      }
      if (offset > size) {
        return Effect.fail(
          new BlobStoreError({
            reason: "RangeNotSatisfiable",
            driver,
            operation: "getRange",
            key,
            detail: `offset ${offset} is past the end of the object (size ${size})`,
          }),
        )
      }
      return attempt({ operation: "getRange", key }, async () => {
        const bytes = uninitialized(Math.min(length, size - offset))
        const read = await readFully(handle, bytes, offset)
        return read === bytes.length ? bytes : bytes.slice(0, read)
      })
    })

  const getStream = (key: string): Stream.Stream<Uint8Array, BlobStoreError> =>
    Stream.unwrap(
      Effect.gen(function* () {
        const { handle, size } = yield* Effect.acquireRelease(openObject("getStream", key), ({ handle }) => closeQuietly(handle))
        return Stream.paginate(0, (position: number) =>
          attempt({ operation: "getStream", key }, async () => {
            const chunk = uninitialized(Math.min(streamChunkSize, size - position))
            const read = await readFully(handle, chunk, position)
            const end = position + read
            const next = read > 0 && end < size ? Option.some(end) : Option.none<number>()
            return [read === 0 ? [] : [read === chunk.length ? chunk : chunk.slice(0, read)], next] as const
          }),
        )
      }),
    )

  /** Streams `body` into a new exclusive temp file in `dir`, fsyncs it and returns its stats. */
  const writeTemp = (key: string, dir: string, temp: string, body: Body) =>
    Effect.acquireUseRelease(
      attempt({ operation: "put", key, access: "write" }, () => inDirectory(dir, () => openP(temp, "wx"))),
      (fd) => {
        const syncAndStat = async () => {
          await fsyncP(fd)
          return fstatP(fd, { bigint: true })
        }
        return body instanceof Uint8Array
          ? attempt({ operation: "put", key }, async () => {
              await writeFdFully(fd, body)
              return syncAndStat()
            })
          : Stream.runForEach(body, (chunk) => attempt({ operation: "put", key }, () => writeFdFully(fd, chunk))).pipe(
              Effect.andThen(attempt({ operation: "put", key }, syncAndStat)),
            )
      },
      (fd) => Effect.promise(() => closeFdQuietly(fd)),
    )

  /** Moves a finished temp file to `file`: rename (replace) or link + unlink (create-only). */
  const commit = (operation: string, key: string, temp: string, file: string, ifNotExists: boolean) =>
    attempt({ operation, key, access: "write" }, async () => {
      if (!ifNotExists) return fs.rename(temp, file)
      try {
        await fs.link(temp, file)
      } catch (cause) {
        // EEXIST also means "a directory is in the way", which is a key conflict.
        if (
          errnoCode(cause) === "EEXIST" &&
          (await fs.lstat(file).then(
            (s) => s.isDirectory(),
            () => false,
          ))
        ) {
          throw invalidKey(operation, key, "a directory of other keys is in the way (the fs driver cannot store both 'a' and 'a/...')")
        }
        throw cause
      }
      await fs.unlink(temp)
    }).pipe(Effect.andThen(attempt({ operation, key }, () => syncDirectoryShared(path.dirname(file)))))

  const put = (key: string, body: Body, options?: PutOptions): Effect.Effect<ObjectInfo, BlobStoreError> =>
    Effect.gen(function* () {
      const file = yield* resolveKey("put", key)
      const dir = path.dirname(file)
      const temp = path.join(dir, tempName(path.basename(file)))
      ownTemps.add(temp)
      return yield* Effect.gen(function* () {
        // The temp file's open creates the directories when they are missing (inDirectory).
        const stats = yield* writeTemp(key, dir, temp, body)
        yield* commit("put", key, temp, file, options?.ifNotExists === true)
        return objectInfo(key, stats)
      }).pipe(Effect.onExit((exit) => settleTemp(temp, exit)))
    })

  const head = (key: string) =>
    Effect.gen(function* () {
      const file = yield* resolveKey("head", key)
      const stats = yield* attempt({ operation: "head", key }, () => fs.lstat(file, { bigint: true }))
      if (!stats.isFile()) return yield* notFound("head", key)
      return objectInfo(key, stats)
    })

  const list = (prefix: string): Stream.Stream<ObjectInfo, BlobStoreError> =>
    Stream.suspend(() => Stream.fromAsyncIterable(walkKeys(rootDir, prefix), (cause) => classifyError(cause, { operation: "list" }))).pipe(
      Stream.flattenArray,
    )

  /** Removes now-empty directories from `dir` up to (not including) the root; best effort. */
  const pruneDirectories = async (dir: string): Promise<void> => {
    for (let current = dir; current.startsWith(rootWithSep); current = path.dirname(current)) {
      try {
        await fs.rmdir(current)
      } catch {
        return
      }
    }
  }

  const deleteFile = (key: string, file: string) =>
    attempt({ operation: "delete", key }, async () => {
      try {
        await fs.unlink(file)
      } catch (cause) {
        const code = errnoCode(cause)
        if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return
        // macOS reports unlink() of a directory as EPERM.
        if (
          code === "EPERM" &&
          (await fs.lstat(file).then(
            (s) => s.isDirectory(),
            () => false,
          ))
        )
          return
        throw cause
      }
      await pruneDirectories(path.dirname(file))
    })

  const remove = (key: string) => Effect.flatMap(resolveKey("delete", key), (file) => deleteFile(key, file))

  const deleteMany = (keys: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      const files = yield* Effect.forEach(keys, (key) => resolveKey("deleteMany", key))
      yield* Effect.forEach(keys, (key, i) => deleteFile(key, files[i]), {
        concurrency: deleteConcurrency,
        discard: true,
      })
    })

  const copy = (from: string, to: string) =>
    Effect.gen(function* () {
      const source = yield* resolveKey("copy", from)
      const file = yield* resolveKey("copy", to)
      const sourceStats = yield* attempt({ operation: "copy", key: from }, () => fs.lstat(source))
      if (!sourceStats.isFile()) return yield* notFound("copy", from)
      const dir = path.dirname(file)
      const temp = path.join(dir, tempName(path.basename(file)))
      ownTemps.add(temp)
      return yield* Effect.gen(function* () {
        yield* attempt({ operation: "copy", key: to, access: "write" }, () => makeDirectories(dir))
        yield* attempt({ operation: "copy", key: from }, () => inDirectory(dir, () => fs.copyFile(source, temp, fsConstants.COPYFILE_EXCL)))
        const stats = yield* attempt({ operation: "copy", key: to }, async () => {
          const handle = await fs.open(temp, "r+")
          try {
            await handle.sync()
            return await handle.stat({ bigint: true })
          } finally {
            await handle.close()
          }
        })
        yield* commit("copy", to, temp, file, false)
        return objectInfo(to, stats)
      }).pipe(Effect.onExit((exit) => settleTemp(temp, exit)))
    })

  return {
    driver,
    location: `fs://${rootDir}`,
    capabilities,
    get,
    getRange,
    getStream,
    put,
    head,
    list,
    delete: remove,
    deleteMany,
    copy,
    sweepLeftovers: () => attempt({ operation: "sweepLeftovers" }, () => sweepTempFiles(rootDir)),
  } satisfies BlobStore
})
