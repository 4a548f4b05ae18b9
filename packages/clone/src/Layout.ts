/**
 * Layout: the table layout of a data cluster (docs/table-layout.md) as types,
 * key and path builders, and checked readers of catalog entries and snapshot
 * objects.
 *
 * ```
 * meta     catalog/databases/<db>           { id, created_at }
 *          catalog/tables/<db>/<table>      { id, location, snapshot, schema?, properties?, clone_of? }
 * storage  <db_id>/<table_id>/_ss/<v>.json  snapshot object { version, files: [{ path, size, sha256?, rows? }] }
 *          <db_id>/<table_id>/_d/<id>.parquet  immutable data files
 * ```
 *
 * Entries are kept as parsed JSON objects so that a rewrite keeps the fields
 * this reader does not know (the layout requires it).
 */
import { randomUUID } from "node:crypto"
import type { Cluster } from "@bendsave/core"
import { type BlobStore, BlobStoreError, isValidKey, type MetaStoreError } from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { CloneError } from "./CloneError.ts"

/** A table by name: `database.table`. */
export interface TableRef {
  readonly database: string
  readonly table: string
}

export type CloneMode = "SHALLOW" | "DEEP"

/** Value of `catalog/databases/<db>`. */
export interface DatabaseEntry {
  readonly id: string
  readonly created_at: string
  readonly [field: string]: unknown
}

/**
 * `clone_of` of a table entry: where the table was cloned from
 * (docs/table-layout.md section 7). `table_id` and `snapshot` are
 * authoritative, the names informational.
 */
export interface CloneOf {
  readonly database: string
  readonly table: string
  readonly table_id: string
  /** Storage path (in the source cluster) of the source snapshot that was cloned. */
  readonly snapshot: string
  /** SHALLOW (references the source's files) or DEEP (own copies). Absent: SHALLOW (older writers). */
  readonly mode?: CloneMode
  /** Name of the source cluster when it is not this cluster. */
  readonly cluster?: string
  /** The source snapshot's version. */
  readonly version?: number
  /** Backup id, when the source was a table inside a backup. */
  readonly source_backup?: string
  /** Location of the repository holding that backup (display form, no secrets). */
  readonly repository?: string
  /** Key of the pin object written in that repository (`pins/<backup-id>/<uuid>.json`). */
  readonly pin?: string
  /** When the clone (or its last OR REPLACE re-run) was committed (ISO 8601 UTC). */
  readonly created_at?: string
  readonly [field: string]: unknown
}

/** Value of `catalog/tables/<db>/<table>`. */
export interface TableEntry {
  readonly id: string
  readonly location: string
  readonly snapshot: string
  readonly schema?: ReadonlyArray<{ readonly name: string; readonly type: string }>
  readonly properties?: Readonly<Record<string, string>>
  readonly clone_of?: CloneOf
  readonly [field: string]: unknown
}

export interface SnapshotFile {
  readonly path: string
  readonly size: number
  readonly sha256?: string
  readonly rows?: number
  readonly [field: string]: unknown
}

/** Content of a snapshot object. */
export interface Snapshot {
  readonly version: number
  readonly files: ReadonlyArray<SnapshotFile>
  readonly [field: string]: unknown
}

export const DATABASE_PREFIX = "catalog/databases/"
export const TABLE_PREFIX = "catalog/tables/"

export const databaseKey = (db: string): string => `${DATABASE_PREFIX}${db}`
export const tableKey = (ref: TableRef): string => `${TABLE_PREFIX}${ref.database}/${ref.table}`
export const snapshotPath = (location: string, version: number): string => `${location}_ss/${String(version).padStart(8, "0")}.json`
export const dataFilePath = (location: string, fileId: string): string => `${location}_d/${fileId}.parquet`
export const displayTable = (ref: TableRef): string => `${ref.database}.${ref.table}`

const NAME_RE = /^[a-z][a-z0-9_]{0,62}$/
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/
const SNAPSHOT_NAME_RE = /_ss\/(\d{8,})\.json$/

export const isValidName = (name: string): boolean => NAME_RE.test(name)
export const isUuid = (id: string): boolean => UUID_RE.test(id)
export const newId = (): string => randomUUID()

/** The layout's path rule (section 3): relative, '/'-separated, safe segments, at most 1024 bytes. */
export const isValidStoragePath = (path: string): boolean =>
  path.length > 0 &&
  Buffer.byteLength(path) <= 1024 &&
  isValidKey(path) &&
  path.split("/").every((s) => SEGMENT_RE.test(s) && s !== "." && s !== "..")

/** The version a snapshot path names (`.../_ss/00000003.json` -> 3), or undefined. */
export const snapshotVersionOf = (path: string): number | undefined => {
  const m = SNAPSHOT_NAME_RE.exec(path)
  return m === null ? undefined : Number(m[1])
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
export const keyBytes = (key: string): Uint8Array => encoder.encode(key)
export const jsonBytes = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))
export const textOf = (bytes: Uint8Array): string => decoder.decode(bytes)

/** Fails unless both names follow the layout's name rule. */
export const checkTableRef = (ref: TableRef): Effect.Effect<void, CloneError> => {
  for (const [what, name] of [
    ["database", ref.database],
    ["table", ref.table],
  ] as const) {
    if (!isValidName(name)) {
      return Effect.fail(
        new CloneError({
          reason: "InvalidName",
          detail: `'${name}' is not a valid ${what} name: names are 1 to 63 characters of a-z, 0-9 and _, starting with a letter`,
          fix: `use a lowercase ${what} name such as '${
            name
              .toLowerCase()
              .replace(/[^a-z0-9_]/g, "_")
              .replace(/^[^a-z]+/, "") || "t1"
          }'`,
        }),
      )
    }
  }
  return Effect.void
}

export const checkDatabaseName = (database: string): Effect.Effect<void, CloneError> =>
  isValidName(database)
    ? Effect.void
    : Effect.fail(
        new CloneError({
          reason: "InvalidName",
          detail: `'${database}' is not a valid database name: names are 1 to 63 characters of a-z, 0-9 and _, starting with a letter`,
          fix: "use a lowercase database name",
        }),
      )

const layoutError = (detail: string) =>
  new CloneError({
    reason: "InvalidLayout",
    detail,
    fix: "the catalog does not follow docs/table-layout.md; repair the entry (or restore it from a backup) and run the statement again",
  })

const parseObject = (text: string, what: string): Record<string, unknown> | CloneError => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return layoutError(`${what} is not valid JSON`)
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return layoutError(`${what} is not a JSON object`)
  return value as Record<string, unknown>
}

/** Parses and checks a `catalog/databases/<db>` value. */
export const parseDatabaseEntry = (text: string, key: string): DatabaseEntry | CloneError => {
  const o = parseObject(text, `meta key ${key}`)
  if (o instanceof CloneError) return o
  if (typeof o.id !== "string" || o.id.length === 0 || !isValidStoragePath(o.id)) return layoutError(`meta key ${key} has no valid "id"`)
  return { ...o, id: o.id, created_at: typeof o.created_at === "string" ? o.created_at : "" }
}

/** Parses and checks a `catalog/tables/<db>/<table>` value (location, snapshot in it, path rules). */
export const parseTableEntry = (text: string, key: string): TableEntry | CloneError => {
  const o = parseObject(text, `meta key ${key}`)
  if (o instanceof CloneError) return o
  const { id, location, snapshot } = o
  if (typeof id !== "string" || id.length === 0) return layoutError(`meta key ${key} has no "id"`)
  if (typeof location !== "string" || !location.endsWith("/") || !isValidStoragePath(location.slice(0, -1))) {
    return layoutError(`meta key ${key} has no valid "location" (a storage prefix ending in '/')`)
  }
  if (
    typeof snapshot !== "string" ||
    !snapshot.startsWith(`${location}_ss/`) ||
    !isValidStoragePath(snapshot) ||
    snapshotVersionOf(snapshot) === undefined
  ) {
    return layoutError(`meta key ${key}: "snapshot" must be <location>_ss/<version>.json`)
  }
  return o as unknown as TableEntry
}

/** Parses and checks a snapshot object (version, file paths, sizes, no duplicates). */
export const parseSnapshot = (bytes: Uint8Array, path: string): Snapshot | CloneError => {
  const o = parseObject(textOf(bytes), `snapshot object ${path}`)
  if (o instanceof CloneError) return o
  if (!Number.isSafeInteger(o.version) || (o.version as number) < 1) return layoutError(`snapshot object ${path} has no valid "version"`)
  const named = snapshotVersionOf(path)
  if (named !== undefined && named !== o.version)
    return layoutError(`snapshot object ${path} says version ${String(o.version)}, its name says ${named}`)
  if (!Array.isArray(o.files)) return layoutError(`snapshot object ${path} has no "files" array`)
  const seen = new Set<string>()
  for (const f of o.files as Array<Record<string, unknown>>) {
    if (typeof f !== "object" || f === null || typeof f.path !== "string" || !isValidStoragePath(f.path)) {
      return layoutError(`snapshot object ${path} lists a file with a missing or unsafe path (${JSON.stringify(f?.path)})`)
    }
    if (!Number.isSafeInteger(f.size) || (f.size as number) < 0)
      return layoutError(`snapshot object ${path}: file ${f.path} has no valid "size"`)
    if (f.sha256 !== undefined && (typeof f.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(f.sha256))) {
      return layoutError(`snapshot object ${path}: file ${f.path} has an invalid "sha256"`)
    }
    if (seen.has(f.path)) return layoutError(`snapshot object ${path} lists ${f.path} twice`)
    seen.add(f.path)
  }
  return o as unknown as Snapshot
}

/** Reads a meta key as text (undefined when absent). */
export const getText = (cluster: Cluster, key: string): Effect.Effect<string | undefined, MetaStoreError> =>
  cluster.meta.get(keyBytes(key)).pipe(Effect.map((v) => (v === undefined ? undefined : textOf(v))))

/** A table entry together with the exact meta value it was parsed from (for compare-and-swap). */
export interface CatalogTable {
  readonly ref: TableRef
  readonly key: string
  readonly raw: string
  readonly entry: TableEntry
}

export const readDatabase = Effect.fnUntraced(function* (cluster: Cluster, database: string) {
  const key = databaseKey(database)
  const raw = yield* getText(cluster, key)
  if (raw === undefined) return undefined
  const entry = parseDatabaseEntry(raw, key)
  if (entry instanceof CloneError) return yield* entry
  return { raw, entry }
})

/** The table entry of `ref`, or undefined when the key is absent. */
export const readTable = Effect.fnUntraced(function* (cluster: Cluster, ref: TableRef) {
  const key = tableKey(ref)
  const raw = yield* getText(cluster, key)
  if (raw === undefined) return undefined
  const entry = parseTableEntry(raw, key)
  if (entry instanceof CloneError) return yield* entry
  return { ref, key, raw, entry } satisfies CatalogTable
})

/** The table entry of `ref`; fails with TableNotFound (naming the cluster's tables) when absent. */
export const requireTable = Effect.fnUntraced(function* (cluster: Cluster, ref: TableRef) {
  const found = yield* readTable(cluster, ref)
  if (found !== undefined) return found
  const db = yield* readDatabase(cluster, ref.database)
  if (db === undefined) {
    return yield* new CloneError({
      reason: "DatabaseNotFound",
      detail: `cluster '${cluster.name}' has no database '${ref.database}'`,
      fix: `run SHOW DATABASES on '${cluster.name}' to see its databases`,
    })
  }
  return yield* new CloneError({
    reason: "TableNotFound",
    detail: `cluster '${cluster.name}' has no table ${displayTable(ref)}`,
    fix: `run SHOW TABLES IN ${ref.database} to see its tables; a dropped table can be cloned or restored from a backup (FROM '<repo>' AT BACKUP '<id>')`,
  })
})

/** Reads and checks a snapshot object from `storage`. */
export const readSnapshot = Effect.fnUntraced(function* (storage: BlobStore, path: string) {
  const bytes = yield* storage.get(path)
  const snapshot = parseSnapshot(bytes, path)
  if (snapshot instanceof CloneError) return yield* snapshot
  return snapshot
})

/** Every catalog key of the cluster at one revision: databases and tables, sorted by key. */
export const readCatalog = Effect.fnUntraced(function* (cluster: Cluster) {
  const snap = yield* cluster.meta.snapshot()
  const databases = new Map<string, DatabaseEntry>()
  const tables: Array<CatalogTable> = []
  const externalClones: Array<{ readonly key: string; readonly raw: string; readonly sourceTableId: string }> = []
  yield* snap.entries.pipe(
    Stream.runForEach((e) =>
      Effect.suspend(() => {
        const key = textOf(e.key)
        if (key.startsWith(DATABASE_PREFIX)) {
          const name = key.slice(DATABASE_PREFIX.length)
          if (name.includes("/")) return Effect.void
          const entry = parseDatabaseEntry(textOf(e.value), key)
          if (entry instanceof CloneError) return Effect.fail(entry)
          databases.set(name, entry)
        } else if (key.startsWith(TABLE_PREFIX)) {
          const parts = key.slice(TABLE_PREFIX.length).split("/")
          if (parts.length !== 2 || parts[0] === "" || parts[1] === "") return Effect.void
          const raw = textOf(e.value)
          const entry = parseTableEntry(raw, key)
          if (entry instanceof CloneError) return Effect.fail(entry)
          tables.push({ ref: { database: parts[0], table: parts[1] }, key, raw, entry })
        } else if (key.startsWith(EXTERNAL_CLONE_PREFIX)) {
          const parts = key.slice(EXTERNAL_CLONE_PREFIX.length).split("/")
          if (parts.length === 2) externalClones.push({ key, raw: textOf(e.value), sourceTableId: parts[0] })
        }
        return Effect.void
      }),
    ),
  )
  return { revision: snap.revision, databases, tables, externalClones }
})

/** Whether two clusters share one storage root (the same store, or the same driver and location). */
export const sameStorage = (a: BlobStore, b: BlobStore): boolean =>
  a === b || (a.driver === b.driver && a.location === b.location && !a.location.startsWith("memory://"))

/** A snapshot's totals. */
export const totals = (snapshot: Snapshot): { files: number; bytes: number } => ({
  files: snapshot.files.length,
  bytes: snapshot.files.reduce((n, f) => n + f.size, 0),
})

/** `storage.head(key)` or undefined when the object does not exist. */
export const headOrUndefined = (storage: BlobStore, key: string) =>
  storage.head(key).pipe(
    Effect.map((info): { readonly size: number; readonly etag: string; readonly lastModified: number } | undefined => info),
    Effect.catchIf(
      (e: BlobStoreError) => e.reason === "NotFound",
      () => Effect.succeed(undefined),
    ),
  )

export { BlobStoreError }

/** Whether two clusters are one catalog (the same meta store, or the same driver, location and prefix). */
export const sameMeta = (a: Cluster, b: Cluster): boolean =>
  a.meta === b.meta || (a.meta.driver === b.meta.driver && a.meta.location === b.meta.location && a.meta.prefix === b.meta.prefix)

/**
 * `catalog/external_clones/<source_table_id>/<uuid>`: written in the SOURCE
 * cluster when a shallow clone is made in another cluster that shares its
 * storage root, so that DROP TABLE ... PURGE there keeps the files.
 */
export const EXTERNAL_CLONE_PREFIX = "catalog/external_clones/"

export interface ExternalCloneRecord {
  readonly cluster: string
  readonly database: string
  readonly table: string
  readonly table_id: string
  readonly source: { readonly database: string; readonly table: string }
  readonly created_at: string
}
