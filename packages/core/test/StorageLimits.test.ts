/**
 * The wrappers core puts around every store: retry with backoff (only what
 * the driver calls retryable; streamed puts never; listings resume after the
 * last key; create-only puts recognise their own lost first attempt),
 * concurrency limits, and bandwidth limits (on the TestClock).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { TestClock } from "effect/testing"
import { type BlobStore, BlobStoreError } from "../src/BlobStore.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import {
  makeRateLimiter,
  parseByteRate,
  type RetryPolicy,
  withBandwidthLimit,
  withConcurrencyLimit,
  withRetry,
} from "../src/StorageLimits.ts"

const policy: RetryPolicy = { attempts: 4, baseDelayMs: 1, maxDelayMs: 2 }
const unavailable = (operation: string) => new BlobStoreError({ reason: "Unavailable", driver: "flaky", operation, detail: "injected" })
const bytes = (text: string) => new TextEncoder().encode(text)

/** A memory store whose next `failures` calls of each listed operation fail with Unavailable; counts calls. */
const flaky = (failures: number) => {
  const inner = makeMemoryBlobStore()
  const calls: Record<string, number> = {}
  const left: Record<string, number> = {}
  const call = <A>(op: string, effect: Effect.Effect<A, BlobStoreError>) =>
    Effect.suspend(() => {
      calls[op] = (calls[op] ?? 0) + 1
      left[op] ??= failures
      if (left[op] > 0) {
        left[op]--
        return Effect.fail(unavailable(op))
      }
      return effect
    })
  const store: BlobStore = {
    ...inner,
    get: (key) => call("get", inner.get(key)),
    head: (key) => call("head", inner.head(key)),
    put: (key, body, options) => call("put", inner.put(key, body, options)),
  }
  return { inner, store, calls }
}

describe("withRetry", () => {
  it.live("retries retryable failures with backoff until the operation succeeds", () =>
    Effect.gen(function* () {
      const { inner, store, calls } = flaky(2)
      yield* inner.put("k", bytes("v"))
      assert.deepStrictEqual(yield* withRetry(store, policy).get("k"), bytes("v"))
      assert.strictEqual(calls.get, 3)
    }),
  )

  it.live("gives up after the policy's attempts, with the last error", () =>
    Effect.gen(function* () {
      const { store, calls } = flaky(100)
      const error = yield* Effect.flip(withRetry(store, policy).get("k"))
      assert.strictEqual(error.reason, "Unavailable")
      assert.strictEqual(calls.get, policy.attempts)
    }),
  )

  it.live("does not retry what is not retryable, nor a streamed put", () =>
    Effect.gen(function* () {
      const { store, calls } = flaky(0)
      assert.strictEqual((yield* Effect.flip(withRetry(store, policy).get("missing"))).reason, "NotFound")
      assert.strictEqual(calls.get, 1)
      const { store: streamed, calls: streamedCalls } = flaky(1)
      yield* Effect.flip(withRetry(streamed, policy).put("k", Stream.make(bytes("v"))))
      assert.strictEqual(streamedCalls.put, 1)
    }),
  )

  it.live("a create-only put whose first attempt landed but failed to answer succeeds; another writer's object is AlreadyExists", () =>
    Effect.gen(function* () {
      const inner = makeMemoryBlobStore()
      let lost = 1
      const store: BlobStore = {
        ...inner,
        // Stores the object, then loses the answer.
        put: (key, body, options) =>
          Effect.flatMap(inner.put(key, body, options), (info) => (lost-- > 0 ? Effect.fail(unavailable("put")) : Effect.succeed(info))),
      }
      const info = yield* withRetry(store, policy).put("manifest", bytes("mine"), { ifNotExists: true })
      assert.strictEqual(info.size, 4)
      lost = 1
      yield* inner.put("taken", bytes("theirs"))
      const error = yield* Effect.flip(withRetry(store, policy).put("taken", bytes("mine"), { ifNotExists: true }))
      assert.strictEqual(error.reason, "AlreadyExists")
    }),
  )

  it.live("a listing that fails midway resumes after the last key, each key once", () =>
    Effect.gen(function* () {
      const inner = makeMemoryBlobStore()
      const keys = Array.from({ length: 10 }, (_, i) => `k${i}`)
      yield* Effect.forEach(keys, (k) => inner.put(k, bytes(k)), { discard: true })
      let failuresLeft = 2
      const store: BlobStore = {
        ...inner,
        list: (prefix) =>
          failuresLeft-- > 0
            ? Stream.concat(Stream.take(inner.list(prefix), 3 + failuresLeft), Stream.fail(unavailable("list")))
            : inner.list(prefix),
      }
      const listed = yield* Stream.runCollect(withRetry(store, policy).list(""))
      assert.deepStrictEqual(
        listed.map((i) => i.key),
        keys,
      )
    }),
  )

  it.live("a listing keeps the source's chunks (workflows take a listing's chunks as their batches)", () =>
    Effect.gen(function* () {
      const inner = makeMemoryBlobStore()
      const keys = Array.from({ length: 300 }, (_, i) => `k${String(i).padStart(3, "0")}`)
      yield* Effect.forEach(keys, (k) => inner.put(k, bytes(k)), { discard: true })
      const store: BlobStore = { ...inner, list: (prefix) => Stream.rechunk(inner.list(prefix), 100) }
      const sizes = yield* Stream.runCollect(
        withRetry(store, policy)
          .list("")
          .pipe(
            Stream.chunks,
            Stream.map((chunk) => chunk.length),
          ),
      )
      assert.deepStrictEqual(sizes, [100, 100, 100])
    }),
  )

  it.live("a stream that fails before its first chunk is reopened", () =>
    Effect.gen(function* () {
      const inner = makeMemoryBlobStore()
      yield* inner.put("k", bytes("data"))
      let failuresLeft = 2
      const store: BlobStore = {
        ...inner,
        getStream: (key) => (failuresLeft-- > 0 ? Stream.fail(unavailable("getStream")) : inner.getStream(key)),
      }
      const chunks = yield* Stream.runCollect(withRetry(store, policy).getStream("k"))
      assert.deepStrictEqual(new TextDecoder().decode(chunks[0]), "data")
    }),
  )
})

describe("withConcurrencyLimit", () => {
  it.live("keeps at most N requests in flight", () =>
    Effect.gen(function* () {
      const inner = makeMemoryBlobStore()
      let inFlight = 0
      let most = 0
      const store: BlobStore = {
        ...inner,
        head: (key) =>
          Effect.gen(function* () {
            inFlight++
            most = Math.max(most, inFlight)
            yield* Effect.sleep(5)
            inFlight--
            return { key, size: 0, etag: "", lastModified: 0 }
          }),
      }
      const limited = withConcurrencyLimit(store, 3)
      yield* Effect.forEach(
        Array.from({ length: 12 }, (_, i) => `k${i}`),
        (k) => limited.head(k),
        { concurrency: "unbounded", discard: true },
      )
      assert.strictEqual(most, 3)
    }),
  )
})

describe("withBandwidthLimit", () => {
  it.effect("uploads wait for their share of the rate (1 MiB/s: 3 MiB take 2.9 s after the 0.1 s burst)", () =>
    Effect.gen(function* () {
      const store = withBandwidthLimit(makeMemoryBlobStore(), { upload: makeRateLimiter(1024 * 1024) })
      const fiber = yield* Effect.forkChild(store.put("big", new Uint8Array(3 * 1024 * 1024)))
      yield* TestClock.adjust(2850)
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(100)
      const info = yield* Fiber.join(fiber)
      assert.strictEqual(info.size, 3 * 1024 * 1024)
    }),
  )

  it.effect("a control put (lease, checkpoint) is counted but not queued behind data", () =>
    Effect.gen(function* () {
      const store = withBandwidthLimit(makeMemoryBlobStore(), { upload: makeRateLimiter(1024 * 1024) })
      // 4 MiB of data reserved ahead: a plain put would wait about 4 s behind it.
      const data = yield* Effect.forkChild(store.put("data", new Uint8Array(4 * 1024 * 1024)))
      yield* TestClock.adjust(10)
      const lease = yield* Effect.forkChild(store.put("lease", new Uint8Array(512 * 1024), { control: true }))
      yield* TestClock.adjust(10)
      assert.isDefined(lease.pollUnsafe(), "the control put went through at once")
      // Its bytes were counted: the next data put waits for them too (4 + 0.5 MiB, less the 0.1 MiB burst).
      const next = yield* Effect.forkChild(store.put("next", new Uint8Array(1)))
      yield* TestClock.adjust(4300)
      assert.isUndefined(next.pollUnsafe())
      yield* TestClock.adjust(200)
      yield* Fiber.join(next)
      yield* Fiber.join(data)
    }),
  )

  it.effect("downloads are throttled per chunk of a stream", () =>
    Effect.gen(function* () {
      const inner = makeMemoryBlobStore()
      yield* inner.put("big", new Uint8Array(4 * 1024 * 1024))
      const store = withBandwidthLimit(inner, { download: makeRateLimiter(2 * 1024 * 1024) })
      const fiber = yield* Effect.forkChild(Stream.runCollect(store.getStream("big")))
      // 4 MiB at 2 MiB/s with a 0.2 MiB burst: 1.9 s.
      yield* TestClock.adjust(1850)
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(100)
      assert.strictEqual((yield* Fiber.join(fiber)).length, 4)
    }),
  )

  it("parses rates the way users write them", () => {
    assert.strictEqual(parseByteRate("1048576"), 1024 * 1024)
    assert.strictEqual(parseByteRate("10MiB"), 10 * 1024 * 1024)
    assert.strictEqual(parseByteRate("10M"), 10 * 1024 * 1024)
    assert.strictEqual(parseByteRate("10MB/s"), 10_000_000)
    assert.strictEqual(parseByteRate("512k"), 512 * 1024)
    assert.strictEqual(parseByteRate("1.5 GiB"), 1.5 * 1024 ** 3)
    assert.isUndefined(parseByteRate("fast"))
    assert.isUndefined(parseByteRate("10 parsecs"))
    assert.isUndefined(parseByteRate("0"))
  })
})
