/**
 * MemoryBlobStore: a BlobStore held in process memory (driver "memory").
 *
 * Objects live in a Map plus an array of their keys kept sorted by UTF-8
 * bytes, which is what `list` walks. Every operation runs as one synchronous
 * step once its input is in hand, so puts are atomic and create-only puts
 * race correctly. Bytes are copied on the way in and on the way out: callers
 * never share memory with stored content. For tests and tools, not for data
 * that must survive the process.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { BlobStore, Body, Capabilities, ObjectInfo, PutOptions } from "../BlobStore.ts"
import { BlobStoreError, keyProblem } from "../BlobStore.ts"

const driver = "memory"

const capabilities: Capabilities = {
  conditionalPut: true,
  rangeRead: true,
  batchDelete: true,
  serverSideCopy: true,
  // The largest typed array every JavaScript runtime can allocate.
  maxObjectSize: 2 ** 31 - 1,
}

/** How many objects `list` emits at a time. */
const listPageSize = 1000
/** Size of the chunks `getStream` emits. */
const streamChunkSize = 1024 * 1024

interface StoredObject {
  /** Never handed out: callers get copies. */
  readonly bytes: Uint8Array
  readonly etag: string
  readonly lastModified: number
}

const utf8 = new TextEncoder()

/** Bytewise comparison of the UTF-8 encodings of two keys. */
const compareKeys = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return a.length - b.length
}

/** Creates an empty in-memory store; `name` only shows in `location` ("memory://<name>"). */
export const makeMemoryBlobStore = (options?: { readonly name?: string }): BlobStore => {
  const objects = new Map<string, StoredObject>()
  /** Keys of `objects` with their UTF-8 encodings, in ascending bytewise order. */
  const sorted: Array<{ readonly key: string; readonly bytes: Uint8Array }> = []
  let generation = 0

  /** Index of the first sorted key that is >= `bytes` (bytewise). */
  const lowerBound = (bytes: Uint8Array): number => {
    let lo = 0
    let hi = sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareKeys(sorted[mid].bytes, bytes) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  const fail = (reason: BlobStoreError["reason"], operation: string, key: string | undefined, detail: string) =>
    Effect.fail(new BlobStoreError({ reason, driver, operation, key, detail }))

  const checkKey = (operation: string, key: string): Effect.Effect<void, BlobStoreError> => {
    const problem = keyProblem(key)
    return problem === undefined ? Effect.void : fail("InvalidKey", operation, key, problem)
  }

  const lookup = (operation: string, key: string): Effect.Effect<StoredObject, BlobStoreError> =>
    Effect.flatMap(checkKey(operation, key), () => {
      const object = objects.get(key)
      return object === undefined ? fail("NotFound", operation, key, "no such object") : Effect.succeed(object)
    })

  const info = (key: string, object: StoredObject): ObjectInfo => ({
    key,
    size: object.bytes.length,
    etag: object.etag,
    lastModified: object.lastModified,
  })

  /** Stores `bytes` (already a private copy) under `key`. */
  const store = (key: string, bytes: Uint8Array) =>
    Effect.map(Clock.currentTimeMillis, (now): ObjectInfo => {
      if (!objects.has(key)) {
        const encoded = utf8.encode(key)
        sorted.splice(lowerBound(encoded), 0, { key, bytes: encoded })
      }
      const object: StoredObject = { bytes, etag: (++generation).toString(16), lastModified: now }
      objects.set(key, object)
      return info(key, object)
    })

  const remove = (key: string): void => {
    if (!objects.delete(key)) return
    sorted.splice(lowerBound(utf8.encode(key)), 1)
  }

  /** A private copy of the body's bytes. */
  const collect = (key: string, body: Body): Effect.Effect<Uint8Array, BlobStoreError> => {
    if (body instanceof Uint8Array) return Effect.succeed(body.slice())
    return Effect.map(
      Stream.runFold(
        body,
        () => ({ chunks: [] as Array<Uint8Array>, size: 0 }),
        (acc, chunk) => {
          acc.chunks.push(chunk.slice())
          acc.size += chunk.length
          return acc
        },
      ),
      ({ chunks, size }) => {
        const bytes = new Uint8Array(size)
        let offset = 0
        for (const chunk of chunks) {
          bytes.set(chunk, offset)
          offset += chunk.length
        }
        return bytes
      },
    ).pipe(
      Effect.filterOrFail(
        (bytes) => bytes.length <= capabilities.maxObjectSize,
        () =>
          new BlobStoreError({
            reason: "Unsupported",
            driver,
            operation: "put",
            key,
            detail: `the object is larger than ${capabilities.maxObjectSize} bytes`,
          }),
      ),
    )
  }

  const put = (key: string, body: Body, options?: PutOptions) =>
    Effect.gen(function* () {
      yield* checkKey("put", key)
      const bytes = yield* collect(key, body)
      if (options?.ifNotExists === true && objects.has(key)) {
        return yield* fail("AlreadyExists", "put", key, "the object already exists")
      }
      return yield* store(key, bytes)
    })

  const getRange = (key: string, offset: number, length: number) =>
    Effect.flatMap(lookup("getRange", key), ({ bytes }) => {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
        return fail("RangeNotSatisfiable", "getRange", key, `offset and length must be non-negative integers (got ${offset}, ${length})`)
      }
      if (offset > bytes.length) {
        return fail("RangeNotSatisfiable", "getRange", key, `offset ${offset} is past the end of the object (size ${bytes.length})`)
      }
      return Effect.succeed(bytes.slice(offset, offset + length))
    })

  const getStream = (key: string): Stream.Stream<Uint8Array, BlobStoreError> =>
    Stream.unwrap(
      Effect.map(lookup("getStream", key), ({ bytes }) =>
        Stream.paginate(0, (offset: number) => {
          const end = Math.min(offset + streamChunkSize, bytes.length)
          const chunks = end > offset ? [bytes.slice(offset, end)] : []
          return Effect.succeed([chunks, end < bytes.length ? Option.some(end) : Option.none<number>()] as const)
        }),
      ),
    )

  /** Pages through keys with the prefix, resuming after the last emitted key, so concurrent writes never repeat a key. */
  const list = (prefix: string): Stream.Stream<ObjectInfo, BlobStoreError> =>
    Stream.paginate(utf8.encode(prefix), (from: Uint8Array) =>
      Effect.sync(() => {
        const page: Array<ObjectInfo> = []
        let index = lowerBound(from)
        while (page.length < listPageSize && index < sorted.length && sorted[index].key.startsWith(prefix)) {
          const { key } = sorted[index++]
          const object = objects.get(key)
          if (object !== undefined) page.push(info(key, object))
        }
        const more = page.length === listPageSize
        // The smallest byte string greater than the last key: the key plus a 0 byte.
        const next = more ? Option.some(new Uint8Array([...utf8.encode(page[page.length - 1].key), 0])) : Option.none()
        return [page, next] as const
      }),
    )

  const deleteMany = (keys: ReadonlyArray<string>) =>
    Effect.flatMap(
      Effect.forEach(keys, (key) => checkKey("deleteMany", key), { discard: true }),
      () => Effect.sync(() => keys.forEach(remove)),
    )

  return {
    driver,
    location: `memory://${options?.name ?? "default"}`,
    capabilities,
    get: (key) => Effect.map(lookup("get", key), ({ bytes }) => bytes.slice()),
    getRange,
    getStream,
    put,
    head: (key) => Effect.map(lookup("head", key), (object) => info(key, object)),
    list,
    delete: (key) => Effect.flatMap(checkKey("delete", key), () => Effect.sync(() => remove(key))),
    deleteMany,
    // Stored bytes are never mutated, so the copy can share them.
    copy: (from, to) =>
      Effect.gen(function* () {
        yield* checkKey("copy", to)
        const { bytes } = yield* lookup("copy", from)
        return yield* store(to, bytes)
      }),
  }
}
