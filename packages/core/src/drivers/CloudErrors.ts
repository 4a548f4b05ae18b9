/**
 * CloudErrors: what the `classifyError` of every driver for an HTTP object
 * storage service (S3, GCS, Azure Blob, a plugin's) has in common. Each driver
 * still owns exactly one `classifyError`: it reads its SDK's error shape (codes,
 * statuses, network errno) and maps what is specific to its service (a missing
 * bucket, bad credentials, a wrong region) with a fix in its own words; the
 * rest it leaves to these helpers, so the same failure reads the same on
 * every service:
 *
 * ```ts
 * export const classifyError = (cause: unknown, context: MyErrorContext): BlobStoreError => {
 *   if (CloudErrors.isBlobStoreError(cause)) return cause      // a put's body failed: pass it through
 *   const status = ...; const code = ...                      // read the SDK's error
 *   const errors = CloudErrors.make(MY_SERVICE, context, cause, `${code}: ${message}`)
 *   if (code === "NoSuchBucket") return errors.make("InvalidConfig", `the bucket ... does not exist`, "create it ...")
 *   if (CloudErrors.isNetworkErrorCode(code)) return errors.unreachable(code)
 *   return errors.byStatus(status)                            // 404, 409, 412, 416, 429, 5xx, else Unknown
 * }
 * ```
 *
 * Reasons decide `isRetryable` (RateLimited and Unavailable are retried by
 * core's wrapper); `retryable` overrides it where the reason alone says the
 * wrong thing (an aborted request is Unavailable but not worth retrying).
 */
import * as Predicate from "effect/Predicate"
import { BlobStoreError, type BlobStoreErrorReason } from "../BlobStore.ts"

/** What a driver's errors say about its service, the same for every call. */
export interface CloudService {
  /** The driver name errors carry ("s3"). */
  readonly driver: string
  /** What the service stores, for messages: "blob"; default "object". */
  readonly object?: string
  /** What holds them: "container"; default "bucket". */
  readonly bucket?: string
  /** Where the user sets the endpoint, for the fix of an unreachable service: "`endpoint_url` (or ?endpoint=)". */
  readonly endpointOptions: string
}

/** The failed call, as the driver's error context describes it. */
export interface CloudCall {
  readonly operation: string
  readonly key?: string | undefined
  /** The service in words, for messages: "Amazon S3 (region us-east-1)", "the GCS emulator at http://...". */
  readonly service: string
  /** The call was a create-only put: a failed condition or a conflict means the object exists. */
  readonly createOnly?: boolean | undefined
}

/** The errno codes of a connection that failed or could not be made (Node's `code` on socket and DNS errors). */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
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

/** Codes that mean the service was never reached (refused, or its name did not resolve): the endpoint may be wrong. */
const UNREACHED_CODES: ReadonlySet<string> = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"])

/** Whether `code` is a network error code: `NETWORK_ERROR_CODES` or one of the SDK's own (`extra`). */
export const isNetworkErrorCode = (code: string | undefined, extra: ReadonlyArray<string> = []): code is string =>
  code !== undefined && (NETWORK_ERROR_CODES.has(code) || extra.includes(code))

/**
 * A BlobStoreError, recognised by its tag (never `instanceof`: it may come
 * from another copy of `@bendsave/core`). A put's body that fails with one
 * must come out of `put` unchanged, so classifyError passes it through.
 */
export const isBlobStoreError = (u: unknown): u is BlobStoreError => Predicate.hasProperty(u, "_tag") && u._tag === "BlobStoreError"

/** `u[key]` when it is a string (SDK errors carry codes and messages in varying fields). */
export const stringField = (u: unknown, key: string): string | undefined =>
  Predicate.hasProperty(u, key) && Predicate.isString(u[key]) ? u[key] : undefined

/** The message of a checksum mismatch: the service refused bytes that did not match the checksum sent with them. */
export const CHECKSUM_MISMATCH = "the service received different bytes than were sent (checksum mismatch); the upload was refused"

/** Builders of the BlobStoreErrors of one failed call (see `make`). */
export interface CloudErrors {
  /** An error of any reason; `detail` is followed by the service's own words. */
  readonly make: (reason: BlobStoreErrorReason, detail: string, fix?: string, retryable?: boolean) => BlobStoreError
  /** NotFound: no such object. */
  readonly notFound: () => BlobStoreError
  /** A failed condition: AlreadyExists for a create-only put, else PreconditionFailed. */
  readonly preconditionFailed: () => BlobStoreError
  /** A range that starts past the end. */
  readonly rangeNotSatisfiable: () => BlobStoreError
  /** RateLimited: the service asks to slow down. */
  readonly slowDown: () => BlobStoreError
  /** Unavailable and retryable: the service refused bytes that did not match their checksum. */
  readonly checksumMismatch: () => BlobStoreError
  /** Unavailable but not retryable: the request was aborted (interrupted). */
  readonly aborted: () => BlobStoreError
  /**
   * Unavailable: a network failure with its errno `code`. When the service was
   * never reached (`unreached`, by default for a refused connection or a name
   * that does not resolve) the fix says to check the endpoint.
   */
  readonly unreachable: (code: string, unreached?: boolean) => BlobStoreError
  /**
   * The HTTP statuses every object store means the same by: 304/412 (a failed
   * condition), 404, 409 (a conflict; AlreadyExists for a create-only put), 416,
   * 429, 500/502/504; any other status (or none) is Unknown, retryable from
   * 500 up. A driver maps its own statuses (401, 403, 503, ...) first.
   */
  readonly byStatus: (status: number | undefined) => BlobStoreError
}

/**
 * The error builders of one failed call of a `service` driver. `said` is what
 * the SDK said (a code and its message), shown after each detail in brackets;
 * `cause` is kept on the error.
 */
export const make = (service: CloudService, call: CloudCall, cause: unknown, said: string): CloudErrors => {
  const { object = "object", bucket = "bucket" } = service
  const make = (reason: BlobStoreErrorReason, detail: string, fix?: string, retryable?: boolean) =>
    new BlobStoreError({
      reason,
      driver: service.driver,
      operation: call.operation,
      key: call.key,
      detail: `${detail} [${said}]`,
      ...(fix === undefined ? {} : { fix }),
      ...(retryable === undefined ? {} : { retryable }),
      cause,
    })
  const alreadyExists = () => make("AlreadyExists", `the ${object} already exists`)
  const errors: CloudErrors = {
    make,
    notFound: () => make("NotFound", `no such ${object}`),
    preconditionFailed: () => (call.createOnly ? alreadyExists() : make("PreconditionFailed", "a precondition of the request failed")),
    rangeNotSatisfiable: () => make("RangeNotSatisfiable", `the range starts past the end of the ${object}`),
    slowDown: () => make("RateLimited", `${call.service} asks to slow down`),
    checksumMismatch: () => make("Unavailable", CHECKSUM_MISMATCH, undefined, true),
    aborted: () => make("Unavailable", "the request was aborted", undefined, false),
    unreachable: (code, unreached = UNREACHED_CODES.has(code)) =>
      unreached
        ? make("Unavailable", `cannot reach ${call.service} (${code})`, `check ${service.endpointOptions} and that the service is running`)
        : make("Unavailable", `the connection to ${call.service} failed (${code})`),
    byStatus: (status) => {
      switch (status) {
        case 304:
        case 412:
          return errors.preconditionFailed()
        case 404:
          return make("NotFound", `no such ${object} (or no such ${bucket})`)
        case 409:
          return call.createOnly ? alreadyExists() : make("Unknown", `the request conflicts with the ${object}'s state`, undefined, true)
        case 416:
          return errors.rangeNotSatisfiable()
        case 429:
          return errors.slowDown()
        case 500:
        case 502:
        case 504:
          return make("Unavailable", `${call.service} failed (HTTP ${status})`)
      }
      return make("Unknown", "unexpected failure", undefined, status !== undefined && status >= 500)
    },
  }
  return errors
}
