/**
 * Test helpers: real clusters opened from cluster files (as the CLI opens
 * them), tables written by the layout's commit protocol with real Parquet
 * files (hyparquet-writer), and a Parquet reader we did not write (DuckDB) to
 * check what a clone's snapshot lists.
 */
import { createHash, randomBytes } from "node:crypto"
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type Cluster, loadClusterConfig, openCluster } from "@bendsave/core"
import { DuckDBInstance } from "@duckdb/node-api"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { parquetWriteBuffer } from "hyparquet-writer"
import type { Snapshot, SnapshotFile, TableEntry, TableRef } from "../src/index.ts"

const enc = new TextEncoder()
const dec = new TextDecoder()

export const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

/** Runs an effect expected to fail; returns its error. */
export const runError = async <A, E>(effect: Effect.Effect<A, E>): Promise<E> => {
  const exit = await Effect.runPromise(Effect.exit(effect))
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got ${JSON.stringify(exit.value)}`)
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (error === undefined || error._tag !== "Fail") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return error.error
}

const dirs: Array<string> = []
const scopes: Array<Scope.Closeable> = []

export const tempDir = async (label: string): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), `bendsave-clone-${label}-`))
  dirs.push(dir)
  return dir
}

/** Closes every opened cluster and removes the temp directories. */
export const cleanup = async (): Promise<void> => {
  for (const scope of scopes.splice(0)) await Effect.runPromise(Scope.close(scope, Exit.void))
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
}

/** Writes `<dir>/<name>.toml` and opens the cluster (creating its meta and storage). */
export const openTestCluster = async (
  dir: string,
  name: string,
  options: { readonly meta?: string; readonly storage?: string } = {},
): Promise<Cluster> => {
  const toml = join(dir, `${name}.toml`)
  const meta = options.meta ?? `[meta]\ntype = "local"\npath = "./${name}-meta"\n`
  const storage = options.storage ?? `[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./${name}-data"\n`
  await writeFile(toml, `name = "${name}"\n${meta}${storage}`)
  const config = await run(loadClusterConfig(toml))
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  return run(Scope.provide(openCluster(config, { create: true }), scope))
}

export const randomSuffix = (): string => randomBytes(5).toString("hex")

// ---------------------------------------------------------------------------
// Tables written by the layout's commit protocol (docs/table-layout.md section 6)
// ---------------------------------------------------------------------------

const uuid = (): string => crypto.randomUUID()
const pad = (v: number) => String(v).padStart(8, "0")

const getText = async (cluster: Cluster, key: string) => {
  const v = await run(cluster.meta.get(enc.encode(key)))
  return v === undefined ? undefined : dec.decode(v)
}

/** A Parquet file of `rows` rows: id (int64, from `idBase`), amount (double), name (string). */
export const parquetFile = (rows: number, idBase: number): Uint8Array => {
  const ids = new BigInt64Array(rows)
  const amounts = new Float64Array(rows)
  const names: Array<string> = []
  for (let i = 0; i < rows; i++) {
    const id = idBase + i
    ids[i] = BigInt(id)
    amounts[i] = Math.round(((id * 7919) % 100_000) / 10) / 10
    names.push(`name-${(id * 104_729) % 9973}`)
  }
  return new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: "id", data: ids, type: "INT64" },
        { name: "amount", data: amounts, type: "DOUBLE" },
        { name: "name", data: names, type: "STRING" },
      ],
    }),
  )
}

const SCHEMA = [
  { name: "id", type: "int64" },
  { name: "amount", type: "double" },
  { name: "name", type: "string" },
]

export const readEntry = async (cluster: Cluster, ref: TableRef): Promise<TableEntry | undefined> => {
  const text = await getText(cluster, `catalog/tables/${ref.database}/${ref.table}`)
  return text === undefined ? undefined : (JSON.parse(text) as TableEntry)
}

export const readCurrentSnapshot = async (cluster: Cluster, ref: TableRef): Promise<Snapshot> => {
  const entry = await readEntry(cluster, ref)
  if (entry === undefined) throw new Error(`no table ${ref.database}.${ref.table}`)
  return JSON.parse(dec.decode(await run(cluster.storage.get(entry.snapshot)))) as Snapshot
}

let nextId = 1

/** Creates a table with one data file per entry of `fileRows` (creating its database if needed). */
export const createTable = async (cluster: Cluster, ref: TableRef, fileRows: ReadonlyArray<number>): Promise<TableEntry> => {
  const dbKey = `catalog/databases/${ref.database}`
  let dbText = await getText(cluster, dbKey)
  if (dbText === undefined) {
    dbText = JSON.stringify({ id: uuid(), created_at: new Date().toISOString() })
    await run(cluster.meta.compareAndSwap(enc.encode(dbKey), undefined, enc.encode(dbText)))
  }
  const dbId = (JSON.parse(dbText) as { id: string }).id
  const tableId = uuid()
  const location = `${dbId}/${tableId}/`
  const files: Array<SnapshotFile> = []
  for (const rows of fileRows) files.push(await writeDataFile(cluster, location, rows))
  const snapshot = `${location}_ss/${pad(1)}.json`
  await run(cluster.storage.put(snapshot, enc.encode(JSON.stringify({ version: 1, files })), { ifNotExists: true }))
  const entry: TableEntry = { id: tableId, location, snapshot, schema: SCHEMA }
  const ok = await run(
    cluster.meta.compareAndSwap(enc.encode(`catalog/tables/${ref.database}/${ref.table}`), undefined, enc.encode(JSON.stringify(entry))),
  )
  if (!ok) throw new Error("table exists")
  return entry
}

const writeDataFile = async (cluster: Cluster, location: string, rows: number): Promise<SnapshotFile> => {
  const idBase = nextId
  nextId += rows
  const bytes = parquetFile(rows, idBase)
  const path = `${location}_d/${uuid()}.parquet`
  await run(cluster.storage.put(path, bytes, { ifNotExists: true }))
  return { path, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex"), rows }
}

/** One commit: appends a file of `rows` rows (if given) and drops the files at `removeIndexes`. */
export const commit = async (
  cluster: Cluster,
  ref: TableRef,
  change: { readonly appendRows?: number; readonly removeIndexes?: ReadonlyArray<number> },
): Promise<Snapshot> => {
  const key = enc.encode(`catalog/tables/${ref.database}/${ref.table}`)
  const raw = await getText(cluster, `catalog/tables/${ref.database}/${ref.table}`)
  if (raw === undefined) throw new Error("no table")
  const entry = JSON.parse(raw) as TableEntry
  const old = await readCurrentSnapshot(cluster, ref)
  let files = old.files.filter((_, i) => !(change.removeIndexes ?? []).includes(i))
  if (change.appendRows !== undefined) files = [...files, await writeDataFile(cluster, entry.location, change.appendRows)]
  // The next version after every snapshot object written so far (another writer's orphan included).
  const written = await run(cluster.storage.list(`${entry.location}_ss/`).pipe(Stream.runCollect))
  const version = Math.max(old.version, ...[...written].map((i) => Number(/(\d+)\.json$/.exec(i.key)?.[1] ?? 0))) + 1
  const snapshot = `${entry.location}_ss/${pad(version)}.json`
  const next: Snapshot = { version, files }
  await run(cluster.storage.put(snapshot, enc.encode(JSON.stringify(next)), { ifNotExists: true }))
  const ok = await run(cluster.meta.compareAndSwap(key, enc.encode(raw), enc.encode(JSON.stringify({ ...entry, snapshot }))))
  if (!ok) throw new Error("commit lost")
  return next
}

// ---------------------------------------------------------------------------
// DuckDB: a Parquet reader we did not write
// ---------------------------------------------------------------------------

export interface Aggregates {
  readonly rows: number
  readonly sum_id: number
  readonly sum_amount: number
  /** md5 over the sorted rows: the content, not just the totals. */
  readonly digest: string
}

let duck: Promise<DuckDBInstance> | undefined

/**
 * Reads the files a snapshot lists out of `cluster`'s storage (downloaded
 * into a temp directory, so any backend works) with DuckDB's `read_parquet`.
 */
export const duckAggregates = async (cluster: Cluster, files: ReadonlyArray<SnapshotFile>): Promise<Aggregates> => {
  const dir = await tempDir("duck")
  const locals: Array<string> = []
  for (const [i, f] of files.entries()) {
    const local = join(dir, `${i}.parquet`)
    await mkdir(dir, { recursive: true })
    await writeFile(local, await run(cluster.storage.get(f.path)))
    locals.push(local)
  }
  if (locals.length === 0) return { rows: 0, sum_id: 0, sum_amount: 0, digest: "" }
  duck ??= DuckDBInstance.create(":memory:")
  const connection = await (await duck).connect()
  try {
    const list = locals.map((p) => `'${p}'`).join(", ")
    const reader = await connection.runAndReadAll(
      `SELECT count(*)::BIGINT AS n, sum(id)::BIGINT AS s, round(sum(amount), 2)::DOUBLE AS a,
              md5(string_agg(id::VARCHAR || ':' || amount::VARCHAR || ':' || name, ',' ORDER BY id)) AS d
       FROM read_parquet([${list}])`,
    )
    const [n, s, a, d] = reader.getRows()[0]
    return { rows: Number(n), sum_id: Number(s), sum_amount: Number(a), digest: String(d) }
  } finally {
    connection.closeSync()
  }
}

/** DuckDB's aggregates of a table's current snapshot. */
export const tableAggregates = async (cluster: Cluster, ref: TableRef): Promise<Aggregates> =>
  duckAggregates(cluster, (await readCurrentSnapshot(cluster, ref)).files)
