/**
 * The S3 driver against a real S3 server: single-node Ceph radosgw, started
 * by the vitest global setup (scripts/s3-up.sh). The BlobStore conformance
 * suite under a random bucket and root, then what the suite does not reach:
 * multipart uploads (streamed and from memory), create-only multipart puts,
 * multipart copies, checksums the server verifies, listing a root, folder
 * markers, and the errors a user meets (wrong bucket, wrong secret, unknown
 * key id, unreachable endpoint).
 */
import { createHash, randomBytes } from "node:crypto"
import * as net from "node:net"
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3"
import type { BlobStore, BlobStoreError } from "@bendsave/core"
import { DEFAULT_RETRY, withRetry } from "@bendsave/core"
import { blobStoreConformance } from "@bendsave/core/testing"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { randomName, s3Server } from "../../../test/cloudServers.ts"
import { makeS3BlobStore, makeS3Client, resolveS3Settings, type S3Options, type S3Settings, type S3StoreTuning } from "../src/index.ts"

const MiB = 1024 * 1024

const settingsFor = (bucket: string, root: string, extra: Partial<S3Options> = {}): S3Settings => {
  const server = s3Server()
  return resolveS3Settings(
    {
      bucket,
      root,
      endpoint_url: server.endpoint,
      region: "us-east-1",
      access_key_id: server.accessKeyId,
      secret_access_key: Redacted.make(server.secretAccessKey),
      ...extra,
    },
    {},
  )
}

/** Opens a store outside any Effect scope; `close()` destroys its client. */
const open = async (settings: S3Settings, tuning?: S3StoreTuning): Promise<{ store: BlobStore; close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const store = await Effect.runPromise(Scope.provide(makeS3BlobStore(settings, tuning), scope))
  return { store, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const admin = (): S3Client => makeS3Client(settingsFor("unused", ""))

const createBucket = async (bucket: string) => {
  const client = admin()
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
  client.destroy()
}

/** Deletes every object of the bucket, then the bucket. */
const removeBucket = async (bucket: string) => {
  const client = admin()
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }))
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key }))
    if (keys.length === 0) break
    await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }))
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }))
  client.destroy()
}

const bucket = randomName("bendsave-test")
const run = <A>(effect: Effect.Effect<A, BlobStoreError>) => Effect.runPromise(effect)
const failure = (effect: Effect.Effect<unknown, BlobStoreError>) => Effect.runPromise(Effect.flip(effect))
const bytes = (n: number) => new Uint8Array(randomBytes(n))
const chunks = (data: Uint8Array, size: number) => {
  const out: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += size) out.push(data.slice(i, i + size))
  return Stream.fromIterable(out)
}
const sha = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

beforeAll(async () => {
  await createBucket(bucket)
})
afterAll(async () => {
  await removeBucket(bucket)
})

// The whole contract, on Ceph radosgw, under a random root: every capability is declared and checked.
blobStoreConformance("S3 driver on Ceph radosgw (conformance)", async () => {
  await createBucket(`${bucket}-c`).catch(() => {})
  const { store, close } = await open(settingsFor(`${bucket}-c`, `conformance-${randomBytes(4).toString("hex")}`))
  return {
    // As bendsave opens it: with core's retry of transient failures (an emulator's socket reset under load).
    store: withRetry(store, DEFAULT_RETRY),
    cleanup: async () => {
      await close()
      await removeBucket(`${bucket}-c`)
    },
  }
})

// The same through the SDK's commands only: the path Amazon S3 (no endpoint_url) takes.
blobStoreConformance("S3 driver on Ceph radosgw, SDK requests only (lean_requests = false, as on Amazon S3) (conformance)", async () => {
  await createBucket(`${bucket}-s`).catch(() => {})
  const { store, close } = await open(settingsFor(`${bucket}-s`, `conformance-${randomBytes(4).toString("hex")}`, { lean_requests: false }))
  return {
    store: withRetry(store, DEFAULT_RETRY),
    cleanup: async () => {
      await close()
      await removeBucket(`${bucket}-s`)
    },
  }
})

describe("S3 driver on Ceph radosgw", () => {
  let store: BlobStore
  let close: () => Promise<void>
  const root = `root-${randomBytes(4).toString("hex")}`
  beforeAll(async () => {
    ;({ store, close } = await open(settingsFor(bucket, root), { partSize: 5 * MiB }))
  })
  afterAll(() => close())

  it("keeps its objects under the root and reports the location without secrets", async () => {
    await run(store.put("a/b.txt", new TextEncoder().encode("x")))
    const client = admin()
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${root}/` }))
    client.destroy()
    expect(listed.Contents?.map((o) => o.Key)).toEqual([`${root}/a/b.txt`])
    expect(store.location).toBe(`s3://${bucket}/${root}`)
    expect(JSON.stringify(store)).not.toContain("TESTSECRETKEY")
  })

  it("streamed put of 23 MiB goes up in parts and reads back byte for byte (get, getStream, ranges across parts)", async () => {
    const data = bytes(23 * MiB + 123)
    const info = await run(store.put("multi/streamed.bin", chunks(data, 1_000_003)))
    expect(info.size).toBe(data.length)
    expect(info.etag).not.toBe("")
    const head = await run(store.head("multi/streamed.bin"))
    expect(head.etag).toBe(info.etag)
    expect(head.etag).toMatch(/-5$/) // 5 parts of 5 MiB
    expect(sha(await run(store.get("multi/streamed.bin")))).toBe(sha(data))
    const streamed = await run(Stream.runCollect(store.getStream("multi/streamed.bin")))
    expect(sha(Buffer.concat(streamed))).toBe(sha(data))
    const across = await run(store.getRange("multi/streamed.bin", 5 * MiB - 3, 10))
    expect(Buffer.from(across)).toEqual(Buffer.from(data.subarray(5 * MiB - 3, 5 * MiB + 7)))
  })

  it("put of a large in-memory body goes up in parts too", async () => {
    const data = bytes(11 * MiB)
    const info = await run(store.put("multi/array.bin", data))
    expect(info.size).toBe(data.length)
    expect(sha(await run(store.get("multi/array.bin")))).toBe(sha(data))
  })

  it("a streamed multipart put whose body fails leaves nothing behind, and the body's error comes out", async () => {
    const body = Stream.concat(
      chunks(bytes(12 * MiB), MiB),
      Stream.fail({ _tag: "BlobStoreError", reason: "Unavailable", detail: "injected" } as unknown as BlobStoreError),
    )
    const error = await failure(store.put("multi/failed.bin", body))
    expect(error.detail).toBe("injected")
    expect((await failure(store.head("multi/failed.bin"))).reason).toBe("NotFound")
  })

  it("create-only put of a large streamed body refuses an existing key", async () => {
    await run(store.put("multi/once.bin", bytes(100)))
    const error = await failure(store.put("multi/once.bin", chunks(bytes(12 * MiB), MiB), { ifNotExists: true }))
    expect(error.reason).toBe("AlreadyExists")
    expect((await run(store.head("multi/once.bin"))).size).toBe(100)
    const info = await run(store.put("multi/new-once.bin", chunks(bytes(12 * MiB), MiB), { ifNotExists: true }))
    expect(info.size).toBe(12 * MiB)
  })

  it("copy above the multipart threshold uses UploadPartCopy and yields the same bytes", async () => {
    const { store: small, close: closeSmall } = await open(settingsFor(bucket, root), {
      partSize: 5 * MiB,
      multipartCopyThreshold: 6 * MiB,
    })
    try {
      const data = bytes(13 * MiB + 1)
      await run(small.put("copy/source.bin", data))
      const info = await run(small.copy("copy/source.bin", "copy/target.bin"))
      expect(info.size).toBe(data.length)
      expect(info.etag).toMatch(/-\d+$/)
      expect(sha(await run(small.get("copy/target.bin")))).toBe(sha(data))
    } finally {
      await closeSmall()
    }
  })

  it("skips zero-byte folder markers and refuses keys it could not restore", async () => {
    const client = admin()
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${root}/markers/dir/`, Body: new Uint8Array(0) }))
    await run(store.put("markers/dir/file", bytes(3)))
    expect((await run(Stream.runCollect(store.list("markers/")))).map((i) => i.key)).toEqual(["markers/dir/file"])
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${root}/bad//key`, Body: new Uint8Array(1) }))
    client.destroy()
    const error = await failure(Stream.runCollect(store.list("bad")))
    expect(error.reason).toBe("InvalidKey")
    expect(error.message).toContain("bad//key")
  })

  it("keys with spaces, '+', '%' and non-ASCII list back exactly", async () => {
    const keys = ["enc/a b", "enc/a+b", "enc/100%", "enc/é/ü", "enc/q?x=1&y"]
    for (const key of keys) await run(store.put(key, bytes(1)))
    const listed = (await run(Stream.runCollect(store.list("enc/")))).map((i) => i.key)
    expect([...listed].sort()).toEqual([...keys].sort())
    for (const key of keys) expect((await run(store.head(key))).size).toBe(1)
  })

  it("upload_checksum = md5: the server verifies every upload (a corrupted body is refused, retryable)", async () => {
    const settings = settingsFor(bucket, root, { upload_checksum: "md5" })
    const client = makeS3Client(settings)
    let corrupt = true
    // Flips one byte after the checksum was computed: what a faulty network or disk would do.
    client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body?: unknown; headers: Record<string, string> }
        if (corrupt && request.body instanceof Uint8Array && request.body.length > 0) {
          expect(request.headers["content-md5"]).toBeDefined()
          const copy = Uint8Array.from(request.body)
          copy[0] ^= 0xff
          request.body = copy
        }
        return next(args)
      },
      { step: "finalizeRequest", name: "corrupt" },
    )
    const { store: md5Store, close: closeMd5 } = await open(settings, { client, partSize: 5 * MiB })
    try {
      const small = await failure(md5Store.put("md5/small", bytes(1000)))
      expect(small.reason).toBe("Unavailable")
      expect(small.isRetryable).toBe(true)
      expect((await failure(md5Store.head("md5/small"))).reason).toBe("NotFound")
      const big = await failure(md5Store.put("md5/big", chunks(bytes(11 * MiB), MiB)))
      expect(big.isRetryable).toBe(true)
      corrupt = false
      await run(md5Store.put("md5/small", bytes(1000)))
      await run(md5Store.put("md5/big", chunks(bytes(11 * MiB), MiB)))
    } finally {
      await closeMd5()
      client.destroy()
    }
  })

  it("with the caller's SHA-256, the server checks the body against the signed x-amz-content-sha256", async () => {
    const data = bytes(5000)
    const other = sha(bytes(5000))
    const refused = await failure(store.put("signed/wrong", data, { contentSha256: other }))
    expect(refused.reason).toBe("Unavailable")
    expect(refused.isRetryable).toBe(true)
    expect((await failure(store.head("signed/wrong"))).reason).toBe("NotFound")
    const info = await run(store.put("signed/right", data, { contentSha256: sha(data), ifNotExists: true }))
    expect(info.size).toBe(5000)
    expect(sha(await run(store.get("signed/right")))).toBe(sha(data))
  })

  it("upload_checksum = sha256 sends x-amz-checksum-sha256, the caller's hash when given", async () => {
    const settings = settingsFor(bucket, root)
    const client = makeS3Client(settings)
    const seen: Array<string | undefined> = []
    client.middlewareStack.add(
      (next) => async (args) => {
        seen.push((args.request as { headers: Record<string, string> }).headers["x-amz-checksum-sha256"])
        return next(args)
      },
      { step: "finalizeRequest", name: "spy" },
    )
    const { store: shaStore, close: closeSha } = await open(settings, { client })
    try {
      const data = bytes(5000)
      await run(shaStore.put("sha/computed", data))
      await run(shaStore.put("sha/given", data, { contentSha256: sha(data) }))
      const expected = createHash("sha256").update(data).digest("base64")
      expect(seen).toEqual([expected, expected])
    } finally {
      await closeSha()
      client.destroy()
    }
  })
})

describe("S3 driver errors against the real server", () => {
  it("a missing bucket is an InvalidConfig error naming the bucket, the server and the fix", async () => {
    const { store, close } = await open(settingsFor(randomName("no-such-bucket"), ""))
    try {
      const error = await failure(store.get("x"))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toMatch(/bucket 'no-such-bucket-[0-9a-f]+' on the S3 server at http:\/\/127\.0\.0\.1:\d+ .*does not exist/)
      expect(error.fix).toContain("create the bucket")
      const listError = await failure(Stream.runCollect(store.list("")))
      expect(listError.reason).toBe("InvalidConfig")
    } finally {
      await close()
    }
  })

  it("a wrong secret key is PermissionDenied that says the secret is wrong, and never shows it", async () => {
    const { store, close } = await open(settingsFor(bucket, "", { secret_access_key: Redacted.make("not-the-secret") }))
    try {
      const error = await failure(store.get("x"))
      expect(error.reason).toBe("PermissionDenied")
      expect(error.message).toContain("secret key is wrong")
      expect(error.fix).toContain("secret_access_key")
      expect(`${error.message} ${error.fix} ${JSON.stringify(error)}`).not.toContain("not-the-secret")
      const headError = await failure(store.head("x"))
      expect(headError.reason).toBe("PermissionDenied")
    } finally {
      await close()
    }
  })

  it("an unknown access key id is PermissionDenied naming the key id setting", async () => {
    const { store, close } = await open(settingsFor(bucket, "", { access_key_id: "NOSUCHKEY" }))
    try {
      const error = await failure(Stream.runCollect(store.list("")))
      expect(error.reason).toBe("PermissionDenied")
      expect(error.fix).toContain("access_key_id")
    } finally {
      await close()
    }
  })

  it("a server that accepts a block request and never answers fails it as Unavailable (retryable) after the idle timeout", async () => {
    const sockets: Array<net.Socket> = []
    const silent = net.createServer((socket) => {
      sockets.push(socket)
      socket.resume()
    })
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve))
    const endpoint = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`
    const { store, close } = await open(settingsFor(bucket, "", { endpoint_url: endpoint }), { idleTimeoutMs: 300 })
    try {
      const started = Date.now()
      const error = await failure(store.put("stalled", new Uint8Array(1000)))
      expect(error.reason).toBe("Unavailable")
      expect(error.isRetryable).toBe(true)
      expect(error.message).toContain("no answer")
      expect(Date.now() - started).toBeLessThan(10_000)
    } finally {
      await close()
      for (const socket of sockets) socket.destroy()
      silent.close()
    }
  })

  it("an unreachable endpoint is Unavailable (retryable) and says to check the endpoint", async () => {
    const { store, close } = await open(settingsFor(bucket, "", { endpoint_url: "http://127.0.0.1:9" }))
    try {
      const error = await failure(store.get("x"))
      expect(error.reason).toBe("Unavailable")
      expect(error.isRetryable).toBe(true)
      expect(error.fix).toContain("endpoint")
    } finally {
      await close()
    }
  })
})
