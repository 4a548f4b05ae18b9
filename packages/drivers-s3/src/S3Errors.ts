/**
 * S3Errors: the one place where AWS SDK errors (and the network errors under
 * them) become BlobStoreErrors with a core reason, `isRetryable`, and, for
 * configuration mistakes, a message that names the service and the fix.
 *
 * The SDK's own retries are off (`maxAttempts: 1`): retrying is core's job,
 * and it asks `isRetryable`. S3-compatible servers differ in detail (Ceph
 * sends errors without a Message, and HEAD errors without a Code), so the
 * HTTP status is the fallback everywhere.
 */

import type { BlobStoreError } from "@bendsave/core/BlobStore"
import * as CloudErrors from "@bendsave/core/CloudErrors"
import * as Predicate from "effect/Predicate"

const str = CloudErrors.stringField

export const DRIVER = "s3"

const S3: CloudErrors.CloudService = { driver: DRIVER, endpointOptions: "`endpoint_url` (or ?endpoint=)" }

/** What classifyError needs to know about the failed call: the call (operation, key, service in words, create-only) and the bucket. */
export interface S3ErrorContext extends CloudErrors.CloudCall {
  readonly bucket: string
  /** The region the settings name, for messages about a bucket in another one. */
  readonly region: string
}

const httpStatus = (u: unknown): number | undefined => {
  const metadata = Predicate.hasProperty(u, "$metadata") ? (u.$metadata as { httpStatusCode?: unknown }) : undefined
  const code = metadata?.httpStatusCode
  return typeof code === "number" ? code : undefined
}

/** The region S3 says the bucket is in, when an error tells it. */
const bucketRegion = (u: unknown): string | undefined => {
  const headers = Predicate.hasProperty(u, "$response")
    ? (u.$response as { headers?: Record<string, string> } | undefined)?.headers
    : undefined
  const fromHeader = headers?.["x-amz-bucket-region"]
  if (fromHeader) return fromHeader
  const region = str(u, "Region")
  if (region) return region
  const expecting = /expecting '([a-z0-9-]+)'/.exec(str(u, "message") ?? "")
  return expecting?.[1]
}

/** Maps a failure of an S3 call to a BlobStoreError. A BlobStoreError (e.g. from a put's body) passes through unchanged. */
export const classifyError = (cause: unknown, context: S3ErrorContext): BlobStoreError => {
  if (CloudErrors.isBlobStoreError(cause)) return cause
  const name = str(cause, "Code") ?? str(cause, "name") ?? "Error"
  const status = httpStatus(cause)
  const errno = str(cause, "code")
  const sdkMessage = str(cause, "message")
  const said =
    sdkMessage && sdkMessage !== "UnknownError" ? `${name}: ${sdkMessage}` : status === undefined ? name : `${name} (HTTP ${status})`
  const errors = CloudErrors.make(S3, context, cause, said)
  const { make } = errors
  const bucket = `bucket '${context.bucket}' on ${context.service}`
  const wrongRegion = (region: string | undefined, inUrl: boolean) =>
    make(
      "InvalidConfig",
      `the ${bucket} is in ${region === undefined ? "another region" : `region ${region}`}, not ${context.region}`,
      `set region = "${region ?? "<the bucket's region>"}"${inUrl ? ` (or ?region=${region ?? "..."} in the URL)` : ""}`,
    )

  switch (name) {
    case "NoSuchKey":
      return errors.notFound()
    case "NoSuchBucket":
      return make(
        "InvalidConfig",
        `the ${bucket} does not exist`,
        "check `bucket` (and `endpoint_url`/`region`), or create the bucket first (aws s3 mb s3://<bucket>); bendsave never creates buckets",
      )
    case "PreconditionFailed":
      return errors.preconditionFailed()
    case "ConditionalRequestConflict":
      // Two create-only writes raced; the other one won or may win.
      return context.createOnly
        ? make("AlreadyExists", "a concurrent create-only write of the object is in progress or won")
        : make("PreconditionFailed", "a conditional request conflicted", undefined, true)
    case "InvalidRange":
      return errors.rangeNotSatisfiable()
    case "InvalidAccessKeyId":
      return make(
        "PermissionDenied",
        `${context.service} does not know the access key id`,
        "check `access_key_id` / AWS_ACCESS_KEY_ID (and that the keys belong to this endpoint)",
      )
    case "SignatureDoesNotMatch":
      return make(
        "PermissionDenied",
        `${context.service} rejected the request signature: the secret key is wrong`,
        "check `secret_access_key` / AWS_SECRET_ACCESS_KEY",
      )
    case "ExpiredToken":
    case "TokenRefreshRequired":
    case "InvalidToken":
      return make(
        "PermissionDenied",
        "the session credentials expired or are invalid",
        "refresh the credentials (AWS_SESSION_TOKEN, the profile or the role)",
      )
    case "CredentialsProviderError":
      return make(
        "InvalidConfig",
        "no AWS credentials were found",
        "set access_key_id and secret_access_key in [storage.s3], or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile / role) in the environment",
      )
    case "AccessDenied":
    case "AllAccessDisabled":
    case "AccountProblem":
      return make(
        "PermissionDenied",
        `${context.service} denied access to the ${bucket}`,
        "grant the credentials s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject on the bucket",
      )
    case "AuthorizationHeaderMalformed":
    case "PermanentRedirect":
    case "IllegalLocationConstraintException":
      return wrongRegion(bucketRegion(cause), true)
    case "SlowDown":
    case "Throttling":
    case "ThrottlingException":
    case "TooManyRequestsException":
    case "RequestLimitExceeded":
      return errors.slowDown()
    case "BadDigest":
    case "InvalidDigest":
    case "XAmzContentSHA256Mismatch":
      return errors.checksumMismatch()
    case "EntityTooLarge":
      return make("Unsupported", "the object is larger than the service accepts")
    case "InvalidBucketName":
      return make("InvalidConfig", `'${context.bucket}' is not a valid bucket name`, "correct `bucket`")
    case "NotImplemented":
      return make("Unsupported", `${context.service} does not implement this request`)
    case "RequestTimeout":
      return make("Unavailable", "the request timed out")
    case "RequestTimeTooSkewed":
      return make("PermissionDenied", "the local clock differs too much from the service's", "synchronise the clock (NTP)")
    case "InternalError":
    case "ServiceUnavailable":
      return make("Unavailable", `${context.service} had an internal error`)
    case "TimeoutError":
    case "RequestTimeoutException":
      return make("Unavailable", `no answer from ${context.service} in time`)
    case "AbortError":
      return errors.aborted()
  }
  if (CloudErrors.isNetworkErrorCode(errno, ["UND_ERR_SOCKET"])) return errors.unreachable(errno)
  switch (status) {
    case 301:
    case 307:
      return wrongRegion(bucketRegion(cause), false)
    case 400: {
      const region = bucketRegion(cause)
      return region !== undefined && region !== context.region
        ? wrongRegion(region, false)
        : make("Unknown", "the service refused the request as malformed")
    }
    case 403:
      // HEAD errors carry no code: the same status means denied access or bad credentials.
      return make(
        "PermissionDenied",
        `${context.service} refused the request for the ${bucket} (access denied or wrong credentials)`,
        "check the credentials (access_key_id / secret_access_key or AWS_*) and the bucket policy",
      )
    case 409:
      return context.createOnly
        ? make("AlreadyExists", "a concurrent create-only write of the object is in progress or won")
        : make("Unknown", "the request conflicts with the object's state", undefined, true)
    case 503:
      return errors.slowDown()
  }
  if (
    status === undefined &&
    Predicate.hasProperty(cause, "$fault") === false &&
    cause instanceof Error &&
    /socket|network|ECONN|timeout/i.test(cause.message)
  ) {
    return make("Unavailable", `the connection to ${context.service} failed`)
  }
  return errors.byStatus(status)
}
