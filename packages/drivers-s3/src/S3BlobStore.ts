/**
 * S3BlobStore: a BlobStore over an S3 bucket and key prefix (driver "s3"), on
 * the AWS SDK v3 (`@aws-sdk/client-s3`, `@aws-sdk/lib-storage` for multipart
 * uploads). Works with Amazon S3 and S3-compatible servers (Ceph RGW, MinIO,
 * R2): with `endpoint_url` it uses path-style addressing and only the request
 * checksums a server must understand.
 *
 * # Operations
 * - get / getRange / getStream: GetObject (with `Range` for getRange); a range
 *   starting exactly at the end is answered with a HEAD (S3 refuses it).
 * - put: a body of at most one part (8 MiB) is one PutObject; anything larger,
 *   and every streamed body, goes through lib-storage's `Upload` (parts of
 *   8 MiB, 4 in flight), which aborts the multipart upload when it fails, so
 *   a failed put leaves nothing behind.
 * - create-only put: `If-None-Match: *` (412 → AlreadyExists). Multipart
 *   uploads send it on CompleteMultipartUpload and also HEAD the key first,
 *   because some S3-compatible servers (Ceph 16) ignore the header there.
 * - upload checksums (`upload_checksum`): "sha256" sends
 *   `x-amz-checksum-sha256` (the caller's `contentSha256` when given, so a
 *   block is not hashed twice), "md5" sends `Content-MD5` (what older
 *   S3-compatible servers verify), "none" sends neither. With the caller's
 *   SHA-256, the signed `x-amz-content-sha256` is that hash too: every SigV4
 *   server (Ceph included) refuses a body that does not match it, and the SDK
 *   does not hash the body again to sign it.
 * - list: ListObjectsV2 pages of 1000 keys (already in bytewise order);
 *   zero-byte "folder" markers (keys ending in '/') are skipped.
 * - deleteMany: DeleteObjects, 1000 keys per request.
 * - copy: CopyObject (UploadPartCopy above 5 GiB).
 *
 * The SDK's retries are off: core's retry wrapper decides, from `isRetryable`.
 * The client (and its sockets) is destroyed when the scope closes.
 */
import { createHash } from "node:crypto"
import { Readable } from "node:stream"
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3"
import { Upload } from "@aws-sdk/lib-storage"
import {
  type BlobStore,
  type BlobStoreError,
  type Body,
  type Capabilities,
  keyProblem,
  type ObjectInfo,
  type PutOptions,
} from "@bendsave/core/BlobStore"
import * as CloudDriver from "@bendsave/core/CloudDriver"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { describeS3Location, describeS3Service, type S3Settings } from "./S3Config.ts"
import { classifyError, DRIVER } from "./S3Errors.ts"
import { makeLeanRequests } from "./S3LeanRequests.ts"

const MiB = 1024 * 1024
const GiB = 1024 * MiB

export const S3_CAPABILITIES: Capabilities = {
  conditionalPut: true,
  rangeRead: true,
  batchDelete: true,
  serverSideCopy: true,
  // 10 000 parts; S3's own limit is 5 TiB.
  maxObjectSize: 5 * 1024 * GiB,
}

/** Tuning, mostly for tests. */
export interface S3StoreTuning {
  /** Part size of multipart uploads (and the largest single PutObject); at least 5 MiB. Default 8 MiB. */
  readonly partSize?: number
  /** Parts in flight per multipart upload. Default 4. */
  readonly queueSize?: number
  /** Objects above this size are copied with UploadPartCopy. Default 5 GiB. */
  readonly multipartCopyThreshold?: number
  /** Use this client instead of making one (it is not destroyed with the scope); every request then goes through it. */
  readonly client?: S3Client
  /** A block request (lean path) fails when its connection is idle this long. Default 300 s. */
  readonly idleTimeoutMs?: number
}

/** The S3 client the settings describe: no SDK retries, checksums only when required (S3-compatible servers). */
export const makeS3Client = (settings: S3Settings): S3Client => {
  const config: S3ClientConfig = {
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: 10_000,
      requestTimeout: 300_000,
      httpAgent: { keepAlive: true, maxSockets: 128 },
      httpsAgent: { keepAlive: true, maxSockets: 128 },
    },
  }
  if (settings.endpoint !== undefined) config.endpoint = settings.endpoint
  if (settings.credentials !== undefined) {
    const { accessKeyId, secretAccessKey, sessionToken } = settings.credentials
    config.credentials = {
      accessKeyId,
      secretAccessKey: Redacted.value(secretAccessKey),
      ...(sessionToken === undefined ? {} : { sessionToken: Redacted.value(sessionToken) }),
    }
  }
  const client = new S3Client(config)
  if (settings.uploadChecksum === "md5") {
    // Content-MD5 on every upload request with an in-memory body (PutObject, UploadPart).
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string>; body?: unknown } | undefined
        const command = (context as { commandName?: string }).commandName
        if (
          request?.headers !== undefined &&
          (command === "PutObjectCommand" || command === "UploadPartCommand") &&
          request.body instanceof Uint8Array &&
          request.headers["content-md5"] === undefined
        ) {
          request.headers["content-md5"] = createHash("md5").update(request.body).digest("base64")
        }
        return next(args)
      },
      { step: "build", name: "bendsaveContentMd5", override: true },
    )
  }
  return client
}

const stripQuotes = (etag: string | undefined): string => (etag ?? "").replace(/^"|"$/g, "")

const hexToBase64 = (hex: string): string => Buffer.from(hex, "hex").toString("base64")

/** S3 keys in a CopySource header: URL-encoded per segment. */
const encodeCopySource = (bucket: string, key: string): string => `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`

/** Opens a store over `settings.bucket` / `settings.prefix`. Nothing is requested until the first operation. */
export const makeS3BlobStore = (settings: S3Settings, tuning: S3StoreTuning = {}): Effect.Effect<BlobStore, BlobStoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const client =
      tuning.client ??
      (yield* Effect.acquireRelease(
        Effect.sync(() => makeS3Client(settings)),
        (c) => Effect.sync(() => c.destroy()),
      ))
    // Block-sized PUT/GET/HEAD to S3-compatible servers skip the SDK's command stack (S3LeanRequests.ts).
    const lean =
      tuning.client === undefined
        ? yield* Effect.acquireRelease(
            Effect.sync(() => makeLeanRequests(client, settings, tuning.idleTimeoutMs)),
            (l) => Effect.sync(() => l?.destroy()),
          )
        : undefined
    const partSize = Math.max(5 * MiB, tuning.partSize ?? 8 * MiB)
    const queueSize = tuning.queueSize ?? 4
    const copyThreshold = tuning.multipartCopyThreshold ?? 5 * GiB
    const { bucket, prefix } = settings
    const service = describeS3Service(settings)
    const location = describeS3Location(settings)

    const { fail, objectName, call } = CloudDriver.bucketCalls(DRIVER, prefix, (cause, failed) =>
      classifyError(cause, { ...failed, bucket, service, region: settings.region }),
    )

    const headObject = (operation: string, key: string, objectKey: string): Effect.Effect<ObjectInfo, BlobStoreError> =>
      lean !== undefined
        ? Effect.map(
            call(operation, key, (signal) => lean.head(objectKey, signal)),
            (res): ObjectInfo => ({
              key,
              size: Number(res.headers["content-length"] ?? 0),
              etag: stripQuotes(String(res.headers.etag ?? "")),
              lastModified: Date.parse(String(res.headers["last-modified"] ?? "")) || 0,
            }),
          )
        : Effect.map(
            call(operation, key, (abortSignal) => client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey }), { abortSignal })),
            (res): ObjectInfo => ({
              key,
              size: res.ContentLength ?? 0,
              etag: stripQuotes(res.ETag),
              lastModified: res.LastModified?.getTime() ?? 0,
            }),
          )

    const head = (key: string) => Effect.flatMap(objectName("head", key), (objectKey) => headObject("head", key, objectKey))

    const get = (key: string) =>
      Effect.flatMap(objectName("get", key), (objectKey) =>
        call("get", key, async (abortSignal) => {
          if (lean !== undefined) {
            const { body } = await lean.get(objectKey, undefined, abortSignal)
            return new Uint8Array(body.buffer, body.byteOffset, body.length)
          }
          const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }), { abortSignal })
          return res.Body === undefined ? new Uint8Array(0) : await res.Body.transformToByteArray()
        }),
      )

    const rangeError = (key: string, detail: string) => fail("RangeNotSatisfiable", "getRange", key, detail)

    const getRange = (key: string, offset: number, length: number) =>
      Effect.gen(function* () {
        const objectKey = yield* objectName("getRange", key)
        if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
          return yield* rangeError(key, `offset and length must be non-negative integers (got ${offset}, ${length})`)
        }
        /** S3 cannot express an empty range, nor one that starts at the end: the size decides. */
        const emptyOrPastEnd = Effect.flatMap(headObject("getRange", key, objectKey), (info) =>
          offset > info.size
            ? Effect.fail(rangeError(key, `offset ${offset} is past the end of the object (size ${info.size})`))
            : Effect.succeed(new Uint8Array(0)),
        )
        if (length === 0) return yield* emptyOrPastEnd
        const bytes = yield* call("getRange", key, async (abortSignal) => {
          if (lean !== undefined) {
            const res = await lean.get(objectKey, [offset, offset + length - 1], abortSignal)
            const all = new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.length)
            return res.status === 200 ? all.slice(offset, offset + length) : all
          }
          const res = await client.send(
            new GetObjectCommand({ Bucket: bucket, Key: objectKey, Range: `bytes=${offset}-${offset + length - 1}` }),
            { abortSignal },
          )
          const all = res.Body === undefined ? new Uint8Array(0) : await res.Body.transformToByteArray()
          // A server that ignores Range answers 200 with the whole object.
          return res.ContentRange === undefined && (offset > 0 || all.length > length) ? all.slice(offset, offset + length) : all
        }).pipe(
          Effect.catchIf(
            (e) => e.reason === "RangeNotSatisfiable",
            () => emptyOrPastEnd,
          ),
        )
        return bytes
      })

    const getStream = (key: string): Stream.Stream<Uint8Array, BlobStoreError> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const objectKey = yield* objectName("getStream", key)
          const res = yield* call("getStream", key, (abortSignal) =>
            client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }), { abortSignal }),
          )
          const body = res.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined
          if (body === undefined) return Stream.empty
          return Stream.fromAsyncIterable(body, (cause) =>
            classifyError(cause, { operation: "getStream", key, bucket, service, region: settings.region }),
          )
        }),
      )

    const putSingle = (key: string, objectKey: string, bytes: Uint8Array, options: PutOptions | undefined) =>
      Effect.gen(function* () {
        const createOnly = options?.ifNotExists === true
        const checksum =
          settings.uploadChecksum === "sha256"
            ? {
                ChecksumSHA256:
                  options?.contentSha256 !== undefined
                    ? hexToBase64(options.contentSha256)
                    : createHash("sha256").update(bytes).digest("base64"),
              }
            : {}
        if (lean !== undefined) {
          const sha256Hex = options?.contentSha256 ?? createHash("sha256").update(bytes).digest("hex")
          const res = yield* call(
            "put",
            key,
            (signal) =>
              lean.put(
                objectKey,
                bytes,
                {
                  sha256Hex,
                  ...(settings.uploadChecksum === "sha256" ? { checksumSha256: hexToBase64(sha256Hex) } : {}),
                  ...(settings.uploadChecksum === "md5" ? { contentMd5: createHash("md5").update(bytes).digest("base64") } : {}),
                  ifNoneMatch: createOnly,
                },
                signal,
              ),
            createOnly,
          )
          const leanEtag = stripQuotes(res.etag)
          if (leanEtag === "") return yield* headObject("put", key, objectKey)
          return { key, size: bytes.length, etag: leanEtag, lastModified: Date.now() } satisfies ObjectInfo
        }
        const command = new PutObjectCommand({
          Bucket: bucket,
          Key: objectKey,
          Body: bytes,
          ContentLength: bytes.length,
          ...checksum,
          ...(createOnly ? { IfNoneMatch: "*" } : {}),
        })
        const known = options?.contentSha256
        if (known !== undefined) {
          // The signature covers the payload's SHA-256 (x-amz-content-sha256), which the server checks
          // against the bytes it receives: given the caller's hash, the SDK need not hash the body again.
          command.middlewareStack.add(
            (next) => (args) => {
              const request = args.request as { headers?: Record<string, string> }
              if (request.headers !== undefined) request.headers["x-amz-content-sha256"] = known
              return next(args)
            },
            { step: "build", name: "bendsaveKnownPayloadSha256" },
          )
        }
        const res = yield* call("put", key, (abortSignal) => client.send(command, { abortSignal }), createOnly)
        const etag = stripQuotes(res.ETag)
        if (etag === "") return yield* headObject("put", key, objectKey)
        return { key, size: bytes.length, etag, lastModified: Date.now() } satisfies ObjectInfo
      })

    const putMultipart = (key: string, objectKey: string, body: Body, options: PutOptions | undefined) =>
      Effect.gen(function* () {
        const createOnly = options?.ifNotExists === true
        if (createOnly) {
          // Servers that ignore If-None-Match on CompleteMultipartUpload still refuse the common case.
          const exists = yield* headObject("put", key, objectKey).pipe(
            Effect.as(true),
            Effect.catchIf(
              (e) => e.reason === "NotFound",
              () => Effect.succeed(false),
            ),
          )
          if (exists) return yield* fail("AlreadyExists", "put", key, "the object already exists")
        }
        let size = 0
        let bodyError: BlobStoreError | undefined
        let source: Uint8Array | Readable
        if (body instanceof Uint8Array) {
          source = body
          size = body.length
        } else {
          const context = yield* Effect.context<never>()
          const counted = body.pipe(
            Stream.map((chunk) => {
              size += chunk.length
              return chunk
            }),
            Stream.tapError((e) =>
              Effect.sync(() => {
                bodyError = e
              }),
            ),
          )
          source = Readable.from(Stream.toAsyncIterableWith(counted, context), { objectMode: false })
        }
        const result = yield* call(
          "put",
          key,
          (signal) => {
            const upload = new Upload({
              client,
              partSize,
              queueSize,
              leavePartsOnError: false,
              params: {
                Bucket: bucket,
                Key: objectKey,
                Body: source,
                ...(settings.uploadChecksum === "sha256" ? { ChecksumAlgorithm: "SHA256" as const } : {}),
                ...(createOnly ? { IfNoneMatch: "*" } : {}),
              },
            })
            signal.addEventListener("abort", () => void upload.abort(), { once: true })
            return upload.done()
          },
          createOnly,
        ).pipe(Effect.mapError((e) => bodyError ?? e))
        if (bodyError !== undefined) return yield* bodyError
        const etag = stripQuotes(result.ETag)
        // Some servers (Ceph) answer CompleteMultipartUpload without an ETag.
        if (etag === "") return yield* headObject("put", key, objectKey)
        return { key, size, etag, lastModified: Date.now() } satisfies ObjectInfo
      })

    const put = (key: string, body: Body, options?: PutOptions) =>
      Effect.flatMap(objectName("put", key), (objectKey) =>
        body instanceof Uint8Array && body.length <= partSize
          ? putSingle(key, objectKey, body, options)
          : putMultipart(key, objectKey, body, options),
      )

    const listPage = (operation: string, fullPrefix: string, token: string | undefined) =>
      call(operation, undefined, (abortSignal) =>
        client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: fullPrefix, ContinuationToken: token, MaxKeys: 1000, EncodingType: "url" }),
          { abortSignal },
        ),
      )

    const list = (listPrefix: string): Stream.Stream<ObjectInfo, BlobStoreError> =>
      Stream.paginate({ token: undefined as string | undefined }, (state) =>
        Effect.flatMap(listPage("list", prefix + listPrefix, state.token), (res) => {
          const infos: Array<ObjectInfo> = []
          for (const object of res.Contents ?? []) {
            const full = decodeURIComponent((object.Key ?? "").replace(/\+/g, " "))
            const key = full.slice(prefix.length)
            // Zero-byte "folder" markers made by consoles and other tools are not objects.
            if (key.endsWith("/") && (object.Size ?? 0) === 0) continue
            const problem = keyProblem(key)
            if (problem !== undefined) {
              return Effect.fail(
                fail("InvalidKey", "list", key, `${problem}: the object '${full}' cannot be listed or backed up; rename it`),
              )
            }
            infos.push({ key, size: object.Size ?? 0, etag: stripQuotes(object.ETag), lastModified: object.LastModified?.getTime() ?? 0 })
          }
          const next =
            res.IsTruncated === true && res.NextContinuationToken
              ? Option.some({ token: res.NextContinuationToken as string | undefined })
              : Option.none()
          return Effect.succeed([infos, next] as const)
        }),
      )

    const remove = (key: string) =>
      Effect.flatMap(objectName("delete", key), (objectKey) =>
        Effect.asVoid(
          call("delete", key, (abortSignal) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey }), { abortSignal })),
        ),
      )

    const deleteMany = (keys: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const objectKeys = yield* Effect.forEach(keys, (key) => objectName("deleteMany", key))
        const unique = [...new Set(objectKeys)]
        const batches: Array<Array<string>> = []
        for (let i = 0; i < unique.length; i += 1000) batches.push(unique.slice(i, i + 1000))
        yield* Effect.forEach(
          batches,
          (batch) =>
            Effect.flatMap(
              call("deleteMany", undefined, (abortSignal) =>
                client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }), {
                  abortSignal,
                }),
              ),
              (res) => {
                const failed = (res.Errors ?? []).filter((e) => e.Code !== "NoSuchKey")
                if (failed.length === 0) return Effect.void
                const first = failed[0]
                const key = (first.Key ?? "").slice(prefix.length)
                return Effect.fail(
                  classifyError(Object.assign(new Error(first.Message ?? first.Code ?? "delete failed"), { name: first.Code ?? "Error" }), {
                    operation: "deleteMany",
                    key,
                    bucket,
                    service,
                    region: settings.region,
                  }),
                )
              },
            ),
          { concurrency: 4, discard: true },
        )
      })

    const multipartCopy = (from: string, to: string, sourceKey: string, targetKey: string, size: number) =>
      Effect.gen(function* () {
        const copyPart = Math.max(partSize, Math.ceil(size / 10_000), Math.min(512 * MiB, copyThreshold))
        const created = yield* call("copy", to, (abortSignal) =>
          client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: targetKey }), { abortSignal }),
        )
        const uploadId = created.UploadId!
        const ranges: Array<readonly [number, number]> = []
        for (let offset = 0; offset < size; offset += copyPart) ranges.push([offset, Math.min(size, offset + copyPart) - 1])
        return yield* Effect.gen(function* () {
          const parts = yield* Effect.forEach(
            ranges,
            ([start, end], i) =>
              Effect.map(
                call("copy", from, (abortSignal) =>
                  client.send(
                    new UploadPartCopyCommand({
                      Bucket: bucket,
                      Key: targetKey,
                      UploadId: uploadId,
                      PartNumber: i + 1,
                      CopySource: encodeCopySource(bucket, sourceKey),
                      CopySourceRange: `bytes=${start}-${end}`,
                    }),
                    { abortSignal },
                  ),
                ),
                (res) => ({ PartNumber: i + 1, ETag: res.CopyPartResult?.ETag }),
              ),
            { concurrency: queueSize },
          )
          yield* call("copy", to, (abortSignal) =>
            client.send(
              new CompleteMultipartUploadCommand({ Bucket: bucket, Key: targetKey, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
              { abortSignal },
            ),
          )
          return yield* headObject("copy", to, targetKey)
        }).pipe(
          Effect.onError(() =>
            Effect.ignore(
              call("copy", to, () => client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: targetKey, UploadId: uploadId }))),
            ),
          ),
        )
      })

    const copy = (from: string, to: string) =>
      Effect.gen(function* () {
        const targetKey = yield* objectName("copy", to)
        const sourceKey = yield* objectName("copy", from)
        const source = yield* headObject("copy", from, sourceKey)
        if (source.size > copyThreshold) return yield* multipartCopy(from, to, sourceKey, targetKey, source.size)
        const res = yield* call("copy", to, (abortSignal) =>
          client.send(new CopyObjectCommand({ Bucket: bucket, Key: targetKey, CopySource: encodeCopySource(bucket, sourceKey) }), {
            abortSignal,
          }),
        )
        const etag = stripQuotes(res.CopyObjectResult?.ETag)
        if (etag === "") return yield* headObject("copy", to, targetKey)
        return {
          key: to,
          size: source.size,
          etag,
          lastModified: res.CopyObjectResult?.LastModified?.getTime() ?? Date.now(),
        } satisfies ObjectInfo
      })

    return {
      driver: DRIVER,
      location,
      capabilities: S3_CAPABILITIES,
      get,
      getRange,
      getStream,
      put,
      head,
      list,
      delete: remove,
      deleteMany,
      copy,
    } satisfies BlobStore
  })
