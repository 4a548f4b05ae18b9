/**
 * The example plugin against the BlobStore conformance suite: all a driver
 * author needs is these few lines (a real server's driver opens its store
 * against that server with a random prefix instead of a temp directory).
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { validateStorageDriver } from "@bendsave/core/StorageDriver"
import { blobStoreConformance, openTestStore } from "@bendsave/core/testing"
import * as Effect from "effect/Effect"
import { expect, it } from "vitest"
import flatDirDriver from "../src/index.ts"

blobStoreConformance("flatdir example plugin (conformance)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "flatdir-"))
  const { store, close } = await openTestStore(flatDirDriver.make!({ dir }, { source: "url", create: false, baseDir: dir, env: {} }))
  return {
    store,
    cleanup: async () => {
      await close()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

it("the default export is a valid driver definition", async () => {
  const driver = await Effect.runPromise(validateStorageDriver(flatDirDriver, "bendsave-driver-flatdir"))
  expect(driver.schemes).toEqual(["flatdir"])
})
