/**
 * The GCS driver against the firebase-tools Cloud Storage emulator, started
 * by the vitest global setup (scripts/gcs-up.sh): the BlobStore conformance
 * suite under a random bucket and root, with the emulator's gaps declared
 * (not the driver's: real GCS has both features), then resumable uploads of
 * streamed bodies, failed bodies, the checksum the driver sends, and errors.
 */
import { createHash, randomBytes } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
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
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { gcsServer, randomName } from "../../../test/cloudServers.ts"
import { type GcsSettings, type GcsStoreTuning, makeGcsBlobStore, makeGcsStorage, resolveGcsSettings } from "../src/index.ts"

const MiB = 1024 * 1024

const settingsFor = (bucket: string, root: string, endpoint = gcsServer().emulatorHost, batchDelete?: boolean): GcsSettings =>
  resolveGcsSettings(
    { bucket, root, endpoint_url: endpoint, project_id: "demo-test", ...(batchDelete === undefined ? {} : { batch_delete: batchDelete }) },
    {},
    process.cwd(),
  )

/**
 * The JSON API's batch endpoint, which the emulator lacks, in front of it: POST /batch/storage/v1
 * is split into its DELETE calls, each sent to the emulator, and answered as one multipart/mixed
 * response; objects whose name contains "forbidden" answer 403. Everything else is passed through.
 */
const startBatchAdapter = async (target: string) => {
  const seen = { batches: 0, batchedDeletes: 0, singleDeletes: 0 }
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", async () => {
      const body = Buffer.concat(chunks)
      if (req.method === "POST" && req.url === "/batch/storage/v1") {
        seen.batches++
        const boundary = /boundary=([^;]+)/.exec(String(req.headers["content-type"]))?.[1] ?? ""
        const calls = body
          .toString("utf8")
          .split(`--${boundary}`)
          .flatMap((part) => {
            const id = /Content-ID: <([^>]+)>/.exec(part)?.[1]
            const line = /^DELETE (\S+) HTTP\/1\.1\r$/m.exec(part)?.[1]
            return id === undefined || line === undefined ? [] : [{ id, path: line }]
          })
        const answers = await Promise.all(
          calls.map(async ({ id, path }) => {
            seen.batchedDeletes++
            const status = decodeURIComponent(path).includes("forbidden")
              ? 403
              : (await fetch(`${target}${path}`, { method: "DELETE" })).status
            const json = status === 403 ? '{"error":{"code":403,"message":"injected: no storage.objects.delete permission"}}' : ""
            return `--adapter\r\nContent-Type: application/http\r\nContent-ID: <response-${id}>\r\n\r\nHTTP/1.1 ${status} X\r\nContent-Type: application/json\r\n\r\n${json}\r\n`
          }),
        )
        res.writeHead(200, { "content-type": "multipart/mixed; boundary=adapter" })
        return res.end(`${answers.join("")}--adapter--\r\n`)
      }
      if (req.method === "DELETE") seen.singleDeletes++
      const upstream = new URL(target)
      const forward = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (reply) => {
          res.writeHead(reply.statusCode ?? 502, reply.headers)
          reply.pipe(res)
        },
      )
      forward.on("error", () => res.destroy())
      forward.end(body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

const open = (settings: GcsSettings, tuning?: GcsStoreTuning) => openTestStore(makeGcsBlobStore(settings, tuning))

// The emulator creates a bucket on its first write (it cannot create buckets otherwise).
const bucket = randomName("bendsave-test")

serviceConformance("GCS driver on the firebase-tools emulator (conformance)", {
  open: (root) => makeGcsBlobStore(settingsFor(bucket, root)),
  capabilityOverrides: {
    conditionalPut: {
      value: false,
      reason: "the firebase-tools Cloud Storage emulator ignores ifGenerationMatch=0 (real GCS answers 412; the driver sends it)",
    },
    serverSideCopy: {
      value: false,
      reason: "the firebase-tools Cloud Storage emulator answers copy/rewrite with 501 Not Implemented (real GCS rewrites server side)",
    },
    batchDelete: {
      value: false,
      reason:
        "the firebase-tools Cloud Storage emulator has no JSON batch endpoint (the store deletes one by one there); the driver's batches are checked below through a batch adapter in front of the emulator",
    },
  },
})

describe("GCS driver on the firebase-tools emulator", () => {
  let store: BlobStore
  let close: () => Promise<void>
  const root = `root-${randomBytes(4).toString("hex")}`
  beforeAll(async () => {
    ;({ store, close } = await open(settingsFor(bucket, root), { singleUploadLimit: MiB }))
  })
  afterAll(() => close())

  it("keeps its objects under the root", async () => {
    await expectSuccess(store.put("a/b.txt", new TextEncoder().encode("x")))
    const [files] = await makeGcsStorage(settingsFor(bucket, root))
      .bucket(bucket)
      .getFiles({ prefix: `${root}/` })
    expect(files.map((f) => f.name)).toEqual([`${root}/a/b.txt`])
    expect(store.location).toBe(`gs://${bucket}/${root}`)
  })

  it("a streamed put goes up in one resumable upload and reads back byte for byte", async () => {
    const data = randomData(6 * MiB + 5)
    const info = await expectSuccess(store.put("resumable/streamed.bin", chunked(data, 1_000_003)))
    expect(info.size).toBe(data.length)
    expect((await expectSuccess(store.head("resumable/streamed.bin"))).etag).toBe(info.etag)
    expect(sha256Hex(await expectSuccess(store.get("resumable/streamed.bin")))).toBe(sha256Hex(data))
    expect(sha256Hex(Buffer.concat(await expectSuccess(Stream.runCollect(store.getStream("resumable/streamed.bin")))))).toBe(
      sha256Hex(data),
    )
    expect(Buffer.from(await expectSuccess(store.getRange("resumable/streamed.bin", 3 * MiB, 9)))).toEqual(
      Buffer.from(data.subarray(3 * MiB, 3 * MiB + 9)),
    )
  })

  it("a streamed put whose body fails leaves nothing behind, and the body's error comes out", async () => {
    const body = Stream.concat(
      chunked(randomData(3 * MiB), MiB),
      Stream.fail({ _tag: "BlobStoreError", reason: "Unavailable", detail: "injected" } as unknown as BlobStoreError),
    )
    expect((await expectFailure(store.put("resumable/failed.bin", body))).detail).toBe("injected")
    expect((await expectFailure(store.head("resumable/failed.bin"))).reason).toBe("NotFound")
  })

  it("an in-memory put sends the body's MD5 for the service to verify", async () => {
    const data = randomData(1000)
    await expectSuccess(store.put("md5/object", data))
    const [metadata] = await makeGcsStorage(settingsFor(bucket, root)).bucket(bucket).file(`${root}/md5/object`).getMetadata()
    expect(metadata.md5Hash).toBe(createHash("md5").update(data).digest("base64"))
  })

  it("etags change with every write (the object generation)", async () => {
    const first = await expectSuccess(store.put("gen/x", randomData(10)))
    const second = await expectSuccess(store.put("gen/x", randomData(10)))
    expect(second.etag).not.toBe(first.etag)
    expect((await expectSuccess(store.head("gen/x"))).etag).toBe(second.etag)
  })
})

describe("GCS batch deletes (through a batch adapter in front of the emulator)", () => {
  it("deleteMany sends 100 deletes per batch request, none one by one; missing keys are fine", async () => {
    const adapter = await startBatchAdapter(gcsServer().emulatorHost)
    const { store, close } = await open(settingsFor(bucket, `batch-${randomBytes(4).toString("hex")}`, adapter.endpoint, true))
    try {
      expect(store.capabilities.batchDelete).toBe(true)
      const keys = Array.from({ length: 250 }, (_, i) => `d${i % 3}/k${i}`)
      await expectSuccess(Effect.forEach(keys, (key) => store.put(key, new Uint8Array([1])), { concurrency: 16, discard: true }))
      await expectSuccess(store.deleteMany([...keys, "missing"]))
      expect(adapter.seen).toEqual({ batches: 3, batchedDeletes: 251, singleDeletes: 0 })
      expect(await expectSuccess(Stream.runCollect(store.list("")))).toEqual([])
    } finally {
      await close()
      await adapter.close()
    }
  })

  it("a call refused inside a batch fails deleteMany with that key and the service's reason", async () => {
    const adapter = await startBatchAdapter(gcsServer().emulatorHost)
    const { store, close } = await open(settingsFor(bucket, `batch-${randomBytes(4).toString("hex")}`, adapter.endpoint, true))
    try {
      await expectSuccess(store.put("ok", new Uint8Array([1])))
      const error = await expectFailure(store.deleteMany(["ok", "forbidden/one"]))
      expect(error.reason).toBe("PermissionDenied")
      expect(error.key).toBe("forbidden/one")
      expect(error.message).toContain("no storage.objects.delete permission")
      expect((await expectFailure(store.head("ok"))).reason).toBe("NotFound")
    } finally {
      await close()
      await adapter.close()
    }
  })

  it("on the emulator itself the store does not declare batch delete and deletes one by one", async () => {
    const { store, close } = await open(settingsFor(bucket, "x"))
    await close()
    expect(store.capabilities.batchDelete).toBe(false)
  })
})

describe("GCS driver errors against the emulator", () => {
  it("an unreachable endpoint is Unavailable (retryable) and says to check the endpoint", async () => {
    await withTestStore(makeGcsBlobStore(settingsFor(bucket, "", "http://127.0.0.1:9")), async (store) => {
      const error = await expectFailure(store.get("x"))
      expect(error.reason).toBe("Unavailable")
      expect(error.isRetryable).toBe(true)
      expect(error.fix).toContain("endpoint_url")
    })
  })
})
