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
import { DEFAULT_RETRY, withRetry } from "@bendsave/core"
import { blobStoreConformance } from "@bendsave/core/testing"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
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

const open = async (settings: GcsSettings, tuning?: GcsStoreTuning): Promise<{ store: BlobStore; close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const store = await Effect.runPromise(Scope.provide(makeGcsBlobStore(settings, tuning), scope))
  return { store, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const run = <A>(effect: Effect.Effect<A, BlobStoreError>) => Effect.runPromise(effect)
const failure = (effect: Effect.Effect<unknown, BlobStoreError>) => Effect.runPromise(Effect.flip(effect))
const bytes = (n: number) => new Uint8Array(randomBytes(n))
const chunks = (data: Uint8Array, size: number) => {
  const out: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += size) out.push(data.slice(i, i + size))
  return Stream.fromIterable(out)
}
const sha = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")
// The emulator creates a bucket on its first write (it cannot create buckets otherwise).
const bucket = randomName("bendsave-test")

blobStoreConformance(
  "GCS driver on the firebase-tools emulator (conformance)",
  async () => {
    const { store, close } = await open(settingsFor(bucket, `conformance-${randomBytes(4).toString("hex")}`))
    // As bendsave opens it: with core's retry of transient failures (an emulator's socket reset under load).
    return { store: withRetry(store, DEFAULT_RETRY), cleanup: close }
  },
  {
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
  },
)

describe("GCS driver on the firebase-tools emulator", () => {
  let store: BlobStore
  let close: () => Promise<void>
  const root = `root-${randomBytes(4).toString("hex")}`
  beforeAll(async () => {
    ;({ store, close } = await open(settingsFor(bucket, root), { singleUploadLimit: MiB }))
  })
  afterAll(() => close())

  it("keeps its objects under the root", async () => {
    await run(store.put("a/b.txt", new TextEncoder().encode("x")))
    const [files] = await makeGcsStorage(settingsFor(bucket, root))
      .bucket(bucket)
      .getFiles({ prefix: `${root}/` })
    expect(files.map((f) => f.name)).toEqual([`${root}/a/b.txt`])
    expect(store.location).toBe(`gs://${bucket}/${root}`)
  })

  it("a streamed put goes up in one resumable upload and reads back byte for byte", async () => {
    const data = bytes(6 * MiB + 5)
    const info = await run(store.put("resumable/streamed.bin", chunks(data, 1_000_003)))
    expect(info.size).toBe(data.length)
    expect((await run(store.head("resumable/streamed.bin"))).etag).toBe(info.etag)
    expect(sha(await run(store.get("resumable/streamed.bin")))).toBe(sha(data))
    expect(sha(Buffer.concat(await run(Stream.runCollect(store.getStream("resumable/streamed.bin")))))).toBe(sha(data))
    expect(Buffer.from(await run(store.getRange("resumable/streamed.bin", 3 * MiB, 9)))).toEqual(
      Buffer.from(data.subarray(3 * MiB, 3 * MiB + 9)),
    )
  })

  it("a streamed put whose body fails leaves nothing behind, and the body's error comes out", async () => {
    const body = Stream.concat(
      chunks(bytes(3 * MiB), MiB),
      Stream.fail({ _tag: "BlobStoreError", reason: "Unavailable", detail: "injected" } as unknown as BlobStoreError),
    )
    expect((await failure(store.put("resumable/failed.bin", body))).detail).toBe("injected")
    expect((await failure(store.head("resumable/failed.bin"))).reason).toBe("NotFound")
  })

  it("an in-memory put sends the body's MD5 for the service to verify", async () => {
    const data = bytes(1000)
    await run(store.put("md5/object", data))
    const [metadata] = await makeGcsStorage(settingsFor(bucket, root)).bucket(bucket).file(`${root}/md5/object`).getMetadata()
    expect(metadata.md5Hash).toBe(createHash("md5").update(data).digest("base64"))
  })

  it("etags change with every write (the object generation)", async () => {
    const first = await run(store.put("gen/x", bytes(10)))
    const second = await run(store.put("gen/x", bytes(10)))
    expect(second.etag).not.toBe(first.etag)
    expect((await run(store.head("gen/x"))).etag).toBe(second.etag)
  })
})

describe("GCS batch deletes (through a batch adapter in front of the emulator)", () => {
  it("deleteMany sends 100 deletes per batch request, none one by one; missing keys are fine", async () => {
    const adapter = await startBatchAdapter(gcsServer().emulatorHost)
    const { store, close } = await open(settingsFor(bucket, `batch-${randomBytes(4).toString("hex")}`, adapter.endpoint, true))
    try {
      expect(store.capabilities.batchDelete).toBe(true)
      const keys = Array.from({ length: 250 }, (_, i) => `d${i % 3}/k${i}`)
      await run(Effect.forEach(keys, (key) => store.put(key, new Uint8Array([1])), { concurrency: 16, discard: true }))
      await run(store.deleteMany([...keys, "missing"]))
      expect(adapter.seen).toEqual({ batches: 3, batchedDeletes: 251, singleDeletes: 0 })
      expect(await run(Stream.runCollect(store.list("")))).toEqual([])
    } finally {
      await close()
      await adapter.close()
    }
  })

  it("a call refused inside a batch fails deleteMany with that key and the service's reason", async () => {
    const adapter = await startBatchAdapter(gcsServer().emulatorHost)
    const { store, close } = await open(settingsFor(bucket, `batch-${randomBytes(4).toString("hex")}`, adapter.endpoint, true))
    try {
      await run(store.put("ok", new Uint8Array([1])))
      const error = await failure(store.deleteMany(["ok", "forbidden/one"]))
      expect(error.reason).toBe("PermissionDenied")
      expect(error.key).toBe("forbidden/one")
      expect(error.message).toContain("no storage.objects.delete permission")
      expect((await failure(store.head("ok"))).reason).toBe("NotFound")
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
    const { store, close } = await open(settingsFor(bucket, "", "http://127.0.0.1:9"))
    try {
      const error = await failure(store.get("x"))
      expect(error.reason).toBe("Unavailable")
      expect(error.isRetryable).toBe(true)
      expect(error.fix).toContain("endpoint_url")
    } finally {
      await close()
    }
  })
})
