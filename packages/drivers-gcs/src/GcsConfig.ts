/**
 * GcsConfig: the options of the Google Cloud Storage driver, from a cluster
 * file's `[storage.gcs]` table (Databend's keys) or a `gs://` repository URL.
 *
 * ```toml
 * [storage]
 * type = "gcs"
 * [storage.gcs]
 * bucket = "prod-data"
 * root = "/cluster"                       # object name prefix (optional)
 * credential_path = "./sa-key.json"       # or `credential` (Databend: the key JSON, base64);
 *                                         # none: Application Default Credentials
 * project_id = "my-project"               # optional
 * endpoint_url = "http://127.0.0.1:4443"  # optional: emulators, private endpoints
 * batch_delete = true                     # deleteMany through the JSON batch API (100 deletes per
 *                                         # request); default: true on Google's endpoint, false
 *                                         # on any other (emulators have no batch endpoint)
 * ```
 *
 * URLs take `?endpoint=`, `?project=` and `?batch_delete=`; credentials come from
 * GOOGLE_APPLICATION_CREDENTIALS or the other Application Default
 * Credentials, and STORAGE_EMULATOR_HOST points everything at an emulator
 * (no credentials then). Secrets are `Redacted` and never printed.
 */
import { isAbsolute, resolve } from "node:path"
import * as CloudDriver from "@bendsave/core/CloudDriver"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

const Options = Schema.Struct({
  bucket: Schema.NonEmptyString,
  root: Schema.optional(Schema.String),
  endpoint_url: Schema.optional(Schema.NonEmptyString),
  credential: Schema.optional(Schema.RedactedFromValue(Schema.NonEmptyString)),
  credential_path: Schema.optional(Schema.NonEmptyString),
  project_id: Schema.optional(Schema.NonEmptyString),
  upload_checksum: Schema.optional(Schema.Literals(["md5", "none"])),
  batch_delete: Schema.optional(Schema.Boolean),
})

export type GcsOptions = typeof Options.Type

export const GcsOptionsSchema = Schema.toStandardSchemaV1(Options, { parseOptions: { onExcessProperty: "error" } })

export const GCS_SECRET_KEYS = ["credential"] as const

export const GCS_OPTIONS_HELP = [
  "bucket (required)",
  "root: object name prefix",
  "credential_path: a service account key file (JSON)",
  "credential: the key JSON, base64-encoded (Databend's form)",
  "project_id",
  "endpoint_url: http(s)://host:port of an emulator or private endpoint",
  'upload_checksum: "md5" | "none"',
  "batch_delete: true | false (deleteMany through the JSON batch API; default true on Google's endpoint only)",
]

/** `gs://bucket/prefix?endpoint=...&project=...` → raw options. */
export const gcsOptionsFromUrl = (url: URL): Record<string, unknown> =>
  CloudDriver.bucketOptionsFromUrl(url, {
    bucketOption: "bucket",
    credentialsFrom: "set GOOGLE_APPLICATION_CREDENTIALS (or use gcloud's application default credentials)",
    parameters: {
      endpoint: { option: "endpoint_url", aliases: ["endpoint_url"] },
      project: { option: "project_id", aliases: ["project_id"] },
      upload_checksum: {},
      batch_delete: { type: "boolean" },
    },
  })

export interface GcsSettings {
  readonly bucket: string
  /** Object name prefix: "" or "a/b/". */
  readonly prefix: string
  /** The API endpoint (an emulator's, or a private one); undefined: Google's. */
  readonly endpoint: string | undefined
  readonly emulator: boolean
  readonly projectId: string | undefined
  readonly credentials:
    | { readonly kind: "keyFile"; readonly path: string }
    | { readonly kind: "json"; readonly json: Redacted.Redacted<string> }
    | { readonly kind: "default" }
    | { readonly kind: "none" }
  /** Where the credentials came from, for messages. */
  readonly credentialFrom: string
  readonly uploadChecksum: "md5" | "none"
  /** deleteMany through the JSON batch API (Google's endpoint has it; emulators do not). */
  readonly batchDelete: boolean
}

/** Applies defaults; relative key files resolve against `baseDir`. Throws an Error with a `key` for what cannot work. */
export const resolveGcsSettings = (
  options: GcsOptions,
  env: Readonly<Record<string, string | undefined>>,
  baseDir: string,
): GcsSettings => {
  if (options.credential !== undefined && options.credential_path !== undefined) {
    throw CloudDriver.invalidOption("credential", "give credential or credential_path, not both")
  }
  let endpoint = options.endpoint_url ?? (env.STORAGE_EMULATOR_HOST || undefined)
  const emulator = options.endpoint_url === undefined && endpoint !== undefined
  if (endpoint !== undefined) {
    if (!/^https?:\/\//.test(endpoint)) endpoint = `http://${endpoint}`
    CloudDriver.checkEndpointUrl(endpoint, "write http://host:port")
    endpoint = endpoint.replace(/\/+$/, "")
  }
  let credentials: GcsSettings["credentials"]
  let credentialFrom: string
  if (options.credential !== undefined) {
    let json: string
    const raw = Redacted.value(options.credential).trim()
    try {
      json = raw.startsWith("{") ? raw : Buffer.from(raw, "base64").toString("utf8")
      JSON.parse(json)
    } catch {
      throw CloudDriver.invalidOption(
        "credential",
        "is neither a service account key (JSON) nor its base64 encoding (the value is not shown)",
      )
    }
    credentials = { kind: "json", json: Redacted.make(json) }
    credentialFrom = "credential in the cluster file"
  } else if (options.credential_path !== undefined) {
    credentials = {
      kind: "keyFile",
      path: isAbsolute(options.credential_path) ? options.credential_path : resolve(baseDir, options.credential_path),
    }
    credentialFrom = `the key file ${credentials.path}`
  } else if (endpoint !== undefined) {
    // Emulators and private endpoints given without credentials: no authentication.
    credentials = { kind: "none" }
    credentialFrom = "no credentials (emulator)"
  } else {
    credentials = { kind: "default" }
    credentialFrom = env.GOOGLE_APPLICATION_CREDENTIALS
      ? `GOOGLE_APPLICATION_CREDENTIALS (${env.GOOGLE_APPLICATION_CREDENTIALS})`
      : "Application Default Credentials"
  }
  return {
    bucket: options.bucket,
    prefix: CloudDriver.rootToPrefix(options.root),
    endpoint,
    emulator,
    projectId: options.project_id ?? (env.GOOGLE_CLOUD_PROJECT || env.GCLOUD_PROJECT || undefined),
    credentials,
    credentialFrom,
    uploadChecksum: options.upload_checksum ?? "md5",
    batchDelete: options.batch_delete ?? endpoint === undefined,
  }
}

export const describeGcsLocation = (settings: GcsSettings): string =>
  CloudDriver.describeBucketLocation("gs", settings.bucket, settings.prefix)

export const describeGcsService = (settings: GcsSettings): string =>
  settings.endpoint === undefined
    ? "Google Cloud Storage"
    : settings.emulator
      ? `the GCS emulator at ${settings.endpoint}`
      : `Google Cloud Storage at ${settings.endpoint}`
