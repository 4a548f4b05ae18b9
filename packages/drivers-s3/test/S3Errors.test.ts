/**
 * classifyError of the S3 driver, without a server: SDK errors shaped the way
 * the SDK builds them (name, Code, $metadata.httpStatusCode, $response
 * headers) map to the core reasons, `isRetryable`, and a fix a user can act on.
 */
import { S3ServiceException } from "@aws-sdk/client-s3"
import { describe, expect, it } from "vitest"
import { classifyError, type S3ErrorContext } from "../src/S3Errors.ts"

const context: S3ErrorContext = {
  operation: "get",
  key: "a/b",
  bucket: "prod-data",
  service: "Amazon S3 (region us-east-1)",
  region: "us-east-1",
}

/** An error as the SDK throws it for an S3 error response. */
const sdkError = (name: string, status: number, extra: Record<string, unknown> = {}) =>
  Object.assign(
    new S3ServiceException({
      name,
      $fault: status >= 500 ? "server" : "client",
      $metadata: { httpStatusCode: status },
      message: (extra.message as string | undefined) ?? "UnknownError",
    }),
    extra,
  )

const networkError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:9`), { code })

describe("S3 classifyError", () => {
  it.each([
    ["NoSuchKey", 404, "NotFound", false],
    ["NotFound", 404, "NotFound", false],
    ["InvalidRange", 416, "RangeNotSatisfiable", false],
    ["AccessDenied", 403, "PermissionDenied", false],
    ["SignatureDoesNotMatch", 403, "PermissionDenied", false],
    ["InvalidAccessKeyId", 403, "PermissionDenied", false],
    ["ExpiredToken", 400, "PermissionDenied", false],
    ["NoSuchBucket", 404, "InvalidConfig", false],
    ["PermanentRedirect", 301, "InvalidConfig", false],
    ["AuthorizationHeaderMalformed", 400, "InvalidConfig", false],
    ["SlowDown", 503, "RateLimited", true],
    ["InternalError", 500, "Unavailable", true],
    ["ServiceUnavailable", 503, "Unavailable", true],
    ["BadDigest", 400, "Unavailable", true],
    ["XAmzContentSHA256Mismatch", 400, "Unavailable", true],
    ["EntityTooLarge", 400, "Unsupported", false],
    ["NotImplemented", 501, "Unsupported", false],
    ["SomethingNew", 500, "Unavailable", true],
    ["SomethingNew", 507, "Unknown", true],
    ["SomethingNew", 400, "Unknown", false],
  ] as const)("%s (HTTP %i) -> %s, retryable %s", (name, status, reason, retryable) => {
    const error = classifyError(sdkError(name, status), context)
    expect(error.reason).toBe(reason)
    expect(error.isRetryable).toBe(retryable)
    expect(error.driver).toBe("s3")
    expect(error.operation).toBe("get")
    expect(error.key).toBe("a/b")
  })

  it("HEAD errors without a code fall back to the HTTP status", () => {
    expect(classifyError(sdkError("Unknown", 403), context).reason).toBe("PermissionDenied")
    expect(classifyError(sdkError("Unknown", 404), context).reason).toBe("NotFound")
    expect(classifyError(sdkError("Unknown", 412), { ...context, createOnly: true }).reason).toBe("AlreadyExists")
    expect(classifyError(sdkError("Unknown", 503), context).reason).toBe("RateLimited")
    expect(classifyError(sdkError("Unknown", 502), context).isRetryable).toBe(true)
  })

  it("a failed precondition of a create-only put means the key exists; of another request it stays a precondition", () => {
    expect(classifyError(sdkError("PreconditionFailed", 412), { ...context, createOnly: true }).reason).toBe("AlreadyExists")
    expect(classifyError(sdkError("PreconditionFailed", 412), context).reason).toBe("PreconditionFailed")
    expect(classifyError(sdkError("ConditionalRequestConflict", 409), { ...context, createOnly: true }).reason).toBe("AlreadyExists")
  })

  it("a missing bucket names the bucket and the service, and says bendsave does not create buckets", () => {
    const error = classifyError(sdkError("NoSuchBucket", 404), context)
    expect(error.message).toContain("bucket 'prod-data' on Amazon S3 (region us-east-1) does not exist")
    expect(error.fix).toMatch(/check `bucket`.*create the bucket/)
  })

  it("a wrong region names the bucket's region, from the header, the Region field or the message", () => {
    const fromHeader = classifyError(
      sdkError("PermanentRedirect", 301, { $response: { headers: { "x-amz-bucket-region": "eu-west-1" } } }),
      context,
    )
    expect(fromHeader.message).toContain("is in region eu-west-1, not us-east-1")
    expect(fromHeader.fix).toBe('set region = "eu-west-1" (or ?region=eu-west-1 in the URL)')
    const fromField = classifyError(sdkError("PermanentRedirect", 301, { Region: "ap-south-1" }), context)
    expect(fromField.fix).toContain("ap-south-1")
    const fromMessage = classifyError(
      sdkError("AuthorizationHeaderMalformed", 400, {
        message: "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'",
      }),
      context,
    )
    expect(fromMessage.fix).toContain('region = "eu-central-1"')
    // A HEAD on a bucket in another region: 301 without a code.
    expect(
      classifyError(sdkError("Unknown", 301, { $response: { headers: { "x-amz-bucket-region": "us-west-2" } } }), context).fix,
    ).toContain("us-west-2")
  })

  it("bad credentials say which setting to check; no credentials at all say where to put them", () => {
    expect(classifyError(sdkError("SignatureDoesNotMatch", 403), context).fix).toContain("secret_access_key")
    expect(classifyError(sdkError("InvalidAccessKeyId", 403), context).fix).toContain("access_key_id")
    expect(classifyError(sdkError("AccessDenied", 403), context).fix).toContain("s3:GetObject")
    const none = classifyError(
      Object.assign(new Error("Could not load credentials from any providers"), { name: "CredentialsProviderError" }),
      context,
    )
    expect(none.reason).toBe("InvalidConfig")
    expect(none.fix).toContain("AWS_ACCESS_KEY_ID")
  })

  it("network failures are Unavailable and retryable; a refused connection says to check the endpoint", () => {
    for (const code of ["ECONNRESET", "ETIMEDOUT", "EPIPE", "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]) {
      const error = classifyError(networkError(code), context)
      expect(error.reason, code).toBe("Unavailable")
      expect(error.isRetryable, code).toBe(true)
    }
    expect(classifyError(networkError("ECONNREFUSED"), context).fix).toContain("endpoint_url")
    expect(classifyError(Object.assign(new Error("socket hang up"), { name: "TimeoutError" }), context).isRetryable).toBe(true)
  })

  it("an aborted request is not retried", () => {
    expect(classifyError(Object.assign(new Error("aborted"), { name: "AbortError" }), context).isRetryable).toBe(false)
  })

  it("a BlobStoreError (from a put's body) passes through unchanged", () => {
    const bodyError = { _tag: "BlobStoreError", reason: "Unavailable", detail: "the source went away" }
    expect(classifyError(bodyError, context)).toBe(bodyError)
  })

  it("the message keeps the SDK's words, and never a credential", () => {
    const error = classifyError(sdkError("AccessDenied", 403, { message: "Access Denied" }), context)
    expect(error.message).toContain("AccessDenied: Access Denied")
  })
})
