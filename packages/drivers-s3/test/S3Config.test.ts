/**
 * The S3 driver's options: the `[storage.s3]` table (Databend's keys), `s3://`
 * URLs, defaults, and secrets that never show. No server needed.
 */
import { decodeDriverOptions, validateStorageDriver } from "@bendsave/core/StorageDriver"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { describe, expect, it } from "vitest"
import s3Driver, { resolveS3Settings, type S3Options, s3OptionsFromUrl } from "../src/index.ts"

const decode = (raw: unknown) => Effect.runPromise(decodeDriverOptions(s3Driver, raw))
const decodeError = (raw: unknown) => Effect.runPromise(Effect.flip(decodeDriverOptions(s3Driver, raw)))

describe("S3 driver definition", () => {
  it("is a valid storage driver for type s3 and scheme s3", async () => {
    const driver = await Effect.runPromise(validateStorageDriver(s3Driver, "@bendsave/drivers-s3"))
    expect(driver.name).toBe("s3")
    expect(driver.schemes).toEqual(["s3"])
    expect(driver.capabilities).toMatchObject({ conditionalPut: true, rangeRead: true, batchDelete: true, serverSideCopy: true })
  })
})

describe("[storage.s3] options", () => {
  it("decodes Databend's keys; the secret becomes Redacted", async () => {
    const options = await decode({
      bucket: "prod-data",
      root: "/cluster",
      endpoint_url: "http://127.0.0.1:9000",
      region: "us-east-1",
      access_key_id: "AK",
      secret_access_key: "SK-very-secret",
      enable_virtual_host_style: false,
    })
    expect(options.bucket).toBe("prod-data")
    expect(Redacted.isRedacted(options.secret_access_key)).toBe(true)
    expect(String(options.secret_access_key)).not.toContain("SK-very-secret")
    expect(JSON.stringify(options)).not.toContain("SK-very-secret")
  })

  it("reports an unknown key, a missing bucket and a wrong type with the option's name", async () => {
    expect(await decodeError({ bucket: "b", endpoint: "x" })).toMatchObject({ key: "endpoint", detail: "unknown option" })
    expect(await decodeError({ root: "x" })).toMatchObject({ key: "bucket", detail: "missing required option" })
    expect((await decodeError({ bucket: "b", enable_virtual_host_style: "yes" })).key).toBe("enable_virtual_host_style")
    expect((await decodeError({ bucket: "b", upload_checksum: "crc" })).key).toBe("upload_checksum")
  })

  it("never shows a secret that has the wrong type", async () => {
    const error = await decodeError({ bucket: "b", access_key_id: "AK", secret_access_key: 1234567890 })
    expect(error.key).toBe("secret_access_key")
    expect(`${error.message} ${error.fix}`).not.toContain("1234567890")
  })
})

describe("S3 settings", () => {
  const resolve = (options: Partial<S3Options>, env: Record<string, string> = {}) =>
    resolveS3Settings({ bucket: "b", ...options } as S3Options, env)

  it("defaults: region from AWS_REGION else us-east-1; path style with an endpoint, virtual host on AWS; sha256 checksums", () => {
    expect(resolve({}).region).toBe("us-east-1")
    expect(resolve({}, { AWS_REGION: "eu-west-3" }).region).toBe("eu-west-3")
    expect(resolve({}, { AWS_DEFAULT_REGION: "eu-west-2" }).region).toBe("eu-west-2")
    expect(resolve({}).forcePathStyle).toBe(false)
    expect(resolve({ endpoint_url: "http://127.0.0.1:9000" }).forcePathStyle).toBe(true)
    expect(resolve({ endpoint_url: "http://127.0.0.1:9000", enable_virtual_host_style: true }).forcePathStyle).toBe(false)
    expect(resolve({}).uploadChecksum).toBe("sha256")
    expect(resolve({}).credentials).toBeUndefined()
  })

  it("keys go in pairs; the endpoint must be an http(s) URL without credentials", () => {
    expect(() => resolve({ access_key_id: "AK" })).toThrow(/go together/)
    expect(() => resolve({ secret_access_key: Redacted.make("x") })).toThrow(/go together/)
    expect(() => resolve({ endpoint_url: "127.0.0.1:9000" })).toThrow()
    expect(() => resolve({ endpoint_url: "ftp://host" })).toThrow(/http/)
    expect(() => resolve({ endpoint_url: "http://user:pw@host" })).toThrow(/credentials/)
  })

  it("a root becomes a key prefix", () => {
    expect(resolve({}).prefix).toBe("")
    expect(resolve({ root: "/" }).prefix).toBe("")
    expect(resolve({ root: "/cluster" }).prefix).toBe("cluster/")
    expect(resolve({ root: "a/b/" }).prefix).toBe("a/b/")
    expect(() => resolve({ root: "a/../b" })).toThrow()
    expect(() => resolve({ root: "a//b" })).toThrow()
  })
})

describe("s3:// URLs", () => {
  const url = (text: string, env: Record<string, string> = {}) => s3OptionsFromUrl(new URL(text), env)

  it("bucket from the host, root from the path, settings from the query", async () => {
    const raw = url("s3://backups/prod/db?endpoint=http://127.0.0.1:18090&region=us-east-1&path_style=true&upload_checksum=md5")
    expect(raw).toEqual({
      bucket: "backups",
      root: "/prod/db",
      endpoint_url: "http://127.0.0.1:18090",
      region: "us-east-1",
      enable_virtual_host_style: false,
      upload_checksum: "md5",
    })
    expect((await decode(raw)).bucket).toBe("backups")
  })

  it("the endpoint may come from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL", () => {
    expect(url("s3://b/p", { AWS_ENDPOINT_URL: "http://e:1" }).endpoint_url).toBe("http://e:1")
    expect(url("s3://b/p", { AWS_ENDPOINT_URL: "http://e:1", AWS_ENDPOINT_URL_S3: "http://s3:2" }).endpoint_url).toBe("http://s3:2")
    expect(url("s3://b/p?endpoint=http://q:3", { AWS_ENDPOINT_URL: "http://e:1" }).endpoint_url).toBe("http://q:3")
  })

  it("refuses credentials in the URL, unknown parameters and a missing bucket", () => {
    expect(() => url("s3://AK:SECRET@bucket/p")).toThrow(/AWS_ACCESS_KEY_ID/)
    expect(() => url("s3://bucket/p?secret=x")).toThrow(/unknown query parameter 'secret'/)
    expect(() => url("s3:///p")).toThrow(/no bucket/)
    expect(() => url("s3://bucket/p?path_style=maybe")).toThrow(/true or false/)
  })
})
