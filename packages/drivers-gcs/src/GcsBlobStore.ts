/**
 * GcsBlobStore: a BlobStore over a Google Cloud Storage bucket and object
 * name prefix (driver "gcs"), on `@google-cloud/storage`.
 *
 * # Operations
 * - get: a media download, verified by the library against the object's
 *   crc32c/md5 (`x-goog-hash`); getRange: a ranged download (a range that
 *   starts at or past the end is decided from the object's size); getStream:
 *   the download stream.
 * - put: an in-memory body is one multipart upload carrying its MD5
 *   (`md5Hash`), which the service verifies before it stores anything; a
 *   streamed body is one resumable upload, MD5-validated by the library when
 *   it completes (a mismatch deletes the object and fails the put). Either
 *   way the object appears whole or not at all.
 * - create-only put: `ifGenerationMatch: 0` (412 → AlreadyExists).
 * - list: pages of 1000 object names; put into bytewise order where the
 *   service answers in UTF-16 order (the emulator does).
 * - deleteMany: the JSON API's batch endpoint, 100 deletes per request
 *   (GcsBatch.ts; the library has no batch API) where `batch_delete` is on
 *   (Google's endpoint); elsewhere (emulators) concurrent single deletes, and
 *   the store does not declare `batchDelete`.
 * - copy: a rewrite inside the service (server side).
 *
 * The library's retries are off; core's retry wrapper decides from `isRetryable`.
 */
import { createHash } from "node:crypto"
import type { IncomingMessage } from "node:http"
import { Readable } from "node:stream"
import { pipeline } from "node:stream/promises"
import {
  type BlobStore,
  type BlobStoreError,
  type Body,
  type Capabilities,
  keyProblem,
  makeBytewiseListingOrder,
  type ObjectInfo,
  type PutOptions,
} from "@bendsave/core/BlobStore"
import * as CloudDriver from "@bendsave/core/CloudDriver"
import { type Bucket, type File, Storage, type StorageOptions } from "@google-cloud/storage"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { MAX_BATCH, sendDeleteBatch } from "./GcsBatch.ts"
import { describeGcsLocation, describeGcsService, type GcsSettings } from "./GcsConfig.ts"
import { classifyError, DRIVER } from "./GcsErrors.ts"

const MiB = 1024 * 1024

export const GCS_CAPABILITIES: Capabilities = {
  conditionalPut: true,
  rangeRead: true,
  batchDelete: true,
  serverSideCopy: true,
  maxObjectSize: 5 * 1024 * 1024 * MiB,
}

export interface GcsStoreTuning {
  /** Bodies in memory up to this size go up in one multipart upload with their MD5. Default 32 MiB. */
  readonly singleUploadLimit?: number
  /** Use this client (tests). */
  readonly storage?: Storage
  /** The MD5 function of uploads (tests make it lie, to check what the service does with it). */
  readonly md5?: (bytes: Uint8Array) => Uint8Array
}

/** The library client the settings describe: no retries, no auth for emulators. */
export const makeGcsStorage = (settings: GcsSettings): Storage => {
  const options: StorageOptions = {
    retryOptions: { autoRetry: false, maxRetries: 0 },
    ...(settings.projectId === undefined
      ? settings.credentials.kind === "none"
        ? { projectId: "bendsave" }
        : {}
      : { projectId: settings.projectId }),
  }
  if (settings.endpoint !== undefined) {
    options.apiEndpoint = settings.endpoint
    options.useAuthWithCustomEndpoint = settings.credentials.kind !== "none"
  }
  switch (settings.credentials.kind) {
    case "keyFile":
      options.keyFilename = settings.credentials.path
      break
    case "json":
      options.credentials = JSON.parse(Redacted.value(settings.credentials.json))
      break
  }
  return new Storage(options)
}

const md5Of = (bytes: Uint8Array): Uint8Array => createHash("md5").update(bytes).digest()

const infoOf = (key: string, metadata: File["metadata"]): ObjectInfo => ({
  key,
  size: Number(metadata.size ?? 0),
  // The generation changes with every write of the object, like an etag.
  etag: String(metadata.generation ?? metadata.etag ?? ""),
  lastModified: Date.parse(String(metadata.updated ?? metadata.timeCreated ?? "")) || 0,
})

export const makeGcsBlobStore = (
  settings: GcsSettings,
  tuning: GcsStoreTuning = {},
): Effect.Effect<BlobStore, BlobStoreError, Scope.Scope> =>
  Effect.sync(() => {
    const storage = tuning.storage ?? makeGcsStorage(settings)
    const bucket: Bucket = storage.bucket(settings.bucket)
    const { prefix } = settings
    const service = describeGcsService(settings)
    const baseContext = { bucket: settings.bucket, service, credentialFrom: settings.credentialFrom }
    const singleLimit = tuning.singleUploadLimit ?? 32 * MiB
    const withMd5 = settings.uploadChecksum === "md5"
    const md5 = tuning.md5 ?? md5Of

    const { fail, objectName, call } = CloudDriver.bucketCalls(DRIVER, prefix, (cause, failed) =>
      classifyError(cause, { ...baseContext, ...failed }),
    )
    const file = (operation: string, key: string): Effect.Effect<File, BlobStoreError> =>
      Effect.map(objectName(operation, key), (name) => bucket.file(name))

    const metadata = (operation: string, key: string, f: File) =>
      Effect.map(
        call(operation, key, () => f.getMetadata()),
        ([m]) => infoOf(key, m),
      )

    const get = (key: string) =>
      Effect.flatMap(file("get", key), (f) => call("get", key, async () => new Uint8Array((await f.download())[0])))

    /** A ranged download, with the HTTP status: servers that cannot serve the range answer 200 with the whole object. */
    const download = (f: File, start: number, end: number) =>
      new Promise<{ status: number; bytes: Buffer }>((resolve, reject) => {
        let status = 0
        const chunks: Array<Buffer> = []
        const stream = f.createReadStream({ start, end, validation: false })
        stream.on("response", (res: IncomingMessage) => {
          status = res.statusCode ?? 0
        })
        stream.on("data", (chunk: Buffer) => chunks.push(chunk))
        stream.on("error", reject)
        stream.on("end", () => resolve({ status, bytes: Buffer.concat(chunks) }))
      })

    const getRange = (key: string, offset: number, length: number) =>
      Effect.gen(function* () {
        const f = yield* file("getRange", key)
        if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
          return yield* fail(
            "RangeNotSatisfiable",
            "getRange",
            key,
            `offset and length must be non-negative integers (got ${offset}, ${length})`,
          )
        }
        const decide = (size: number) =>
          offset > size
            ? Effect.fail(fail("RangeNotSatisfiable", "getRange", key, `offset ${offset} is past the end of the object (size ${size})`))
            : Effect.succeed(new Uint8Array(0))
        if (length === 0) return yield* Effect.flatMap(metadata("getRange", key, f), (info) => decide(info.size))
        const result = yield* call("getRange", key, () => download(f, offset, offset + length - 1)).pipe(
          Effect.map((r) => r as { status: number; bytes: Buffer } | undefined),
          Effect.catchIf(
            (e) => e.reason === "RangeNotSatisfiable",
            () => Effect.succeed(undefined),
          ),
        )
        if (result === undefined) return yield* Effect.flatMap(metadata("getRange", key, f), (info) => decide(info.size))
        if (result.status === 206) return new Uint8Array(result.bytes)
        // 200: the whole object.
        if (offset >= result.bytes.length) return yield* decide(result.bytes.length)
        return new Uint8Array(result.bytes.subarray(offset, offset + length))
      })

    const getStream = (key: string): Stream.Stream<Uint8Array, BlobStoreError> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const f = yield* file("getStream", key)
          // Opening the stream sends nothing until it is read: a missing object fails on the first pull.
          const stream = f.createReadStream() as unknown as AsyncIterable<Uint8Array>
          return Stream.fromAsyncIterable(stream, (cause) => classifyError(cause, { ...baseContext, operation: "getStream", key }))
        }),
      )

    const putSingle = (key: string, f: File, bytes: Uint8Array, createOnly: boolean) =>
      Effect.gen(function* () {
        yield* call(
          "put",
          key,
          () =>
            f.save(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
              resumable: false,
              validation: false,
              contentType: "application/octet-stream",
              ...(withMd5 ? { metadata: { md5Hash: Buffer.from(md5(bytes)).toString("base64") } } : {}),
              ...(createOnly ? { preconditionOpts: { ifGenerationMatch: 0 } } : {}),
            }),
          createOnly,
        )
        return infoOf(key, f.metadata)
      })

    const putStream = (key: string, f: File, body: Body, createOnly: boolean) =>
      Effect.gen(function* () {
        let bodyError: BlobStoreError | undefined
        const source =
          body instanceof Uint8Array
            ? Readable.from([body])
            : Readable.from(
                Stream.toAsyncIterableWith(
                  body.pipe(
                    Stream.tapError((e) =>
                      Effect.sync(() => {
                        bodyError = e
                      }),
                    ),
                  ),
                  yield* Effect.context<never>(),
                ),
                { objectMode: false },
              )
        yield* call(
          "put",
          key,
          () =>
            pipeline(
              source,
              f.createWriteStream({
                resumable: true,
                validation: withMd5 ? "md5" : false,
                contentType: "application/octet-stream",
                ...(createOnly ? { preconditionOpts: { ifGenerationMatch: 0 } } : {}),
              }),
            ),
          createOnly,
        ).pipe(Effect.mapError((e) => bodyError ?? e))
        if (bodyError !== undefined) return yield* bodyError
        return infoOf(key, f.metadata)
      })

    const put = (key: string, body: Body, options?: PutOptions) =>
      Effect.flatMap(file("put", key), (f) =>
        body instanceof Uint8Array && body.length <= singleLimit
          ? putSingle(key, f, body, options?.ifNotExists === true)
          : putStream(key, f, body, options?.ifNotExists === true),
      )

    const head = (key: string) => Effect.flatMap(file("head", key), (f) => metadata("head", key, f))

    const list = (listPrefix: string): Stream.Stream<ObjectInfo, BlobStoreError> =>
      Stream.suspend(() => {
        const order = makeBytewiseListingOrder<ObjectInfo>()
        return Stream.paginate({ token: undefined as string | undefined }, (state) =>
          Effect.flatMap(
            call("list", undefined, () =>
              bucket.getFiles({ prefix: prefix + listPrefix, maxResults: 1000, autoPaginate: false, pageToken: state.token }),
            ),
            (result) => {
              const [files, , response] = result as unknown as [Array<File>, unknown, { nextPageToken?: string } | undefined]
              const infos: Array<ObjectInfo> = []
              for (const f of files) {
                const key = f.name.slice(prefix.length)
                if (key.endsWith("/") && Number(f.metadata.size ?? 0) === 0) continue
                const problem = keyProblem(key)
                if (problem !== undefined)
                  return Effect.fail(
                    fail("InvalidKey", "list", key, `${problem}: the object '${f.name}' cannot be listed or backed up; rename it`),
                  )
                infos.push(infoOf(key, f.metadata))
              }
              const token = response?.nextPageToken
              return Effect.succeed(
                token
                  ? ([order.push(infos), Option.some({ token: token as string | undefined })] as const)
                  : ([[...order.push(infos), ...order.end()], Option.none()] as const),
              )
            },
          ),
        )
      })

    const deleteOne = (operation: string, key: string, f: File) =>
      call(operation, key, () => f.delete({ ignoreNotFound: true })).pipe(Effect.asVoid)

    const remove = (key: string) => Effect.flatMap(file("delete", key), (f) => deleteOne("delete", key, f))

    const deleteMany = (keys: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const unique = [...new Set(keys)]
        const files = yield* Effect.forEach(unique, (key) => file("deleteMany", key))
        if (!settings.batchDelete) {
          return yield* Effect.forEach(unique, (key, i) => deleteOne("deleteMany", key, files[i]), { concurrency: 32, discard: true })
        }
        const batches: Array<Array<string>> = []
        for (let i = 0; i < unique.length; i += MAX_BATCH) batches.push(unique.slice(i, i + MAX_BATCH))
        yield* Effect.forEach(
          batches,
          (batch) =>
            Effect.flatMap(
              call("deleteMany", undefined, (signal) =>
                sendDeleteBatch(
                  storage,
                  settings.credentials.kind !== "none",
                  settings.bucket,
                  batch.map((key) => prefix + key),
                  signal,
                ),
              ),
              (answers) => {
                const failed = answers.findIndex((a) => a.status >= 300 && a.status !== 404)
                if (failed === -1) return Effect.void
                const { status, message } = answers[failed]
                return Effect.fail(
                  classifyError(Object.assign(new Error(message || `HTTP ${status}`), { code: status }), {
                    ...baseContext,
                    operation: "deleteMany",
                    key: batch[failed],
                  }),
                )
              },
            ),
          { concurrency: 4, discard: true },
        )
      })

    const copy = (from: string, to: string) =>
      Effect.gen(function* () {
        const target = yield* file("copy", to)
        const source = yield* file("copy", from)
        const [copied] = yield* call("copy", to, () => source.copy(target)).pipe(
          Effect.mapError((e) => (e.reason === "NotFound" ? fail("NotFound", "copy", from, "no such object") : e)),
        )
        return infoOf(to, copied.metadata)
      })

    return {
      driver: DRIVER,
      location: describeGcsLocation(settings),
      capabilities: { ...GCS_CAPABILITIES, batchDelete: settings.batchDelete },
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
