/**
 * Registry: the one explicit list of drivers, and how repository URLs and
 * cluster files become opened stores.
 *
 * Repository URLs: a plain path or `fs:///abs/path` (local directory),
 * `memory://<name>` (in-process, for tests and library users), or the scheme
 * of a storage driver (StorageDriver.ts): `s3://`, `gs://`, `azblob://` (the
 * driver packages, imported on first use) or a plugin's registered scheme.
 * Cluster storage: `[storage] type = "fs"` is built in; any other type is
 * opened through its storage driver (`openStorage`).
 *
 * Meta drivers: `local` is built in; `etcd` lives in the package
 * `@bendsave/meta-etcd`, which is imported the first time an etcd cluster is
 * opened (so local clusters never load gRPC). Core does not depend on it: it
 * must be installed next to core (the CLI depends on it).
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import process from "node:process"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Cluster } from "./Backup.ts"
import type { BlobStore, BlobStoreError } from "./BlobStore.ts"
import { type ClusterConfig, ClusterConfigError, type DriverStorageConfig, type EtcdMetaConfig, isFsStorage } from "./ClusterConfig.ts"
import { makeFsBlobStore } from "./drivers/FsBlobStore.ts"
import { makeLocalMetaStore } from "./drivers/LocalMetaStore.ts"
import { makeMemoryBlobStore } from "./drivers/MemoryBlobStore.ts"
import type { MetaStore, MetaStoreError } from "./MetaStore.ts"
import { MANIFEST_PREFIX, MANIFEST_SUFFIX, openRepository, RepositoryError } from "./Repository.ts"
import {
  knownStorageSchemes,
  openDriverStore,
  resolveStorageDriverByScheme,
  resolveStorageDriverByType,
  type StorageDriverError,
} from "./StorageDriver.ts"
import { limitStore } from "./StorageLimits.ts"

/** A repository URL or manifest reference that cannot be used. */
export class LocationError extends Schema.TaggedError<LocationError>()("LocationError", {
  input: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `'${this.input}': ${this.detail}`
  }
}

interface RepositoryDriver {
  readonly name: string
  readonly schemes: ReadonlyArray<string>
  readonly open: (url: URL, input: string, create: boolean) => Effect.Effect<BlobStore, BlobStoreError | LocationError>
}

const memoryStores = new Map<string, BlobStore>()

/** The in-process memory store named `name` (created on first use). */
export const memoryStore = (name: string): BlobStore => {
  let store = memoryStores.get(name)
  if (store === undefined) {
    store = makeMemoryBlobStore({ name })
    memoryStores.set(name, store)
  }
  return store
}

/** The repository drivers, by scheme. A duplicate scheme is a bug. */
export const repositoryDrivers: ReadonlyArray<RepositoryDriver> = [
  {
    name: "fs",
    schemes: ["fs:"],
    open: (url, input, create) => {
      if (url.host !== "" && url.host !== "localhost") {
        return Effect.fail(
          new LocationError({
            input,
            detail: "an fs:// URL must name an absolute path (fs:///path, three slashes)",
            fix: `write fs:///${url.host}${url.pathname} or a plain path`,
          }),
        )
      }
      return makeFsBlobStore(fileURLToPath(`file://${url.pathname}`), { create })
    },
  },
  {
    name: "memory",
    schemes: ["memory:"],
    open: (url) => Effect.succeed(memoryStore(url.host + url.pathname)),
  },
]

const URL_LIKE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//

/** The URL without user info (never print a secret someone put there). */
const redactUrl = (input: string): string => input.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@]*@/, "$1***@")

const locationErrorOf = (input: string, e: StorageDriverError) =>
  new LocationError({ input: redactUrl(input), detail: e.key === "" ? e.detail : `option '${e.key}': ${e.detail}`, fix: e.fix })

/**
 * The BlobStore a repository URL (or plain path) names, wrapped with the
 * current StorageLimits (retry, concurrency, bandwidth).
 */
export const openRepositoryStore = (input: string, options: { readonly create?: boolean } = {}) =>
  openRepositoryStoreUnlimited(input, options).pipe(Effect.flatMap(limitStore))

const openRepositoryStoreUnlimited = (input: string, options: { readonly create?: boolean }) =>
  Effect.gen(function* () {
    const create = options.create === true
    if (!URL_LIKE.test(input)) {
      if (input.trim() === "") {
        return yield* new LocationError({
          input,
          detail: "the repository location is empty",
          fix: "give a path or URL, e.g. ./backups or fs:///var/backups/prod",
        })
      }
      return yield* makeFsBlobStore(resolve(input), { create })
    }
    let url: URL
    try {
      url = new URL(input)
    } catch {
      return yield* new LocationError({ input, detail: "not a valid URL", fix: "use fs:///abs/path or a plain path" })
    }
    const driver = repositoryDrivers.find((d) => d.schemes.includes(url.protocol))
    if (driver !== undefined) return yield* driver.open(url, input, create)
    const scheme = url.protocol.slice(0, -1)
    const storageDriver = yield* resolveStorageDriverByScheme(scheme, process.cwd()).pipe(Effect.mapError((e) => locationErrorOf(input, e)))
    if (storageDriver !== undefined) {
      if (storageDriver.fromUrl === undefined) {
        return yield* new LocationError({
          input,
          detail: `the storage driver '${storageDriver.name}' takes no URLs`,
          fix: "name it in a cluster file instead",
        })
      }
      let raw: Record<string, unknown>
      try {
        raw = storageDriver.fromUrl(url, process.env)
      } catch (cause) {
        return yield* new LocationError({
          input: redactUrl(input),
          detail: cause instanceof Error ? cause.message : String(cause),
          fix: `write ${scheme}://<bucket or container>/<prefix>?<option>=<value>`,
        })
      }
      return yield* openDriverStore(storageDriver, raw, { source: "url", create, baseDir: process.cwd(), env: process.env }).pipe(
        Effect.mapError((e) => (e._tag === "StorageDriverError" ? locationErrorOf(input, e) : e)),
      )
    }
    const known = knownStorageSchemes()
      .map((s) => `${s}://`)
      .join(", ")
    return yield* new LocationError({
      input,
      detail: `unknown repository scheme '${url.protocol.slice(0, -1)}'`,
      fix: `use a plain path or one of: ${known}`,
    })
  })

/** Opens (and with `create`, initialises) the repository at a URL or path. */
export const openRepositoryAt = (input: string, options: { readonly create?: boolean } = {}) =>
  openRepositoryStore(input, options).pipe(
    // A path that cannot hold a repository (a file, or a directory that cannot be created): said of the repository.
    Effect.catchIf(
      (e) =>
        e._tag === "BlobStoreError" && e.operation === "open" && e.fix !== undefined && (e.reason === "InvalidConfig" || options.create === true),
      (e) =>
        Effect.fail(
          e._tag === "BlobStoreError" ? new RepositoryError({ reason: "NotARepository", location: input, detail: e.detail, fix: e.fix ?? "" }) : e,
        ),
    ),
    Effect.catchIf(
      (e): e is BlobStoreError => e._tag === "BlobStoreError" && e.reason === "NotFound",
      () =>
        Effect.fail(
          new RepositoryError({
            reason: "NotARepository",
            location: input,
            detail: "there is no bendsave repository here (the location does not exist)",
            fix: "check the repository path or URL; `bendsave backup --to <repo>` creates a repository on first use",
          }),
        ),
    ),
    Effect.flatMap((store) => openRepository(store, options)),
  )

/**
 * Splits a `restore --from` argument: a manifest URL/path
 * (`<repo>/manifests/<id>.manifest`) gives the repository and the backup id;
 * anything else is a repository (backup id undefined).
 */
export const parseBackupReference = (input: string): { readonly repository: string; readonly backupId?: string } => {
  // The query of a URL holds driver options (s3://b/p/manifests/x.manifest?endpoint=...): they belong to the repository.
  const queryAt = URL_LIKE.test(input) ? input.indexOf("?") : -1
  if (queryAt >= 0) {
    const ref = parseBackupReference(input.slice(0, queryAt))
    return { ...ref, repository: ref.repository + input.slice(queryAt) }
  }
  const trimmed = input.replace(/\/+$/, "")
  const marker = `/${MANIFEST_PREFIX}`
  const at = trimmed.lastIndexOf(marker)
  if (trimmed.endsWith(MANIFEST_SUFFIX) && at >= 0) {
    const name = trimmed.slice(at + marker.length, -MANIFEST_SUFFIX.length)
    if (!name.includes("/")) return { repository: trimmed.slice(0, at) || "/", backupId: name }
  }
  if (trimmed.endsWith(MANIFEST_SUFFIX) && trimmed.startsWith(MANIFEST_PREFIX)) {
    return { repository: ".", backupId: trimmed.slice(MANIFEST_PREFIX.length, -MANIFEST_SUFFIX.length) }
  }
  return { repository: input }
}

const missingDirectory = (config: ClusterConfig, key: string, dir: string) =>
  new ClusterConfigError({
    file: config.file,
    key,
    detail: `the directory ${dir} does not exist`,
    fix: `create it (mkdir -p '${dir}') or correct \`${key.split(".").pop()}\` in the cluster file; \`bendsave restore --confirm\` and \`bendsave meta import\` create a new cluster's directories`,
  })

/** A directory of the cluster file that is a file, or cannot be created. */
const unusableDirectory = (config: ClusterConfig, key: string, detail: string) =>
  new ClusterConfigError({
    file: config.file,
    key,
    detail,
    fix: `point \`${key.split(".").pop()}\` in the cluster file at a directory (a new cluster's directories are created inside an existing, writable one), or move what is in the way`,
  })

/** What a meta driver package exports (`@bendsave/meta-etcd` does). */
export interface EtcdMetaDriverModule {
  /**
   * Connects (the client is closed with the scope). Without `create`, a prefix
   * with no keys is a `NotFound` error: the cluster does not exist there.
   */
  readonly openEtcdMetaStore: (
    config: EtcdMetaConfig,
    options?: { readonly create?: boolean },
  ) => Effect.Effect<MetaStore, MetaStoreError, Scope.Scope>
}

/** The package of the etcd meta driver, imported on first use. */
export const ETCD_META_PACKAGE = "@bendsave/meta-etcd"

let etcdDriver: Promise<EtcdMetaDriverModule> | undefined
let etcdLoader: (() => Promise<EtcdMetaDriverModule>) | undefined

/**
 * Says how to load the etcd meta driver. The CLI passes a static
 * `import("@bendsave/meta-etcd")`, so its bundle holds the driver in a chunk
 * of its own that shares the bundle's `effect` and core (a driver imported
 * from node_modules next to a bundle would bring second copies of both).
 * Without it, the package is imported by name.
 */
export const registerEtcdMetaDriver = (load: () => Promise<EtcdMetaDriverModule>): void => {
  etcdLoader = load
  etcdDriver = undefined
}

/** Imports the etcd meta driver package (once). */
export const loadEtcdMetaDriver = (config: ClusterConfig): Effect.Effect<EtcdMetaDriverModule, ClusterConfigError> =>
  Effect.tryPromise({
    try: () => {
      // A variable specifier: core must not depend on the driver package at type level (it depends on core).
      const specifier: string = ETCD_META_PACKAGE
      etcdDriver ??= (etcdLoader !== undefined ? etcdLoader() : (import(specifier) as Promise<EtcdMetaDriverModule>)).catch((cause) => {
        etcdDriver = undefined
        throw cause
      })
      return etcdDriver
    },
    catch: (cause) =>
      new ClusterConfigError({
        file: config.file,
        key: "meta.type",
        detail:
          (cause as { code?: unknown }).code === "ERR_MODULE_NOT_FOUND"
            ? `the etcd meta driver (${ETCD_META_PACKAGE}) is not installed`
            : `the etcd meta driver (${ETCD_META_PACKAGE}) failed to load: ${cause instanceof Error ? cause.message : String(cause)}`,
        fix: `install it next to @bendsave/core (npm install ${ETCD_META_PACKAGE}); the bendsave CLI includes it`,
      }),
  })

/**
 * Opens the meta service of a cluster file. Without `create`, a missing meta
 * directory (local) or a prefix without keys (etcd) is a ClusterConfigError
 * naming the key. Connections are closed when the scope closes.
 */
export const openMeta = (
  config: ClusterConfig,
  options: { readonly create?: boolean } = {},
): Effect.Effect<MetaStore, MetaStoreError | ClusterConfigError, Scope.Scope> => {
  const meta = config.meta
  if (meta.type === "local") {
    return makeLocalMetaStore(meta.path, { create: options.create, prefix: meta.prefix }).pipe(
      Effect.catchIf(
        (e) => (e.reason === "NotFound" && options.create !== true) || (e.operation === "open" && (e.reason === "InvalidConfig" || options.create === true)),
        (e) =>
          Effect.fail(
            e.reason === "NotFound" && options.create !== true
              ? missingDirectory(config, "meta.path", meta.path)
              : unusableDirectory(config, "meta.path", e.detail),
          ),
      ),
    )
  }
  return loadEtcdMetaDriver(config).pipe(
    Effect.flatMap((driver) => driver.openEtcdMetaStore(meta, { create: options.create })),
    Effect.catchIf(
      (e): e is MetaStoreError => e._tag === "MetaStoreError" && e.reason === "NotFound",
      (e) =>
        Effect.fail(
          new ClusterConfigError({ file: config.file, key: "meta.prefix", detail: e.detail, fix: e.fix ?? "check `prefix` in [meta]" }),
        ),
    ),
  )
}

/**
 * Opens the meta service and storage of a cluster file. Without `create`, a
 * missing meta or storage directory (or an etcd prefix without keys) is a
 * ClusterConfigError naming the key. Connections are closed when the scope
 * closes.
 */
export const openCluster = (config: ClusterConfig, options: { readonly create?: boolean } = {}) =>
  Effect.gen(function* () {
    const meta = yield* openMeta(config, options)
    const storage = yield* openStorage(config, options)
    return { name: config.name, meta, storage } satisfies Cluster
  })

/**
 * Opens the target of a restore (or of any workflow that can plan against a
 * cluster that does not exist yet). With `create`, missing directories are
 * created (an etcd prefix may be empty). Without it nothing is created: a
 * local meta directory or fs storage directory that does not exist yet looks
 * empty (a temporary meta store, removed when the scope closes, and an empty
 * memory store), so a dry run can plan a restore into a new cluster.
 */
export const openRestoreTarget = (config: ClusterConfig, options: { readonly create?: boolean } = {}) =>
  Effect.gen(function* () {
    if (options.create === true) return yield* openCluster(config, { create: true })
    const metaConfig = config.meta
    // etcd: a dry run only reads, and a prefix without keys is simply a new, empty cluster.
    const meta =
      metaConfig.type !== "local"
        ? yield* openMeta(config, { create: true })
        : yield* makeLocalMetaStore(metaConfig.path, { prefix: metaConfig.prefix }).pipe(
            Effect.catchIf(
              (e) => e.reason === "NotFound",
              () =>
                Effect.flatMap(
                  Effect.acquireRelease(
                    Effect.promise(() => mkdtemp(join(tmpdir(), "bendsave-dry-run-"))),
                    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true })),
                  ),
                  (dir) => makeLocalMetaStore(dir, { prefix: metaConfig.prefix }),
                ),
            ),
          )
    // Cloud and plugin storage: the bucket must exist; a dry run only reads it.
    const storage = isFsStorage(config.storage)
      ? yield* makeFsBlobStore(config.storage.dataPath).pipe(
          Effect.catchIf(
            (e) => e.reason === "NotFound",
            () => Effect.succeed(makeMemoryBlobStore({ name: "empty-target" })),
          ),
        )
      : yield* openStorage(config)
    return { name: config.name, meta, storage } satisfies Cluster
  })

/**
 * Opens the storage of a cluster file: the fs directory, or the store of the
 * type's driver (built-in cloud type or plugin), whose options are the table
 * `[storage.<driver name>]`. A missing fs directory (without `create`), an
 * unknown driver or a bad option is a ClusterConfigError naming the key.
 * Clients are closed when the scope closes.
 */
export const openStorage = (
  config: ClusterConfig,
  options: { readonly create?: boolean } = {},
): Effect.Effect<BlobStore, BlobStoreError | ClusterConfigError, Scope.Scope> => {
  const storage = config.storage
  if (isFsStorage(storage)) {
    return makeFsBlobStore(storage.dataPath, { create: options.create }).pipe(
      Effect.catchIf(
        (e) => (e.reason === "NotFound" && options.create !== true) || (e.operation === "open" && (e.reason === "InvalidConfig" || options.create === true)),
        (e) =>
          Effect.fail(
            e.reason === "NotFound" && options.create !== true
              ? missingDirectory(config, "storage.fs.data_path", storage.dataPath)
              : unusableDirectory(config, "storage.fs.data_path", e.detail),
          ),
      ),
      Effect.flatMap(limitStore),
    )
  }
  return openDriverStorage(config, storage, options.create === true).pipe(Effect.flatMap(limitStore))
}

const openDriverStorage = (config: ClusterConfig, storage: DriverStorageConfig, create: boolean) =>
  Effect.gen(function* () {
    const baseDir = dirname(config.file)
    const toConfigError = (key: string) => (e: StorageDriverError) =>
      new ClusterConfigError({ file: config.file, key, detail: e.detail, fix: e.fix })
    const driver = yield* resolveStorageDriverByType(storage.type, baseDir).pipe(Effect.mapError(toConfigError("storage.type")))
    const other = Object.keys(storage.tables).find((k) => k !== driver.name)
    if (other !== undefined) {
      return yield* new ClusterConfigError({
        file: config.file,
        key: `storage.${other}`,
        detail: `unknown key in [storage] (the storage driver is '${driver.name}')`,
        fix: `remove it; the driver's options go in [storage.${driver.name}]`,
      })
    }
    const table = storage.tables[driver.name] ?? {}
    return yield* openDriverStore(driver, table, { source: "cluster", create, baseDir, env: process.env }).pipe(
      Effect.mapError((e) =>
        e._tag === "StorageDriverError" ? toConfigError(e.key === "" ? `storage.${driver.name}` : `storage.${driver.name}.${e.key}`)(e) : e,
      ),
    )
  })
