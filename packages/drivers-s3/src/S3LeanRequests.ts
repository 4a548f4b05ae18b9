/**
 * S3LeanRequests: PutObject (one part), GetObject (whole or a range) and
 * HeadObject sent as single signed HTTP requests, for S3-compatible servers
 * (`endpoint_url`). Backups and restores issue one of these per block, and
 * through the SDK's command stack each costs about 2 ms of CPU (1 ms here),
 * which on a small machine is what limits the throughput. They are signed by
 * the SDK's own SigV4 signer with the client's credential provider, and their
 * failures are shaped like SDK errors (name = the S3 error code, HTTP status in
 * `$metadata`), so `classifyError` treats both paths alike. Everything else,
 * and Amazon S3 itself (virtual hosts, regional endpoints, FIPS, ...), goes
 * through the SDK. `lean_requests = false` turns this path off.
 */
import { createHash, createHmac } from "node:crypto"
import * as http from "node:http"
import * as https from "node:https"
import type { S3Client } from "@aws-sdk/client-s3"
import { SignatureV4 } from "@smithy/signature-v4"
import type { S3Settings } from "./S3Config.ts"

const toBytes = (data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array =>
  typeof data === "string"
    ? data
    : data instanceof ArrayBuffer
      ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)

/** A node:crypto SHA-256 / HMAC-SHA-256 in the shape the signer wants. */
class NodeSha256 {
  private readonly hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash("sha256") : createHmac("sha256", toBytes(secret))
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBytes(data))
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest())
  }
}

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/** RFC 3986 encoding of one path segment (what SigV4 and S3 expect). */
const encodeSegment = (segment: string): string =>
  encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

export interface LeanResponse {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: Buffer
}

/** An S3 error response as the SDK would throw it (classifyError reads name, message and $metadata). */
const errorOf = (response: LeanResponse): Error => {
  const text = response.body.toString("utf8")
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1]
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1]
  const name =
    code ??
    (response.status === 404
      ? "NotFound"
      : response.status === 412
        ? "PreconditionFailed"
        : response.status === 416
          ? "InvalidRange"
          : "Unknown")
  return Object.assign(new Error(message ?? "UnknownError"), {
    name,
    Code: code,
    $metadata: { httpStatusCode: response.status },
    $response: { statusCode: response.status, headers: response.headers },
  })
}

export interface LeanRequests {
  readonly put: (
    objectKey: string,
    body: Uint8Array,
    headers: { readonly sha256Hex: string; readonly checksumSha256?: string; readonly contentMd5?: string; readonly ifNoneMatch?: boolean },
    signal: AbortSignal,
  ) => Promise<{ etag: string }>
  readonly get: (objectKey: string, range: readonly [number, number] | undefined, signal: AbortSignal) => Promise<LeanResponse>
  readonly head: (objectKey: string, signal: AbortSignal) => Promise<LeanResponse>
  readonly destroy: () => void
}

/**
 * The lean path for these settings, or undefined where the SDK must do it all
 * (Amazon S3, virtual-host addressing). A request whose connection stays idle
 * for `idleTimeoutMs` (default 300 s, the SDK client's `requestTimeout`)
 * fails as a TimeoutError (retryable): a stalled server never hangs a backup.
 */
export const makeLeanRequests = (client: S3Client, settings: S3Settings, idleTimeoutMs = 300_000): LeanRequests | undefined => {
  if (settings.endpoint === undefined || !settings.forcePathStyle || !settings.leanRequests) return undefined
  const base = new URL(settings.endpoint)
  const secure = base.protocol === "https:"
  const agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 128 }) : new http.Agent({ keepAlive: true, maxSockets: 128 })
  const transport = secure ? https : http
  const basePath = base.pathname.replace(/\/+$/, "")
  const signer = new SignatureV4({
    credentials: client.config.credentials,
    region: settings.region,
    service: "s3",
    sha256: NodeSha256,
    uriEscapePath: false,
    applyChecksum: false,
  })

  const send = async (
    method: string,
    objectKey: string,
    headers: Record<string, string>,
    body: Uint8Array | undefined,
    signal: AbortSignal,
  ): Promise<LeanResponse> => {
    const path = `${basePath}/${encodeSegment(settings.bucket)}/${objectKey.split("/").map(encodeSegment).join("/")}`
    const signed = await signer.sign({
      method,
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port === "" ? undefined : Number(base.port),
      path,
      query: {},
      headers: { host: base.host, ...headers },
      body,
    })
    return new Promise<LeanResponse>((resolve, reject) => {
      const request = transport.request(
        { method, protocol: base.protocol, hostname: base.hostname, port: base.port, path, headers: signed.headers, agent, signal },
        (response) => {
          const chunks: Array<Buffer> = []
          response.on("data", (chunk: Buffer) => chunks.push(chunk))
          response.on("error", reject)
          response.on("end", () =>
            resolve({
              status: response.statusCode ?? 0,
              headers: response.headers,
              body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
            }),
          )
        },
      )
      request.on("error", reject)
      request.setTimeout(idleTimeoutMs, () =>
        request.destroy(Object.assign(new Error(`no data from the server for ${idleTimeoutMs / 1000} s`), { name: "TimeoutError" })),
      )
      request.end(body === undefined ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength))
    })
  }

  return {
    put: async (objectKey, body, h, signal) => {
      const headers: Record<string, string> = { "content-length": String(body.length), "x-amz-content-sha256": h.sha256Hex }
      if (h.checksumSha256 !== undefined) headers["x-amz-checksum-sha256"] = h.checksumSha256
      if (h.contentMd5 !== undefined) headers["content-md5"] = h.contentMd5
      if (h.ifNoneMatch === true) headers["if-none-match"] = "*"
      const response = await send("PUT", objectKey, headers, body, signal)
      if (response.status >= 300) throw errorOf(response)
      return { etag: String(response.headers.etag ?? "") }
    },
    get: async (objectKey, range, signal) => {
      const headers: Record<string, string> = { "x-amz-content-sha256": EMPTY_SHA256 }
      if (range !== undefined) headers.range = `bytes=${range[0]}-${range[1]}`
      const response = await send("GET", objectKey, headers, undefined, signal)
      if (response.status >= 300) throw errorOf(response)
      return response
    },
    head: async (objectKey, signal) => {
      const response = await send("HEAD", objectKey, { "x-amz-content-sha256": EMPTY_SHA256 }, undefined, signal)
      if (response.status >= 300) throw errorOf(response)
      return response
    },
    destroy: () => agent.destroy(),
  }
}
