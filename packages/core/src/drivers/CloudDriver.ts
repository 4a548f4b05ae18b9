/**
 * CloudDriver: what the drivers of bucket-based object storage services (the
 * built-in S3, GCS and Azure Blob drivers, and plugins for other services)
 * share between their options and their driver definition:
 *
 * - `bucketOptionsFromUrl`: `scheme://bucket/root?param=value` → raw options,
 *   from a declared table of query parameters (credentials never in the URL);
 * - `rootToPrefix`, `checkEndpointUrl`, `describeBucketLocation`: the settings
 *   every such driver resolves the same way;
 * - `invalidOption` and `makeFromSettings`: options resolve to settings in a
 *   plain function that throws `invalidOption(key, message)` for what cannot
 *   work; `makeFromSettings` turns that into the definition's `make`, with the
 *   error as an `InvalidConfig` BlobStoreError naming the option;
 * - `bucketCalls`: inside the store, the key check of every operation and the
 *   SDK call (aborted on interruption) whose failure the driver's
 *   `classifyError` maps.
 *
 * ```ts
 * import * as CloudDriver from "@bendsave/core/CloudDriver"
 *
 * const driver: StorageDriver<MyOptions> = {
 *   name: "mystore", schemes: ["mystore"], configSchema, capabilities,
 *   fromUrl: (url) =>
 *     CloudDriver.bucketOptionsFromUrl(url, {
 *       bucketOption: "bucket",
 *       credentialsFrom: "set MYSTORE_KEY",
 *       parameters: { endpoint: { option: "endpoint_url" } },
 *     }),
 *   make: CloudDriver.makeFromSettings("mystore", (options, context) => resolveMySettings(options, context.env), makeMyStore),
 * }
 * ```
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type BlobStore, BlobStoreError, type BlobStoreErrorReason, keyProblem } from "../BlobStore.ts"
import type { StorageDriverContext } from "../StorageDriver.ts"

// ---------------------------------------------------------------------------
// Option errors and the definition's `make`
// ---------------------------------------------------------------------------

/** An Error about one option (`key`), for settings resolvers to throw; `makeFromSettings` names the option. */
export const invalidOption = (key: string, message: string): Error & { readonly key: string } => Object.assign(new Error(message), { key })

/**
 * The `make` of a driver definition whose options first resolve to settings
 * (`resolve`, which throws `invalidOption(...)` or any Error for what cannot
 * work) and then open a store (`open`). A thrown error becomes an
 * `InvalidConfig` BlobStoreError: "option '<key>': <message>".
 */
export const makeFromSettings =
  <Options, Settings>(
    driver: string,
    resolve: (options: Options, context: StorageDriverContext) => Settings,
    open: (settings: Settings) => Effect.Effect<BlobStore, BlobStoreError, Scope.Scope>,
  ) =>
  (options: Options, context: StorageDriverContext): Effect.Effect<BlobStore, BlobStoreError, Scope.Scope> =>
    Effect.flatMap(
      Effect.try({
        try: () => resolve(options, context),
        catch: (e) => {
          const key = (e as { key?: unknown } | undefined)?.key
          return new BlobStoreError({
            reason: "InvalidConfig",
            driver,
            operation: "open",
            detail: `${typeof key === "string" ? `option '${key}': ` : ""}${e instanceof Error ? e.message : String(e)}`,
          })
        },
      }),
      open,
    )

// ---------------------------------------------------------------------------
// Repository URLs
// ---------------------------------------------------------------------------

/** A query parameter of a repository URL and the option it sets. */
export interface UrlParameter {
  /** The option it sets; default: the parameter's own name. */
  readonly option?: string
  /** Other names it is accepted under (the option's name, say). */
  readonly aliases?: ReadonlyArray<string>
  /** "boolean": true/false (also 1/0, yes/no); `negate` sets the option to the opposite. Default: the string as given. */
  readonly type?: "string" | "boolean"
  readonly negate?: boolean
}

export interface BucketUrlSpec {
  /** The option the URL's host names: "bucket", "container". */
  readonly bucketOption: string
  /** Where credentials come from instead, for the refusal of credentials in the URL: "set AWS_ACCESS_KEY_ID and ...". */
  readonly credentialsFrom: string
  /** The query parameters, by name; any other is refused, naming these. */
  readonly parameters: Readonly<Record<string, UrlParameter>>
}

const booleanParameter = (name: string, value: string): boolean => {
  if (["true", "1", "yes"].includes(value)) return true
  if (["false", "0", "no"].includes(value)) return false
  throw new Error(`query parameter '${name}' must be true or false (got '${value}')`)
}

/**
 * `scheme://bucket/root?param=value` → raw options for the driver's schema:
 * the bucket option from the host, `root` from the path, settings from the
 * declared query parameters. Throws an Error (shown to the user) for
 * credentials in the URL, a missing bucket, or an unknown parameter.
 */
export const bucketOptionsFromUrl = (url: URL, spec: BucketUrlSpec): Record<string, unknown> => {
  const scheme = url.protocol.replace(/:$/, "")
  if (url.username !== "" || url.password !== "") throw new Error(`credentials do not belong in the URL: ${spec.credentialsFrom}`)
  if (url.hostname === "") {
    throw new Error(`the URL names no ${spec.bucketOption}: write ${scheme}://<${spec.bucketOption}>/<prefix>`)
  }
  const options: Record<string, unknown> = { [spec.bucketOption]: decodeURIComponent(url.hostname), root: decodeURIComponent(url.pathname) }
  const byName = new Map<string, readonly [string, UrlParameter]>()
  for (const [name, parameter] of Object.entries(spec.parameters)) {
    for (const alias of [name, ...(parameter.aliases ?? [])]) byName.set(alias, [name, parameter])
  }
  for (const [name, value] of url.searchParams) {
    const found = byName.get(name)
    if (found === undefined) {
      const known = Object.keys(spec.parameters).join(", ")
      throw new Error(`unknown query parameter '${name}' (known: ${known}; credentials come from the environment)`)
    }
    const [primary, parameter] = found
    options[parameter.option ?? primary] =
      parameter.type === "boolean" ? booleanParameter(name, value) !== (parameter.negate === true) : value
  }
  return options
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/** Normalises a root ("/a/b/", "a/b") to a key prefix ("" or "a/b/"); throws `invalidOption("root", ...)` on '.', '..' or empty segments. */
export const rootToPrefix = (root: string | undefined): string => {
  const trimmed = (root ?? "").replace(/^\/+/, "").replace(/\/+$/, "")
  if (trimmed === "") return ""
  for (const segment of trimmed.split("/")) {
    if (segment === "" || segment === "." || segment === "..") {
      throw invalidOption("root", `the root '${root}' has an empty, '.' or '..' segment`)
    }
  }
  return `${trimmed}/`
}

/**
 * Checks an `endpoint_url` option: an http:// or https:// URL without
 * credentials in it. `example` completes the message of a value that is no
 * URL at all ("write http://host:port"). Throws `invalidOption(key, ...)`.
 */
export const checkEndpointUrl = (value: string, example: string, key = "endpoint_url"): URL => {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw invalidOption(key, `'${value}' is not a URL (${example})`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw invalidOption(key, "must be an http:// or https:// URL")
  if (url.username !== "" || url.password !== "") throw invalidOption(key, "must not hold credentials")
  return url
}

/** Where a store lives, for `location` and messages (never a secret): `scheme://bucket` or `scheme://bucket/prefix`. */
export const describeBucketLocation = (scheme: string, bucket: string, prefix: string): string =>
  prefix === "" ? `${scheme}://${bucket}` : `${scheme}://${bucket}/${prefix.replace(/\/$/, "")}`

// ---------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------

/** The call a failure came from, for the driver's `classifyError` (which adds what it knows of the store). */
export interface FailedCall {
  readonly operation: string
  readonly key: string | undefined
  readonly createOnly: boolean
}

/** What a store over one bucket and key prefix does in every operation (see `bucketCalls`). */
export interface BucketCalls {
  /** An error the driver finds itself (no SDK error behind it). */
  readonly fail: (reason: BlobStoreErrorReason, operation: string, key: string | undefined, detail: string) => BlobStoreError
  /** The service's name of `key` (prefix + key), or InvalidKey when the key breaks the rules of `keyProblem`. */
  readonly objectName: (operation: string, key: string) => Effect.Effect<string, BlobStoreError>
  /**
   * Runs one SDK call with a signal that aborts it when the fiber is
   * interrupted; a failure goes through `classify` (a create-only put says so:
   * a failed condition then means the object exists).
   */
  readonly call: <A>(
    operation: string,
    key: string | undefined,
    run: (signal: AbortSignal) => Promise<A>,
    createOnly?: boolean,
  ) => Effect.Effect<A, BlobStoreError>
}

/** The key checks and SDK calls of a `driver` store whose objects are named `prefix` + key. */
export const bucketCalls = (driver: string, prefix: string, classify: (cause: unknown, call: FailedCall) => BlobStoreError): BucketCalls => {
  const fail = (reason: BlobStoreErrorReason, operation: string, key: string | undefined, detail: string) =>
    new BlobStoreError({ reason, driver, operation, key, detail })
  return {
    fail,
    objectName: (operation, key) => {
      const problem = keyProblem(key)
      return problem === undefined ? Effect.succeed(prefix + key) : Effect.fail(fail("InvalidKey", operation, key, problem))
    },
    call: (operation, key, run, createOnly = false) =>
      Effect.tryPromise({ try: run, catch: (cause) => classify(cause, { operation, key, createOnly }) }),
  }
}
