/**
 * GcsErrors: the one place where @google-cloud/storage errors (`ApiError`
 * with the HTTP status in `code` and a reason per error, auth library errors,
 * and network errors) become BlobStoreErrors with a core reason,
 * `isRetryable`, and for configuration mistakes the service and the fix. The
 * library's own retries are off: retrying is core's job.
 */
import { BlobStoreError, type BlobStoreErrorReason } from "@bendsave/core/BlobStore"
import * as Predicate from "effect/Predicate"

export const DRIVER = "gcs"

export interface GcsErrorContext {
  readonly operation: string
  readonly key?: string | undefined
  readonly bucket: string
  /** "Google Cloud Storage", "the GCS emulator at http://..." */
  readonly service: string
  readonly credentialFrom: string
  readonly createOnly?: boolean
}

const str = (u: unknown, k: string): string | undefined =>
  Predicate.hasProperty(u, k) && Predicate.isString((u as Record<string, unknown>)[k])
    ? ((u as Record<string, unknown>)[k] as string)
    : undefined

const networkCodes = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNABORTED",
  "EHOSTUNREACH",
  "ENETUNREACH",
])

/** Maps a failure of a GCS call to a BlobStoreError; a BlobStoreError (from a put's body) passes through. */
export const classifyError = (cause: unknown, context: GcsErrorContext): BlobStoreError => {
  if (Predicate.hasProperty(cause, "_tag") && cause._tag === "BlobStoreError") return cause as BlobStoreError
  const rawCode = Predicate.hasProperty(cause, "code") ? cause.code : undefined
  const status =
    typeof rawCode === "number" ? rawCode : typeof rawCode === "string" && /^\d{3}$/.test(rawCode) ? Number(rawCode) : undefined
  const errno =
    typeof rawCode === "string" && status === undefined
      ? rawCode
      : str(Predicate.hasProperty(cause, "cause") ? cause.cause : undefined, "code")
  const errors = Predicate.hasProperty(cause, "errors") && Array.isArray(cause.errors) ? (cause.errors as Array<{ reason?: string }>) : []
  const reasonWord = errors[0]?.reason
  const message = (str(cause, "message") ?? "").split("\n")[0]
  const name = str(cause, "name") ?? "Error"
  const said = `${status === undefined ? (errno ?? name) : `HTTP ${status}${reasonWord === undefined ? "" : ` ${reasonWord}`}`}: ${message}`
  const make = (reason: BlobStoreErrorReason, detail: string, fix?: string, retryable?: boolean) =>
    new BlobStoreError({
      reason,
      driver: DRIVER,
      operation: context.operation,
      key: context.key,
      detail: `${detail} [${said}]`,
      ...(fix === undefined ? {} : { fix }),
      ...(retryable === undefined ? {} : { retryable }),
      cause,
    })
  const bucket = `bucket '${context.bucket}' on ${context.service}`

  if (/could not load the default credentials|unable to detect a project id/i.test(message)) {
    return make(
      "InvalidConfig",
      "no Google Cloud credentials were found",
      "set credential_path (a service account key file) in [storage.gcs], or GOOGLE_APPLICATION_CREDENTIALS, or run `gcloud auth application-default login`",
    )
  }
  if (/invalid_grant|invalid_client|unauthorized_client|error:0[0-9A-F]+:|DECODER routines|private key/i.test(message)) {
    return make(
      "PermissionDenied",
      `the credentials from ${context.credentialFrom} were refused`,
      "check the service account key (it may be revoked, or not a key at all)",
    )
  }
  if (errno !== undefined && networkCodes.has(errno)) {
    const refused = errno === "ECONNREFUSED" || errno === "ENOTFOUND" || errno === "EAI_AGAIN"
    return make(
      "Unavailable",
      refused ? `cannot reach ${context.service} (${errno})` : `the connection to ${context.service} failed (${errno})`,
      refused ? "check `endpoint_url` (or STORAGE_EMULATOR_HOST) and that the service is running" : undefined,
    )
  }
  if (name === "AbortError") return make("Unavailable", "the request was aborted", undefined, false)
  if (
    /md5|crc32c|checksum|hash/i.test(message) &&
    (status === 400 || status === undefined) &&
    /mismatch|do not match|does not match|didn't match|not match/i.test(message)
  ) {
    return make(
      "Unavailable",
      "the service received different bytes than were sent (checksum mismatch); the upload was refused",
      undefined,
      true,
    )
  }
  switch (status) {
    case 304:
    case 412:
      return context.createOnly
        ? make("AlreadyExists", "the object already exists")
        : make("PreconditionFailed", "a precondition of the request failed")
    case 401:
      return make(
        "PermissionDenied",
        `${context.service} did not accept the credentials from ${context.credentialFrom}`,
        "check the service account key or run `gcloud auth application-default login` again",
      )
    case 403:
      return make(
        "PermissionDenied",
        `${context.service} denied access to the ${bucket} for the credentials from ${context.credentialFrom}`,
        "grant the service account roles/storage.objectAdmin on the bucket (or objectViewer for reads)",
      )
    case 404:
      return /bucket/i.test(message) && !/no such object/i.test(message)
        ? make(
            "InvalidConfig",
            `the ${bucket} does not exist`,
            "check `bucket` (and `project_id`), or create the bucket first (gcloud storage buckets create gs://<bucket>); bendsave never creates buckets",
          )
        : make("NotFound", "no such object")
    case 409:
      return context.createOnly
        ? make("AlreadyExists", "the object already exists")
        : make("Unknown", "the request conflicts with the object's state", undefined, true)
    case 416:
      return make("RangeNotSatisfiable", "the range starts past the end of the object")
    case 408:
      return make("Unavailable", "the request timed out")
    case 429:
      return make("RateLimited", `${context.service} asks to slow down`)
    case 500:
    case 502:
    case 503:
    case 504:
      return make("Unavailable", `${context.service} failed (HTTP ${status})`)
    case 501:
      return make("Unsupported", `${context.service} does not implement this request`)
    case 400:
      if (reasonWord === "invalid" && /bucket/i.test(message))
        return make("InvalidConfig", `'${context.bucket}' is not a valid bucket name`, "correct `bucket`")
      return make("Unknown", "the service refused the request as invalid")
  }
  return make("Unknown", "unexpected failure", undefined, status !== undefined && status >= 500)
}
