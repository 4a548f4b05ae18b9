/**
 * StorageDriver: the plugin point for storage. A storage driver is a module
 * whose default export is a `StorageDriver` definition: its name, the URL
 * schemes it serves, a schema for its options, its declared capabilities and
 * how to open a BlobStore (an Effect, or a Layer providing `BlobStoreService`).
 *
 * The same definition serves both places a store is named:
 * - a cluster file, `[storage] type = "<name or module>"` with the options in
 *   `[storage.<name>]` (Databend's keys for the built-in cloud drivers);
 * - a repository URL, `<scheme>://...`, which `fromUrl` turns into the same
 *   options (query parameters for settings, credentials from the environment).
 *
 * Built in: `fs` and `memory` live in core; `s3`, `gcs` and `azblob` live in
 * the packages `@bendsave/drivers-s3`, `-gcs` and `-azure`, imported the first
 * time they are needed (so a local cluster never loads a cloud SDK). Plugins
 * are modules named by a path (`./drivers/my-store.js`, relative to the
 * cluster file) or a package name (`bendsave-driver-foo`), or registered for
 * their URL schemes with `registerStorageDriver` (the CLI's `--driver`).
 * Everything loaded is validated before use: a module without a well-formed
 * default export is refused with a message saying what is missing.
 *
 * Drivers only move bytes. Retry with backoff, concurrency limits and
 * bandwidth limits are wrappers core puts around every store a driver opens
 * (`StorageLimits`), never code inside a driver.
 */
import { createRequire } from "node:module"
import { isAbsolute, join, resolve } from "node:path"
import process from "node:process"
import { pathToFileURL } from "node:url"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { StandardSchemaV1 } from "effect/StandardSchema"
import type { BlobStore, BlobStoreError, Capabilities } from "./BlobStore.ts"

/** The service a driver's `layer` provides: one opened BlobStore. */
export class BlobStoreService extends Context.Service<BlobStoreService, BlobStore>()("@bendsave/core/BlobStore") {}

/** What a driver gets besides its options when it opens a store. */
export interface StorageDriverContext {
  /** Where the store is named: a cluster file's [storage] table, or a repository URL. */
  readonly source: "cluster" | "url"
  /** Create what is missing where that is the driver's job (a directory); cloud drivers never create buckets. */
  readonly create: boolean
  /** The directory relative paths in the options resolve against (the cluster file's, or the working directory). */
  readonly baseDir: string
  /** The environment to read credentials from (process.env unless a test says otherwise). */
  readonly env: Readonly<Record<string, string | undefined>>
}

/**
 * A storage driver definition: what a driver module default-exports.
 *
 * `Options` is what `configSchema` decodes: secrets in it should be
 * `Redacted` so they never print.
 */
export interface StorageDriver<Options = unknown> {
  /** Short lowercase name, used as `[storage] type` and as the options table `[storage.<name>]`. */
  readonly name: string
  /** URL schemes without ':' (e.g. ["s3"]); may be empty for a driver used only in cluster files. */
  readonly schemes: ReadonlyArray<string>
  /**
   * Validates the options table (cluster file) or what `fromUrl` returned: any
   * Standard Schema (Effect: `Schema.toStandardSchemaV1(schema)`; zod and
   * valibot work too). Issues are reported with the key path.
   */
  readonly configSchema: StandardSchemaV1<unknown, Options>
  /** Option keys whose values must never be shown, even when they have the wrong type. */
  readonly secretKeys?: ReadonlyArray<string>
  /** What the stores of this driver can do (a store's own `capabilities` must agree). */
  readonly capabilities: Capabilities
  /** One line per option, shown when an option is unknown or wrong (e.g. "bucket: the bucket name"). */
  readonly optionsHelp?: ReadonlyArray<string>
  /**
   * Turns a repository URL into raw options for `configSchema`. Throw an
   * Error (its message is shown) for a URL the driver cannot use.
   */
  readonly fromUrl?: (url: URL, env: Readonly<Record<string, string | undefined>>) => Record<string, unknown>
  /** Opens a store; resources (clients, sockets) are released when the scope closes. Give `make` or `layer`. */
  readonly make?: (options: Options, context: StorageDriverContext) => Effect.Effect<BlobStore, BlobStoreError, Scope.Scope>
  /** Opens a store as a Layer providing `BlobStoreService`. Give `make` or `layer`. */
  readonly layer?: (options: Options, context: StorageDriverContext) => Layer.Layer<BlobStoreService, BlobStoreError>
}

/** A driver module or definition that cannot be loaded or used, or options it refuses. */
export class StorageDriverError extends Schema.TaggedError<StorageDriverError>()("StorageDriverError", {
  /** The driver name, module specifier or URL scheme concerned. */
  driver: Schema.String,
  /** For option problems: the option key path (e.g. "bucket"); empty otherwise. */
  key: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return this.key === ""
      ? `storage driver '${this.driver}': ${this.detail}`
      : `storage driver '${this.driver}': option '${this.key}': ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

const NAME = /^[a-z][a-z0-9_-]*$/
const SCHEME = /^[a-z][a-z0-9+.-]*$/
const booleanCapabilities = ["conditionalPut", "rangeRead", "batchDelete", "serverSideCopy"] as const

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** What is wrong with a would-be driver definition, or undefined when it is well formed. */
export const storageDriverProblem = (value: unknown): string | undefined => {
  if (!isRecord(value))
    return "the default export is not an object (export default a driver definition: { name, schemes, configSchema, capabilities, make })"
  if (typeof value.name !== "string" || !NAME.test(value.name)) return "`name` must be a lowercase word (letters, digits, '-', '_')"
  if (!Array.isArray(value.schemes) || value.schemes.some((s) => typeof s !== "string" || !SCHEME.test(s))) {
    return "`schemes` must be an array of URL schemes without ':' (e.g. [\"mystore\"]), possibly empty"
  }
  const schema = value.configSchema
  // Schemas may be functions with properties (Effect's are).
  const standard = typeof schema === "function" || isRecord(schema) ? (schema as { "~standard"?: unknown })["~standard"] : undefined
  if (!isRecord(standard) || typeof standard.validate !== "function") {
    return "`configSchema` must be a Standard Schema (with Effect: Schema.toStandardSchemaV1(Schema.Struct({...})))"
  }
  const caps = value.capabilities
  if (!isRecord(caps)) return "`capabilities` must be an object { conditionalPut, rangeRead, batchDelete, serverSideCopy, maxObjectSize }"
  for (const cap of booleanCapabilities) {
    if (typeof caps[cap] !== "boolean") return `\`capabilities.${cap}\` must be true or false`
  }
  if (typeof caps.maxObjectSize !== "number" || !(caps.maxObjectSize > 0))
    return "`capabilities.maxObjectSize` must be a positive number of bytes"
  if (typeof value.make !== "function" && typeof value.layer !== "function")
    return "the definition needs `make(options, context)` or `layer(options, context)`"
  if (value.fromUrl !== undefined && typeof value.fromUrl !== "function") return "`fromUrl` must be a function (url, env) => options"
  if (value.secretKeys !== undefined && (!Array.isArray(value.secretKeys) || value.secretKeys.some((k) => typeof k !== "string"))) {
    return "`secretKeys` must be an array of option names"
  }
  return undefined
}

/** Checks a definition (from a module's default export, or given directly) and returns it typed. */
export const validateStorageDriver = (value: unknown, origin: string): Effect.Effect<StorageDriver, StorageDriverError> => {
  const problem = storageDriverProblem(value)
  return problem === undefined
    ? Effect.succeed(value as StorageDriver)
    : Effect.fail(
        new StorageDriverError({
          driver: origin,
          key: "",
          detail: `not a valid bendsave storage driver: ${problem}`,
          fix: "see docs/writing-a-driver.md; examples/driver-plugin is a complete driver",
        }),
      )
}

const issuePath = (issue: StandardSchemaV1.Issue): string =>
  (issue.path ?? []).map((p) => String(isRecord(p) && "key" in p ? (p as { key: PropertyKey }).key : p)).join(".")

/**
 * Decodes raw options with the driver's schema. The first issue becomes a
 * StorageDriverError naming the option; a secret's value is never shown.
 */
export const decodeDriverOptions = <O>(driver: StorageDriver<O>, raw: unknown): Effect.Effect<O, StorageDriverError> =>
  Effect.flatMap(
    Effect.tryPromise({
      try: async () => driver.configSchema["~standard"].validate(raw),
      catch: (cause) =>
        new StorageDriverError({
          driver: driver.name,
          key: "",
          detail: `its option schema threw: ${String(cause)}`,
          fix: "report this to the driver's author",
        }),
    }),
    (result) => {
      if (result.issues === undefined) return Effect.succeed(result.value)
      const issue = result.issues[0]
      const key = issuePath(issue)
      const secret = (driver.secretKeys ?? []).some((k) => key === k || key.startsWith(`${k}.`))
      const unknownKey = /excess|unexpected|unrecognized|unknown/i.test(issue.message)
      const missing = /missing/i.test(issue.message)
      const detail = unknownKey
        ? "unknown option"
        : missing
          ? "missing required option"
          : secret
            ? "invalid value (not shown: it is a secret)"
            : issue.message
      const help = driver.optionsHelp === undefined ? "" : `; options: ${driver.optionsHelp.join("; ")}`
      return Effect.fail(new StorageDriverError({ driver: driver.name, key, detail, fix: `correct the option${help}` }))
    },
  )

// ---------------------------------------------------------------------------
// Built-in and registered drivers
// ---------------------------------------------------------------------------

/** The cloud drivers bendsave ships, by `[storage] type`: the package that holds each and its URL schemes. */
export const BUILTIN_STORAGE_PACKAGES: ReadonlyArray<{
  readonly type: string
  readonly schemes: ReadonlyArray<string>
  readonly pkg: string
  readonly service: string
}> = [
  { type: "s3", schemes: ["s3"], pkg: "@bendsave/drivers-s3", service: "Amazon S3 (and S3-compatible storage)" },
  { type: "gcs", schemes: ["gs"], pkg: "@bendsave/drivers-gcs", service: "Google Cloud Storage" },
  { type: "azblob", schemes: ["azblob"], pkg: "@bendsave/drivers-azure", service: "Azure Blob Storage" },
]

/** Loaders of the built-in cloud drivers the application provides (the CLI: chunks of its bundle), by type. */
const builtinLoaders = new Map<string, () => Promise<unknown>>()

/**
 * How to load a built-in cloud driver (`type`: "s3", "gcs" or "azblob"). The
 * CLI gives `() => import("@bendsave/drivers-s3")` and the like, so its
 * bundle holds each driver as a chunk of its own that shares the bundle's
 * effect and core (a package imported from node_modules next to a bundle
 * brings second copies of both). Without a loader, the package is imported by
 * name.
 */
export const registerStorageDriverLoader = (type: string, load: () => Promise<unknown>): void => {
  builtinLoaders.set(type, load)
}

/** Drivers registered in this process (by `registerStorageDriver`), by name. */
const registered = new Map<string, StorageDriver>()
/** Loaded modules, by resolved specifier. */
const loaded = new Map<string, Promise<unknown>>()

/**
 * Registers a driver for its name and URL schemes in this process (library
 * users; the CLI's `--driver`). Registering another driver under a name or
 * scheme already taken is an error: a duplicate scheme is a bug.
 */
export const registerStorageDriver = (value: unknown, origin = "registerStorageDriver"): Effect.Effect<StorageDriver, StorageDriverError> =>
  Effect.flatMap(validateStorageDriver(value, origin), (driver) => {
    const taken = (scheme: string) =>
      ["fs", "memory", "file"].includes(scheme) ||
      BUILTIN_STORAGE_PACKAGES.some((b) => b.schemes.includes(scheme) && b.type !== driver.name) ||
      [...registered.values()].some((d) => d !== driver && d.name !== driver.name && d.schemes.includes(scheme))
    const clash = driver.schemes.find(taken)
    const existing = registered.get(driver.name)
    if (clash !== undefined || (existing !== undefined && existing !== driver)) {
      return Effect.fail(
        new StorageDriverError({
          driver: driver.name,
          key: "",
          detail:
            clash !== undefined
              ? `the URL scheme '${clash}' already belongs to another driver`
              : `a different driver named '${driver.name}' is already registered`,
          fix: "give the plugin a name and schemes of its own",
        }),
      )
    }
    registered.set(driver.name, driver)
    return Effect.succeed(driver)
  })

/** Removes every registered driver (tests). */
export const clearRegisteredStorageDrivers = (): void => registered.clear()

const isPathSpecifier = (specifier: string) =>
  specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("file:") || isAbsolute(specifier)

/** Imports a module (once per resolved specifier) and returns its default export. */
const importDefault = (specifier: string, baseDir: string, origin: string): Effect.Effect<unknown, StorageDriverError> =>
  Effect.tryPromise({
    try: async () => {
      let target = specifier
      if (isPathSpecifier(specifier)) {
        target = specifier.startsWith("file:") ? specifier : pathToFileURL(resolve(baseDir, specifier)).href
      }
      let promise = loaded.get(target)
      if (promise === undefined) {
        // A variable specifier: bundlers leave it alone, and core never depends on the driver packages.
        const importIt = (spec: string) => import(spec) as Promise<Record<string, unknown>>
        promise = importIt(target).catch(async (cause) => {
          // A package installed next to the cluster file (or the working directory) rather than next to bendsave.
          if (isPathSpecifier(specifier) || (cause as { code?: unknown }).code !== "ERR_MODULE_NOT_FOUND") throw cause
          let file: string
          try {
            file = createRequire(join(baseDir, "noop.js")).resolve(specifier)
          } catch {
            throw cause
          }
          return importIt(pathToFileURL(file).href)
        })
        promise.catch(() => loaded.delete(target))
        loaded.set(target, promise)
      }
      const mod = (await promise) as Record<string, unknown>
      return mod.default ?? mod
    },
    catch: (cause) => {
      const code = (cause as { code?: unknown }).code
      const missing = code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND"
      return new StorageDriverError({
        driver: origin,
        key: "",
        detail: missing
          ? `the driver module '${specifier}' was not found${isPathSpecifier(specifier) ? ` (looked at ${resolve(baseDir, specifier)})` : ""}`
          : `the driver module '${specifier}' failed to load: ${cause instanceof Error ? cause.message : String(cause)}`,
        fix: missing
          ? isPathSpecifier(specifier)
            ? "check the path (relative paths resolve against the cluster file's directory, or for --driver and BENDSAVE_DRIVERS against the working directory)"
            : `install it (npm install ${specifier}) where bendsave or the cluster file can find it`
          : "fix the driver module; see docs/writing-a-driver.md",
      })
    },
  })

/** The driver for a `[storage] type`: built in, registered, or a module path / package name. */
export const resolveStorageDriverByType = (type: string, baseDir: string): Effect.Effect<StorageDriver, StorageDriverError> => {
  const builtin = BUILTIN_STORAGE_PACKAGES.find((b) => b.type === type)
  if (builtin !== undefined) {
    const loader = builtinLoaders.get(type)
    const loaded =
      loader === undefined
        ? importDefault(builtin.pkg, baseDir, type)
        : Effect.tryPromise({
            try: async () => {
              const mod = (await loader()) as Record<string, unknown>
              return mod.default ?? mod
            },
            catch: (cause) =>
              new StorageDriverError({
                driver: type,
                key: "",
                detail: `the driver module '${builtin.pkg}' failed to load: ${cause instanceof Error ? cause.message : String(cause)}`,
                fix: `reinstall bendsave (npm install); the ${builtin.service} driver needs its SDK`,
              }),
          })
    return loaded.pipe(
      Effect.mapError((e) =>
        e.detail.includes("was not found")
          ? new StorageDriverError({
              ...e,
              detail: `the ${builtin.service} driver (${builtin.pkg}) is not installed`,
              fix: `install it next to @bendsave/core (npm install ${builtin.pkg}); the bendsave CLI includes it`,
            })
          : e,
      ),
      Effect.flatMap((value) => validateStorageDriver(value, builtin.pkg)),
    )
  }
  const known = registered.get(type)
  if (known !== undefined) return Effect.succeed(known)
  if (!isPathSpecifier(type) && !/^(@[a-z0-9._-]+\/)?[a-z0-9._-]+$/i.test(type)) {
    return Effect.fail(
      new StorageDriverError({
        driver: type,
        key: "",
        detail: "is neither a storage type nor a module path or package name",
        fix: `use "fs", ${BUILTIN_STORAGE_PACKAGES.map((b) => `"${b.type}"`).join(", ")}, a path like "./drivers/my-store.js" or a package name`,
      }),
    )
  }
  return Effect.flatMap(importDefault(type, baseDir, type), (value) => validateStorageDriver(value, type))
}

/** Loads a driver module (path or package name, relative paths against `baseDir`), validates and registers it for its schemes. */
export const loadStorageDriver = (specifier: string, baseDir: string): Effect.Effect<StorageDriver, StorageDriverError> =>
  Effect.flatMap(importDefault(specifier, baseDir, specifier), (value) => registerStorageDriver(value, specifier))

/** The environment variable naming plugin driver modules to register for their URL schemes (comma-separated). */
export const DRIVERS_ENV = "BENDSAVE_DRIVERS"

let fromEnv: string | undefined

/** Registers the modules BENDSAVE_DRIVERS names (once per value); relative paths resolve against the working directory. */
export const registerStorageDriversFromEnv = (
  env: Readonly<Record<string, string | undefined>> = process.env,
  baseDir: string = process.cwd(),
): Effect.Effect<void, StorageDriverError> => {
  const value = env[DRIVERS_ENV]?.trim() ?? ""
  if (value === "" || value === fromEnv) return Effect.void
  const specifiers = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
  return Effect.forEach(specifiers, (specifier) => loadStorageDriver(specifier, baseDir), { discard: true }).pipe(
    Effect.tap(() =>
      Effect.sync(() => {
        fromEnv = value
      }),
    ),
  )
}

/** The driver for a URL scheme (without ':'): built in or registered (also through BENDSAVE_DRIVERS); undefined when none is. */
export const resolveStorageDriverByScheme = (
  scheme: string,
  baseDir: string,
): Effect.Effect<StorageDriver | undefined, StorageDriverError> => {
  const builtin = BUILTIN_STORAGE_PACKAGES.find((b) => b.schemes.includes(scheme))
  if (builtin !== undefined) return resolveStorageDriverByType(builtin.type, baseDir)
  const find = () => [...registered.values()].find((d) => d.schemes.includes(scheme))
  const known = find()
  if (known !== undefined) return Effect.succeed(known)
  return Effect.map(registerStorageDriversFromEnv(), find)
}

/** Every URL scheme a repository may use right now (for messages). */
export const knownStorageSchemes = (): ReadonlyArray<string> => [
  "fs",
  "memory",
  ...BUILTIN_STORAGE_PACKAGES.flatMap((b) => b.schemes),
  ...[...registered.values()].flatMap((d) => d.schemes),
]

// ---------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------

/** Decodes the options and opens a store with the driver's `make` or `layer`. */
export const openDriverStore = <O>(
  driver: StorageDriver<O>,
  rawOptions: unknown,
  context: StorageDriverContext,
): Effect.Effect<BlobStore, BlobStoreError | StorageDriverError, Scope.Scope> =>
  Effect.gen(function* () {
    const options = yield* decodeDriverOptions(driver, rawOptions)
    const store =
      driver.make !== undefined
        ? yield* driver.make(options, context)
        : Context.get(yield* Layer.build(driver.layer!(options, context)), BlobStoreService)
    if (store === null || typeof store !== "object" || typeof store.get !== "function" || typeof store.list !== "function") {
      return yield* new StorageDriverError({
        driver: driver.name,
        key: "",
        detail: "opening returned something that is not a BlobStore",
        fix: "report this to the driver's author",
      })
    }
    return store
  })
