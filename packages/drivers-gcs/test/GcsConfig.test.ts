/**
 * The GCS driver's options: `[storage.gcs]` (Databend's keys), gs:// URLs,
 * credentials and the emulator, and secrets that never show.
 */
import { decodeDriverOptions, validateStorageDriver } from "@bendsave/core/StorageDriver"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { describe, expect, it } from "vitest"
import gcsDriver, { describeGcsService, type GcsOptions, gcsOptionsFromUrl, resolveGcsSettings } from "../src/index.ts"

const resolve = (options: Partial<GcsOptions>, env: Record<string, string> = {}) =>
  resolveGcsSettings({ bucket: "b", ...options } as GcsOptions, env, "/etc/bendsave")

describe("GCS driver definition and options", () => {
  it("is a valid storage driver for type gcs and scheme gs; the service has batch delete", async () => {
    const driver = await Effect.runPromise(validateStorageDriver(gcsDriver, "@bendsave/drivers-gcs"))
    expect([driver.name, ...driver.schemes]).toEqual(["gcs", "gs"])
    expect(driver.capabilities.batchDelete).toBe(true)
  })

  it("batch delete is on for Google's endpoint, off for emulators and other endpoints unless asked for", () => {
    expect(resolve({}).batchDelete).toBe(true)
    expect(resolve({}, { STORAGE_EMULATOR_HOST: "127.0.0.1:18200" }).batchDelete).toBe(false)
    expect(resolve({ endpoint_url: "https://private.example" }).batchDelete).toBe(false)
    expect(resolve({ endpoint_url: "https://private.example", batch_delete: true }).batchDelete).toBe(true)
    expect(gcsOptionsFromUrl(new URL("gs://b/p?batch_delete=true")).batch_delete).toBe(true)
    expect(() => gcsOptionsFromUrl(new URL("gs://b/p?batch_delete=yes please"))).toThrow(/must be true or false/)
  })

  it("the credential (Databend: base64 of the key JSON) is Redacted and never shows", async () => {
    const key = Buffer.from(JSON.stringify({ type: "service_account", private_key: "PRIVATE" })).toString("base64")
    const options = await Effect.runPromise(decodeDriverOptions(gcsDriver, { bucket: "b", credential: key }))
    expect(JSON.stringify(options)).not.toContain(key)
    const settings = resolve({ credential: options.credential })
    expect(settings.credentials.kind).toBe("json")
    expect(() => resolve({ credential: Redacted.make("not json nor base64 json") })).toThrow(/not shown/)
  })
})

describe("GCS settings", () => {
  it("a key file resolves against the cluster file's directory; otherwise ADC; an emulator needs no credentials", () => {
    expect(resolve({ credential_path: "./sa.json" }).credentials).toEqual({ kind: "keyFile", path: "/etc/bendsave/sa.json" })
    expect(resolve({}).credentials.kind).toBe("default")
    expect(resolve({}, { GOOGLE_APPLICATION_CREDENTIALS: "/k.json" }).credentialFrom).toContain("/k.json")
    const emulator = resolve({}, { STORAGE_EMULATOR_HOST: "127.0.0.1:18200" })
    expect(emulator).toMatchObject({ endpoint: "http://127.0.0.1:18200", emulator: true, credentials: { kind: "none" } })
    expect(describeGcsService(emulator)).toBe("the GCS emulator at http://127.0.0.1:18200")
    expect(() => resolve({ credential_path: "a", credential: Redacted.make("{}") })).toThrow(/not both/)
  })
})

describe("gs:// URLs", () => {
  it("bucket from the host, root from the path, endpoint and project from the query", () => {
    expect(gcsOptionsFromUrl(new URL("gs://backups/prod?endpoint=http://127.0.0.1:18200&project=p"))).toEqual({
      bucket: "backups",
      root: "/prod",
      endpoint_url: "http://127.0.0.1:18200",
      project_id: "p",
    })
    expect(() => gcsOptionsFromUrl(new URL("gs://b/p?key=x"))).toThrow(/unknown query parameter 'key'/)
  })
})
