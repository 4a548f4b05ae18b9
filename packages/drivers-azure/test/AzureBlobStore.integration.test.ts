/**
 * The Azure Blob driver against Azurite, started by the vitest global setup
 * (scripts/azurite-up.sh): the BlobStore conformance suite in a random
 * container under a random root, then staged (block) uploads, create-only
 * block uploads, Content-MD5 verification by the service, listing order,
 * and the errors a user meets (missing container, wrong key, unreachable
 * endpoint).
 */
import { createHash, randomBytes } from "node:crypto"
import { BlobServiceClient } from "@azure/storage-blob"
import type { BlobStore, BlobStoreError } from "@bendsave/core"
import {
  chunked,
  expectFailure,
  expectSuccess,
  openTestStore,
  randomData,
  serviceConformance,
  sha256Hex,
  withTestStore,
} from "@bendsave/core/testing"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { azuriteServer, randomName } from "../../../test/cloudServers.ts"
import { type AzureOptions, type AzureSettings, type AzureStoreTuning, makeAzureBlobStore, resolveAzureSettings } from "../src/index.ts"

const MiB = 1024 * 1024

const settingsFor = (container: string, root: string, extra: Partial<AzureOptions> = {}): AzureSettings =>
  resolveAzureSettings({ container, root, connection_string: Redacted.make(azuriteServer().connectionString), ...extra }, {})

const open = (settings: AzureSettings, tuning?: AzureStoreTuning) => openTestStore(makeAzureBlobStore(settings, tuning))

const service = () => BlobServiceClient.fromConnectionString(azuriteServer().connectionString)
const container = randomName("bendsave-test")

beforeAll(async () => {
  await service().getContainerClient(container).create()
})
afterAll(async () => {
  await service().getContainerClient(container).deleteIfExists()
})

serviceConformance("Azure Blob driver on Azurite (conformance)", {
  before: async () => {
    await service().getContainerClient(`${container}-c`).createIfNotExists()
  },
  open: (root) => makeAzureBlobStore(settingsFor(`${container}-c`, root)),
  after: async () => {
    await service().getContainerClient(`${container}-c`).deleteIfExists()
  },
})

describe("Azure Blob driver on Azurite", () => {
  let store: BlobStore
  let close: () => Promise<void>
  const root = `root-${randomBytes(4).toString("hex")}`
  beforeAll(async () => {
    ;({ store, close } = await open(settingsFor(container, root), { blockSize: 4 * MiB }))
  })
  afterAll(() => close())

  it("keeps its blobs under the root; the location shows no secret", async () => {
    await expectSuccess(store.put("a/b.txt", new TextEncoder().encode("x")))
    const names: Array<string> = []
    for await (const item of service()
      .getContainerClient(container)
      .listBlobsFlat({ prefix: `${root}/` }))
      names.push(item.name)
    expect(names).toEqual([`${root}/a/b.txt`])
    expect(store.location).toBe(`azblob://${container}/${root}`)
    expect(JSON.stringify(store)).not.toContain("Eby8vdM02")
  })

  it("a streamed put of 13 MiB is staged in blocks and committed at once; reads back byte for byte", async () => {
    const data = randomData(13 * MiB + 7)
    const info = await expectSuccess(store.put("blocks/streamed.bin", chunked(data, 1_000_003)))
    expect(info.size).toBe(data.length)
    const blocks = await service().getContainerClient(container).getBlockBlobClient(`${root}/blocks/streamed.bin`).getBlockList("committed")
    expect(blocks.committedBlocks?.length).toBe(4)
    expect((await expectSuccess(store.head("blocks/streamed.bin"))).etag).toBe(info.etag)
    expect(sha256Hex(await expectSuccess(store.get("blocks/streamed.bin")))).toBe(sha256Hex(data))
    expect(sha256Hex(Buffer.concat(await expectSuccess(Stream.runCollect(store.getStream("blocks/streamed.bin")))))).toBe(sha256Hex(data))
    expect(Buffer.from(await expectSuccess(store.getRange("blocks/streamed.bin", 4 * MiB - 2, 4)))).toEqual(
      Buffer.from(data.subarray(4 * MiB - 2, 4 * MiB + 2)),
    )
  })

  it("a staged put whose body fails commits nothing, and the body's error comes out", async () => {
    const body = Stream.concat(
      chunked(randomData(9 * MiB), MiB),
      Stream.fail({ _tag: "BlobStoreError", reason: "Unavailable", detail: "injected" } as unknown as BlobStoreError),
    )
    expect((await expectFailure(store.put("blocks/failed.bin", body))).detail).toBe("injected")
    expect((await expectFailure(store.head("blocks/failed.bin"))).reason).toBe("NotFound")
  })

  it("create-only staged put refuses an existing blob, atomically at the commit", async () => {
    await expectSuccess(store.put("blocks/once.bin", randomData(10)))
    expect((await expectFailure(store.put("blocks/once.bin", chunked(randomData(9 * MiB), MiB), { ifNotExists: true }))).reason).toBe(
      "AlreadyExists",
    )
    expect((await expectSuccess(store.head("blocks/once.bin"))).size).toBe(10)
    expect((await expectSuccess(store.put("blocks/new-once.bin", chunked(randomData(9 * MiB), MiB), { ifNotExists: true }))).size).toBe(
      9 * MiB,
    )
  })

  it("the service verifies Content-MD5: an upload whose bytes do not match is refused (retryable) and nothing is stored", async () => {
    let corrupt = true
    // A checksum of other bytes is what the service sees when bytes change on the way.
    await withTestStore(
      makeAzureBlobStore(settingsFor(container, root), {
        blockSize: 4 * MiB,
        md5: (bytes) =>
          createHash("md5")
            .update(bytes)
            .update(corrupt ? "x" : "")
            .digest(),
      }),
      async (bad) => {
        const small = await expectFailure(bad.put("md5/small", randomData(1000)))
        expect(small.isRetryable).toBe(true)
        expect(small.message).toContain("checksum mismatch")
        expect((await expectFailure(bad.head("md5/small"))).reason).toBe("NotFound")
        const staged = await expectFailure(bad.put("md5/staged", chunked(randomData(9 * MiB), MiB)))
        expect(staged.isRetryable).toBe(true)
        expect((await expectFailure(bad.head("md5/staged"))).reason).toBe("NotFound")
        corrupt = false
        await expectSuccess(bad.put("md5/small", randomData(1000)))
        await expectSuccess(bad.put("md5/staged", chunked(randomData(9 * MiB), MiB)))
      },
    )
  })
})

describe("Azure Blob driver errors against Azurite", () => {
  it("a missing container is InvalidConfig naming the container and the fix", async () => {
    await withTestStore(makeAzureBlobStore(settingsFor(randomName("no-such-container"), "")), async (store) => {
      const error = await expectFailure(store.get("x"))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toMatch(
        /container 'no-such-container-[0-9a-f]+' on Azure Blob Storage at http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1 does not exist/,
      )
      expect(error.fix).toContain("create the container")
      expect((await expectFailure(Stream.runCollect(store.list("")))).reason).toBe("InvalidConfig")
    })
  })

  it("a wrong account key is PermissionDenied naming where the credential came from, without showing it", async () => {
    const endpoint = /BlobEndpoint=([^;]+)/.exec(azuriteServer().connectionString)![1]
    const wrongKey = Buffer.from("definitely-not-the-key").toString("base64")
    await withTestStore(
      makeAzureBlobStore(
        resolveAzureSettings(
          { container, root: "", endpoint_url: endpoint, account_name: "devstoreaccount1", account_key: Redacted.make(wrongKey) },
          {},
        ),
      ),
      async (store) => {
        const error = await expectFailure(store.get("x"))
        expect(error.reason).toBe("PermissionDenied")
        expect(error.message).toContain("account_key in the cluster file")
        expect(`${error.message} ${error.fix}`).not.toContain(wrongKey)
        expect((await expectFailure(store.head("x"))).reason).toBe("PermissionDenied")
      },
    )
  })

  it("an unreachable endpoint is Unavailable (retryable) and says to check the endpoint", async () => {
    await withTestStore(
      makeAzureBlobStore(
        resolveAzureSettings(
          {
            container,
            root: "",
            endpoint_url: "http://127.0.0.1:9/devstoreaccount1",
            account_name: "devstoreaccount1",
            account_key: Redacted.make("a2V5"),
          },
          {},
        ),
      ),
      async (store) => {
        const error = await expectFailure(store.get("x"))
        expect(error.reason).toBe("Unavailable")
        expect(error.isRetryable).toBe(true)
        expect(error.fix).toContain("endpoint_url")
      },
    )
  })
})
