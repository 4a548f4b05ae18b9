/**
 * classifyError of the GCS driver, without a server: ApiErrors shaped the way
 * @google-cloud/storage throws them (HTTP status in `code`, `errors[].reason`),
 * auth library errors and network errors map to core reasons and fixes.
 */
import { ApiError } from "@google-cloud/storage"
import { describe, expect, it } from "vitest"
import { classifyError, type GcsErrorContext } from "../src/GcsErrors.ts"

const context: GcsErrorContext = {
  operation: "get",
  key: "a/b",
  bucket: "prod-data",
  service: "Google Cloud Storage",
  credentialFrom: "GOOGLE_APPLICATION_CREDENTIALS (/k.json)",
}

const apiError = (code: number, message: string, reason?: string) =>
  new ApiError({ code, message, errors: reason === undefined ? [] : [{ reason, message }] } as ConstructorParameters<typeof ApiError>[0])

describe("GCS classifyError", () => {
  it.each([
    [404, "No such object: prod-data/a/b", "notFound", "NotFound", false],
    [404, "The specified bucket does not exist.", "notFound", "InvalidConfig", false],
    [403, "caller does not have storage.objects.get access", "forbidden", "PermissionDenied", false],
    [401, "Invalid Credentials", "authError", "PermissionDenied", false],
    [416, "Requested range not satisfiable", "requestedRangeNotSatisfiable", "RangeNotSatisfiable", false],
    [429, "rate limit", "rateLimitExceeded", "RateLimited", true],
    [503, "backend", "backendError", "Unavailable", true],
    [500, "internal", "internalError", "Unavailable", true],
    [501, "Not Implemented", undefined, "Unsupported", false],
    [400, "Provided MD5 hash does not match the calculated MD5 hash", "invalid", "Unavailable", true],
  ] as const)("HTTP %i %s -> %s", (code, message, reason, expected, retryable) => {
    const error = classifyError(apiError(code, message, reason), context)
    expect(error.reason).toBe(expected)
    expect(error.isRetryable).toBe(retryable)
    expect(error.driver).toBe("gcs")
  })

  it("a failed generation precondition of a create-only put is AlreadyExists", () => {
    expect(
      classifyError(apiError(412, "At least one of the pre-conditions you specified did not hold.", "conditionNotMet"), {
        ...context,
        createOnly: true,
      }).reason,
    ).toBe("AlreadyExists")
    expect(classifyError(apiError(412, "precondition", "conditionNotMet"), context).reason).toBe("PreconditionFailed")
  })

  it("a missing bucket, denied access and missing credentials name the fix", () => {
    expect(classifyError(apiError(404, "The specified bucket does not exist.", "notFound"), context).fix).toContain(
      "gcloud storage buckets create",
    )
    const denied = classifyError(apiError(403, "forbidden", "forbidden"), context)
    expect(denied.message).toContain("GOOGLE_APPLICATION_CREDENTIALS")
    expect(denied.fix).toContain("roles/storage.objectAdmin")
    const none = classifyError(
      new Error("Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication"),
      context,
    )
    expect(none.reason).toBe("InvalidConfig")
    expect(none.fix).toContain("GOOGLE_APPLICATION_CREDENTIALS")
    const revoked = classifyError(new Error("invalid_grant: Invalid JWT Signature."), context)
    expect(revoked.reason).toBe("PermissionDenied")
  })

  it("network failures are Unavailable and retryable", () => {
    const refused = classifyError(
      Object.assign(new Error("request to http://127.0.0.1:9 failed, reason: connect ECONNREFUSED"), {
        name: "FetchError",
        code: "ECONNREFUSED",
      }),
      context,
    )
    expect(refused.reason).toBe("Unavailable")
    expect(refused.isRetryable).toBe(true)
    expect(refused.fix).toContain("STORAGE_EMULATOR_HOST")
    expect(classifyError(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }), context).isRetryable).toBe(true)
  })

  it("a BlobStoreError from a put's body passes through unchanged", () => {
    const bodyError = { _tag: "BlobStoreError", reason: "Unavailable" }
    expect(classifyError(bodyError, context)).toBe(bodyError)
  })
})
