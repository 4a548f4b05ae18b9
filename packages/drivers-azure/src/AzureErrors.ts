/**
 * AzureErrors: the one place where Azure SDK errors (`RestError`: a service
 * error code, an HTTP status, or a network error code) become BlobStoreErrors
 * with a core reason, `isRetryable`, and for configuration mistakes a message
 * that names the service and the fix. The SDK's own retries are off
 * (`maxTries: 1`): retrying is core's job.
 */
import type { BlobStoreError } from "@bendsave/core/BlobStore"
import * as CloudErrors from "@bendsave/core/CloudErrors"
import * as Predicate from "effect/Predicate"

const str = CloudErrors.stringField

export const DRIVER = "azblob"

const AZURE: CloudErrors.CloudService = {
  driver: DRIVER,
  object: "blob",
  bucket: "container",
  endpointOptions: "`endpoint_url` / `account_name` (or ?endpoint=)",
}

/** What classifyError needs to know about the failed call: the call (operation, key, service in words, create-only) and the container. */
export interface AzureErrorContext extends CloudErrors.CloudCall {
  readonly container: string
  /** Where the credential came from, for messages ("AZURE_STORAGE_KEY", "DefaultAzureCredential", ...). */
  readonly credentialFrom: string
}

/** Maps a failure of an Azure SDK call to a BlobStoreError; a BlobStoreError (from a put's body) passes through. */
export const classifyError = (cause: unknown, context: AzureErrorContext): BlobStoreError => {
  if (CloudErrors.isBlobStoreError(cause)) return cause
  const details = Predicate.hasProperty(cause, "details") ? cause.details : undefined
  const code = str(cause, "code") ?? str(details, "errorCode") ?? str(cause, "name") ?? "Error"
  // HEAD responses carry the code only in a header, which the SDK puts in details.
  const serviceCode = str(details, "errorCode") ?? code
  const status = Predicate.hasProperty(cause, "statusCode") && typeof cause.statusCode === "number" ? cause.statusCode : undefined
  const firstLine = (str(cause, "message") ?? "").split("\n")[0]
  const said = firstLine !== "" ? `${serviceCode}: ${firstLine}` : status === undefined ? serviceCode : `${serviceCode} (HTTP ${status})`
  const errors = CloudErrors.make(AZURE, context, cause, said)
  const { make } = errors
  const container = `container '${context.container}' on ${context.service}`
  const alreadyExists = () =>
    context.createOnly ? make("AlreadyExists", "the blob already exists") : make("PreconditionFailed", "the blob already exists")

  // Azurite reports a checksum mismatch as InvalidOperation ("Provided contentMD5 doesn't match").
  if (serviceCode === "InvalidOperation" && /md5|crc64/i.test(firstLine)) return errors.checksumMismatch()
  switch (serviceCode) {
    case "BlobNotFound":
      return errors.notFound()
    case "ContainerNotFound":
      return make(
        "InvalidConfig",
        `the ${container} does not exist`,
        "check `container` (and `account_name`/`endpoint_url`), or create the container first (az storage container create); bendsave never creates containers",
      )
    case "BlobAlreadyExists":
      return alreadyExists()
    case "ConditionNotMet":
    case "TargetConditionNotMet":
      return errors.preconditionFailed()
    case "InvalidRange":
      return errors.rangeNotSatisfiable()
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
      return make(
        "InvalidConfig",
        `'${context.container}' is not a valid container name (or the blob name is too long)`,
        "correct `container`",
      )
    case "Md5Mismatch":
    case "Crc64Mismatch":
    case "InvalidMd5":
      return errors.checksumMismatch()
    case "RequestBodyTooLarge":
      return make("Unsupported", "the blob is larger than the service accepts")
    case "ServerBusy":
    case "TooManyRequests":
      return errors.slowDown()
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
      return make(
        "PermissionDenied",
        "DefaultAzureCredential could not get a token",
        "sign in again (az login) or check the managed identity",
      )
    case "AbortError":
      return errors.aborted()
  }
  if (CloudErrors.isNetworkErrorCode(code, ["REQUEST_SEND_ERROR"])) {
    // REQUEST_SEND_ERROR wraps the socket error: its code is on the cause, or in the message.
    const inner =
      str(Predicate.hasProperty(cause, "cause") ? cause.cause : undefined, "code") ??
      /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN)\b/.exec(firstLine)?.[1]
    return errors.unreachable(code === "REQUEST_SEND_ERROR" && CloudErrors.isNetworkErrorCode(inner) ? inner : code)
  }
  switch (status) {
    case 401:
    case 403:
      return make(
        "PermissionDenied",
        `${context.service} refused the request (access denied or wrong credentials)`,
        "check the credentials and the container's access",
      )
    case 503:
      return errors.slowDown()
  }
  return errors.byStatus(status)
}
