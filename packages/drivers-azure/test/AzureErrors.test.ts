/**
 * classifyError of the Azure driver, without a server: RestErrors shaped the
 * way @azure/storage-blob throws them (code, statusCode, details.errorCode for
 * HEAD responses, network codes) map to core reasons, `isRetryable` and fixes.
 */
import { RestError } from "@azure/storage-blob"
import { describe, expect, it } from "vitest"
import { type AzureErrorContext, classifyError } from "../src/AzureErrors.ts"

const context: AzureErrorContext = {
  operation: "get",
  key: "a/b",
  container: "prod-data",
  service: "Azure Blob Storage at https://prod.blob.core.windows.net",
  credentialFrom: "AZURE_STORAGE_KEY",
}

const restError = (code: string | undefined, statusCode: number, message = "") => {
  const error = new RestError(message, { code, statusCode })
  return Object.assign(error, { details: { errorCode: code } })
}

describe("Azure classifyError", () => {
  it.each([
    ["BlobNotFound", 404, "NotFound", false],
    ["ContainerNotFound", 404, "InvalidConfig", false],
    ["InvalidRange", 416, "RangeNotSatisfiable", false],
    ["AuthenticationFailed", 403, "PermissionDenied", false],
    ["AuthorizationFailure", 403, "PermissionDenied", false],
    ["AuthorizationPermissionMismatch", 403, "PermissionDenied", false],
    ["ServerBusy", 503, "RateLimited", true],
    ["OperationTimedOut", 500, "Unavailable", true],
    ["InternalError", 500, "Unavailable", true],
    ["Md5Mismatch", 400, "Unavailable", true],
    ["RequestBodyTooLarge", 413, "Unsupported", false],
    ["InvalidResourceName", 400, "InvalidConfig", false],
    ["SomethingNew", 500, "Unavailable", true],
    ["SomethingNew", 400, "Unknown", false],
  ] as const)("%s (HTTP %i) -> %s, retryable %s", (code, status, reason, retryable) => {
    const error = classifyError(restError(code, status), context)
    expect(error.reason).toBe(reason)
    expect(error.isRetryable).toBe(retryable)
    expect(error.driver).toBe("azblob")
  })

  it("HEAD errors carry the code only in details", () => {
    const head = Object.assign(new RestError("", { statusCode: 404 }), { details: { errorCode: "ContainerNotFound" } })
    expect(classifyError(head, context).reason).toBe("InvalidConfig")
    expect(classifyError(new RestError("", { statusCode: 403 }), context).reason).toBe("PermissionDenied")
    expect(classifyError(new RestError("", { statusCode: 404 }), context).reason).toBe("NotFound")
  })

  it("a create-only put that finds the blob is AlreadyExists (409 or 412)", () => {
    const createOnly = { ...context, createOnly: true }
    expect(classifyError(restError("BlobAlreadyExists", 409), createOnly).reason).toBe("AlreadyExists")
    expect(classifyError(restError("ConditionNotMet", 412), createOnly).reason).toBe("AlreadyExists")
    expect(classifyError(restError("ConditionNotMet", 412), context).reason).toBe("PreconditionFailed")
  })

  it("Azurite's checksum mismatch (InvalidOperation) is a retryable mismatch", () => {
    const error = classifyError(restError("InvalidOperation", 400, "Provided contentMD5 doesn't match."), context)
    expect(error.isRetryable).toBe(true)
    expect(error.message).toContain("checksum mismatch")
  })

  it("names the container and the fix for a missing container, and the credential's source for bad credentials", () => {
    const missing = classifyError(restError("ContainerNotFound", 404), context)
    expect(missing.message).toContain("container 'prod-data' on Azure Blob Storage at https://prod.blob.core.windows.net does not exist")
    expect(missing.fix).toContain("az storage container create")
    const denied = classifyError(restError("AuthenticationFailed", 403), context)
    expect(denied.message).toContain("AZURE_STORAGE_KEY")
    expect(classifyError(restError("AuthorizationPermissionMismatch", 403), context).fix).toContain("Storage Blob Data Contributor")
  })

  it("no identity for DefaultAzureCredential says where credentials go", () => {
    const error = classifyError(Object.assign(new Error("no credential"), { name: "CredentialUnavailableError" }), context)
    expect(error.reason).toBe("InvalidConfig")
    expect(error.fix).toContain("AZURE_STORAGE_CONNECTION_STRING")
  })

  it("network failures are Unavailable and retryable; a refused connection says to check the endpoint", () => {
    const refused = classifyError(new RestError("connect ECONNREFUSED 127.0.0.1:9", { code: "ECONNREFUSED" }), context)
    expect(refused.reason).toBe("Unavailable")
    expect(refused.isRetryable).toBe(true)
    expect(refused.fix).toContain("endpoint_url")
    expect(classifyError(new RestError("socket hang up", { code: "ECONNRESET" }), context).isRetryable).toBe(true)
    expect(classifyError(new RestError("send failed", { code: "REQUEST_SEND_ERROR" }), context).isRetryable).toBe(true)
  })

  it("a BlobStoreError from a put's body passes through unchanged", () => {
    const bodyError = { _tag: "BlobStoreError", reason: "Unavailable" }
    expect(classifyError(bodyError, context)).toBe(bodyError)
  })
})
