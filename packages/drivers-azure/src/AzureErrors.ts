/**
 * AzureErrors: the one place where Azure SDK errors (`RestError`: a service
 * error code, an HTTP status, or a network error code) become BlobStoreErrors
 * with a core reason, `isRetryable`, and for configuration mistakes a message
 * that names the service and the fix. The SDK's own retries are off
 * (`maxTries: 1`): retrying is core's job.
 */
import { BlobStoreError, type BlobStoreErrorReason } from "@bendsave/core/BlobStore"
import * as Predicate from "effect/Predicate"

export const DRIVER = "azblob"

export interface AzureErrorContext {
  readonly operation: string
  readonly key?: string | undefined
  readonly container: string
  /** "Azure Blob Storage at https://..." */
  readonly service: string
  /** Where the credential came from, for messages ("AZURE_STORAGE_KEY", "DefaultAzureCredential", ...). */
  readonly credentialFrom: string
  /** The call was a create-only put: a conflict or failed condition means the blob exists. */
  readonly createOnly?: boolean
}

const str = (u: unknown, k: string): string | undefined =>
  Predicate.hasProperty(u, k) && Predicate.isString((u as Record<string, unknown>)[k]) ? ((u as Record<string, unknown>)[k] as string) : undefined

const networkCodes = new Set(["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "ECONNABORTED", "EHOSTUNREACH", "ENETUNREACH", "REQUEST_SEND_ERROR"])

/** Maps a failure of an Azure SDK call to a BlobStoreError; a BlobStoreError (from a put's body) passes through. */
export const classifyError = (cause: unknown, context: AzureErrorContext): BlobStoreError => {
  if (Predicate.hasProperty(cause, "_tag") && cause._tag === "BlobStoreError") return cause as BlobStoreError
  const details = Predicate.hasProperty(cause, "details") ? cause.details : undefined
  const code = str(cause, "code") ?? str(details, "errorCode") ?? str(cause, "name") ?? "Error"
  // HEAD responses carry the code only in a header, which the SDK puts in details.
  const serviceCode = str(details, "errorCode") ?? code
  const status = Predicate.hasProperty(cause, "statusCode") && typeof cause.statusCode === "number" ? cause.statusCode : undefined
  const firstLine = (str(cause, "message") ?? "").split("\n")[0]
  const said = firstLine !== "" ? `${serviceCode}: ${firstLine}` : status === undefined ? serviceCode : `${serviceCode} (HTTP ${status})`
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
  const container = `container '${context.container}' on ${context.service}`

  // Azurite reports a checksum mismatch as InvalidOperation ("Provided contentMD5 doesn't match").
  if (serviceCode === "InvalidOperation" && /md5|crc64/i.test(firstLine)) {
    return make("Unavailable", "the service received different bytes than were sent (checksum mismatch); the upload was refused", undefined, true)
  }
  switch (serviceCode) {
    case "BlobNotFound":
      return make("NotFound", "no such blob")
    case "ContainerNotFound":
      return make("InvalidConfig", `the ${container} does not exist`, "check `container` (and `account_name`/`endpoint_url`), or create the container first (az storage container create); bendsave never creates containers")
    case "BlobAlreadyExists":
      return context.createOnly ? make("AlreadyExists", "the blob already exists") : make("PreconditionFailed", "the blob already exists")
    case "ConditionNotMet":
    case "TargetConditionNotMet":
      return context.createOnly ? make("AlreadyExists", "the blob already exists") : make("PreconditionFailed", "a condition of the request was not met")
    case "InvalidRange":
      return make("RangeNotSatisfiable", "the range starts past the end of the blob")
    case "AuthenticationFailed":
    case "AuthorizationFailure":
    case "InvalidAuthenticationInfo":
      return make(
        "PermissionDenied",
        `${context.service} could not authenticate the request: the credential from ${context.credentialFrom} is wrong, expired or for another account`,
        "check the account key / SAS token / connection string (AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING) and account_name",
      )
    case "AuthorizationPermissionMismatch":
    case "AuthorizationResourceTypeMismatch":
    case "AuthorizationServiceMismatch":
    case "AuthorizationSourceIPMismatch":
    case "AuthorizationProtocolMismatch":
    case "InsufficientAccountPermissions":
      return make(
        "PermissionDenied",
        `${context.service} denied access to the ${container}`,
        "grant the identity the 'Storage Blob Data Contributor' role on the container (or a SAS with read, write, list and delete)",
      )
    case "AccountIsDisabled":
      return make("PermissionDenied", `the storage account of ${context.service} is disabled`)
    case "InvalidResourceName":
    case "OutOfRangeInput":
      return make("InvalidConfig", `'${context.container}' is not a valid container name (or the blob name is too long)`, "correct `container`")
    case "Md5Mismatch":
    case "Crc64Mismatch":
    case "InvalidMd5":
      return make("Unavailable", "the service received different bytes than were sent (checksum mismatch); the upload was refused", undefined, true)
    case "RequestBodyTooLarge":
      return make("Unsupported", "the blob is larger than the service accepts")
    case "ServerBusy":
    case "TooManyRequests":
      return make("RateLimited", `${context.service} asks to slow down`)
    case "OperationTimedOut":
    case "InternalError":
      return make("Unavailable", `${context.service} had an internal error or timed out`)
    case "CredentialUnavailableError":
    case "AggregateAuthenticationError":
      return make(
        "InvalidConfig",
        "no Azure credentials were found (DefaultAzureCredential found no identity)",
        "set account_key, sas_token or connection_string in [storage.azblob], or AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN, or sign in (az login, managed identity)",
      )
    case "AuthenticationRequiredError":
      return make("PermissionDenied", "DefaultAzureCredential could not get a token", "sign in again (az login) or check the managed identity")
    case "AbortError":
      return make("Unavailable", "the request was aborted", undefined, false)
  }
  if (networkCodes.has(code)) {
    const causeCode = str(Predicate.hasProperty(cause, "cause") ? cause.cause : undefined, "code")
    const refused = code === "ECONNREFUSED" || code === "ENOTFOUND" || causeCode === "ECONNREFUSED" || causeCode === "ENOTFOUND" || /ECONNREFUSED|ENOTFOUND/.test(firstLine)
    return make(
      "Unavailable",
      refused ? `cannot reach ${context.service}` : `the connection to ${context.service} failed`,
      refused ? "check `endpoint_url` / `account_name` (or ?endpoint=) and that the service is running" : undefined,
    )
  }
  switch (status) {
    case 304:
    case 412:
      return context.createOnly ? make("AlreadyExists", "the blob already exists") : make("PreconditionFailed", "a condition of the request was not met")
    case 409:
      return context.createOnly ? make("AlreadyExists", "the blob already exists") : make("Unknown", "the request conflicts with the blob's state", undefined, true)
    case 401:
    case 403:
      return make("PermissionDenied", `${context.service} refused the request (access denied or wrong credentials)`, "check the credentials and the container's access")
    case 404:
      return make("NotFound", "no such blob (or no such container)")
    case 416:
      return make("RangeNotSatisfiable", "the range starts past the end of the blob")
    case 429:
    case 503:
      return make("RateLimited", `${context.service} asks to slow down`)
    case 500:
    case 502:
    case 504:
      return make("Unavailable", `${context.service} failed (HTTP ${status})`)
  }
  return make("Unknown", "unexpected failure", undefined, status !== undefined && status >= 500)
}
