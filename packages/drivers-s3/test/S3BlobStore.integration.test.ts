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
const open = (settings: S3Settings, tuning?: S3StoreTuning) => openTestStore(makeS3BlobStore(settings, tuning))

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

beforeAll(async () => {
  await createBucket(bucket)
})
afterAll(async () => {
  await removeBucket(bucket)
})

/** The conformance suite in a bucket of its own (`bucket-<suffix>`), created before and removed after. */
const conformance = (name: string, suffix: string, extra: Partial<S3Options> = {}) =>
  serviceConformance(name, {
    before: () => createBucket(`${bucket}-${suffix}`).catch(() => {}),
    open: (root) => makeS3BlobStore(settingsFor(`${bucket}-${suffix}`, root, extra)),
    after: () => removeBucket(`${bucket}-${suffix}`),
  })

// The whole contract, on Ceph radosgw, under a random root: every capability is declared and checked.
conformance("S3 driver on Ceph radosgw (conformance)", "c")

// The same through the SDK's commands only: the path Amazon S3 (no endpoint_url) takes.
conformance("S3 driver on Ceph radosgw, SDK requests only (lean_requests = false, as on Amazon S3) (conformance)", "s", {
  lean_requests: false,
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
    await expectSuccess(store.put("a/b.txt", new TextEncoder().encode("x")))
    const client = admin()
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${root}/` }))
    client.destroy()
    expect(listed.Contents?.map((o) => o.Key)).toEqual([`${root}/a/b.txt`])
    expect(store.location).toBe(`s3://${bucket}/${root}`)
    expect(JSON.stringify(store)).not.toContain("TESTSECRETKEY")
  })

  it("streamed put of 23 MiB goes up in parts and reads back byte for byte (get, getStream, ranges across parts)", async () => {
    const data = randomData(23 * MiB + 123)
    const info = await expectSuccess(store.put("multi/streamed.bin", chunked(data, 1_000_003)))
    expect(info.size).toBe(data.length)
    expect(info.etag).not.toBe("")
    const head = await expectSuccess(store.head("multi/streamed.bin"))
    expect(head.etag).toBe(info.etag)
    expect(head.etag).toMatch(/-5$/) // 5 parts of 5 MiB
    expect(sha256Hex(await expectSuccess(store.get("multi/streamed.bin")))).toBe(sha256Hex(data))
    const streamed = await expectSuccess(Stream.runCollect(store.getStream("multi/streamed.bin")))
    expect(sha256Hex(Buffer.concat(streamed))).toBe(sha256Hex(data))
    const across = await expectSuccess(store.getRange("multi/streamed.bin", 5 * MiB - 3, 10))
    expect(Buffer.from(across)).toEqual(Buffer.from(data.subarray(5 * MiB - 3, 5 * MiB + 7)))
  })

  it("put of a large in-memory body goes up in parts too", async () => {
    const data = randomData(11 * MiB)
    const info = await expectSuccess(store.put("multi/array.bin", data))
    expect(info.size).toBe(data.length)
    expect(sha256Hex(await expectSuccess(store.get("multi/array.bin")))).toBe(sha256Hex(data))
  })

  it("a streamed multipart put whose body fails leaves nothing behind, and the body's error comes out", async () => {
    const body = Stream.concat(
      chunked(randomData(12 * MiB), MiB),
      Stream.fail({ _tag: "BlobStoreError", reason: "Unavailable", detail: "injected" } as unknown as BlobStoreError),
    )
    const error = await expectFailure(store.put("multi/failed.bin", body))
    expect(error.detail).toBe("injected")
    expect((await expectFailure(store.head("multi/failed.bin"))).reason).toBe("NotFound")
  })

  it("create-only put of a large streamed body refuses an existing key", async () => {
    await expectSuccess(store.put("multi/once.bin", randomData(100)))
    const error = await expectFailure(store.put("multi/once.bin", chunked(randomData(12 * MiB), MiB), { ifNotExists: true }))
    expect(error.reason).toBe("AlreadyExists")
    expect((await expectSuccess(store.head("multi/once.bin"))).size).toBe(100)
    const info = await expectSuccess(store.put("multi/new-once.bin", chunked(randomData(12 * MiB), MiB), { ifNotExists: true }))
    expect(info.size).toBe(12 * MiB)
  })

  it("copy above the multipart threshold uses UploadPartCopy and yields the same bytes", async () => {
    const { store: small, close: closeSmall } = await open(settingsFor(bucket, root), {
      partSize: 5 * MiB,
      multipartCopyThreshold: 6 * MiB,
    })
    try {
      const data = randomData(13 * MiB + 1)
      await expectSuccess(small.put("copy/source.bin", data))
      const info = await expectSuccess(small.copy("copy/source.bin", "copy/target.bin"))
      expect(info.size).toBe(data.length)
      expect(info.etag).toMatch(/-\d+$/)
      expect(sha256Hex(await expectSuccess(small.get("copy/target.bin")))).toBe(sha256Hex(data))
    } finally {
      await closeSmall()
    }
  })

  it("skips zero-byte folder markers and refuses keys it could not restore", async () => {
    const client = admin()
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${root}/markers/dir/`, Body: new Uint8Array(0) }))
    await expectSuccess(store.put("markers/dir/file", randomData(3)))
    expect((await expectSuccess(Stream.runCollect(store.list("markers/")))).map((i) => i.key)).toEqual(["markers/dir/file"])
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${root}/bad//key`, Body: new Uint8Array(1) }))
    client.destroy()
    const error = await expectFailure(Stream.runCollect(store.list("bad")))
    expect(error.reason).toBe("InvalidKey")
    expect(error.message).toContain("bad//key")
  })

  it("keys with spaces, '+', '%' and non-ASCII list back exactly", async () => {
    const keys = ["enc/a b", "enc/a+b", "enc/100%", "enc/é/ü", "enc/q?x=1&y"]
    for (const key of keys) await expectSuccess(store.put(key, randomData(1)))
    const listed = (await expectSuccess(Stream.runCollect(store.list("enc/")))).map((i) => i.key)
    expect([...listed].sort()).toEqual([...keys].sort())
    for (const key of keys) expect((await expectSuccess(store.head(key))).size).toBe(1)
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
      const small = await expectFailure(md5Store.put("md5/small", randomData(1000)))
      expect(small.reason).toBe("Unavailable")
      expect(small.isRetryable).toBe(true)
      expect((await expectFailure(md5Store.head("md5/small"))).reason).toBe("NotFound")
      const big = await expectFailure(md5Store.put("md5/big", chunked(randomData(11 * MiB), MiB)))
      expect(big.isRetryable).toBe(true)
      corrupt = false
      await expectSuccess(md5Store.put("md5/small", randomData(1000)))
      await expectSuccess(md5Store.put("md5/big", chunked(randomData(11 * MiB), MiB)))
    } finally {
      await closeMd5()
      client.destroy()
    }
  })

  it("with the caller's SHA-256, the server checks the body against the signed x-amz-content-sha256", async () => {
    const data = randomData(5000)
    const other = sha256Hex(randomData(5000))
    const refused = await expectFailure(store.put("signed/wrong", data, { contentSha256: other }))
    expect(refused.reason).toBe("Unavailable")
    expect(refused.isRetryable).toBe(true)
    expect((await expectFailure(store.head("signed/wrong"))).reason).toBe("NotFound")
    const info = await expectSuccess(store.put("signed/right", data, { contentSha256: sha256Hex(data), ifNotExists: true }))
    expect(info.size).toBe(5000)
    expect(sha256Hex(await expectSuccess(store.get("signed/right")))).toBe(sha256Hex(data))
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
      const data = randomData(5000)
      await expectSuccess(shaStore.put("sha/computed", data))
      await expectSuccess(shaStore.put("sha/given", data, { contentSha256: sha256Hex(data) }))
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
    await withTestStore(makeS3BlobStore(settingsFor(randomName("no-such-bucket"), "")), async (store) => {
      const error = await expectFailure(store.get("x"))
      expect(error.reason).toBe("InvalidConfig")
      expect(error.message).toMatch(/bucket 'no-such-bucket-[0-9a-f]+' on the S3 server at http:\/\/127\.0\.0\.1:\d+ .*does not exist/)
      expect(error.fix).toContain("create the bucket")
      const listError = await expectFailure(Stream.runCollect(store.list("")))
      expect(listError.reason).toBe("InvalidConfig")
    })
  })

  it("a wrong secret key is PermissionDenied that says the secret is wrong, and never shows it", async () => {
    await withTestStore(makeS3BlobStore(settingsFor(bucket, "", { secret_access_key: Redacted.make("not-the-secret") })), async (store) => {
      const error = await expectFailure(store.get("x"))
      expect(error.reason).toBe("PermissionDenied")
      expect(error.message).toContain("secret key is wrong")
      expect(error.fix).toContain("secret_access_key")
      expect(`${error.message} ${error.fix} ${JSON.stringify(error)}`).not.toContain("not-the-secret")
      const headError = await expectFailure(store.head("x"))
      expect(headError.reason).toBe("PermissionDenied")
    })
  })

  it("an unknown access key id is PermissionDenied naming the key id setting", async () => {
    await withTestStore(makeS3BlobStore(settingsFor(bucket, "", { access_key_id: "NOSUCHKEY" })), async (store) => {
      const error = await expectFailure(Stream.runCollect(store.list("")))
      expect(error.reason).toBe("PermissionDenied")
      expect(error.fix).toContain("access_key_id")
    })
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
      const error = await expectFailure(store.put("stalled", new Uint8Array(1000)))
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
    await withTestStore(makeS3BlobStore(settingsFor(bucket, "", { endpoint_url: "http://127.0.0.1:9" })), async (store) => {
      const error = await expectFailure(store.get("x"))
      expect(error.reason).toBe("Unavailable")
      expect(error.isRetryable).toBe(true)
      expect(error.fix).toContain("endpoint")
    })
  })
})
