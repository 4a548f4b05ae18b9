/**
 * What the cloud drivers share (CloudDriver.ts, CloudErrors.ts), without a
 * service: repository URLs to options, roots to prefixes, endpoint checks,
 * option errors becoming InvalidConfig with the option's name, and the
 * classification of HTTP statuses and network errors every object store
 * means the same by.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { BlobStoreError } from "../src/BlobStore.ts"
import {
  bucketCalls,
  bucketOptionsFromUrl,
  checkEndpointUrl,
  describeBucketLocation,
  invalidOption,
  makeFromSettings,
  rootToPrefix,
} from "../src/drivers/CloudDriver.ts"
import * as CloudErrors from "../src/drivers/CloudErrors.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import type { StorageDriverContext } from "../src/StorageDriver.ts"

describe("bucketOptionsFromUrl", () => {
  const spec = {
    bucketOption: "bucket",
    credentialsFrom: "set MYSTORE_KEY",
    parameters: {
      endpoint: { option: "endpoint_url", aliases: ["endpoint_url"] },
      region: {},
      virtual_host_style: { option: "virtual_host", type: "boolean" as const },
      path_style: { option: "virtual_host", type: "boolean" as const, negate: true },
    },
  }
  const read = (text: string) => bucketOptionsFromUrl(new URL(text), spec)

  it("the bucket from the host, the root from the path, options from the declared parameters and their aliases", () => {
    expect(read("my://b%20x/a/b%C3%A9?endpoint=http://h:1&region=r")).toEqual({
      bucket: "b x",
      root: "/a/bé",
      endpoint_url: "http://h:1",
      region: "r",
    })
    expect(read("my://b/?endpoint_url=http://h:2").endpoint_url).toBe("http://h:2")
    expect(read("my://b").root).toBe("")
  })

  it("boolean parameters take true/false, 1/0, yes/no; negate sets the opposite", () => {
    expect(read("my://b/p?virtual_host_style=true").virtual_host).toBe(true)
    expect(read("my://b/p?virtual_host_style=0").virtual_host).toBe(false)
    expect(read("my://b/p?path_style=yes").virtual_host).toBe(false)
    expect(() => read("my://b/p?path_style=maybe")).toThrow("query parameter 'path_style' must be true or false (got 'maybe')")
  })

  it("refuses credentials in the URL, a missing bucket and unknown parameters, saying what to do", () => {
    expect(() => read("my://user:secret@b/p")).toThrow("credentials do not belong in the URL: set MYSTORE_KEY")
    expect(() => read("my:///p")).toThrow("the URL names no bucket: write my://<bucket>/<prefix>")
    expect(() => read("my://b/p?sig=x")).toThrow(
      "unknown query parameter 'sig' (known: endpoint, region, virtual_host_style, path_style; credentials come from the environment)",
    )
  })
})

describe("settings helpers", () => {
  it("a root becomes a key prefix; '.', '..' and empty segments are refused for option 'root'", () => {
    expect(rootToPrefix(undefined)).toBe("")
    expect(rootToPrefix("/")).toBe("")
    expect(rootToPrefix("/cluster")).toBe("cluster/")
    expect(rootToPrefix("a/b/")).toBe("a/b/")
    expect(() => rootToPrefix("a/../b")).toThrow("the root 'a/../b' has an empty, '.' or '..' segment")
    expect(() => rootToPrefix("a//b")).toThrow()
    try {
      rootToPrefix("./x")
      expect.unreachable()
    } catch (e) {
      expect((e as { key?: string }).key).toBe("root")
    }
  })

  it("an endpoint must be an http(s) URL without credentials", () => {
    expect(checkEndpointUrl("https://h:9/x", "write https://host").host).toBe("h:9")
    expect(() => checkEndpointUrl("h:9000", "write http://host:port")).toThrow("must be an http:// or https:// URL")
    expect(() => checkEndpointUrl("not a url", "write http://host:port")).toThrow("'not a url' is not a URL (write http://host:port)")
    expect(() => checkEndpointUrl("ftp://h", "x")).toThrow("must be an http:// or https:// URL")
    expect(() => checkEndpointUrl("http://u:p@h", "x")).toThrow("must not hold credentials")
  })

  it("a location names the bucket and the prefix, never more", () => {
    expect(describeBucketLocation("s3", "b", "")).toBe("s3://b")
    expect(describeBucketLocation("gs", "b", "a/b/")).toBe("gs://b/a/b")
  })
})

describe("makeFromSettings", () => {
  const context: StorageDriverContext = { source: "url", create: false, baseDir: ".", env: {} }
  const make = makeFromSettings(
    "mystore",
    (options: { readonly size: number }) => {
      if (options.size < 0) throw invalidOption("size", "must not be negative")
      if (options.size > 10) throw new Error("too large for this store")
      return options.size
    },
    () => Effect.sync(() => makeMemoryBlobStore()),
  )
  const open = (size: number) => Effect.scoped(make({ size }, context))

  it.effect("opens the store from the resolved settings", () =>
    Effect.gen(function* () {
      const store = yield* open(1)
      expect(store.driver).toBe("memory")
    }),
  )

  it.effect("an option error is InvalidConfig naming the option; another error keeps its message", () =>
    Effect.gen(function* () {
      const named = yield* Effect.flip(open(-1))
      expect(named).toMatchObject({
        reason: "InvalidConfig",
        driver: "mystore",
        operation: "open",
        detail: "option 'size': must not be negative",
      })
      expect((yield* Effect.flip(open(11))).detail).toBe("too large for this store")
    }),
  )
})

describe("bucketCalls", () => {
  const seen: Array<unknown> = []
  const calls = bucketCalls("mystore", "root/", (cause, failed) => {
    seen.push(failed)
    return new BlobStoreError({ reason: "Unknown", driver: "mystore", operation: failed.operation, key: failed.key, detail: String(cause) })
  })

  it.effect("names objects under the prefix; a key that breaks the rules is InvalidKey", () =>
    Effect.gen(function* () {
      expect(yield* calls.objectName("get", "a/b")).toBe("root/a/b")
      const error = yield* Effect.flip(calls.objectName("put", "../x"))
      expect(error).toMatchObject({ reason: "InvalidKey", driver: "mystore", operation: "put", key: "../x" })
    }),
  )

  it.live("a failed call goes through classify with the operation, the key and whether it was create-only", () =>
    Effect.gen(function* () {
      seen.length = 0
      expect(yield* calls.call("head", "k", async () => 7)).toBe(7)
      const error = yield* Effect.flip(calls.call("put", "k", () => Promise.reject(new Error("boom")), true))
      expect(error.detail).toBe("Error: boom")
      yield* Effect.flip(calls.call("list", undefined, () => Promise.reject(new Error("boom"))))
      expect(seen).toEqual([
        { operation: "put", key: "k", createOnly: true },
        { operation: "list", key: undefined, createOnly: false },
      ])
    }),
  )

  it.live("an interrupted call aborts the SDK request", () =>
    Effect.gen(function* () {
      let aborted = false
      const fiber = yield* Effect.forkChild(
        calls.call("get", "k", (signal) => new Promise<never>(() => signal.addEventListener("abort", () => (aborted = true)))),
      )
      yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(fiber)
      expect(aborted).toBe(true)
    }),
  )
})

describe("CloudErrors.make", () => {
  const service: CloudErrors.CloudService = { driver: "mystore", object: "object", bucket: "bucket", endpointOptions: "`endpoint_url`" }
  const call = { operation: "get", key: "a/b", service: "MyStore at http://h" }
  const errors = (said = "E: said", createOnly = false) => CloudErrors.make(service, { ...call, createOnly }, new Error("x"), said)

  it.each([
    [304, "PreconditionFailed", false],
    [404, "NotFound", false],
    [409, "Unknown", true],
    [412, "PreconditionFailed", false],
    [416, "RangeNotSatisfiable", false],
    [429, "RateLimited", true],
    [500, "Unavailable", true],
    [502, "Unavailable", true],
    [504, "Unavailable", true],
    [507, "Unknown", true],
    [400, "Unknown", false],
  ] as const)("HTTP %i -> %s, retryable %s", (status, reason, retryable) => {
    const error = errors().byStatus(status)
    expect(error.reason).toBe(reason)
    expect(error.isRetryable).toBe(retryable)
    expect(error).toMatchObject({ driver: "mystore", operation: "get", key: "a/b" })
  })

  it("a failed condition or a conflict of a create-only put means the object exists", () => {
    for (const status of [304, 409, 412]) expect(errors("E", true).byStatus(status).reason).toBe("AlreadyExists")
    expect(errors("E", true).preconditionFailed().detail).toBe("the object already exists [E]")
  })

  it("details name the service and end with what the service said", () => {
    expect(errors("SlowDown: please").slowDown().message).toBe(
      "mystore get 'a/b': RateLimited: MyStore at http://h asks to slow down [SlowDown: please]",
    )
    expect(errors().byStatus(404).detail).toBe("no such object (or no such bucket) [E: said]")
    expect(errors().byStatus(undefined).detail).toBe("unexpected failure [E: said]")
  })

  it("a service that cannot be reached says to check the endpoint; a broken connection is retried", () => {
    const refused = errors().unreachable("ECONNREFUSED")
    expect(refused).toMatchObject({ reason: "Unavailable", fix: "check `endpoint_url` and that the service is running" })
    expect(refused.detail).toContain("cannot reach MyStore at http://h (ECONNREFUSED)")
    expect(errors().unreachable("EAI_AGAIN").fix).toBeDefined()
    const reset = errors().unreachable("ECONNRESET")
    expect(reset.isRetryable).toBe(true)
    expect(reset.fix).toBeUndefined()
    expect(errors().unreachable("REQUEST_SEND_ERROR", true).fix).toContain("endpoint_url")
  })

  it("a checksum mismatch is retried; an aborted request is not", () => {
    expect(errors().checksumMismatch()).toMatchObject({ reason: "Unavailable", isRetryable: true })
    expect(errors().checksumMismatch().detail).toContain(CloudErrors.CHECKSUM_MISMATCH)
    expect(errors().aborted().isRetryable).toBe(false)
  })

  it("network codes: Node's, plus the SDK's own when given", () => {
    expect(CloudErrors.isNetworkErrorCode("ECONNRESET")).toBe(true)
    expect(CloudErrors.isNetworkErrorCode("UND_ERR_SOCKET")).toBe(false)
    expect(CloudErrors.isNetworkErrorCode("UND_ERR_SOCKET", ["UND_ERR_SOCKET"])).toBe(true)
    expect(CloudErrors.isNetworkErrorCode(undefined)).toBe(false)
  })

  it("a BlobStoreError is recognised by its tag (it may come from another copy of core)", () => {
    expect(CloudErrors.isBlobStoreError({ _tag: "BlobStoreError", reason: "Unavailable" })).toBe(true)
    expect(CloudErrors.isBlobStoreError(new Error("x"))).toBe(false)
  })
})
