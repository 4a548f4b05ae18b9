/**
 * BlobStore: the storage driver contract.
 *
 * A BlobStore moves bytes by key and nothing else: it never sees hashes,
 * blocks or manifests. Repositories and cluster storage roots are both
 * BlobStores. Retry, concurrency limits and metrics are wrappers around any
 * BlobStore, not code inside a driver.
 *
 * # Keys
 * Keys are '/'-separated relative paths of UTF-8 text: no leading '/', no
 * empty, '.' or '..' segments. A driver rejects any other key with reason
 * `InvalidKey`. Keys are case-sensitive.
 *
 * # Behaviour (checked by the conformance suite in `@bendsave/core/testing`)
 * - read-after-write: once `put` returns, `get`, `head` and `list` see the
 *   new object and its full content.
 * - atomic put: a reader sees either the previous object or the whole new one,
 *   never a prefix of it; a `put` that fails leaves no partial object behind.
 * - create-only put (`ifNotExists`): fails with reason `AlreadyExists` when the
 *   key exists, and exactly one of two racing create-only puts succeeds.
 * - `get`/`head`/`getRange` of a missing key fail with reason `NotFound`.
 * - `getRange` past the end returns the bytes up to the end (an empty array
 *   when `offset` is exactly the size) and fails with `RangeNotSatisfiable`
 *   when `offset` is greater than the size.
 * - `list(prefix)` streams every object whose key starts with `prefix` (a plain
 *   string prefix, not a directory) in ascending bytewise order of the key,
 *   each key once; objects put before the listing started are included.
 * - `delete` of a missing key succeeds (deletes are idempotent).
 */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"

/** Why a storage operation failed. */
export const BlobStoreErrorReason = Schema.Literals([
  "NotFound",
  "AlreadyExists",
  "PreconditionFailed",
  "PermissionDenied",
  "RateLimited",
  "RangeNotSatisfiable",
  "Unsupported",
  "InvalidConfig",
  "InvalidKey",
  "Unavailable",
  "Unknown",
])
export type BlobStoreErrorReason = typeof BlobStoreErrorReason.Type

const retryableReasons: ReadonlySet<BlobStoreErrorReason> = new Set(["RateLimited", "Unavailable"])

/** The one error type of every BlobStore operation. */
export class BlobStoreError extends Schema.TaggedError<BlobStoreError>()("BlobStoreError", {
  reason: BlobStoreErrorReason,
  /** Driver name, e.g. "fs". */
  driver: Schema.String,
  operation: Schema.String,
  key: Schema.optional(Schema.String),
  detail: Schema.String,
  /** What the user can do about it, when the driver knows (wrong bucket, bad credentials, ...). */
  fix: Schema.optional(Schema.String),
  /** Whether the same operation may succeed if tried again. */
  retryable: Schema.optional(Schema.Boolean),
  cause: Schema.optional(Schema.Defect()),
}) {
  get isRetryable(): boolean {
    return this.retryable ?? retryableReasons.has(this.reason)
  }
  override get message(): string {
    const where = this.key === undefined ? "" : ` '${this.key}'`
    return `${this.driver} ${this.operation}${where}: ${this.reason}: ${this.detail}`
  }
}

/** Declared features of a driver; the conformance suite runs only what is declared. */
export interface Capabilities {
  /** `put` with `ifNotExists` is atomic (O_EXCL, If-None-Match: *, ifGenerationMatch=0). */
  readonly conditionalPut: boolean
  /** `getRange` reads a byte range without reading the whole object. */
  readonly rangeRead: boolean
  /** `deleteMany` is one request per batch rather than a loop. */
  readonly batchDelete: boolean
  /** `copy` happens inside the service without moving bytes through bendsave. */
  readonly serverSideCopy: boolean
  /** Largest object `put` accepts, in bytes. */
  readonly maxObjectSize: number
}

export interface ObjectInfo {
  readonly key: string
  readonly size: number
  /** Driver-specific version tag; changes whenever the content may have changed. */
  readonly etag: string
  /** Milliseconds since the epoch. */
  readonly lastModified: number
}

export interface PutOptions {
  /** Fail with `AlreadyExists` instead of replacing an existing object. */
  readonly ifNotExists?: boolean
  /**
   * Lowercase hex SHA-256 of the whole body, when the caller already knows it
   * (a block's id). Drivers that send upload checksums use it instead of
   * hashing the bytes again; the service then verifies what it stored. A
   * driver may ignore it.
   */
  readonly contentSha256?: string
  /**
   * A small bookkeeping object (a lease, a checkpoint, a manifest): an upload
   * limit counts its bytes but does not queue it behind data, so a slow link
   * cannot make a lease expire or a checkpoint fall behind. Drivers ignore it.
   */
  readonly control?: boolean
}

export type Body = Uint8Array | Stream.Stream<Uint8Array, BlobStoreError>

export interface BlobStore {
  /** Driver name, e.g. "fs", "memory". */
  readonly driver: string
  /** Human-readable location, without secrets (e.g. "fs:///backups/prod"). */
  readonly location: string
  readonly capabilities: Capabilities
  get(key: string): Effect.Effect<Uint8Array, BlobStoreError>
  /** Bytes `[offset, offset + length)`, cut at the end of the object. */
  getRange(key: string, offset: number, length: number): Effect.Effect<Uint8Array, BlobStoreError>
  /** The object as a stream of chunks. */
  getStream(key: string): Stream.Stream<Uint8Array, BlobStoreError>
  put(key: string, body: Body, options?: PutOptions): Effect.Effect<ObjectInfo, BlobStoreError>
  head(key: string): Effect.Effect<ObjectInfo, BlobStoreError>
  list(prefix: string): Stream.Stream<ObjectInfo, BlobStoreError>
  delete(key: string): Effect.Effect<void, BlobStoreError>
  deleteMany(keys: ReadonlyArray<string>): Effect.Effect<void, BlobStoreError>
  /** Server-side copy; fails with `Unsupported` unless `capabilities.serverSideCopy`. */
  copy(from: string, to: string): Effect.Effect<ObjectInfo, BlobStoreError>
  /**
   * Optional: removes what interrupted writes of processes that no longer run
   * left behind (the fs driver's temp files of a killed process), and returns
   * how many were removed. Stores where a failed put leaves nothing (object
   * stores) do not have it. Restore calls it before writing into a target.
   */
  sweepLeftovers?(): Effect.Effect<number, BlobStoreError>
}

/** Checks a key against the key rules above; returns a description of the problem or undefined. */
export const keyProblem = (key: string): string | undefined => {
  if (key.length === 0) return "the key is empty"
  if (key.startsWith("/")) return "the key is absolute (starts with '/')"
  if (key.includes("\\")) return "the key contains a backslash"
  if (key.includes("\0")) return "the key contains a NUL character"
  for (const segment of key.split("/")) {
    if (segment === "") return "the key has an empty segment ('//' or a trailing '/')"
    if (segment === "." || segment === "..") return `the key has a '${segment}' segment`
  }
  return undefined
}

/** True when `key` is a valid relative key (see `keyProblem`). */
export const isValidKey = (key: string): boolean => keyProblem(key) === undefined

/** Ascending bytewise order of the UTF-8 encodings of two keys (the order `list` must produce). */
export const compareKeysBytewise = (a: string, b: string): number => {
  // Code point order is UTF-8 byte order; it differs from JavaScript's UTF-16 order only after a
  // surrogate pair or a character from U+E000 on.
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    if (x >= 0xd800 && y >= 0xd800) return (a.codePointAt(i) ?? x) - (b.codePointAt(i) ?? y)
    return x - y
  }
  return a.length - b.length
}

/**
 * Puts a listing that arrives in UTF-16 code unit order (what some services
 * and emulators produce) or in bytewise order into bytewise order, page by
 * page: `push` each page as it comes and `end` after the last one. The two
 * orders differ only among keys that share a prefix up to a character from
 * U+D800 on, and such keys arrive together in either order, so only that
 * group is held back and sorted: memory is the largest such group, not the
 * listing.
 */
export const makeBytewiseListingOrder = <A extends { readonly key: string }>() => {
  let group: Array<A> = []
  let groupPrefix: string | undefined
  const flush = (out: Array<A>) => {
    if (group.length > 0) out.push(...group.sort((a, b) => compareKeysBytewise(a.key, b.key)))
    group = []
    groupPrefix = undefined
  }
  return {
    push: (page: ReadonlyArray<A>): Array<A> => {
      const out: Array<A> = []
      for (const item of page) {
        let i = 0
        while (i < item.key.length && item.key.charCodeAt(i) < 0xd800) i++
        const prefix = i < item.key.length ? item.key.slice(0, i) : undefined
        if (groupPrefix !== undefined && prefix !== groupPrefix) flush(out)
        if (prefix === undefined) out.push(item)
        else {
          groupPrefix = prefix
          group.push(item)
        }
      }
      return out
    },
    end: (): Array<A> => {
      const out: Array<A> = []
      flush(out)
      return out
    },
  }
}

/**
 * A put's body cut into parts of exactly `partSize` bytes (the last one
 * shorter; an empty body gives one empty part), for drivers that upload in
 * blocks or parts. Parts of a streamed body are fresh buffers; parts of an
 * in-memory body are views of it.
 */
export const bodyParts = (body: Body, partSize: number): Stream.Stream<Uint8Array, BlobStoreError> => {
  if (body instanceof Uint8Array) {
    const parts: Array<Uint8Array> = []
    for (let offset = 0; offset < body.length; offset += partSize)
      parts.push(body.subarray(offset, Math.min(body.length, offset + partSize)))
    return Stream.fromIterable(parts.length === 0 ? [new Uint8Array(0)] : parts)
  }
  interface State {
    part: Uint8Array
    filled: number
    emitted: number
  }
  return body.pipe(
    Stream.mapAccum(
      (): State => ({ part: new Uint8Array(partSize), filled: 0, emitted: 0 }),
      (state, chunk: Uint8Array) => {
        const out: Array<Uint8Array> = []
        let offset = 0
        while (offset < chunk.length) {
          const n = Math.min(partSize - state.filled, chunk.length - offset)
          state.part.set(chunk.subarray(offset, offset + n), state.filled)
          state.filled += n
          offset += n
          if (state.filled === partSize) {
            out.push(state.part)
            state.emitted++
            state.part = new Uint8Array(partSize)
            state.filled = 0
          }
        }
        return [state, out] as const
      },
      { onHalt: (state) => (state.filled > 0 || state.emitted === 0 ? [state.part.subarray(0, state.filled)] : []) },
    ),
  )
}
