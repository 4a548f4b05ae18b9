/**
 * GcsErrors: the one place where @google-cloud/storage errors (`ApiError`
 * with the HTTP status in `code` and a reason per error, auth library errors,
 * and network errors) become BlobStoreErrors with a core reason,
 * `isRetryable`, and for configuration mistakes the service and the fix. The
 * library's own retries are off: retrying is core's job.
 */
import type { BlobStoreError } from "@bendsave/core/BlobStore"
import * as CloudErrors from "@bendsave/core/CloudErrors"
import * as Predicate from "effect/Predicate"

const str = CloudErrors.stringField

export const DRIVER = "gcs"

const GCS: CloudErrors.CloudService = { driver: DRIVER, endpointOptions: "`endpoint_url` (or STORAGE_EMULATOR_HOST)" }

/** What classifyError needs to know about the failed call: the call (operation, key, service in words, create-only) and the bucket. */
export interface GcsErrorContext extends CloudErrors.CloudCall {
  readonly bucket: string
  /** Where the credentials came from, for messages. */
  readonly credentialFrom: string
}

/** Maps a failure of a GCS call to a BlobStoreError; a BlobStoreError (from a put's body) passes through. */
export const classifyError = (cause: unknown, context: GcsErrorContext): BlobStoreError => {
  if (CloudErrors.isBlobStoreError(cause)) return cause
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
  const classified = CloudErrors.make(GCS, context, cause, said)
  const { make } = classified
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
  if (CloudErrors.isNetworkErrorCode(errno)) return classified.unreachable(errno)
  if (name === "AbortError") return classified.aborted()
  if (
    /md5|crc32c|checksum|hash/i.test(message) &&
    (status === 400 || status === undefined) &&
    /mismatch|do not match|does not match|didn't match|not match/i.test(message)
  ) {
    return classified.checksumMismatch()
  }
  switch (status) {
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
        : classified.notFound()
    case 408:
      return make("Unavailable", "the request timed out")
    case 503:
      return make("Unavailable", `${context.service} failed (HTTP ${status})`)
    case 501:
      return make("Unsupported", `${context.service} does not implement this request`)
    case 400:
      if (reasonWord === "invalid" && /bucket/i.test(message))
        return make("InvalidConfig", `'${context.bucket}' is not a valid bucket name`, "correct `bucket`")
      return make("Unknown", "the service refused the request as invalid")
  }
  return classified.byStatus(status)
}
