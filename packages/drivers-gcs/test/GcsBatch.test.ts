/**
 * The JSON API batch format of GCS deletes, without a server: the request
 * body (one application/http part per DELETE, object names as escaped path
 * segments) and the answer (HTTP responses matched by Content-ID, in any
 * order, with the error message of failed calls).
 */
import { describe, expect, it } from "vitest"
import { boundaryOf, encodeDeleteBatch, MAX_BATCH, parseBatchResponse } from "../src/GcsBatch.ts"

describe("GCS delete batches", () => {
  it("encodes one DELETE per part, with escaped object names and a closing boundary", () => {
    const body = encodeDeleteBatch("my-bucket", ["root/data/ab", "a b+c"], "XYZ")
    const parts = body.split("--XYZ")
    expect(parts).toHaveLength(4)
    expect(parts[3]).toBe("--\r\n")
    expect(parts[1]).toContain("Content-Type: application/http\r\n")
    expect(parts[1]).toContain("Content-ID: <1>\r\n")
    expect(parts[1]).toContain("DELETE /storage/v1/b/my-bucket/o/root%2Fdata%2Fab HTTP/1.1\r\n")
    expect(parts[2]).toContain("Content-ID: <2>\r\n")
    expect(parts[2]).toContain("DELETE /storage/v1/b/my-bucket/o/a%20b%2Bc HTTP/1.1\r\n")
    expect(() => encodeDeleteBatch("b", [], "X")).toThrow(/1 to 100/)
    expect(() =>
      encodeDeleteBatch(
        "b",
        Array.from({ length: MAX_BATCH + 1 }, (_, i) => `k${i}`),
        "X",
      ),
    ).toThrow(/1 to 100/)
  })

  it("parses the answers by Content-ID, whatever their order, with the messages of failures", () => {
    const contentType = "multipart/mixed; boundary=batch_pK7JBAk73-E=_AA5eFwv4m2Q="
    const body = [
      "--batch_pK7JBAk73-E=_AA5eFwv4m2Q=",
      "Content-Type: application/http",
      "Content-ID: <response-3>",
      "",
      "HTTP/1.1 403 Forbidden",
      "Content-Type: application/json; charset=UTF-8",
      "",
      '{"error":{"code":403,"message":"caller does not have storage.objects.delete access"}}',
      "--batch_pK7JBAk73-E=_AA5eFwv4m2Q=",
      "Content-Type: application/http",
      "Content-ID: <response-b29c5de2-0db4-490b-b421-6a51b598bd22+1>",
      "",
      "HTTP/1.1 204 No Content",
      "Content-Length: 0",
      "",
      "--batch_pK7JBAk73-E=_AA5eFwv4m2Q=",
      "Content-Type: application/http",
      "Content-ID: <response-2>",
      "",
      "HTTP/1.1 404 Not Found",
      "",
      '{"error":{"code":404,"message":"No such object: b/k"}}',
      "--batch_pK7JBAk73-E=_AA5eFwv4m2Q=--",
      "",
    ].join("\r\n")
    expect(boundaryOf(contentType)).toBe("batch_pK7JBAk73-E=_AA5eFwv4m2Q=")
    expect(boundaryOf('multipart/mixed; boundary="quoted b"')).toBe("quoted b")
    expect(parseBatchResponse(contentType, body, 3)).toEqual([
      { status: 204, message: "" },
      { status: 404, message: "No such object: b/k" },
      { status: 403, message: "caller does not have storage.objects.delete access" },
    ])
    expect(() => parseBatchResponse(contentType, body, 4)).toThrow(/no response for call 4 of 4/)
    expect(() => parseBatchResponse("application/json", "{}", 1)).toThrow(/not multipart/)
  })
})
