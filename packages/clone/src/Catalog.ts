/**
 * Catalog: SHOW DATABASES, SHOW TABLES, DESCRIBE TABLE, SHOW CLONES and
 * DROP TABLE [PURGE] over the table layout of a live cluster.
 */
import type { Cluster } from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { CloneFailure } from "./Clone.ts"
import { CloneError } from "./CloneError.ts"
import {
  type CatalogTable,
  type CloneMode,
  type CloneOf,
  checkDatabaseName,
  checkTableRef,
  type ExternalCloneRecord,
  keyBytes,
  readCatalog,
  readSnapshot,
  readTable,
  requireTable,
  type Snapshot,
  snapshotVersionOf,
  type TableRef,
  totals,
} from "./Layout.ts"

export interface DatabaseInfo {
  readonly name: string
  readonly id: string
  readonly created_at: string
  readonly tables: number
}

export interface TableInfo {
  readonly database: string
  readonly table: string
  readonly files: number
  readonly bytes: number
  /** `db.table` the table was cloned from. */
  readonly clone_of?: string
}

export interface TableDescription {
  readonly database: string
  readonly table: string
  readonly id: string
  readonly location: string
  readonly snapshot: string
  readonly version: number
  readonly files: number
  readonly bytes: number
  readonly schema?: ReadonlyArray<{ readonly name: string; readonly type: string }>
  readonly clone_of?: CloneOf
}

export interface CloneInfo {
  /** `db.table` of the clone. */
  readonly clone: string
  /** `db.table` of the source (with `<cluster>.` when another cluster). */
  readonly source: string
  readonly mode: CloneMode
  readonly source_backup?: string
  readonly created_at: string
}

export interface DropResult {
  readonly dropped: boolean
  readonly files_deleted: number
  readonly bytes_deleted: number
  /** Files under the dropped table's location that a clone still lists, kept. */
  readonly files_kept_for_clones: number
  /** True when nothing was changed (the figures are what would happen). */
  readonly dry_run: boolean
}

const databaseNotFound = (cluster: Cluster, database: string, known: Iterable<string>) =>
  new CloneError({
    reason: "DatabaseNotFound",
    detail: `cluster '${cluster.name}' has no database '${database}'`,
    fix: `its databases are: ${[...known].join(", ") || "(none)"}`,
  })

/** SHOW DATABASES: every database with its id, creation time and number of tables. */
export const listDatabases: (cluster: Cluster) => Effect.Effect<ReadonlyArray<DatabaseInfo>, CloneFailure> = Effect.fn(
  "Catalog.listDatabases",
)(function* (cluster: Cluster) {
  const catalog = yield* readCatalog(cluster)
  return [...catalog.databases]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, entry]) => ({
      name,
      id: entry.id,
      created_at: entry.created_at,
      tables: catalog.tables.filter((t) => t.ref.database === name).length,
    }))
})

const cloneSourceName = (cloneOf: CloneOf): string => `${cloneOf.cluster ? `${cloneOf.cluster}.` : ""}${cloneOf.database}.${cloneOf.table}`

/** SHOW TABLES [IN db]: every table with its current number of files and bytes. */
export const listTables: (cluster: Cluster, database?: string) => Effect.Effect<ReadonlyArray<TableInfo>, CloneFailure> = Effect.fn(
  "Catalog.listTables",
)(function* (cluster: Cluster, database?: string) {
  if (database !== undefined) yield* checkDatabaseName(database)
  const catalog = yield* readCatalog(cluster)
  if (database !== undefined && !catalog.databases.has(database))
    return yield* databaseNotFound(cluster, database, catalog.databases.keys())
  const tables = catalog.tables.filter((t) => database === undefined || t.ref.database === database)
  return yield* Effect.forEach(
    tables,
    (t) =>
      readSnapshot(cluster.storage, t.entry.snapshot).pipe(
        Effect.map((snapshot) => {
          const { files, bytes } = totals(snapshot)
          const info: TableInfo = {
            database: t.ref.database,
            table: t.ref.table,
            files,
            bytes,
            ...(t.entry.clone_of !== undefined ? { clone_of: cloneSourceName(t.entry.clone_of) } : {}),
          }
          return info
        }),
      ),
    { concurrency: 8 },
  )
})

/** DESCRIBE TABLE: the table's entry and its current snapshot's totals. */
export const describeTable: (cluster: Cluster, table: TableRef) => Effect.Effect<TableDescription, CloneFailure> = Effect.fn(
  "Catalog.describeTable",
)(function* (cluster: Cluster, table: TableRef) {
  yield* checkTableRef(table)
  const t = yield* requireTable(cluster, table)
  const snapshot = yield* readSnapshot(cluster.storage, t.entry.snapshot)
  const { files, bytes } = totals(snapshot)
  return {
    database: table.database,
    table: table.table,
    id: t.entry.id,
    location: t.entry.location,
    snapshot: t.entry.snapshot,
    version: snapshot.version,
    files,
    bytes,
    ...(t.entry.schema !== undefined ? { schema: t.entry.schema } : {}),
    ...(t.entry.clone_of !== undefined ? { clone_of: t.entry.clone_of } : {}),
  } satisfies TableDescription
})

const parseExternal = (raw: string): ExternalCloneRecord | undefined => {
  try {
    return JSON.parse(raw) as ExternalCloneRecord
  } catch {
    return undefined
  }
}

/**
 * SHOW CLONES [OF t]: the tables of this cluster that are clones (their
 * `clone_of`), plus shallow clones made of this cluster's tables in other
 * clusters sharing its storage. With `of`: only clones of that table (by id
 * while it exists, by name once it was dropped).
 */
export const listClones: (cluster: Cluster, of?: TableRef) => Effect.Effect<ReadonlyArray<CloneInfo>, CloneFailure> = Effect.fn(
  "Catalog.listClones",
)(function* (cluster: Cluster, of?: TableRef) {
  if (of !== undefined) yield* checkTableRef(of)
  const catalog = yield* readCatalog(cluster)
  const ofTable = of === undefined ? undefined : catalog.tables.find((t) => t.ref.database === of.database && t.ref.table === of.table)
  const matches = (c: CloneOf): boolean =>
    of === undefined ||
    (ofTable !== undefined
      ? c.table_id === ofTable.entry.id && (c.cluster === undefined || c.cluster === cluster.name)
      : c.database === of.database && c.table === of.table)
  const out: Array<CloneInfo> = []
  for (const t of catalog.tables) {
    const c = t.entry.clone_of
    if (c === undefined || !matches(c)) continue
    out.push({
      clone: `${t.ref.database}.${t.ref.table}`,
      source: cloneSourceName(c),
      mode: c.mode ?? "SHALLOW",
      ...(c.source_backup !== undefined ? { source_backup: c.source_backup } : {}),
      created_at: c.created_at ?? "",
    })
  }
  for (const x of catalog.externalClones) {
    const record = parseExternal(x.raw)
    if (record === undefined) continue
    if (of !== undefined && (ofTable === undefined || ofTable.entry.id !== x.sourceTableId)) continue
    out.push({
      clone: `${record.cluster}.${record.database}.${record.table}`,
      source: `${record.source.database}.${record.source.table}`,
      mode: "SHALLOW",
      created_at: record.created_at,
    })
  }
  return out
})

/** Every path under `location` that a snapshot of another table lists (current or retained, for shallow clones). */
const referencedByOthers = Effect.fnUntraced(function* (cluster: Cluster, dropped: CatalogTable, others: ReadonlyArray<CatalogTable>) {
  const location = dropped.entry.location
  const keep = new Set<string>()
  const note = (snapshot: Snapshot) => {
    for (const f of snapshot.files) if (f.path.startsWith(location)) keep.add(f.path)
  }
  yield* Effect.forEach(
    others,
    (t) =>
      Effect.gen(function* () {
        // Every table's current snapshot; a shallow clone's older snapshots too (time travel).
        note(yield* readSnapshot(cluster.storage, t.entry.snapshot))
        if (t.entry.clone_of === undefined || t.entry.clone_of.mode === "DEEP") return
        const paths = yield* cluster.storage.list(`${t.entry.location}_ss/`).pipe(
          Stream.map((i) => i.key),
          Stream.filter((k) => k !== t.entry.snapshot && snapshotVersionOf(k) !== undefined),
          Stream.runCollect,
        )
        for (const p of paths) note(yield* readSnapshot(cluster.storage, p))
      }),
    { concurrency: 8, discard: true },
  )
  return keep
})

/**
 * DROP TABLE [IF EXISTS] t [PURGE]. The catalog entry is removed by
 * compare-and-swap. With PURGE the files under the table's location are
 * deleted too, except those a clone still lists (any other table's current
 * snapshot, any snapshot of a shallow clone, or all data files when a
 * cluster sharing this storage holds a shallow clone of it).
 */
export const dropTable: (
  cluster: Cluster,
  table: TableRef,
  opts: { readonly ifExists: boolean; readonly purge: boolean; readonly dryRun?: boolean },
) => Effect.Effect<DropResult, CloneFailure> = Effect.fn("Catalog.dropTable")(function* (
  cluster: Cluster,
  table: TableRef,
  opts: { readonly ifExists: boolean; readonly purge: boolean; readonly dryRun?: boolean },
) {
  yield* checkTableRef(table)
  const dryRun = opts.dryRun === true
  const found = yield* readTable(cluster, table)
  if (found === undefined) {
    if (opts.ifExists)
      return { dropped: false, files_deleted: 0, bytes_deleted: 0, files_kept_for_clones: 0, dry_run: dryRun } satisfies DropResult
    yield* requireTable(cluster, table)
  }
  const t = found as CatalogTable
  // Remove the entry first: from then on no new clone of it can commit (a concurrent shallow
  // clone re-checks its source after committing, see Clone.ts), and the scan below sees all clones.
  if (!dryRun) {
    const removed = yield* cluster.meta.compareAndSwap(keyBytes(t.key), keyBytes(t.raw), undefined)
    if (!removed) {
      return yield* new CloneError({
        reason: "Conflict",
        detail: `${table.database}.${table.table} changed while it was being dropped; it was not dropped`,
        fix: "run the statement again",
      })
    }
  }
  if (!opts.purge)
    return { dropped: true, files_deleted: 0, bytes_deleted: 0, files_kept_for_clones: 0, dry_run: dryRun } satisfies DropResult
  const catalog = yield* readCatalog(cluster)
  const others = catalog.tables.filter((o) => o.key !== t.key)
  const keep = yield* referencedByOthers(cluster, t, others)
  const external = catalog.externalClones.some((x) => x.sourceTableId === t.entry.id)
  const objects = yield* cluster.storage.list(t.entry.location).pipe(Stream.runCollect)
  const isData = (key: string) => key.startsWith(`${t.entry.location}_d/`)
  const kept = [...objects].filter((o) => keep.has(o.key) || (external && isData(o.key)))
  const keptKeys = new Set(kept.map((o) => o.key))
  const doomed = [...objects].filter((o) => !keptKeys.has(o.key))
  if (!dryRun) {
    for (let i = 0; i < doomed.length; i += 1000) yield* cluster.storage.deleteMany(doomed.slice(i, i + 1000).map((o) => o.key))
  }
  return {
    dropped: true,
    files_deleted: doomed.length,
    bytes_deleted: doomed.reduce((n, o) => n + o.size, 0),
    files_kept_for_clones: kept.length,
    dry_run: dryRun,
  } satisfies DropResult
})
