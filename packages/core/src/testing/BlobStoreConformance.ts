/**
 * BlobStore conformance suite: one vitest `describe` block that checks a
 * driver against the Behaviour section of `BlobStore.ts`, plus the everyday
 * operations (round trips, overwrite, head, ranges, streams, listing order,
 * missing keys, deletes, invalid keys, copies, aliasing).
 *
 * The store is created while the suite is collected, because which tests
 * exist depends on the capabilities it declares. Capability tests are
 * registered only for declared capabilities (or where an override turns one
 * on); an override that turns a capability off registers a visible
 * "<cap> not checked: <reason>" test instead, so no gap is silent.
 *
 * Every test works under its own random key prefix and deletes what it wrote.
 * Tests use `it.live`: real I/O must not run on the TestClock.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import type { BlobStore, BlobStoreErrorReason, Capabilities } from "../BlobStore.ts"
import { BlobStoreError } from "../BlobStore.ts"

/** Replaces what a driver declares for the suite; `value: false` needs a reason, which shows in the report. */
export type CapabilityOverrides = Partial<Record<keyof Capabilities, { readonly value: boolean; readonly reason: string }>>

export interface BlobStoreConformanceOptions {
  readonly capabilityOverrides?: CapabilityOverrides
}

type BooleanCapability = "conditionalPut" | "rangeRead" | "batchDelete" | "serverSideCopy"

const MiB = 1024 * 1024
/** The largest object the suite writes. */
const largestObject = 8 * MiB

// ---------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------

/** Deterministic pseudo-random bytes (xorshift32), distinct per seed. */
const patternBytes = (size: number, seed: number): Uint8Array => {
  const bytes = new Uint8Array(size)
  let x = Math.imul(seed + 1, 2654435761) >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

const firstDifference = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return a.length === b.length ? -1 : n
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => firstDifference(a, b) === -1

const assertBytes = (actual: Uint8Array, expected: Uint8Array, what: string): void => {
  assert.instanceOf(actual, Uint8Array, `${what}: not a Uint8Array`)
  assert.strictEqual(actual.length, expected.length, `${what}: length`)
  assert.strictEqual(firstDifference(actual, expected), -1, `${what}: index of the first differing byte`)
}

const concatBytes = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

/** `bytes` as a stream of uneven chunks (including empty ones), each a fresh copy. */
const unevenChunks = (bytes: Uint8Array): Stream.Stream<Uint8Array, BlobStoreError> => {
  const sizes = [1, 0, 65_536, 1_000_003, 7, 0, 300_000]
  const chunks: Array<Uint8Array> = []
  for (let offset = 0, i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length]
    chunks.push(bytes.slice(offset, offset + size))
    offset += size
  }
  return Stream.fromIterable(chunks)
}

const readStream = (stream: Stream.Stream<Uint8Array, BlobStoreError>) => Effect.map(Stream.runCollect(stream), concatBytes)

// ---------------------------------------------------------------------------
// Keys and errors
// ---------------------------------------------------------------------------

const utf8 = new TextEncoder()

/** Ascending bytewise order of UTF-8 encodings: the order `list` must produce. */
const byteOrder = (a: string, b: string): number => {
  const x = utf8.encode(a)
  const y = utf8.encode(b)
  const n = Math.min(x.length, y.length)
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i]
  return x.length - y.length
}

const randomId = (): string => Math.random().toString(36).slice(2, 10)

/** Fails the test unless `effect` fails with a BlobStoreError of `reason`. */
const expectReason = <A, E>(what: string, reason: BlobStoreErrorReason, effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.result(effect), (result) => {
    if (Result.isSuccess(result)) assert.fail(`${what}: expected ${reason}, but it succeeded`)
    const error = result.failure
    assert.instanceOf(error, BlobStoreError, `${what}: error type`)
    assert.strictEqual((error as BlobStoreError).reason, reason, `${what}: ${String(error)}`)
  })

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

/** Registers the BlobStore conformance tests for the store `setup` creates. */
export const blobStoreConformance = (
  name: string,
  setup: () => Promise<{ store: BlobStore; cleanup?: () => Promise<void> }>,
  options?: BlobStoreConformanceOptions,
): void => {
  describe(name, async () => {
    const { store, cleanup } = await setup()
    afterAll(async () => {
      await cleanup?.()
    })
    const overrides = options?.capabilityOverrides ?? {}
    const enabled = (capability: BooleanCapability): boolean => overrides[capability]?.value ?? store.capabilities[capability]

    const runPrefix = `conformance-${randomId()}/`
    let testCount = 0

    const listKeys = (prefix: string) => Effect.map(Stream.runCollect(store.list(prefix)), (infos) => infos.map((info) => info.key))

    /** Deletes everything under `prefix`; a failure here fails the test. */
    const clearPrefix = (prefix: string) => Effect.flatMap(listKeys(prefix), (keys) => store.deleteMany(keys)).pipe(Effect.orDie)

    /** A live test whose body gets a fresh key prefix that is cleared afterwards. */
    const test = (title: string, body: (prefix: string) => Effect.Effect<void, BlobStoreError>) =>
      it.live(title, () => {
        const prefix = `${runPrefix}${testCount++}-${randomId()}/`
        return body(prefix).pipe(Effect.ensuring(clearPrefix(prefix)))
      })

    // --- Capability bookkeeping -------------------------------------------

    for (const [capability, override] of Object.entries(overrides)) {
      if (override === undefined || override.value) continue
      it(`${capability} not checked: ${override.reason}`, () => {
        assert.isAbove(override.reason.trim().length, 0, `the override of ${capability} needs a reason`)
      })
    }

    it("declares its driver, location and capabilities", () => {
      assert.isAbove(store.driver.length, 0, "driver name")
      assert.isAbove(store.location.length, 0, "location")
      for (const capability of ["conditionalPut", "rangeRead", "batchDelete", "serverSideCopy"] as const) {
        assert.isBoolean(store.capabilities[capability], capability)
      }
      if (overrides.maxObjectSize?.value !== false) {
        assert.isTrue(Number.isSafeInteger(store.capabilities.maxObjectSize), "maxObjectSize is an integer")
        assert.isAtLeast(store.capabilities.maxObjectSize, largestObject, "maxObjectSize covers the suite's objects")
      }
    })

    // --- Round trips ------------------------------------------------------

    test("put/get round trip of an empty object", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}empty`
        const info = yield* store.put(key, new Uint8Array(0))
        assert.strictEqual(info.size, 0)
        assertBytes(yield* store.get(key), new Uint8Array(0), "get")
        assertBytes(yield* readStream(store.getStream(key)), new Uint8Array(0), "getStream")
        assert.strictEqual((yield* store.head(key)).size, 0)
      }))

    test("put/get round trip of a small object", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}small.txt`
        const body = utf8.encode("hello, bendsave\n")
        const info = yield* store.put(key, body)
        assert.strictEqual(info.key, key)
        assert.strictEqual(info.size, body.length)
        assertBytes(yield* store.get(key), body, "get")
      }))

    test("put/get round trip of a multi-MiB object", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}big/object.bin`
        const body = patternBytes(5 * MiB + 17, 1)
        const info = yield* store.put(key, body)
        assert.strictEqual(info.size, body.length)
        assertBytes(yield* store.get(key), body, "get")
      }))

    test("put/get round trip of a streamed body in uneven chunks", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}streamed.bin`
        const body = patternBytes(3 * MiB + 5, 2)
        const info = yield* store.put(key, unevenChunks(body))
        assert.strictEqual(info.size, body.length)
        assertBytes(yield* store.get(key), body, "get")
        const emptyKey = `${prefix}streamed-empty`
        assert.strictEqual((yield* store.put(emptyKey, Stream.empty)).size, 0)
        assertBytes(yield* store.get(emptyKey), new Uint8Array(0), "get of an empty stream body")
      }))

    test("getStream yields the object's content", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}stream-me`
        const body = patternBytes(3 * MiB + 333, 3)
        yield* store.put(key, body)
        assertBytes(yield* readStream(store.getStream(key)), body, "getStream")
      }))

    // --- Behaviour: read-after-write and atomicity --------------------------

    test("read-after-write: once put returns, get, head and list see the object and its full content", (prefix) =>
      Effect.gen(function* () {
        for (let round = 0; round < 3; round++) {
          const key = `${prefix}raw/${round}`
          const body = patternBytes(100_000 + round, 10 + round)
          const info = yield* store.put(key, body)
          assertBytes(yield* store.get(key), body, `get after put ${round}`)
          const head = yield* store.head(key)
          assert.strictEqual(head.size, body.length, "head size")
          assert.strictEqual(head.etag, info.etag, "head etag equals the etag put returned")
          assert.include(yield* listKeys(`${prefix}raw/`), key, "list sees the new key")
        }
      }))

    test("atomic put: a reader sees the previous object or the whole new one, never a prefix", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}contended`
        const versions = [patternBytes(2 * MiB + 1, 4), patternBytes(3 * MiB + 3, 5)]
        yield* store.put(key, versions[0])
        let writing = true
        const writer = Effect.forEach([1, 0, 1, 0, 1, 0], (v) => store.put(key, v === 0 ? versions[0] : unevenChunks(versions[1])), {
          discard: true,
        }).pipe(Effect.ensuring(Effect.sync(() => (writing = false))))
        const reader = (useStream: boolean) =>
          Effect.gen(function* () {
            let reads = 0
            while (writing || reads < 2) {
              const got = useStream ? yield* readStream(store.getStream(key)) : yield* store.get(key)
              assert.isTrue(
                versions.some((v) => sameBytes(got, v)),
                `read ${reads} returned ${got.length} bytes that match neither version`,
              )
              reads++
              yield* Effect.yieldNow
            }
          })
        yield* Effect.all([writer, reader(false), reader(true)], { concurrency: "unbounded", discard: true })
      }))

    const failingBody = (bytes: Uint8Array): Stream.Stream<Uint8Array, BlobStoreError> =>
      Stream.concat(
        Stream.make(bytes),
        Stream.fail(new BlobStoreError({ reason: "Unavailable", driver: "conformance", operation: "body", detail: "injected" })),
      )

    test("a put that fails leaves no partial object behind", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}never`
        yield* expectReason("put of a failing body", "Unavailable", store.put(key, failingBody(patternBytes(MiB, 6))))
        yield* expectReason("get after the failed put", "NotFound", store.get(key))
        assert.deepStrictEqual(yield* listKeys(prefix), [], "list after the failed put")

        const existing = `${prefix}kept`
        const original = patternBytes(1000, 7)
        const before = yield* store.put(existing, original)
        yield* expectReason("overwrite with a failing body", "Unavailable", store.put(existing, failingBody(patternBytes(MiB, 8))))
        assertBytes(yield* store.get(existing), original, "the existing object after the failed overwrite")
        assert.strictEqual((yield* store.head(existing)).etag, before.etag, "etag after the failed overwrite")
        assert.deepStrictEqual(yield* listKeys(prefix), [existing], "list after the failed overwrite")
      }))

    // --- Overwrite and head -----------------------------------------------

    test("put overwrites an existing object, also with a shorter one", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}overwritten`
        yield* store.put(key, patternBytes(50_000, 9))
        const shorter = patternBytes(10, 10)
        yield* store.put(key, shorter)
        assertBytes(yield* store.get(key), shorter, "get after overwrite")
        assert.deepStrictEqual(yield* listKeys(prefix), [key], "still one key")
      }))

    test("head reports size, etag and lastModified; the etag changes after an overwrite", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}headed`
        const first = yield* store.put(key, patternBytes(1234, 11))
        const head = yield* store.head(key)
        assert.strictEqual(head.key, key)
        assert.strictEqual(head.size, 1234)
        assert.strictEqual(head.etag, first.etag)
        assert.isAbove(head.etag.length, 0, "etag is not empty")
        const day = 24 * 60 * 60 * 1000
        assert.isTrue(Math.abs(head.lastModified - Date.now()) < day, `lastModified ${head.lastModified} is now`)
        const second = yield* store.put(key, patternBytes(1234, 12))
        assert.notStrictEqual(second.etag, first.etag, "etag returned by the overwrite")
        assert.strictEqual((yield* store.head(key)).etag, second.etag, "head after the overwrite")
      }))

    // --- getRange ------------------------------------------------------------

    test("getRange reads the middle and the end of an object", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}ranged`
        const body = patternBytes(10_000, 13)
        yield* store.put(key, body)
        assertBytes(yield* store.getRange(key, 1000, 2345), body.subarray(1000, 3345), "middle")
        assertBytes(yield* store.getRange(key, 0, 1), body.subarray(0, 1), "first byte")
        assertBytes(yield* store.getRange(key, 9990, 10), body.subarray(9990), "end")
        assertBytes(yield* store.getRange(key, 500, 0), new Uint8Array(0), "zero length")
      }))

    test("getRange past the end returns the bytes up to the end", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}ranged`
        const body = patternBytes(10_000, 14)
        yield* store.put(key, body)
        assertBytes(yield* store.getRange(key, 9000, 5000), body.subarray(9000), "past the end")
        assertBytes(yield* store.getRange(key, 0, Number.MAX_SAFE_INTEGER), body, "huge length")
      }))

    test("getRange at offset == size returns an empty array", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}ranged`
        yield* store.put(key, patternBytes(100, 15))
        assertBytes(yield* store.getRange(key, 100, 10), new Uint8Array(0), "offset == size")
        yield* store.put(`${prefix}empty`, new Uint8Array(0))
        assertBytes(yield* store.getRange(`${prefix}empty`, 0, 10), new Uint8Array(0), "empty object")
      }))

    test("getRange with offset > size fails with RangeNotSatisfiable", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}ranged`
        yield* store.put(key, patternBytes(100, 16))
        yield* expectReason("offset size + 1", "RangeNotSatisfiable", store.getRange(key, 101, 1))
        yield* expectReason("offset far past", "RangeNotSatisfiable", store.getRange(key, 1_000_000, 1))
        yield* store.put(`${prefix}empty`, new Uint8Array(0))
        yield* expectReason("empty object", "RangeNotSatisfiable", store.getRange(`${prefix}empty`, 1, 1))
      }))

    // --- Missing keys and deletes ---------------------------------------------

    test("get, head, getRange and getStream of a missing key fail with NotFound", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}missing/object`
        yield* expectReason("get", "NotFound", store.get(key))
        yield* expectReason("head", "NotFound", store.head(key))
        yield* expectReason("getRange", "NotFound", store.getRange(key, 0, 1))
        yield* expectReason("getStream", "NotFound", Stream.runCollect(store.getStream(key)))
        yield* store.put(`${prefix}present`, patternBytes(10, 17))
        yield* expectReason("get below an object", "NotFound", store.get(`${prefix}present/below`))
      }))

    test("delete removes an object, and deleting a missing key succeeds", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}doomed/one`
        yield* store.put(key, patternBytes(10, 18))
        yield* store.delete(key)
        yield* expectReason("get after delete", "NotFound", store.get(key))
        assert.deepStrictEqual(yield* listKeys(prefix), [], "list after delete")
        yield* store.delete(key)
        yield* store.delete(`${prefix}never/existed`)
        // The key can be written again after the delete.
        yield* store.put(key, patternBytes(5, 19))
        assert.strictEqual((yield* store.head(key)).size, 5)
      }))

    test("deleteMany removes every given key, present or missing", (prefix) =>
      Effect.gen(function* () {
        const keys = ["a", "b/c", "b/d", "e"].map((k) => `${prefix}${k}`)
        yield* Effect.forEach(keys, (key, i) => store.put(key, patternBytes(10, i)), { discard: true })
        yield* store.deleteMany([keys[0], keys[1], `${prefix}missing`, keys[3]])
        assert.deepStrictEqual(yield* listKeys(prefix), [keys[2]], "only the kept key is left")
        yield* store.deleteMany([])
        yield* store.deleteMany([keys[0], keys[0]])
      }))

    // --- Listing ---------------------------------------------------------------

    const orderKeys = ["a.b", "a/x", "a-b", "a0", "é", "a/y/z", "ab", "b", "a/x0", "\uFFFD", "😀", "Z", "a~"]

    test("list streams keys in ascending bytewise order, each key once", (prefix) =>
      Effect.gen(function* () {
        const keys = orderKeys.map((k) => `${prefix}${k}`)
        yield* Effect.forEach(keys, (key, i) => store.put(key, patternBytes(i, i)), { concurrency: 4, discard: true })
        const expected = [...keys].sort(byteOrder)
        // The fixture must tell bytewise order apart from UTF-16 order.
        assert.notDeepEqual(expected, [...keys].sort(), "fixture: bytewise differs from UTF-16 order")
        const infos = yield* Stream.runCollect(store.list(prefix))
        assert.deepStrictEqual(
          infos.map((info) => info.key),
          expected,
        )
        for (const info of infos) {
          const head = yield* store.head(info.key)
          assert.strictEqual(info.size, head.size, `size of ${info.key}`)
          assert.strictEqual(info.etag, head.etag, `etag of ${info.key}`)
        }
      }))

    test("list(prefix) matches a plain string prefix, not a directory", (prefix) =>
      Effect.gen(function* () {
        yield* Effect.forEach(orderKeys, (k, i) => store.put(`${prefix}${k}`, patternBytes(1, i)), {
          concurrency: 4,
          discard: true,
        })
        const listed = (p: string) => Effect.map(listKeys(`${prefix}${p}`), (keys) => keys.map((key) => key.slice(prefix.length)))
        assert.deepStrictEqual(yield* listed("a"), ["a-b", "a.b", "a/x", "a/x0", "a/y/z", "a0", "ab", "a~"], "a")
        assert.deepStrictEqual(yield* listed("a/"), ["a/x", "a/x0", "a/y/z"], "a/")
        assert.deepStrictEqual(yield* listed("a/x"), ["a/x", "a/x0"], "a/x")
        assert.deepStrictEqual(yield* listed("a/y"), ["a/y/z"], "a/y")
        assert.deepStrictEqual(yield* listed("a/y/z"), ["a/y/z"], "a/y/z")
        assert.deepStrictEqual(yield* listed("a/y/z/"), [], "a/y/z/")
        assert.deepStrictEqual(yield* listed("é"), ["é"], "é")
        assert.deepStrictEqual(yield* listed("zz"), [], "zz")
        assert.deepStrictEqual(yield* listKeys(`${runPrefix}no-such-test/`), [], "an unused prefix")
      }))

    test("list streams more than 1000 keys in order", (prefix) =>
      Effect.gen(function* () {
        const keys = Array.from({ length: 1100 }, (_, i) => `${prefix}d${i % 7}/k${String(i).padStart(4, "0")}`)
        yield* Effect.forEach(keys, (key) => store.put(key, new Uint8Array(0)), { concurrency: 32, discard: true })
        assert.deepStrictEqual(yield* listKeys(prefix), [...keys].sort(byteOrder))
        yield* store.deleteMany(keys)
        assert.deepStrictEqual(yield* listKeys(prefix), [], "list after deleteMany of all 1100 keys")
      }))

    test("list includes every object put before the listing started, despite concurrent writes", (prefix) =>
      Effect.gen(function* () {
        const before = Array.from({ length: 300 }, (_, i) => `${prefix}k${String(i * 2).padStart(4, "0")}`)
        const during = Array.from({ length: 300 }, (_, i) => `${prefix}k${String(i * 2 + 1).padStart(4, "0")}`)
        yield* Effect.forEach(before, (key) => store.put(key, new Uint8Array(1)), { concurrency: 32, discard: true })
        const [listed] = yield* Effect.all(
          [listKeys(prefix), Effect.forEach(during, (key) => store.put(key, new Uint8Array(1)), { concurrency: 8, discard: true })],
          { concurrency: "unbounded" },
        )
        assert.deepStrictEqual(
          before.filter((key) => !listed.includes(key)),
          [],
          "keys put before the listing that it missed",
        )
        assert.deepStrictEqual(listed, [...new Set(listed)].sort(byteOrder), "sorted, each key once")
      }))

    // --- Keys ----------------------------------------------------------------

    test("invalid keys fail with InvalidKey on every operation", (prefix) =>
      Effect.gen(function* () {
        const invalid = [
          "",
          "/absolute",
          `/${prefix}x`,
          "..",
          "../escape",
          `${prefix}../../escape`,
          `${prefix}a//b`,
          `${prefix}a/./b`,
          `${prefix}trailing/`,
          `${prefix}back\\slash`,
        ]
        const valid = `${prefix}valid`
        yield* store.put(valid, patternBytes(3, 20))
        for (const key of invalid) {
          const k = JSON.stringify(key)
          yield* expectReason(`put ${k}`, "InvalidKey", store.put(key, new Uint8Array(1)))
          yield* expectReason(`put ${k} (stream)`, "InvalidKey", store.put(key, Stream.make(new Uint8Array(1))))
          yield* expectReason(`get ${k}`, "InvalidKey", store.get(key))
          yield* expectReason(`head ${k}`, "InvalidKey", store.head(key))
          yield* expectReason(`getRange ${k}`, "InvalidKey", store.getRange(key, 0, 1))
          yield* expectReason(`getStream ${k}`, "InvalidKey", Stream.runCollect(store.getStream(key)))
          yield* expectReason(`delete ${k}`, "InvalidKey", store.delete(key))
          yield* expectReason(`deleteMany ${k}`, "InvalidKey", store.deleteMany([valid, key]))
          if (enabled("serverSideCopy")) {
            yield* expectReason(`copy to ${k}`, "InvalidKey", store.copy(valid, key))
            yield* expectReason(`copy from ${k}`, "InvalidKey", store.copy(key, `${prefix}copy`))
          }
        }
        assert.deepStrictEqual(yield* listKeys(prefix), [valid], "nothing was written or deleted")
      }))

    test("returned bytes are not aliased to stored bytes", (prefix) =>
      Effect.gen(function* () {
        const key = `${prefix}aliasing`
        const original = patternBytes(4096, 21)
        const input = original.slice()
        yield* store.put(key, input)
        input.fill(0)
        const chunk = original.slice()
        yield* store.put(`${prefix}streamed`, Stream.make(chunk))
        chunk.fill(0)
        ;(yield* store.get(key)).fill(1)
        ;(yield* store.getRange(key, 0, 100)).fill(2)
        for (const c of yield* Stream.runCollect(store.getStream(key))) c.fill(3)
        assertBytes(yield* store.get(key), original, "after mutating what put took and get returned")
        assertBytes(yield* store.get(`${prefix}streamed`), original, "after mutating a streamed chunk")
      }))

    // --- conditionalPut ---------------------------------------------------------

    if (enabled("conditionalPut")) {
      test("conditionalPut: create-only put fails with AlreadyExists when the key exists", (prefix) =>
        Effect.gen(function* () {
          const key = `${prefix}once`
          const first = patternBytes(100, 22)
          yield* store.put(key, first, { ifNotExists: true })
          yield* expectReason("second create-only put", "AlreadyExists", store.put(key, patternBytes(50, 23), { ifNotExists: true }))
          yield* expectReason(
            "second create-only put (stream)",
            "AlreadyExists",
            store.put(key, unevenChunks(patternBytes(2 * MiB, 24)), { ifNotExists: true }),
          )
          assertBytes(yield* store.get(key), first, "content after the refused puts")
          assert.deepStrictEqual(yield* listKeys(prefix), [key], "no stray objects")
          yield* store.delete(key)
          yield* store.put(key, patternBytes(7, 25), { ifNotExists: true })
          assert.strictEqual((yield* store.head(key)).size, 7, "create-only put after delete")
        }))

      test("conditionalPut: exactly one of 10 racing create-only puts succeeds", (prefix) =>
        Effect.gen(function* () {
          for (let round = 0; round < 3; round++) {
            const key = `${prefix}race-${round}`
            const bodies = Array.from({ length: 10 }, (_, i) => patternBytes(64 * 1024 + i, 100 * round + i))
            const results = yield* Effect.all(
              bodies.map((body) => Effect.result(store.put(key, body, { ifNotExists: true }))),
              { concurrency: "unbounded" },
            )
            const winners = results.flatMap((result, i) => (Result.isSuccess(result) ? [i] : []))
            assert.strictEqual(winners.length, 1, `round ${round}: number of successful puts`)
            for (const result of results) {
              if (Result.isFailure(result)) assert.strictEqual(result.failure.reason, "AlreadyExists", result.failure.message)
            }
            assertBytes(yield* store.get(key), bodies[winners[0]], `round ${round}: the winner's content`)
          }
        }))
    } else if (overrides.conditionalPut === undefined) {
      it("conditionalPut not declared by the driver: create-only tests not registered", () => {
        assert.isFalse(store.capabilities.conditionalPut)
      })
    }

    // --- serverSideCopy -----------------------------------------------------------

    if (enabled("serverSideCopy")) {
      test("serverSideCopy: copy duplicates an object and leaves the source unchanged", (prefix) =>
        Effect.gen(function* () {
          const from = `${prefix}source`
          const to = `${prefix}nested/dir/target`
          const body = patternBytes(2 * MiB + 9, 26)
          yield* store.put(from, body)
          const info = yield* store.copy(from, to)
          assert.strictEqual(info.key, to)
          assert.strictEqual(info.size, body.length)
          assert.strictEqual((yield* store.head(to)).etag, info.etag, "head etag equals the etag copy returned")
          assertBytes(yield* store.get(to), body, "copy")
          assertBytes(yield* store.get(from), body, "source")
          assert.deepStrictEqual(yield* listKeys(prefix), [to, from].sort(byteOrder))
        }))

      test("serverSideCopy: copy replaces the target; copy of a missing key fails with NotFound", (prefix) =>
        Effect.gen(function* () {
          const from = `${prefix}source`
          const to = `${prefix}target`
          const body = patternBytes(10, 27)
          yield* store.put(from, body)
          yield* store.put(to, patternBytes(5000, 28))
          yield* store.copy(from, to)
          assertBytes(yield* store.get(to), body, "replaced target")
          yield* expectReason("copy of a missing key", "NotFound", store.copy(`${prefix}missing`, `${prefix}other`))
          yield* expectReason("target of the failed copy", "NotFound", store.head(`${prefix}other`))
        }))
    } else if (overrides.serverSideCopy === undefined) {
      test("serverSideCopy not declared: copy fails with Unsupported", (prefix) =>
        Effect.gen(function* () {
          yield* store.put(`${prefix}source`, patternBytes(10, 29))
          yield* expectReason("copy", "Unsupported", store.copy(`${prefix}source`, `${prefix}target`))
        }))
    }

    // --- rangeRead ----------------------------------------------------------------

    if (enabled("rangeRead")) {
      test("rangeRead: small ranges of a large object", (prefix) =>
        Effect.gen(function* () {
          const key = `${prefix}large`
          const body = patternBytes(largestObject, 30)
          yield* store.put(key, unevenChunks(body))
          assertBytes(yield* store.getRange(key, largestObject - 100, 100), body.subarray(largestObject - 100), "tail")
          assertBytes(yield* store.getRange(key, MiB - 10, 20), body.subarray(MiB - 10, MiB + 10), "across 1 MiB")
        }))
    } else if (overrides.rangeRead === undefined) {
      it("rangeRead not declared by the driver: large-object range test not registered", () => {
        assert.isFalse(store.capabilities.rangeRead)
      })
    }

    // --- batchDelete ----------------------------------------------------------------

    if (enabled("batchDelete")) {
      test("batchDelete: deleteMany of 2500 keys, more than one request of most services takes", (prefix) =>
        Effect.gen(function* () {
          const keys = Array.from({ length: 2500 }, (_, i) => `${prefix}b${i % 3}/k${i}`)
          yield* Effect.forEach(keys, (key) => store.put(key, new Uint8Array(0)), { concurrency: 32, discard: true })
          yield* store.deleteMany([...keys, `${prefix}missing`])
          assert.deepStrictEqual(yield* listKeys(prefix), [], "list after deleteMany")
        }))
    } else if (overrides.batchDelete === undefined) {
      it("batchDelete not declared by the driver: batch test not registered", () => {
        assert.isFalse(store.capabilities.batchDelete)
      })
    }
  })
}
