/**
 * The cloud storage servers of the integration tests (never mocked), as the
 * vitest global setup (test/global-setup-cloud.ts) started them. Each
 * accessor THROWS the reason when its server is not available, so a test that
 * needs it fails instead of being skipped.
 */
import { randomBytes } from "node:crypto"
import { inject } from "vitest"

export interface S3Server {
  readonly endpoint: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
}
export interface AzuriteServer {
  readonly connectionString: string
}
export interface GcsServer {
  /** http://127.0.0.1:port: what STORAGE_EMULATOR_HOST holds. */
  readonly emulatorHost: string
}

type Provided<T> = T | { readonly error: string }

declare module "vitest" {
  interface ProvidedContext {
    s3: Provided<S3Server>
    azurite: Provided<AzuriteServer>
    gcs: Provided<GcsServer>
  }
}

const get = <K extends "s3" | "azurite" | "gcs">(name: K) => {
  const provided = inject(name)
  if (provided === undefined) {
    throw new Error(`the cloud servers' global setup did not run: run the tests with \`npx vitest run\` from the repository root (vitest.config.ts)`)
  }
  if ("error" in provided) throw new Error(provided.error)
  return provided as Exclude<typeof provided, { readonly error: string }>
}

export const s3Server = (): S3Server => get("s3")
export const azuriteServer = (): AzuriteServer => get("azurite")
export const gcsServer = (): GcsServer => get("gcs")

/** A random lowercase name usable as a bucket or container name (3-63 chars). */
export const randomName = (label: string): string => `${label}-${randomBytes(6).toString("hex")}`
