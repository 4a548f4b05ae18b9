/**
 * GcsBatch: deletes through the Cloud Storage JSON API's batch endpoint
 * (`POST /batch/storage/v1`, up to 100 calls per request, each answered on its
 * own), which `@google-cloud/storage` does not expose. A batch is a
 * `multipart/mixed` body with one `application/http` part per DELETE; the
 * answer is a `multipart/mixed` body with one HTTP response per part, matched
 * by `Content-ID`. Authentication is the library's own (its `authClient`'s
 * request headers), so the batch uses whatever credentials the client does.
 *
 * Encoding and parsing are pure and tested without a server; the emulators
 * have no batch endpoint (the integration test puts a batch adapter in front
 * of one).
 */
import { randomBytes } from "node:crypto"
import type { Storage } from "@google-cloud/storage"

/** The most calls one batch request may carry. */
export const MAX_BATCH = 100

/** One call's answer: the status and the error message of its JSON body, if any. */
export interface BatchAnswer {
  readonly status: number
  readonly message: string
}

const CRLF = "\r\n"

/** The object name as one path segment of the JSON API (slashes escaped). */
const objectPath = (bucket: string, name: string) => `/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(name)}`

/** The multipart body deleting `names` from `bucket`; part i has Content-ID `<i+1>`. */
export const encodeDeleteBatch = (bucket: string, names: ReadonlyArray<string>, boundary: string): string => {
  if (names.length === 0 || names.length > MAX_BATCH) throw new Error(`a batch holds 1 to ${MAX_BATCH} calls (got ${names.length})`)
  const parts = names.map((name, i) =>
    [
      `--${boundary}`,
      "Content-Type: application/http",
      "Content-Transfer-Encoding: binary",
      `Content-ID: <${i + 1}>`,
      "",
      `DELETE ${objectPath(bucket, name)} HTTP/1.1`,
      "Content-Length: 0",
      "",
      "",
    ].join(CRLF),
  )
  return `${parts.join("")}--${boundary}--${CRLF}`
}

/** The boundary parameter of a `multipart/mixed` content type. */
export const boundaryOf = (contentType: string): string | undefined => {
  const match = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType)
  return match === null ? undefined : (match[1] ?? match[2])
}

/**
 * The answers of a batch response, by call index (0-based: Content-ID
 * `<response-N>` answers part N). Throws when the body is not a batch
 * response or misses an answer.
 */
export const parseBatchResponse = (contentType: string, body: string, calls: number): Array<BatchAnswer> => {
  const boundary = boundaryOf(contentType)
  if (boundary === undefined) throw new Error(`the batch answer is not multipart (Content-Type: ${contentType})`)
  const answers: Array<BatchAnswer | undefined> = new Array(calls)
  for (const part of body.split(`--${boundary}`).slice(1)) {
    if (part.startsWith("--")) break
    const id = /Content-ID:\s*<response-(?:[^>+]*\+)?(\d+)>/i.exec(part)
    const status = /HTTP\/\d(?:\.\d)?\s+(\d{3})/.exec(part)
    if (id === null || status === null) continue
    const index = Number(id[1]) - 1
    if (index < 0 || index >= calls) continue
    const json = part.slice(part.indexOf("{"))
    let message = ""
    if (part.includes("{")) {
      try {
        message = String((JSON.parse(json.slice(0, json.lastIndexOf("}") + 1)) as { error?: { message?: unknown } }).error?.message ?? "")
      } catch {
        message = ""
      }
    }
    answers[index] = { status: Number(status[1]), message }
  }
  const missing = answers.findIndex((a) => a === undefined)
  if (missing !== -1 || answers.length !== calls) throw new Error(`the batch answer has no response for call ${missing + 1} of ${calls}`)
  return answers as Array<BatchAnswer>
}

/** Sends one delete batch with the client's endpoint and credentials; resolves with each call's answer. */
export const sendDeleteBatch = async (
  storage: Storage,
  authenticate: boolean,
  bucket: string,
  names: ReadonlyArray<string>,
  signal: AbortSignal,
): Promise<Array<BatchAnswer>> => {
  const boundary = `bendsave_${randomBytes(12).toString("hex")}`
  const url = `${storage.apiEndpoint.replace(/\/+$/, "")}/batch/storage/v1`
  const headers = new Headers(authenticate ? await storage.authClient.getRequestHeaders(url) : undefined)
  headers.set("content-type", `multipart/mixed; boundary=${boundary}`)
  const response = await fetch(url, { method: "POST", headers, body: encodeDeleteBatch(bucket, names, boundary), signal })
  const text = await response.text()
  if (!response.ok) {
    let message = text.slice(0, 300)
    try {
      message = String((JSON.parse(text) as { error?: { message?: unknown } }).error?.message ?? message)
    } catch {}
    throw Object.assign(new Error(message || response.statusText), { code: response.status })
  }
  return parseBatchResponse(response.headers.get("content-type") ?? "", text, names.length)
}
