/**
 * AzureConfig: the options of the Azure Blob driver, from a cluster file's
 * `[storage.azblob]` table (Databend's keys) or an `azblob://` repository URL.
 *
 * ```toml
 * [storage]
 * type = "azblob"
 * [storage.azblob]
 * container = "prod-data"
 * root = "/cluster"                                   # blob name prefix (optional)
 * account_name = "prodaccount"                        # endpoint https://<account>.blob.core.windows.net
 * endpoint_url = "http://127.0.0.1:10000/devstoreaccount1"   # optional (Azurite, sovereign clouds)
 * account_key = "..."                                 # or sas_token, or connection_string;
 *                                                     # none: DefaultAzureCredential (Entra ID)
 * ```
 *
 * Credentials, first found wins: `connection_string`, `account_key`,
 * `sas_token` in the table; for URLs (and tables without any) the
 * environment: AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY (with
 * AZURE_STORAGE_ACCOUNT), AZURE_STORAGE_SAS_TOKEN; else
 * `DefaultAzureCredential` (managed identity, workload identity, Azure CLI,
 * AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET). URLs take
 * `?endpoint=` and `?account=`. Secrets are `Redacted` and never printed.
 */
import * as CloudDriver from "@bendsave/core/CloudDriver"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

const Options = Schema.Struct({
  container: Schema.NonEmptyString,
  root: Schema.optional(Schema.String),
  endpoint_url: Schema.optional(Schema.NonEmptyString),
  account_name: Schema.optional(Schema.NonEmptyString),
  account_key: Schema.optional(Schema.RedactedFromValue(Schema.NonEmptyString)),
  sas_token: Schema.optional(Schema.RedactedFromValue(Schema.NonEmptyString)),
  connection_string: Schema.optional(Schema.RedactedFromValue(Schema.NonEmptyString)),
  upload_checksum: Schema.optional(Schema.Literals(["md5", "none"])),
})

export type AzureOptions = typeof Options.Type

export const AzureOptionsSchema = Schema.toStandardSchemaV1(Options, { parseOptions: { onExcessProperty: "error" } })

export const AZURE_SECRET_KEYS = ["account_key", "sas_token", "connection_string"] as const

export const AZURE_OPTIONS_HELP = [
  "container (required)",
  "root: blob name prefix",
  "account_name",
  "endpoint_url: the blob service URL (default https://<account_name>.blob.core.windows.net)",
  "account_key | sas_token | connection_string (else the environment, else DefaultAzureCredential)",
  'upload_checksum: "md5" | "none"',
]

/** `azblob://container/prefix?endpoint=...&account=...` → raw options (credentials come from the environment). */
export const azureOptionsFromUrl = (url: URL): Record<string, unknown> =>
  CloudDriver.bucketOptionsFromUrl(url, {
    bucketOption: "container",
    credentialsFrom: "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN",
    parameters: {
      endpoint: { option: "endpoint_url", aliases: ["endpoint_url"] },
      account: { option: "account_name", aliases: ["account_name"] },
      upload_checksum: {},
    },
  })

export type AzureCredentialSource =
  | { readonly kind: "connectionString"; readonly value: Redacted.Redacted<string>; readonly from: string }
  | { readonly kind: "accountKey"; readonly account: string; readonly key: Redacted.Redacted<string>; readonly from: string }
  | { readonly kind: "sas"; readonly token: Redacted.Redacted<string>; readonly from: string }
  | { readonly kind: "default"; readonly from: string }

export interface AzureSettings {
  readonly container: string
  /** Blob name prefix: "" or "a/b/". */
  readonly prefix: string
  /** The blob service URL, without a SAS query (undefined when a connection string gives it). */
  readonly endpoint: string | undefined
  readonly account: string | undefined
  readonly credential: AzureCredentialSource
  readonly uploadChecksum: "md5" | "none"
}

const field = (text: string, name: string): string | undefined =>
  text
    .split(";")
    .map((part) => part.trim())
    .find((part) => part.toLowerCase().startsWith(`${name.toLowerCase()}=`))
    ?.slice(name.length + 1)

/** Applies the credential precedence and defaults; throws an Error with a `key` for what cannot work. */
export const resolveAzureSettings = (options: AzureOptions, env: Readonly<Record<string, string | undefined>>): AzureSettings => {
  const given = [options.connection_string, options.account_key, options.sas_token].filter((x) => x !== undefined).length
  if (given > 1) throw CloudDriver.invalidOption("account_key", "give one of connection_string, account_key and sas_token")
  let credential: AzureCredentialSource
  let account = options.account_name
  if (options.connection_string !== undefined) {
    credential = { kind: "connectionString", value: options.connection_string, from: "connection_string in the cluster file" }
  } else if (options.account_key !== undefined) {
    if (account === undefined) throw CloudDriver.invalidOption("account_name", "account_key needs account_name")
    credential = { kind: "accountKey", account, key: options.account_key, from: "account_key in the cluster file" }
  } else if (options.sas_token !== undefined) {
    credential = { kind: "sas", token: options.sas_token, from: "sas_token in the cluster file" }
  } else if (env.AZURE_STORAGE_CONNECTION_STRING) {
    credential = {
      kind: "connectionString",
      value: Redacted.make(env.AZURE_STORAGE_CONNECTION_STRING),
      from: "AZURE_STORAGE_CONNECTION_STRING",
    }
  } else if (env.AZURE_STORAGE_KEY && (account ?? env.AZURE_STORAGE_ACCOUNT)) {
    account ??= env.AZURE_STORAGE_ACCOUNT
    credential = { kind: "accountKey", account: account as string, key: Redacted.make(env.AZURE_STORAGE_KEY), from: "AZURE_STORAGE_KEY" }
  } else if (env.AZURE_STORAGE_SAS_TOKEN) {
    credential = { kind: "sas", token: Redacted.make(env.AZURE_STORAGE_SAS_TOKEN), from: "AZURE_STORAGE_SAS_TOKEN" }
  } else {
    credential = { kind: "default", from: "DefaultAzureCredential" }
  }
  account ??= env.AZURE_STORAGE_ACCOUNT || undefined
  if (credential.kind === "connectionString") {
    account ??= field(Redacted.value(credential.value), "AccountName")
  }
  let endpoint = options.endpoint_url
  if (endpoint !== undefined) {
    const url = CloudDriver.checkEndpointUrl(endpoint, "write https://<account>.blob.core.windows.net")
    if (url.search !== "") throw CloudDriver.invalidOption("endpoint_url", "must not hold credentials or a SAS query (use sas_token)")
    endpoint = endpoint.replace(/\/+$/, "")
  } else if (credential.kind !== "connectionString") {
    if (account === undefined) {
      throw CloudDriver.invalidOption("account_name", "set account_name (or endpoint_url) so the blob service can be found")
    }
    endpoint = `https://${account}.blob.core.windows.net`
  }
  return {
    container: options.container,
    prefix: CloudDriver.rootToPrefix(options.root),
    endpoint,
    account,
    credential,
    uploadChecksum: options.upload_checksum ?? "md5",
  }
}

export const describeAzureLocation = (settings: AzureSettings): string =>
  CloudDriver.describeBucketLocation("azblob", settings.container, settings.prefix)

export const describeAzureService = (settings: AzureSettings): string => {
  const at =
    settings.endpoint ??
    (settings.credential.kind === "connectionString" ? blobEndpointOf(Redacted.value(settings.credential.value)) : undefined)
  return at === undefined ? "Azure Blob Storage" : `Azure Blob Storage at ${at}`
}

/** The blob endpoint a connection string names (no secret in it). */
export const blobEndpointOf = (connectionString: string): string | undefined => {
  const explicit = field(connectionString, "BlobEndpoint")
  if (explicit) return explicit.replace(/\/+$/, "")
  const account = field(connectionString, "AccountName")
  if (account === undefined) return undefined
  const protocol = field(connectionString, "DefaultEndpointsProtocol") ?? "https"
  const suffix = field(connectionString, "EndpointSuffix") ?? "core.windows.net"
  return `${protocol}://${account}.blob.${suffix}`
}
