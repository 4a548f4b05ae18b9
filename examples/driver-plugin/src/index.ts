/**
 * bendsave-driver-flatdir: a complete example of a bendsave storage driver
 * plugin (see docs/writing-a-driver.md). Objects are the files of one flat
 * directory, each named by its percent-encoded key, so keys like `a` and
 * `a/b` can live side by side (the built-in fs driver cannot do that).
 *
 * Use it from a cluster file:
 *
 * ```toml
 * [storage]
 * type = "./node_modules/bendsave-driver-flatdir/src/index.ts"   # or "bendsave-driver-flatdir"
 * [storage.flatdir]
 * dir = "./objects"
 * ```
 *
 * or as a repository, registered for its scheme:
 * `BENDSAVE_DRIVERS=bendsave-driver-flatdir bendsave backup --from c.toml --to flatdir:///srv/backups`.
 *
 * What the contract asks (BlobStore.ts) and how this driver does it:
 * - atomic put: write a temp file, fsync, rename it over the target;
 * - create-only put: hard-link the temp file to the target (fails if it exists);
 * - list in bytewise order: percent-encoding keeps the order of the UTF-8
 *   bytes only for some characters, so names are decoded and sorted by key;
 * - ranges: positioned reads; missing keys: ENOENT → NotFound;
 * - one `classifyError` maps errno codes to reasons.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { isAbsolute, join, resolve } from "node:path"
import { type BlobStore, BlobStoreError, type BlobStoreErrorReason, type Body, type Capabilities, compareKeysBytewise, keyProblem, type ObjectInfo } from "@bendsave/core/BlobStore"
import type { StorageDriver } from "@bendsave/core/StorageDriver"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"

const DRIVER = "flatdir"

const capabilities: Capabilities = {
  conditionalPut: true,
  rangeRead: true,
  batchDelete: false,
  serverSideCopy: false,
  maxObjectSize: Number.MAX_SAFE_INTEGER,
}

// --- Options ----------------------------------------------------------------------------

const Options = Schema.Struct({
  /** The directory holding the objects (relative to the cluster file). */
  dir: Schema.NonEmptyString,
  /** Create the directory when it is missing (default: only for restores and new repositories). */
  create: Schema.optional(Schema.Boolean),
})
type Options = typeof Options.Type

// --- Errors -----------------------------------------------------------------------------

/** The driver's one error mapping: errno codes → core reasons. */
export const classifyError = (cause: unknown, operation: string, key?: string): BlobStoreError => {
  if (typeof cause === "object" && cause !== null && (cause as { _tag?: unknown })._tag === "BlobStoreError") return cause as BlobStoreError
  const code = (cause as { code?: unknown })?.code
  const reason: BlobStoreErrorReason =
    code === "ENOENT"
      ? "NotFound"
      : code === "EEXIST"
        ? "AlreadyExists"
        : code === "EACCES" || code === "EPERM"
          ? "PermissionDenied"
          : code === "EMFILE" || code === "EAGAIN" || code === "EBUSY"
            ? "Unavailable"
            : code === "ENAMETOOLONG"
              ? "InvalidKey"
              : "Unknown"
  return new BlobStoreError({ reason, driver: DRIVER, operation, key, detail: cause instanceof Error ? cause.message : String(cause), cause })
}

// --- The store ----------------------------------------------------------------------------

const TEMP = /^\.tmp-[0-9a-f]{16}$/
const fileName = (key: string) => encodeURIComponent(key).replace(/\./g, "%2E")

export const makeFlatDirStore = (dir: string, create: boolean): Effect.Effect<BlobStore, BlobStoreError> =>
  Effect.gen(function* () {
    const attempt = <A>(operation: string, key: string | undefined, run: () => Promise<A>) =>
      Effect.tryPromise({ try: run, catch: (cause) => classifyError(cause, operation, key) })
    if (create) yield* attempt("open", undefined, () => fs.mkdir(dir, { recursive: true }))
    yield* attempt("open", undefined, () => fs.access(dir))

    const pathOf = (operation: string, key: string): Effect.Effect<string, BlobStoreError> => {
      const problem = keyProblem(key)
      return problem === undefined
        ? Effect.succeed(join(dir, fileName(key)))
        : Effect.fail(new BlobStoreError({ reason: "InvalidKey", driver: DRIVER, operation, key, detail: problem }))
    }

    const info = (key: string, stats: { size: number; mtimeMs: number; ino: number }): ObjectInfo => ({
      key,
      size: stats.size,
      etag: `${stats.ino.toString(16)}-${stats.size.toString(16)}-${Math.round(stats.mtimeMs * 1000).toString(16)}`,
      lastModified: Math.floor(stats.mtimeMs),
    })

    const head = (key: string) => Effect.flatMap(pathOf("head", key), (file) => attempt("head", key, async () => info(key, await fs.stat(file))))

    const get = (key: string) => Effect.flatMap(pathOf("get", key), (file) => attempt("get", key, async () => new Uint8Array(await fs.readFile(file))))

    /** Reads up to `length` bytes at `offset` from an open file. */
    const readAt = async (handle: fs.FileHandle, offset: number, length: number) => {
      const bytes = new Uint8Array(length)
      let filled = 0
      while (filled < length) {
        const { bytesRead } = await handle.read(bytes, filled, length - filled, offset + filled)
        if (bytesRead === 0) break
        filled += bytesRead
      }
      return bytes.subarray(0, filled)
    }

    const getRange = (key: string, offset: number, length: number) =>
      Effect.flatMap(pathOf("getRange", key), (file) =>
        attempt("getRange", key, async () => {
          const handle = await fs.open(file, "r")
          try {
            const { size } = await handle.stat()
            if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset > size) {
              throw new BlobStoreError({ reason: "RangeNotSatisfiable", driver: DRIVER, operation: "getRange", key, detail: `offset ${offset} is past the end (size ${size})` })
            }
            return await readAt(handle, offset, Math.min(length, size - offset))
          } finally {
            await handle.close()
          }
        }),
      )

    // One open file for the whole stream: a concurrent put renames a new file over the name, and
    // this handle keeps reading the old one (reading ranges by name would mix the two versions).
    const getStream = (key: string): Stream.Stream<Uint8Array, BlobStoreError> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const file = yield* pathOf("getStream", key)
          const handle = yield* Effect.acquireRelease(attempt("getStream", key, () => fs.open(file, "r")), (h) => Effect.promise(() => h.close()))
          return Stream.paginate(0, (offset: number) =>
            attempt("getStream", key, async () => {
              const chunk = await readAt(handle, offset, 1024 * 1024)
              return [chunk.length > 0 ? [chunk] : [], chunk.length > 0 ? Option.some(offset + chunk.length) : Option.none<number>()] as const
            }),
          )
        }),
      )

    const put = (key: string, body: Body, options?: { readonly ifNotExists?: boolean }) =>
      Effect.gen(function* () {
        const file = yield* pathOf("put", key)
        const temp = join(dir, `.tmp-${randomBytes(8).toString("hex")}`)
        return yield* Effect.gen(function* () {
          const handle = yield* attempt("put", key, () => fs.open(temp, "wx"))
          yield* Effect.gen(function* () {
            const write = (chunk: Uint8Array) => attempt("put", key, () => handle.write(chunk).then(() => undefined))
            if (body instanceof Uint8Array) yield* write(body)
            else yield* Stream.runForEach(body, write)
            yield* attempt("put", key, () => handle.sync())
          }).pipe(Effect.ensuring(Effect.promise(() => handle.close())))
          if (options?.ifNotExists === true) yield* attempt("put", key, () => fs.link(temp, file))
          else yield* attempt("put", key, () => fs.rename(temp, file))
          return info(key, yield* attempt("put", key, () => fs.stat(file)))
        }).pipe(Effect.ensuring(Effect.promise(() => fs.rm(temp, { force: true }))))
      })

    const list = (prefix: string): Stream.Stream<ObjectInfo, BlobStoreError> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const names = yield* attempt("list", undefined, () => fs.readdir(dir))
          const keys = names
            .filter((name) => !TEMP.test(name))
            .map((name) => decodeURIComponent(name))
            .filter((key) => key.startsWith(prefix))
            .sort(compareKeysBytewise)
          // Objects deleted since the directory was read are left out.
          const present = (key: string) =>
            head(key).pipe(
              Effect.map(Option.some),
              Effect.catchIf(
                (e) => e.reason === "NotFound",
                () => Effect.succeed(Option.none<ObjectInfo>()),
              ),
            )
          return Stream.fromIterable(keys).pipe(
            Stream.mapEffect(present, { concurrency: 16 }),
            Stream.filter(Option.isSome),
            Stream.map((found) => found.value),
          )
        }),
      )

    const remove = (key: string) =>
      Effect.flatMap(pathOf("delete", key), (file) => attempt("delete", key, () => fs.rm(file, { force: true })))

    return {
      driver: DRIVER,
      location: `flatdir://${dir}`,
      capabilities,
      get,
      getRange,
      getStream,
      put,
      head,
      list,
      delete: remove,
      deleteMany: (keys) =>
        Effect.flatMap(
          Effect.forEach(keys, (key) => pathOf("deleteMany", key)),
          (files) => Effect.forEach(files, (file, i) => attempt("deleteMany", keys[i], () => fs.rm(file, { force: true })), { concurrency: 16, discard: true }),
        ),
      copy: (from) => Effect.fail(new BlobStoreError({ reason: "Unsupported", driver: DRIVER, operation: "copy", key: from, detail: "flatdir has no server-side copy" })),
    } satisfies BlobStore
  })

// --- The definition bendsave loads ------------------------------------------------------------

const flatDirDriver: StorageDriver<Options> = {
  name: "flatdir",
  schemes: ["flatdir"],
  configSchema: Schema.toStandardSchemaV1(Options, { parseOptions: { onExcessProperty: "error" } }),
  optionsHelp: ["dir: the directory of the objects (relative to the cluster file)", "create: true to create it when missing"],
  capabilities,
  // flatdir:///abs/path
  fromUrl: (url) => {
    if (url.host !== "") throw new Error("write flatdir:///absolute/path (three slashes)")
    return { dir: decodeURIComponent(url.pathname) }
  },
  make: (options, context) =>
    makeFlatDirStore(isAbsolute(options.dir) ? options.dir : resolve(context.baseDir, options.dir), options.create ?? context.create),
}

export default flatDirDriver
