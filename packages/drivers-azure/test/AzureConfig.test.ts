/**
 * The Azure driver's options: `[storage.azblob]` (Databend's keys), azblob://
 * URLs, the credential precedence, and secrets that never show.
 */
import { decodeDriverOptions, validateStorageDriver } from "@bendsave/core/StorageDriver"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { describe, expect, it } from "vitest"
import azureDriver, { type AzureOptions, azureOptionsFromUrl, blobEndpointOf, describeAzureService, resolveAzureSettings } from "../src/index.ts"

const resolve = (options: Partial<AzureOptions>, env: Record<string, string> = {}) => resolveAzureSettings({ container: "c", ...options } as AzureOptions, env)

describe("Azure driver definition and options", () => {
  it("is a valid storage driver for type and scheme azblob", async () => {
    const driver = await Effect.runPromise(validateStorageDriver(azureDriver, "@bendsave/drivers-azure"))
    expect([driver.name, ...driver.schemes]).toEqual(["azblob", "azblob"])
  })

  it("decodes Databend's keys; secrets become Redacted and never show, even with the wrong type", async () => {
    const options = await Effect.runPromise(decodeDriverOptions(azureDriver, { container: "c", account_name: "acct", account_key: "S3CRET==" }))
    expect(Redacted.isRedacted(options.account_key)).toBe(true)
    expect(JSON.stringify(options)).not.toContain("S3CRET")
    const error = await Effect.runPromise(Effect.flip(decodeDriverOptions(azureDriver, { container: "c", account_key: 42424242 })))
    expect(error.key).toBe("account_key")
    expect(error.message).not.toContain("42424242")
    const unknown = await Effect.runPromise(Effect.flip(decodeDriverOptions(azureDriver, { container: "c", bucket: "x" })))
    expect(unknown).toMatchObject({ key: "bucket", detail: "unknown option" })
  })
})

describe("Azure settings", () => {
  it("credential precedence: the table, then the environment, then DefaultAzureCredential", () => {
    expect(resolve({ account_name: "a", account_key: Redacted.make("k") }).credential.kind).toBe("accountKey")
    expect(resolve({ account_name: "a", sas_token: Redacted.make("sv=x") }).credential.kind).toBe("sas")
    expect(resolve({ connection_string: Redacted.make("AccountName=a;AccountKey=k") }).credential.kind).toBe("connectionString")
    expect(resolve({}, { AZURE_STORAGE_CONNECTION_STRING: "AccountName=a;AccountKey=k" }).credential.from).toBe("AZURE_STORAGE_CONNECTION_STRING")
    const fromEnv = resolve({}, { AZURE_STORAGE_ACCOUNT: "envacct", AZURE_STORAGE_KEY: "k" })
    expect(fromEnv.credential.kind).toBe("accountKey")
    expect(fromEnv.endpoint).toBe("https://envacct.blob.core.windows.net")
    expect(resolve({ account_name: "a" }).credential.kind).toBe("default")
  })

  it("needs an account or endpoint to find the service; one credential at a time; account_key needs account_name", () => {
    expect(() => resolve({})).toThrow(/account_name/)
    expect(() => resolve({ account_key: Redacted.make("k") })).toThrow(/account_name/)
    expect(() => resolve({ account_name: "a", account_key: Redacted.make("k"), sas_token: Redacted.make("s") })).toThrow(/one of/)
    expect(() => resolve({ account_name: "a", endpoint_url: "https://a.blob.core.windows.net?sv=1" })).toThrow(/SAS/)
  })

  it("the service is described without secrets", () => {
    const settings = resolve({ connection_string: Redacted.make("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=S3CRET;EndpointSuffix=core.windows.net") })
    expect(describeAzureService(settings)).toBe("Azure Blob Storage at https://acct.blob.core.windows.net")
    expect(blobEndpointOf("AccountName=x;AccountKey=y;BlobEndpoint=http://127.0.0.1:10000/x/")).toBe("http://127.0.0.1:10000/x")
  })
})

describe("azblob:// URLs", () => {
  it("container from the host, root from the path, endpoint and account from the query", () => {
    expect(azureOptionsFromUrl(new URL("azblob://backups/prod?endpoint=http://127.0.0.1:18300/devstoreaccount1&account=devstoreaccount1"))).toEqual({
      container: "backups",
      root: "/prod",
      endpoint_url: "http://127.0.0.1:18300/devstoreaccount1",
      account_name: "devstoreaccount1",
    })
  })

  it("refuses credentials in the URL and unknown parameters", () => {
    expect(() => azureOptionsFromUrl(new URL("azblob://acct:key@c/p"))).toThrow(/AZURE_STORAGE_CONNECTION_STRING/)
    expect(() => azureOptionsFromUrl(new URL("azblob://c/p?sig=abc"))).toThrow(/unknown query parameter 'sig'/)
  })
})
