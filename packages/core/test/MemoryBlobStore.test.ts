/**
 * Tests of the `memory` BlobStore driver: the conformance suite, plus its
 * description and that separate stores do not share objects.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import { blobStoreConformance } from "../src/testing/index.ts"

blobStoreConformance("MemoryBlobStore conformance", async () => ({ store: makeMemoryBlobStore({ name: "conformance" }) }))

describe("MemoryBlobStore", () => {
  it("describes itself: driver, location and capabilities", () => {
    const store = makeMemoryBlobStore({ name: "described" })
    assert.strictEqual(store.driver, "memory")
    assert.strictEqual(store.location, "memory://described")
    assert.strictEqual(makeMemoryBlobStore().location, "memory://default")
    assert.deepStrictEqual(
      { ...store.capabilities, maxObjectSize: 0 },
      { conditionalPut: true, rangeRead: true, batchDelete: true, serverSideCopy: true, maxObjectSize: 0 },
    )
  })

  it.effect("separate stores do not share objects", () =>
    Effect.gen(function* () {
      const one = makeMemoryBlobStore()
      const two = makeMemoryBlobStore()
      yield* one.put("k", new Uint8Array([1]))
      const result = yield* Effect.result(two.get("k"))
      assert.isTrue(Result.isFailure(result) && result.failure.reason === "NotFound")
    }),
  )
})
