/**
 * StorageLimits: what core puts around every BlobStore it opens (Registry's
 * `openStorage` and `openRepositoryStore`), so that no driver carries retry
 * or throttling code of its own:
 *
 * - **retry** with exponential backoff and full jitter, for errors the driver
 *   says are retryable (`isRetryable`: rate limits, unavailable services,
 *   checksum mismatches). Streamed puts are not retried (the body is already
 *   consumed); a listing that fails midway is resumed after the last key it
 *   emitted; a stream that fails before its first chunk is reopened; a
 *   create-only put that finds the key after a retry checks whether the
 *   object is its own earlier attempt (same bytes) before reporting
 *   AlreadyExists.
 * - **timeouts**: a single request (get, getRange, head, delete, a put of
 *   bytes) that does not answer within `requestTimeoutMs` is abandoned and
 *   fails as a retryable `Unavailable` error, so a hung connection becomes a
 *   retry instead of a backup that never ends. Streams, listings, batch
 *   deletes and server-side copies have no overall deadline (they may
 *   legitimately take long).
 * - **concurrency**: at most N requests of one store in flight.
 * - **bandwidth**: upload (bytes written) and download (bytes read) limits in
 *   bytes per second, shared by every store of the process (the CLI's
 *   `--limit-upload` and `--limit-download`). Puts marked `control` (leases,
 *   checkpoints, manifests) are counted but never queued behind data.
 *
 * The settings are a Context.Reference: provide `StorageLimits` to change them.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { type BlobStore, BlobStoreError, type Body, compareKeysBytewise, type ObjectInfo, type PutOptions } from "./BlobStore.ts"

export interface RetryPolicy {
  /** Attempts in all (1 = no retry). */
  readonly attempts: number
  /** The first backoff; each retry doubles it, up to `maxDelayMs`; the actual wait is random below it. */
  readonly baseDelayMs: number
  readonly maxDelayMs: number
}

/** A token bucket shared by the stores of a process: `take(n)` waits until n more bytes may pass. */
export interface RateLimiter {
  readonly bytesPerSecond: number
  readonly take: (bytes: number) => Effect.Effect<void>
  /** Counts `bytes` that pass at once (bookkeeping traffic): later takers wait for them instead. */
  readonly debit: (bytes: number) => Effect.Effect<void>
}

export interface StorageLimitsSettings {
  readonly retry: RetryPolicy | undefined
  /** Requests of one store in flight at once (undefined: no limit beyond the workflows' own). */
  readonly concurrency: number | undefined
  readonly upload: RateLimiter | undefined
  readonly download: RateLimiter | undefined
  /** A single request that takes longer fails as retryable `Unavailable` (undefined: no deadline). */
  readonly requestTimeoutMs?: number | undefined
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 200, maxDelayMs: 15_000 }
/** Deadline of one request: an 8 MiB block in 2 minutes is 68 KiB/s, slower than any link bendsave is meant for. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000

export const StorageLimits = Context.Reference<StorageLimitsSettings>("@bendsave/core/StorageLimits", {
  defaultValue: () => ({
    retry: DEFAULT_RETRY,
    concurrency: 64,
    upload: undefined,
    download: undefined,
    requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
  }),
})

// ---------------------------------------------------------------------------
// Rates
// ---------------------------------------------------------------------------

/** The burst a limiter allows after a pause: a tenth of a second's worth of bytes. */
export const RATE_BURST_SECONDS = 0.1

/**
 * A limiter of `bytesPerSecond`: every `take` reserves its bytes at once and
 * waits for its share of time (so concurrent takers queue fairly), with a burst
 * allowance of `RATE_BURST_SECONDS` worth. The burst is small on purpose: a
 * process that starts (or resumes) does not get a free second of traffic, and
 * the rate holds over any window longer than one request.
 */
export const makeRateLimiter = (bytesPerSecond: number): RateLimiter => {
  if (!(bytesPerSecond > 0)) throw new Error("a rate limit must be a positive number of bytes per second")
  const burst = bytesPerSecond * RATE_BURST_SECONDS
  let available = burst
  let updatedAt: number | undefined
  const reserve = (now: number, bytes: number) => {
    if (updatedAt !== undefined) available = Math.min(burst, available + ((now - updatedAt) / 1000) * bytesPerSecond)
    updatedAt = now
    available -= bytes
  }
  const take = (bytes: number) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      reserve(now, bytes)
      return available >= 0 ? Effect.void : Effect.sleep(Math.ceil((-available / bytesPerSecond) * 1000))
    })
  const debit = (bytes: number) => Effect.map(Clock.currentTimeMillis, (now) => reserve(now, bytes))
  return { bytesPerSecond, take, debit }
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
}

/** Parses a rate such as "10MiB", "500k", "2.5MB/s" or "1048576" into bytes per second; undefined when invalid. */
export const parseByteRate = (text: string): number | undefined => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*(?:\/s)?\s*$/i.exec(text)
  if (match === null) return undefined
  const unit = UNITS[match[2].toLowerCase()]
  const value = Number(match[1]) * (unit ?? Number.NaN)
  return Number.isFinite(value) && value >= 1 ? Math.floor(value) : undefined
}

// ---------------------------------------------------------------------------
// Wrappers
// ---------------------------------------------------------------------------

/** The wait before retry `n` (1-based): random in [0, min(max, base * 2^(n-1))). */
const backoff = (policy: RetryPolicy, n: number) =>
  Math.floor(Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (n - 1)))

/** Runs `effect` again while it fails with a retryable error, up to the policy's attempts. */
export const retrying = <A>(policy: RetryPolicy, effect: Effect.Effect<A, BlobStoreError>): Effect.Effect<A, BlobStoreError> => {
  const attempt = (n: number): Effect.Effect<A, BlobStoreError> =>
    Effect.catchIf(
      effect,
      (e) => e.isRetryable && n < policy.attempts,
      () => Effect.flatMap(Effect.sleep(backoff(policy, n)), () => attempt(n + 1)),
    )
  return attempt(1)
}

const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length &&
  Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0

/** Retries every operation whose errors say so (see the module header for streams and create-only puts). */
export const withRetry = (store: BlobStore, policy: RetryPolicy): BlobStore => {
  const again = <A>(effect: Effect.Effect<A, BlobStoreError>) => retrying(policy, effect)

  const put = (key: string, body: Body, options?: PutOptions): Effect.Effect<ObjectInfo, BlobStoreError> => {
    if (!(body instanceof Uint8Array)) return store.put(key, body, options)
    if (options?.ifNotExists !== true) return again(store.put(key, body, options))
    // A create-only put whose first attempt landed but whose answer was lost finds "its" object on the retry.
    let tries = 0
    return again(
      Effect.suspend(() => {
        tries++
        return store.put(key, body, options)
      }),
    ).pipe(
      Effect.catchIf(
        (e) => e.reason === "AlreadyExists" && tries > 1,
        (e) => Effect.flatMap(again(store.get(key)), (stored) => (sameBytes(stored, body) ? again(store.head(key)) : Effect.fail(e))),
      ),
    )
  }

  /** A stream that is reopened when it fails before its first element. */
  const reopened = <A>(open: () => Stream.Stream<A, BlobStoreError>, n = 1): Stream.Stream<A, BlobStoreError> =>
    Stream.suspend(() => {
      let started = false
      return open().pipe(
        Stream.tap(() =>
          Effect.sync(() => {
            started = true
          }),
        ),
        Stream.catchIf(
          (e: BlobStoreError) => !started && e.isRetryable && n < policy.attempts,
          () => Stream.unwrap(Effect.as(Effect.sleep(backoff(policy, n)), reopened(open, n + 1))),
        ),
      )
    })

  /** A listing that resumes after the last key it emitted (keys come in bytewise order, each once). */
  const list = (prefix: string, after: string | undefined = undefined, n = 1): Stream.Stream<ObjectInfo, BlobStoreError> =>
    Stream.suspend(() => {
      let last = after
      const source =
        after === undefined
          ? store.list(prefix)
          : store.list(prefix).pipe(Stream.filter((info) => compareKeysBytewise(info.key, after) > 0))
      return source.pipe(
        // A plain map keeps the source's chunks (Stream.tap would emit one key per chunk,
        // and the workflows read a listing's chunks as their batches).
        Stream.map((info) => {
          last = info.key
          return info
        }),
        Stream.catchIf(
          (e: BlobStoreError) => e.isRetryable && n < policy.attempts,
          () => Stream.unwrap(Effect.as(Effect.sleep(backoff(policy, n)), list(prefix, last, n + 1))),
        ),
      )
    })

  return {
    ...store,
    get: (key) => again(store.get(key)),
    getRange: (key, offset, length) => again(store.getRange(key, offset, length)),
    getStream: (key) => reopened(() => store.getStream(key)),
    put,
    head: (key) => again(store.head(key)),
    list: (prefix) => list(prefix),
    delete: (key) => again(store.delete(key)),
    deleteMany: (keys) => again(store.deleteMany(keys)),
    copy: (from, to) => again(store.copy(from, to)),
  }
}

/**
 * A deadline for every single request: one that does not answer within `ms`
 * is interrupted and fails with a retryable `Unavailable` error (the retry
 * wrapper outside then tries again). Streamed puts and reads, listings, batch
 * deletes and copies are left alone.
 */
export const withRequestTimeout = (store: BlobStore, ms: number): BlobStore => {
  const timed = <A>(operation: string, key: string | undefined, effect: Effect.Effect<A, BlobStoreError>) =>
    Effect.timeoutOrElse(effect, {
      duration: ms,
      orElse: () =>
        Effect.fail(
          new BlobStoreError({
            reason: "Unavailable",
            driver: store.driver,
            operation,
            key,
            detail: `no answer within ${ms / 1000} s (the request timed out; the service or the network hangs)`,
            retryable: true,
          }),
        ),
    })
  return {
    ...store,
    get: (key) => timed("get", key, store.get(key)),
    getRange: (key, offset, length) => timed("getRange", key, store.getRange(key, offset, length)),
    put: (key, body, options) =>
      body instanceof Uint8Array ? timed("put", key, store.put(key, body, options)) : store.put(key, body, options),
    head: (key) => timed("head", key, store.head(key)),
    delete: (key) => timed("delete", key, store.delete(key)),
  }
}

/** At most `permits` requests of the store in flight (streams hold a permit while they open). */
export const withConcurrencyLimit = (store: BlobStore, permits: number): BlobStore => {
  const semaphore = Semaphore.makeUnsafe(permits)
  const limited = <A>(effect: Effect.Effect<A, BlobStoreError>) => Semaphore.withPermit(semaphore, effect)
  return {
    ...store,
    get: (key) => limited(store.get(key)),
    getRange: (key, offset, length) => limited(store.getRange(key, offset, length)),
    put: (key, body, options) => limited(store.put(key, body, options)),
    head: (key) => limited(store.head(key)),
    delete: (key) => limited(store.delete(key)),
    deleteMany: (keys) => limited(store.deleteMany(keys)),
    copy: (from, to) => limited(store.copy(from, to)),
  }
}

/** Throttles bytes written (put bodies) and read (get, getRange, getStream) to the limiters' rates. */
export const withBandwidthLimit = (
  store: BlobStore,
  limits: { readonly upload?: RateLimiter; readonly download?: RateLimiter },
): BlobStore => {
  const { upload, download } = limits
  const received = <A extends Uint8Array>(effect: Effect.Effect<A, BlobStoreError>) =>
    download === undefined ? effect : Effect.tap(effect, (bytes) => download.take(bytes.length))
  return {
    ...store,
    get: (key) => received(store.get(key)),
    getRange: (key, offset, length) => received(store.getRange(key, offset, length)),
    getStream: (key) =>
      download === undefined ? store.getStream(key) : store.getStream(key).pipe(Stream.tap((chunk) => download.take(chunk.length))),
    put: (key, body, options) => {
      if (upload === undefined) return store.put(key, body, options)
      if (body instanceof Uint8Array)
        return Effect.andThen(
          options?.control === true ? upload.debit(body.length) : upload.take(body.length),
          store.put(key, body, options),
        )
      return store.put(key, body.pipe(Stream.tap((chunk) => upload.take(chunk.length))), options)
    },
  }
}

/**
 * Puts the wrappers the settings ask for around `store` (bandwidth outermost,
 * then retry, then concurrency, then the request deadline, which therefore
 * times the request itself, not its wait for a concurrency slot).
 */
export const applyStorageLimits = (store: BlobStore, settings: StorageLimitsSettings): BlobStore => {
  let wrapped = store
  if (settings.requestTimeoutMs !== undefined && settings.requestTimeoutMs > 0)
    wrapped = withRequestTimeout(wrapped, settings.requestTimeoutMs)
  if (settings.concurrency !== undefined) wrapped = withConcurrencyLimit(wrapped, settings.concurrency)
  if (settings.retry !== undefined && settings.retry.attempts > 1) wrapped = withRetry(wrapped, settings.retry)
  if (settings.upload !== undefined || settings.download !== undefined) wrapped = withBandwidthLimit(wrapped, settings)
  return wrapped
}

/** `store` wrapped as the current `StorageLimits` settings ask. */
export const limitStore = (store: BlobStore): Effect.Effect<BlobStore> =>
  Effect.gen(function* () {
    return applyStorageLimits(store, yield* StorageLimits)
  })
