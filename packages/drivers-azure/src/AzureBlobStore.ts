/**
 * AzureBlobStore: a BlobStore over an Azure Blob Storage container and blob
 * name prefix (driver "azblob"), on `@azure/storage-blob`. Objects are block
 * blobs.
 *
 * # Operations
 * - get / getRange / getStream: Get Blob (with a range for getRange); a range
 *   starting exactly at the end is answered from the blob's properties
 *   (Azure refuses it).
 * - put: a body of at most one block (8 MiB) is one Put Blob; anything larger,
 *   and every streamed body, is staged as 8 MiB blocks (4 in flight) and made
 *   visible at once by Put Block List. A failed put commits nothing (staged
 *   blocks that are never committed are discarded by the service).
 * - create-only put: `If-None-Match: *` on Put Blob / Put Block List
 *   (409 BlobAlreadyExists or 412 → AlreadyExists).
 * - checksums: `Content-MD5` of every Put Blob and Put Block request (the
 *   service verifies it and refuses a mismatch); `upload_checksum = "none"`
 *   turns it off.
 * - list: List Blobs pages of 1000; put into bytewise order where the service
 *   answers in UTF-16 order (Azurite does).
 * - deleteMany: Blob Batch, 256 deletes per request.
 * - copy: Copy Blob within the account (server side), polled until done.
 *
 * The SDK's retries are off; core's retry wrapper decides from `isRetryable`.
 */
import { createHash } from "node:crypto"
import {
  AnonymousCredential,
  BlobServiceClient,
  type BlockBlobClient,
  type ContainerClient,
  type StoragePipelineOptions,
  StorageSharedKeyCredential,
} from "@azure/storage-blob"
import {
  type BlobStore,
  type BlobStoreError,
  type Body,
  bodyParts,
  type Capabilities,
  keyProblem,
  makeBytewiseListingOrder,
  type ObjectInfo,
  type PutOptions,
} from "@bendsave/core/BlobStore"
import * as CloudDriver from "@bendsave/core/CloudDriver"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type AzureSettings, describeAzureLocation, describeAzureService } from "./AzureConfig.ts"
import { classifyError, DRIVER } from "./AzureErrors.ts"

const MiB = 1024 * 1024

export const AZURE_CAPABILITIES: Capabilities = {
  conditionalPut: true,
  rangeRead: true,
  batchDelete: true,
  serverSideCopy: true,
  // 50 000 blocks of 8 MiB (the service allows blocks up to 4000 MiB).
  maxObjectSize: 50_000 * 8 * MiB,
}

export interface AzureStoreTuning {
  /** Block size of staged uploads and largest single Put Blob. Default 8 MiB. */
  readonly blockSize?: number
  /** Blocks in flight per upload. Default 4. */
  readonly concurrency?: number
  /** Use this service client (tests). */
  readonly client?: BlobServiceClient
  /** The Content-MD5 function (tests make it lie, to check that the service verifies it). */
  readonly md5?: (bytes: Uint8Array) => Uint8Array
}

const pipelineOptions: StoragePipelineOptions = {
  retryOptions: { maxTries: 1 },
  userAgentOptions: { userAgentPrefix: "bendsave" },
}

/** The service client the settings describe (DefaultAzureCredential is imported only when used). */
export const makeAzureServiceClient = async (settings: AzureSettings): Promise<BlobServiceClient> => {
  const credential = settings.credential
  switch (credential.kind) {
    case "connectionString": {
      const client = BlobServiceClient.fromConnectionString(Redacted.value(credential.value), pipelineOptions)
      return settings.endpoint === undefined ? client : new BlobServiceClient(settings.endpoint, client.credential, pipelineOptions)
    }
    case "accountKey":
      return new BlobServiceClient(settings.endpoint!, new StorageSharedKeyCredential(credential.account, Redacted.value(credential.key)), pipelineOptions)
    case "sas": {
      const token = Redacted.value(credential.token).replace(/^\?/, "")
      return new BlobServiceClient(`${settings.endpoint}?${token}`, new AnonymousCredential(), pipelineOptions)
    }
    case "default": {
      const { DefaultAzureCredential } = await import("@azure/identity")
      return new BlobServiceClient(settings.endpoint!, new DefaultAzureCredential(), pipelineOptions)
    }
  }
}

const md5Of = (bytes: Uint8Array): Uint8Array => createHash("md5").update(bytes).digest()

/** Block ids: base64 of a fixed-length string (the service wants equal lengths within a blob). */
const blockId = (index: number): string => Buffer.from(`bendsave-${String(index).padStart(6, "0")}`).toString("base64")

const stripQuotes = (etag: string | undefined): string => (etag ?? "").replace(/^"|"$/g, "")

export const makeAzureBlobStore = (settings: AzureSettings, tuning: AzureStoreTuning = {}): Effect.Effect<BlobStore, BlobStoreError, Scope.Scope> =>
  Effect.gen(function* () {
    const service = describeAzureService(settings)
    const baseContext = { container: settings.container, service, credentialFrom: settings.credential.from }
    const serviceClient =
      tuning.client ??
      (yield* Effect.tryPromise({
        try: () => makeAzureServiceClient(settings),
        catch: (cause) => classifyError(cause, { ...baseContext, operation: "open" }),
      }))
    const container: ContainerClient = serviceClient.getContainerClient(settings.container)
    const { prefix } = settings
    const blockSize = tuning.blockSize ?? 8 * MiB
    const concurrency = tuning.concurrency ?? 4
    const withMd5 = settings.uploadChecksum === "md5"
    const md5 = tuning.md5 ?? md5Of

    const { fail, objectName, call } = CloudDriver.bucketCalls(DRIVER, prefix, (cause, failed) => classifyError(cause, { ...baseContext, ...failed }))
    const blob = (operation: string, key: string): Effect.Effect<BlockBlobClient, BlobStoreError> =>
      Effect.map(objectName(operation, key), (name) => container.getBlockBlobClient(name))

    const properties = (operation: string, key: string, client: BlockBlobClient) =>
      Effect.map(
        call(operation, key, (abortSignal) => client.getProperties({ abortSignal })),
        (p): ObjectInfo => ({ key, size: p.contentLength ?? 0, etag: stripQuotes(p.etag), lastModified: p.lastModified?.getTime() ?? 0 }),
      )

    const readAll = async (stream: NodeJS.ReadableStream | undefined): Promise<Uint8Array> => {
      if (stream === undefined) return new Uint8Array(0)
      const chunks: Array<Buffer> = []
      for await (const chunk of stream) chunks.push(chunk as Buffer)
      return chunks.length === 1 ? new Uint8Array(chunks[0]) : new Uint8Array(Buffer.concat(chunks))
    }

    const get = (key: string) =>
      Effect.flatMap(blob("get", key), (client) =>
        call("get", key, async (abortSignal) => readAll((await client.download(0, undefined, { abortSignal })).readableStreamBody)),
      )

    const getRange = (key: string, offset: number, length: number) =>
      Effect.gen(function* () {
        const client = yield* blob("getRange", key)
        if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
          return yield* fail("RangeNotSatisfiable", "getRange", key, `offset and length must be non-negative integers (got ${offset}, ${length})`)
        }
        const emptyOrPastEnd = Effect.flatMap(properties("getRange", key, client), (info) =>
          offset > info.size
            ? Effect.fail(fail("RangeNotSatisfiable", "getRange", key, `offset ${offset} is past the end of the object (size ${info.size})`))
            : Effect.succeed(new Uint8Array(0)),
        )
        if (length === 0) return yield* emptyOrPastEnd
        return yield* call("getRange", key, async (abortSignal) => readAll((await client.download(offset, length, { abortSignal })).readableStreamBody)).pipe(
          Effect.catchIf((e) => e.reason === "RangeNotSatisfiable", () => emptyOrPastEnd),
        )
      })

    const getStream = (key: string): Stream.Stream<Uint8Array, BlobStoreError> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const client = yield* blob("getStream", key)
          const res = yield* call("getStream", key, (abortSignal) => client.download(0, undefined, { abortSignal }))
          const body = res.readableStreamBody as AsyncIterable<Uint8Array> | undefined
          if (body === undefined) return Stream.empty
          return Stream.fromAsyncIterable(body, (cause) => classifyError(cause, { ...baseContext, operation: "getStream", key }))
        }),
      )

    const putSingle = (key: string, client: BlockBlobClient, bytes: Uint8Array, createOnly: boolean) =>
      Effect.map(
        call(
          "put",
          key,
          (abortSignal) =>
            client.upload(bytes, bytes.length, {
              abortSignal,
              ...(withMd5 ? { transactionalContentMD5: md5(bytes) } : {}),
              ...(createOnly ? { conditions: { ifNoneMatch: "*" } } : {}),
            }),
          createOnly,
        ),
        (res): ObjectInfo => ({ key, size: bytes.length, etag: stripQuotes(res.etag), lastModified: res.lastModified?.getTime() ?? Date.now() }),
      )

    const putBlocks = (key: string, client: BlockBlobClient, body: Body, createOnly: boolean) =>
      Effect.gen(function* () {
        let size = 0
        const ids = yield* bodyParts(body, blockSize).pipe(
          Stream.zipWithIndex,
          Stream.mapEffect(
            ([part, index]) => {
              size += part.length
              const id = blockId(index)
              return Effect.as(
                call("put", key, (abortSignal) => client.stageBlock(id, part, part.length, { abortSignal, ...(withMd5 ? { transactionalContentMD5: md5(part) } : {}) })),
                id,
              )
            },
            { concurrency },
          ),
          Stream.runCollect,
        )
        const res = yield* call("put", key, (abortSignal) => client.commitBlockList(ids, { abortSignal, ...(createOnly ? { conditions: { ifNoneMatch: "*" } } : {}) }), createOnly)
        return { key, size, etag: stripQuotes(res.etag), lastModified: res.lastModified?.getTime() ?? Date.now() } satisfies ObjectInfo
      })

    const put = (key: string, body: Body, options?: PutOptions) =>
      Effect.flatMap(blob("put", key), (client) =>
        body instanceof Uint8Array && body.length <= blockSize
          ? putSingle(key, client, body, options?.ifNotExists === true)
          : putBlocks(key, client, body, options?.ifNotExists === true),
      )

    const head = (key: string) => Effect.flatMap(blob("head", key), (client) => properties("head", key, client))

    const list = (listPrefix: string): Stream.Stream<ObjectInfo, BlobStoreError> =>
      Stream.suspend(() => {
        const order = makeBytewiseListingOrder<ObjectInfo>()
        const pages = container.listBlobsFlat({ prefix: prefix + listPrefix }).byPage({ maxPageSize: 1000 })
        return Stream.paginate(true, () =>
          Effect.flatMap(
            call("list", undefined, () => pages.next()),
            (next) => {
              if (next.done === true) return Effect.succeed([order.end(), Option.none<boolean>()] as const)
              const infos: Array<ObjectInfo> = []
              for (const item of next.value.segment.blobItems) {
                const key = item.name.slice(prefix.length)
                // Zero-byte "folder" markers (hierarchical namespace, tools) are not objects.
                if (key.endsWith("/") && (item.properties.contentLength ?? 0) === 0) continue
                const problem = keyProblem(key)
                if (problem !== undefined) {
                  return Effect.fail(fail("InvalidKey", "list", key, `${problem}: the blob '${item.name}' cannot be listed or backed up; rename it`))
                }
                infos.push({ key, size: item.properties.contentLength ?? 0, etag: stripQuotes(item.properties.etag), lastModified: item.properties.lastModified?.getTime() ?? 0 })
              }
              return Effect.succeed([order.push(infos), Option.some(true)] as const)
            },
          ),
        )
      })

    const remove = (key: string) => Effect.flatMap(blob("delete", key), (client) => Effect.asVoid(call("delete", key, (abortSignal) => client.deleteIfExists({ abortSignal }))))

    const batchClient = serviceClient.getBlobBatchClient()

    const deleteMany = (keys: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const unique = [...new Set(keys)]
        const clients = yield* Effect.forEach(unique, (key) => blob("deleteMany", key))
        const batches: Array<Array<BlockBlobClient>> = []
        for (let i = 0; i < clients.length; i += 256) batches.push(clients.slice(i, i + 256))
        yield* Effect.forEach(
          batches,
          (batch) =>
            Effect.flatMap(
              call("deleteMany", undefined, (abortSignal) => batchClient.deleteBlobs(batch, { abortSignal })),
              (res) => {
                const failed = res.subResponses.find((r) => r.status >= 300 && r.errorCode !== "BlobNotFound" && r.status !== 404)
                if (failed === undefined) return Effect.void
                const key = failed._request.url === undefined ? undefined : decodeURIComponent(new URL(failed._request.url).pathname).split(`/${settings.container}/${prefix}`)[1]
                return Effect.fail(
                  classifyError(Object.assign(new Error(failed.statusMessage), { code: failed.errorCode, statusCode: failed.status }), { ...baseContext, operation: "deleteMany", key }),
                )
              },
            ),
          { concurrency: 4, discard: true },
        )
      })

    const copy = (from: string, to: string) =>
      Effect.gen(function* () {
        const target = yield* blob("copy", to)
        const source = yield* blob("copy", from)
        const info = yield* properties("copy", from, source)
        yield* call("copy", to, async (abortSignal) => {
          const poller = await target.beginCopyFromURL(source.url, { abortSignal, intervalInMs: 200 })
          return poller.pollUntilDone()
        }).pipe(Effect.mapError((e) => (e.reason === "NotFound" ? fail("NotFound", "copy", from, "no such blob") : e)))
        const copied = yield* properties("copy", to, target)
        return { ...copied, size: copied.size || info.size }
      })

    return {
      driver: DRIVER,
      location: describeAzureLocation(settings),
      capabilities: AZURE_CAPABILITIES,
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
