/**
 * S3Config: the options of the S3 driver, from a cluster file's
 * `[storage.s3]` table (Databend's keys) or from an `s3://` repository URL.
 *
 * ```toml
 * [storage]
 * type = "s3"
 * [storage.s3]
 * bucket = "prod-data"
 * root = "/cluster"                        # key prefix inside the bucket (optional)
 * endpoint_url = "http://127.0.0.1:9000"   # S3-compatible servers (optional; AWS otherwise)
 * region = "us-east-1"                     # optional: AWS_REGION, else us-east-1
 * access_key_id = "..."                    # optional: the SDK's default credential chain otherwise
 * secret_access_key = "..."
 * enable_virtual_host_style = false        # default: path style with endpoint_url, virtual host on AWS
 * upload_checksum = "sha256"               # "sha256" (x-amz-checksum-sha256) | "md5" (Content-MD5) | "none"
 * lean_requests = true                     # with endpoint_url: block PUT/GET/HEAD as plain signed requests
 * ```
 *
 * `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1` takes
 * the same settings as query parameters (`endpoint`, `region`,
 * `virtual_host_style`, `upload_checksum`) and credentials only from the
 * environment (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
 * `AWS_SESSION_TOKEN`, `AWS_PROFILE`, instance roles: the SDK's default
 * chain); `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` give the endpoint when
 * the URL does not. Secrets are `Redacted` and never printed.
 */
import * as CloudDriver from "@bendsave/core/CloudDriver"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

const Options = Schema.Struct({
  bucket: Schema.NonEmptyString,
  root: Schema.optional(Schema.String),
  endpoint_url: Schema.optional(Schema.NonEmptyString),
  region: Schema.optional(Schema.NonEmptyString),
  access_key_id: Schema.optional(Schema.NonEmptyString),
  secret_access_key: Schema.optional(Schema.RedactedFromValue(Schema.String)),
  session_token: Schema.optional(Schema.RedactedFromValue(Schema.String)),
  enable_virtual_host_style: Schema.optional(Schema.Boolean),
  upload_checksum: Schema.optional(Schema.Literals(["sha256", "md5", "none"])),
  lean_requests: Schema.optional(Schema.Boolean),
})

/** The decoded `[storage.s3]` table. */
export type S3Options = typeof Options.Type

/** Standard Schema of the options (unknown keys are errors). */
export const S3OptionsSchema = Schema.toStandardSchemaV1(Options, { parseOptions: { onExcessProperty: "error" } })

export const S3_SECRET_KEYS = ["secret_access_key", "session_token"] as const

export const S3_OPTIONS_HELP = [
  "bucket (required)",
  "root: key prefix in the bucket",
  "endpoint_url: http(s)://host:port of an S3-compatible server",
  "region",
  "access_key_id + secret_access_key (else the AWS SDK's default credential chain)",
  "session_token",
  "enable_virtual_host_style: true | false",
  'upload_checksum: "sha256" | "md5" | "none"',
  "lean_requests: true | false (S3-compatible servers: send block PUT/GET/HEAD without the SDK's command stack)",
]

/** `s3://bucket/prefix?endpoint=...&region=...` → raw options (validated by the schema afterwards). */
export const s3OptionsFromUrl = (url: URL, env: Readonly<Record<string, string | undefined>>): Record<string, unknown> => {
  const options = CloudDriver.bucketOptionsFromUrl(url, {
    bucketOption: "bucket",
    credentialsFrom: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or use a profile or role)",
    parameters: {
      endpoint: { option: "endpoint_url", aliases: ["endpoint_url"] },
      region: {},
      virtual_host_style: { option: "enable_virtual_host_style", aliases: ["enable_virtual_host_style"], type: "boolean" },
      path_style: { option: "enable_virtual_host_style", type: "boolean", negate: true },
      upload_checksum: {},
      lean_requests: { type: "boolean" },
    },
  })
  const envEndpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL
  if (options.endpoint_url === undefined && envEndpoint) options.endpoint_url = envEndpoint
  return options
}

/** Everything the store needs, resolved: defaults applied, root normalised. */
export interface S3Settings {
  readonly bucket: string
  /** Key prefix inside the bucket: "" or "a/b/" (no leading '/', one trailing '/'). */
  readonly prefix: string
  readonly endpoint: string | undefined
  readonly region: string
  readonly forcePathStyle: boolean
  readonly credentials:
    | {
        readonly accessKeyId: string
        readonly secretAccessKey: Redacted.Redacted<string>
        readonly sessionToken?: Redacted.Redacted<string>
      }
    | undefined
  readonly uploadChecksum: "sha256" | "md5" | "none"
  /** With a custom endpoint and path style: block requests without the SDK's command stack (S3LeanRequests.ts). */
  readonly leanRequests: boolean
}

/** Applies defaults; throws an Error naming the option for combinations the schema cannot express. */
export const resolveS3Settings = (options: S3Options, env: Readonly<Record<string, string | undefined>>): S3Settings => {
  if (options.endpoint_url !== undefined) CloudDriver.checkEndpointUrl(options.endpoint_url, "write http://host:port or https://host")
  if ((options.access_key_id === undefined) !== (options.secret_access_key === undefined)) {
    const missing = options.access_key_id === undefined ? "access_key_id" : "secret_access_key"
    throw CloudDriver.invalidOption(
      missing,
      "access_key_id and secret_access_key go together: set both, or neither to use the SDK's default credential chain",
    )
  }
  return {
    bucket: options.bucket,
    prefix: CloudDriver.rootToPrefix(options.root),
    endpoint: options.endpoint_url,
    region: options.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || "us-east-1"),
    forcePathStyle:
      options.enable_virtual_host_style === undefined ? options.endpoint_url !== undefined : !options.enable_virtual_host_style,
    credentials:
      options.access_key_id !== undefined && options.secret_access_key !== undefined
        ? {
            accessKeyId: options.access_key_id,
            secretAccessKey: options.secret_access_key,
            ...(options.session_token === undefined ? {} : { sessionToken: options.session_token }),
          }
        : undefined,
    uploadChecksum: options.upload_checksum ?? "sha256",
    leanRequests: options.lean_requests ?? true,
  }
}

/** Where the store lives, for messages and `location` (never a secret). */
export const describeS3Location = (settings: S3Settings): string =>
  CloudDriver.describeBucketLocation("s3", settings.bucket, settings.prefix)

export const describeS3Service = (settings: S3Settings): string =>
  settings.endpoint === undefined
    ? `Amazon S3 (region ${settings.region})`
    : `the S3 server at ${settings.endpoint} (region ${settings.region})`
