/**
 * Deterministic sample "data cluster" following the table layout of
 * docs/table-layout.md: meta entries (`catalog/databases/<db>`,
 * `catalog/tables/<db>/<table>`) plus storage files (immutable Parquet data
 * files and JSON snapshot objects).
 *
 * Everything here is pure and synchronous (hyparquet-writer and node:crypto
 * hashing are synchronous); callers may still `await` the results.
 */
import { createHash } from "node:crypto"
import { parquetWriteBuffer } from "hyparquet-writer"
import type { ColumnSource } from "hyparquet-writer"

// ---------------------------------------------------------------------------
// Layout types (docs/table-layout.md)
// ---------------------------------------------------------------------------

/** A file in storage; `path` is relative to the storage root. */
export interface SampleFile {
  path: string
  bytes: Uint8Array
}

/** A meta key-value entry; `value` is the JSON text. */
export interface SampleMetaEntry {
  key: string
  value: string
}

/** A whole cluster: storage files + meta entries. */
export interface SampleCluster {
  files: SampleFile[]
  meta: SampleMetaEntry[]
}

export type ColumnType = "int64" | "double" | "string" | "boolean" | "timestamp_ms"

export interface ColumnSpec {
  name: string
  type: ColumnType
}

/** Value of `catalog/databases/<db>`. */
export interface DatabaseEntry {
  id: string
  created_at: string
}

/** Value of `catalog/tables/<db>/<table>`. */
export interface TableEntry {
  id: string
  location: string
  snapshot: string
  schema?: ColumnSpec[]
  properties?: Record<string, string>
  clone_of?: CloneOf
}

export interface CloneOf {
  database: string
  table: string
  table_id: string
  snapshot: string
}

export interface SnapshotFileEntry {
  path: string
  size: number
  sha256?: string
  rows?: number
}

/** Content of a snapshot object. */
export interface Snapshot {
  version: number
  files: SnapshotFileEntry[]
}

/** A meta change: put `value` at `key`, CAS-expecting `previous` (null = key must be absent). */
export interface SampleMetaChange extends SampleMetaEntry {
  previous: string | null
}

/**
 * One simulated "day of work". Apply in this order to reproduce it on real
 * storage + meta:
 *   1. write every file of `added` (data files first, then snapshot objects;
 *      all paths are new, nothing is overwritten),
 *   2. for each `changedMeta` entry put `value` at `key` (CAS against `previous`,
 *      null meaning "must not exist"), and delete every key of `removedMeta`,
 *   3. delete every path of `removedPaths` (what a GC would remove for the
 *      dropped table: files under its location no longer referenced by any
 *      remaining snapshot object).
 * `state` is the resulting cluster, i.e. the input with all of the above applied.
 */
export interface SampleMutation {
  added: SampleFile[]
  changedMeta: SampleMetaChange[]
  removedMeta: string[]
  removedPaths: string[]
  appended: { database: string; table: string; dataFile: string; snapshot: string; version: number; rows: number }
  created: { database: string; table: string; snapshot: string; dataFiles: string[] }
  dropped: { database: string; table: string; location: string }
  state: SampleCluster
}

// ---------------------------------------------------------------------------
// Layout helpers
// ---------------------------------------------------------------------------

export const DATABASE_PREFIX = "catalog/databases/"
export const TABLE_PREFIX = "catalog/tables/"
/** Storage block size that the one large sample file is meant to cross. */
export const BLOCK_SIZE = 8 * 1024 * 1024

export const databaseKey = (db: string): string => `${DATABASE_PREFIX}${db}`
export const tableKey = (db: string, table: string): string => `${TABLE_PREFIX}${db}/${table}`
export const snapshotPath = (location: string, version: number): string =>
  `${location}_ss/${String(version).padStart(8, "0")}.json`
export const dataFilePath = (location: string, fileId: string): string => `${location}_d/${fileId}.parquet`

/** `catalog/tables/<db>/<table>` -> { database, table }, or undefined for other keys. */
export const parseTableKey = (key: string): { database: string; table: string } | undefined => {
  if (!key.startsWith(TABLE_PREFIX)) return undefined
  const rest = key.slice(TABLE_PREFIX.length).split("/")
  if (rest.length !== 2 || rest[0] === "" || rest[1] === "") return undefined
  return { database: rest[0], table: rest[1] }
}

export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

const NAME_RE = /^[a-z][a-z0-9_]{0,62}$/
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/

/** Path rule of the layout: relative, '/'-separated, no empty / '.' / '..' segments. */
export const isValidStoragePath = (path: string): boolean => {
  if (path.length === 0 || path.length > 1024 || path.startsWith("/") || path.endsWith("/")) return false
  return path.split("/").every((s) => SEGMENT_RE.test(s) && s !== "." && s !== "..")
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const jsonBytes = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))

// ---------------------------------------------------------------------------
// Seeded PRNG (sfc32 seeded through splitmix32)
// ---------------------------------------------------------------------------

class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = next()
    this.b = next()
    this.c = next()
    this.d = next()
    for (let i = 0; i < 12; i++) this.u32()
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** [0, 1) */
  float(): number {
    return this.u32() / 4294967296
  }

  /** integer in [min, max] */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1))
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]
  }

  bool(pTrue: number): boolean {
    return this.float() < pTrue
  }

  /** lowercase canonical UUID (version-4 bit layout), deterministic. */
  uuid(): string {
    const hex = (n: number): string => (n >>> 0).toString(16).padStart(8, "0")
    const w0 = this.u32()
    const w1 = (this.u32() & 0xffff0fff) | 0x00004000
    const w2 = (this.u32() & 0x3fffffff) | 0x80000000
    const w3 = this.u32()
    const h = hex(w0) + hex(w1) + hex(w2) + hex(w3)
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`
  }

  /** random string of `length` chars from a 64-char alphabet */
  text(length: number): string {
    const codes: number[] = new Array(length)
    for (let j = 0; j < length; j += 5) {
      let r = this.u32()
      for (let k = 0; k < 5 && j + k < length; k++) {
        codes[j + k] = ALPHABET.charCodeAt(r & 63)
        r >>>= 6
      }
    }
    let out = ""
    for (let i = 0; i < length; i += 8192) out += String.fromCharCode.apply(null, codes.slice(i, i + 8192))
    return out
  }
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// ---------------------------------------------------------------------------
// Column data generation
// ---------------------------------------------------------------------------

type ColumnValues = BigInt64Array | Float64Array | (string | null)[] | (boolean | null)[] | (bigint | null)[]

interface GenContext {
  rng: Rng
  rows: number
  /** first id of this file (ids continue across files of a table) */
  idBase: number
  /** epoch millis of the time window start */
  timeBase: number
  /** characters of the `context` column per row */
  contextChars: number
}

const DAY_MS = 86_400_000
const BASE_TIME = Date.UTC(2025, 0, 6, 8, 0, 0)

const WORDS = [
  "alpha", "bravo", "cobalt", "delta", "ember", "falcon", "granite", "harbor", "indigo", "juniper",
  "kepler", "lumen", "meridian", "nimbus", "onyx", "pioneer", "quartz", "rivet", "summit", "tundra",
]
const COUNTRIES = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "NL", "ES", "CA"]
const CURRENCIES = ["EUR", "USD", "GBP", "JPY"]
const REASONS = ["damaged", "wrong size", "late delivery", "changed mind", "duplicate order"]
const PAGES = ["/", "/pricing", "/docs", "/blog", "/signup", "/login", "/cart", "/checkout", "/product", "/search"]
const BROWSERS = ["firefox", "chrome", "safari", "edge"]
const SERVICES = ["api", "web", "billing", "search", "ingest", "auth"]
const SEVERITIES = ["sev1", "sev2", "sev3", "sev4"]

const ints = (ctx: GenContext, f: (i: number) => number): BigInt64Array => {
  const out = new BigInt64Array(ctx.rows)
  for (let i = 0; i < ctx.rows; i++) out[i] = BigInt(f(i))
  return out
}
const doubles = (ctx: GenContext, f: () => number): Float64Array => {
  const out = new Float64Array(ctx.rows)
  for (let i = 0; i < ctx.rows; i++) out[i] = f()
  return out
}
const strings = (ctx: GenContext, f: (i: number) => string | null): (string | null)[] =>
  Array.from({ length: ctx.rows }, (_, i) => f(i))
const round2 = (x: number): number => Math.round(x * 100) / 100

/** Column-name specific generators; anything else falls back to the type. */
const NAMED: Record<string, (ctx: GenContext) => ColumnValues> = {
  amount: (c) => doubles(c, () => round2(5 + c.rng.float() * 995)),
  refund: (c) => doubles(c, () => round2(c.rng.float() * 300)),
  currency: (c) => strings(c, () => c.rng.pick(CURRENCIES)),
  country: (c) => strings(c, () => c.rng.pick(COUNTRIES)),
  email: (c) => strings(c, (i) => `user${c.idBase + i}@example.com`),
  name: (c) => strings(c, () => `${c.rng.pick(WORDS)} ${c.rng.pick(WORDS)}`),
  reason: (c) => strings(c, () => c.rng.pick(REASONS)),
  url: (c) => strings(c, () => `https://shop.example.com${c.rng.pick(PAGES)}?ref=${c.rng.int(0, 9999)}`),
  page: (c) => strings(c, () => c.rng.pick(PAGES)),
  browser: (c) => strings(c, () => c.rng.pick(BROWSERS)),
  service: (c) => strings(c, () => c.rng.pick(SERVICES)),
  severity: (c) => strings(c, () => c.rng.pick(SEVERITIES)),
  title: (c) => strings(c, () => `${c.rng.pick(SERVICES)} ${c.rng.pick(WORDS)} ${c.rng.pick(REASONS)}`),
  context: (c) => strings(c, () => c.rng.text(Math.max(1, c.contextChars + c.rng.int(-32, 32)))),
  session: (c) => strings(c, () => c.rng.uuid()),
  dwell_ms: (c) => doubles(c, () => round2(-Math.log(1 - c.rng.float()) * 4000)),
  duration_s: (c) => doubles(c, () => round2(1 + c.rng.float() * 600)),
  version: (c) => strings(c, () => `v1.${c.rng.int(0, 40)}.${c.rng.int(0, 9)}`),
  mttr_min: (c) => doubles(c, () => round2(5 + c.rng.float() * 240)),
}

const generateColumn = (spec: ColumnSpec, ctx: GenContext): ColumnValues => {
  const named = NAMED[spec.name]
  if (named) return named(ctx)
  switch (spec.type) {
    case "int64":
      // `*_id` columns: the first one (e.g. order_id in orders) is a running id.
      return spec.name.endsWith("_id") || spec.name === "id"
        ? ints(ctx, (i) => ctx.idBase + i)
        : ints(ctx, () => ctx.rng.int(0, 1_000_000))
    case "double":
      return doubles(ctx, () => round2(ctx.rng.float() * 1000))
    case "string":
      return strings(ctx, () => (ctx.rng.bool(0.03) ? null : `${ctx.rng.pick(WORDS)}-${ctx.rng.int(0, 999)}`))
    case "boolean":
      return Array.from({ length: ctx.rows }, () => ctx.rng.bool(0.3))
    case "timestamp_ms": {
      // mostly increasing timestamps within one day after timeBase
      const step = DAY_MS / ctx.rows
      return Array.from({ length: ctx.rows }, (_, i) => BigInt(Math.floor(ctx.timeBase + i * step + ctx.rng.float() * step)))
    }
  }
}

/** Foreign-key style int64 columns pointing at a smaller id space. */
const FOREIGN_KEYS: Record<string, number> = { customer_id: 5000, order_id: 20000, user_id: 50000 }

const PARQUET_TYPE: Record<ColumnType, ColumnSource["type"]> = {
  int64: "INT64",
  double: "DOUBLE",
  string: "STRING",
  boolean: "BOOLEAN",
  timestamp_ms: "TIMESTAMP",
}

/** Writes one Parquet data file for `schema`; the first `*_id`/`id` column is the running key. */
const writeDataFile = (schema: ColumnSpec[], ctx: GenContext): Uint8Array => {
  const keyColumn = schema.find((c) => c.type === "int64" && (c.name === "id" || c.name.endsWith("_id")))?.name
  const columnData: ColumnSource[] = schema.map((spec) => {
    let data: ColumnValues
    const fkRange = FOREIGN_KEYS[spec.name]
    if (spec.type === "int64" && spec.name !== keyColumn && fkRange !== undefined) {
      data = ints(ctx, () => ctx.rng.int(1, fkRange))
    } else {
      data = generateColumn(spec, ctx)
    }
    const source: ColumnSource = { name: spec.name, data, type: PARQUET_TYPE[spec.type] }
    // random payload does not compress: skip the snappy pass
    if (spec.name === "context") source.codec = "UNCOMPRESSED"
    return source
  })
  return new Uint8Array(parquetWriteBuffer({ columnData, createdBy: "bendsave sample" }))
}

// ---------------------------------------------------------------------------
// Sample definition
// ---------------------------------------------------------------------------

interface FilePlan {
  rows: number
  contextChars?: number
}

interface TablePlan {
  name: string
  schema: ColumnSpec[]
  properties?: Record<string, string>
  /** each commit adds these files and produces one snapshot version */
  commits: FilePlan[][]
  /** shallow clone: starts from the source table's snapshot `version` */
  cloneOf?: { table: string; version: number }
}

interface DatabasePlan {
  name: string
  createdDaysAgo: number
  tables: TablePlan[]
}

const col = (name: string, type: ColumnType): ColumnSpec => ({ name, type })

const SCHEMAS: Record<string, ColumnSpec[]> = {
  orders: [col("order_id", "int64"), col("customer_id", "int64"), col("amount", "double"), col("currency", "string"), col("paid", "boolean"), col("ordered_at", "timestamp_ms")],
  customers: [col("customer_id", "int64"), col("name", "string"), col("email", "string"), col("country", "string"), col("vip", "boolean"), col("signup_at", "timestamp_ms")],
  returns: [col("return_id", "int64"), col("order_id", "int64"), col("reason", "string"), col("refund", "double"), col("returned_at", "timestamp_ms")],
  clicks: [col("event_id", "int64"), col("user_id", "int64"), col("url", "string"), col("browser", "string"), col("is_bot", "boolean"), col("dwell_ms", "double"), col("ts", "timestamp_ms"), col("context", "string")],
  pageviews: [col("view_id", "int64"), col("user_id", "int64"), col("page", "string"), col("duration_s", "double"), col("ts", "timestamp_ms")],
  incidents: [col("id", "int64"), col("service", "string"), col("severity", "string"), col("title", "string"), col("resolved", "boolean"), col("mttr_min", "double"), col("opened_at", "timestamp_ms")],
  deploys: [col("deploy_id", "int64"), col("service", "string"), col("version", "string"), col("ok", "boolean"), col("duration_s", "double"), col("deployed_at", "timestamp_ms")],
}

const SAMPLE: DatabasePlan[] = [
  {
    name: "sales",
    createdDaysAgo: 30,
    tables: [
      { name: "orders", schema: SCHEMAS.orders, properties: { owner: "sales-eng" }, commits: [[{ rows: 4000 }], [{ rows: 3500 }, { rows: 2500 }], [{ rows: 5000 }]] },
      { name: "customers", schema: SCHEMAS.customers, commits: [[{ rows: 5000 }, { rows: 1200 }]] },
      { name: "returns", schema: SCHEMAS.returns, commits: [[{ rows: 800 }], [{ rows: 600 }]] },
    ],
  },
  {
    name: "events",
    createdDaysAgo: 20,
    tables: [
      {
        name: "clicks",
        schema: SCHEMAS.clicks,
        properties: { owner: "growth", retention_days: "90" },
        // the 4800-row file carries ~2.3 KB of `context` per row: ~10.6 MiB, crossing the 8 MiB block boundary
        commits: [[{ rows: 3000, contextChars: 120 }], [{ rows: 4800, contextChars: 2300 }], [{ rows: 2000, contextChars: 120 }]],
      },
      { name: "pageviews", schema: SCHEMAS.pageviews, commits: [[{ rows: 5000 }, { rows: 5000 }], [{ rows: 3000 }]] },
    ],
  },
  {
    name: "ops",
    createdDaysAgo: 10,
    tables: [
      { name: "incidents", schema: SCHEMAS.incidents, commits: [[{ rows: 500 }, { rows: 700 }], [{ rows: 900 }]] },
      { name: "deploys", schema: SCHEMAS.deploys, commits: [[{ rows: 1500 }], [{ rows: 1000 }]] },
      // shallow clone of incidents at version 1, plus one file of its own
      { name: "incidents_review", schema: SCHEMAS.incidents, properties: { purpose: "postmortem review" }, cloneOf: { table: "incidents", version: 1 }, commits: [[], [{ rows: 600 }]] },
    ],
  },
]

// ---------------------------------------------------------------------------
// Building state
// ---------------------------------------------------------------------------

const iso = (ms: number): string => new Date(ms).toISOString()

class ClusterBuilder {
  readonly files = new Map<string, Uint8Array>()
  readonly meta = new Map<string, string>()

  addFile(path: string, bytes: Uint8Array): void {
    if (!isValidStoragePath(path)) throw new Error(`invalid storage path ${path}`)
    if (this.files.has(path)) throw new Error(`storage path already exists: ${path}`)
    this.files.set(path, bytes)
  }

  result(): SampleCluster {
    return {
      files: [...this.files].map(([path, bytes]) => ({ path, bytes })).sort(byPath),
      meta: [...this.meta].map(([key, value]) => ({ key, value })).sort(byKey),
    }
  }
}

const byPath = (a: { path: string }, b: { path: string }): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
const byKey = (a: { key: string }, b: { key: string }): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

/** Writes a data file under `location`; returns its snapshot entry and bytes. */
const makeDataFile = (
  rng: Rng,
  location: string,
  schema: ColumnSpec[],
  plan: FilePlan,
  idBase: number,
  timeBase: number,
): { entry: SnapshotFileEntry; bytes: Uint8Array } => {
  const path = dataFilePath(location, rng.uuid())
  const bytes = writeDataFile(schema, { rng, rows: plan.rows, idBase, timeBase, contextChars: plan.contextChars ?? 80 })
  return { entry: { path, size: bytes.byteLength, sha256: sha256Hex(bytes), rows: plan.rows }, bytes }
}

/**
 * Deterministic sample cluster: 3 databases (sales, events, ops), 8 tables
 * (one of them, ops.incidents_review, a shallow clone of ops.incidents), real
 * Parquet data files with a snapshot history, and the catalog meta entries.
 * Every file is < 8 MiB except one ~10.6 MiB data file of events.clicks.
 * Same seed -> byte-identical result. Files sorted by path, meta by key.
 */
export const generateSampleCluster = (options?: { seed?: number }): SampleCluster => {
  const rng = new Rng(options?.seed ?? 1)
  const b = new ClusterBuilder()
  for (const db of SAMPLE) {
    const dbId = rng.uuid()
    const dbCreated = BASE_TIME - db.createdDaysAgo * DAY_MS
    b.meta.set(databaseKey(db.name), JSON.stringify({ id: dbId, created_at: iso(dbCreated) } satisfies DatabaseEntry))
    // snapshots of the tables of this database, by table name and version
    const history = new Map<string, { entry: TableEntry; snapshots: Snapshot[] }>()
    for (const t of db.tables) {
      const tableId = rng.uuid()
      const location = `${dbId}/${tableId}/`
      let files: SnapshotFileEntry[] = []
      let cloneOf: CloneOf | undefined
      if (t.cloneOf) {
        const source = history.get(t.cloneOf.table)
        if (!source) throw new Error(`clone source ${t.cloneOf.table} not built yet`)
        const sourceSnapshot = source.snapshots[t.cloneOf.version - 1]
        files = [...sourceSnapshot.files]
        cloneOf = {
          database: db.name,
          table: t.cloneOf.table,
          table_id: source.entry.id,
          snapshot: snapshotPath(source.entry.location, sourceSnapshot.version),
        }
      }
      const snapshots: Snapshot[] = []
      let idBase = 1
      let day = 0
      for (const commit of t.commits) {
        for (const plan of commit) {
          const { entry, bytes } = makeDataFile(rng, location, t.schema, plan, idBase, dbCreated + day * DAY_MS)
          b.addFile(entry.path, bytes)
          files = [...files, entry]
          idBase += plan.rows
          day++
        }
        const snapshot: Snapshot = { version: snapshots.length + 1, files }
        snapshots.push(snapshot)
        b.addFile(snapshotPath(location, snapshot.version), jsonBytes(snapshot))
      }
      const entry: TableEntry = { id: tableId, location, snapshot: snapshotPath(location, snapshots.length), schema: t.schema }
      if (t.properties) entry.properties = t.properties
      if (cloneOf) entry.clone_of = cloneOf
      b.meta.set(tableKey(db.name, t.name), JSON.stringify(entry))
      history.set(t.name, { entry, snapshots })
    }
  }
  return b.result()
}

// ---------------------------------------------------------------------------
// Reading state
// ---------------------------------------------------------------------------

export interface ParsedTable {
  database: string
  table: string
  key: string
  value: string
  entry: TableEntry
}

/** All table entries of a cluster's meta (sorted by key). */
export const listTables = (state: SampleCluster): ParsedTable[] =>
  state.meta
    .flatMap((m) => {
      const parsed = parseTableKey(m.key)
      return parsed ? [{ ...parsed, key: m.key, value: m.value, entry: JSON.parse(m.value) as TableEntry }] : []
    })
    .sort(byKey)

/** Database names of a cluster's meta (sorted). */
export const listDatabases = (state: SampleCluster): string[] =>
  state.meta
    .filter((m) => m.key.startsWith(DATABASE_PREFIX))
    .map((m) => m.key.slice(DATABASE_PREFIX.length))
    .sort()

export const parseSnapshot = (bytes: Uint8Array): Snapshot => JSON.parse(decoder.decode(bytes)) as Snapshot

const isSnapshotPath = (path: string): boolean => /\/_ss\/\d{8,}\.json$/.test(path)

/**
 * Structural check of the layout (no Parquet decoding): meta keys and names,
 * every table's database exists, snapshot objects exist and parse, listed
 * files exist with the recorded size/sha256, paths follow the path rules.
 * Returns the list of problems (empty = consistent).
 */
export const verifySampleLayout = (state: SampleCluster): string[] => {
  const problems: string[] = []
  const files = new Map(state.files.map((f) => [f.path, f.bytes]))
  if (files.size !== state.files.length) problems.push("duplicate storage paths")
  for (const f of state.files) if (!isValidStoragePath(f.path)) problems.push(`invalid storage path ${f.path}`)
  const dbIds = new Map<string, string>()
  for (const m of state.meta) {
    if (m.key.startsWith(DATABASE_PREFIX)) {
      const name = m.key.slice(DATABASE_PREFIX.length)
      if (!NAME_RE.test(name)) problems.push(`invalid database name in ${m.key}`)
      const db = JSON.parse(m.value) as DatabaseEntry
      if (typeof db.id !== "string" || typeof db.created_at !== "string") problems.push(`bad database entry ${m.key}`)
      dbIds.set(name, db.id)
    } else if (!parseTableKey(m.key) && !m.key.startsWith("catalog/external_clones/")) {
      // catalog/external_clones/<table_id>/<uuid>: clone dependency records (table-layout.md §7.4)
      problems.push(`unexpected meta key ${m.key}`)
    }
  }
  for (const t of listTables(state)) {
    const { entry } = t
    const dbId = dbIds.get(t.database)
    if (dbId === undefined) problems.push(`${t.key}: database ${t.database} missing`)
    if (!NAME_RE.test(t.table)) problems.push(`${t.key}: invalid table name`)
    if (entry.location !== `${dbId}/${entry.id}/`) problems.push(`${t.key}: location ${entry.location} is not <db_id>/<table_id>/`)
    if (!entry.snapshot.startsWith(`${entry.location}_ss/`)) problems.push(`${t.key}: snapshot outside its location`)
    const snapBytes = files.get(entry.snapshot)
    if (!snapBytes) {
      problems.push(`${t.key}: snapshot ${entry.snapshot} missing`)
      continue
    }
    const snapshot = parseSnapshot(snapBytes)
    if (entry.snapshot !== snapshotPath(entry.location, snapshot.version)) problems.push(`${t.key}: snapshot version/name mismatch`)
    const seen = new Set<string>()
    for (const f of snapshot.files) {
      if (seen.has(f.path)) problems.push(`${t.key}: ${f.path} listed twice`)
      seen.add(f.path)
      const bytes = files.get(f.path)
      if (!bytes) {
        problems.push(`${t.key}: data file ${f.path} missing`)
        continue
      }
      if (bytes.byteLength !== f.size) problems.push(`${t.key}: ${f.path} size ${bytes.byteLength} != ${f.size}`)
      if (f.sha256 !== undefined && sha256Hex(bytes) !== f.sha256) problems.push(`${t.key}: ${f.path} sha256 mismatch`)
    }
  }
  return problems
}

// ---------------------------------------------------------------------------
// Mutation
// ---------------------------------------------------------------------------

const NEW_TABLE_CANDIDATES: Record<string, { name: string; schema: ColumnSpec[] }[]> = {
  sales: [
    { name: "refunds", schema: SCHEMAS.returns },
    { name: "orders_archive", schema: SCHEMAS.orders },
  ],
  events: [
    { name: "sessions", schema: SCHEMAS.pageviews },
    { name: "clicks_sampled", schema: SCHEMAS.clicks },
  ],
  ops: [
    { name: "rollbacks", schema: SCHEMAS.deploys },
    { name: "alerts", schema: SCHEMAS.incidents },
  ],
}

/**
 * Simulates a day of work on `state` (not modified):
 *  - appends one new Parquet file to one table (new snapshot version written,
 *    table key updated to point at it; the previous snapshot object is kept),
 *  - creates one new table (snapshot version 1 with 1-2 data files) in an
 *    existing database,
 *  - drops one other table (preferably not a clone / clone source / holder of
 *    the > 8 MiB file): its meta key is removed and, as a GC would do, every
 *    storage file under its location that no remaining snapshot object
 *    references (shallow clones!) is removed.
 * `dropTable` ("<db>.<table>") forces which table is dropped (the append
 * target is then chosen among the others).
 * Deterministic in (state, options); successive mutations differ because the
 * state is mixed into the seed. See {@link SampleMutation} for how to apply it.
 */
export const mutateSampleCluster = (
  state: SampleCluster,
  options?: { seed?: number; dropTable?: string },
): SampleMutation => {
  const stateHash = createHash("sha256")
  for (const m of [...state.meta].sort(byKey)) stateHash.update(`${m.key}\n${m.value}\n`)
  const rng = new Rng(((options?.seed ?? 1) ^ stateHash.digest().readUInt32LE(0)) >>> 0)

  const files = new Map(state.files.map((f) => [f.path, f.bytes]))
  const meta = new Map(state.meta.map((m) => [m.key, m.value]))
  const tables = listTables(state)
  const databases = listDatabases(state)
  if (tables.length < 2 || databases.length === 0) throw new Error("mutateSampleCluster needs at least 2 tables")

  const added: SampleFile[] = []
  const addFile = (path: string, bytes: Uint8Array): void => {
    if (!isValidStoragePath(path) || files.has(path)) throw new Error(`cannot write ${path}`)
    files.set(path, bytes)
    added.push({ path, bytes })
  }
  const changedMeta: SampleMetaChange[] = []
  // "today": one day further per committed snapshot version in the cluster
  const day = tables.reduce((n, t) => n + Number(/(\d+)\.json$/.exec(t.entry.snapshot)?.[1] ?? 0), 0)
  const now = BASE_TIME + day * DAY_MS

  const forcedVictim = options?.dropTable === undefined
    ? undefined
    : tables.find((t) => `${t.database}.${t.table}` === options.dropTable)
  if (options?.dropTable !== undefined && !forcedVictim) throw new Error(`no table ${options.dropTable}`)

  // 1. append to one table
  const target = rng.pick(tables.filter((t) => t !== forcedVictim))
  const oldSnapshot = parseSnapshot(files.get(target.entry.snapshot) as Uint8Array)
  const schema = target.entry.schema ?? [col("id", "int64"), col("value", "double")]
  const idBase = oldSnapshot.files.reduce((n, f) => n + (f.rows ?? 0), 0) + 1
  const rows = rng.int(500, 3000)
  const appendedFile = makeDataFile(rng, target.entry.location, schema, { rows }, idBase, now)
  addFile(appendedFile.entry.path, appendedFile.bytes)
  const newSnapshot: Snapshot = { version: oldSnapshot.version + 1, files: [...oldSnapshot.files, appendedFile.entry] }
  const newSnapshotPath = snapshotPath(target.entry.location, newSnapshot.version)
  addFile(newSnapshotPath, jsonBytes(newSnapshot))
  const updatedEntry: TableEntry = { ...target.entry, snapshot: newSnapshotPath }
  changedMeta.push({ key: target.key, value: JSON.stringify(updatedEntry), previous: target.value })

  // 2. create a new table in an existing database
  const createDb = rng.pick(databases)
  const existing = new Set(tables.filter((t) => t.database === createDb).map((t) => t.table))
  const candidates = NEW_TABLE_CANDIDATES[createDb] ?? []
  let plan = candidates.find((c) => !existing.has(c.name))
  for (let n = 2; !plan; n++) {
    const name = `table_${n}`
    if (!existing.has(name)) plan = { name, schema: SCHEMAS.deploys }
  }
  const createDbId = (JSON.parse(meta.get(databaseKey(createDb)) as string) as DatabaseEntry).id
  const newTableId = rng.uuid()
  const newLocation = `${createDbId}/${newTableId}/`
  const newFiles: SnapshotFileEntry[] = []
  let newIdBase = 1
  for (let i = rng.int(1, 2); i > 0; i--) {
    const r = rng.int(500, 2500)
    const f = makeDataFile(rng, newLocation, plan.schema, { rows: r }, newIdBase, now)
    addFile(f.entry.path, f.bytes)
    newFiles.push(f.entry)
    newIdBase += r
  }
  const newTableSnapshot = snapshotPath(newLocation, 1)
  addFile(newTableSnapshot, jsonBytes({ version: 1, files: newFiles } satisfies Snapshot))
  const newEntry: TableEntry = { id: newTableId, location: newLocation, snapshot: newTableSnapshot, schema: plan.schema }
  changedMeta.push({ key: tableKey(createDb, plan.name), value: JSON.stringify(newEntry), previous: null })
  for (const c of changedMeta) meta.set(c.key, c.value)

  // 3. drop one other table; prefer one that is neither a clone nor a clone
  //    source, and that does not hold the > 8 MiB file (keeps that coverage)
  const others = tables.filter((t) => t.key !== target.key)
  const isCloneSource = (t: ParsedTable): boolean => tables.some((o) => o.entry.clone_of?.table_id === t.entry.id)
  const holdsLargeFile = (t: ParsedTable): boolean =>
    [...files].some(([path, bytes]) => path.startsWith(t.entry.location) && bytes.byteLength > BLOCK_SIZE)
  const preferred = others.filter((t) => !t.entry.clone_of && !isCloneSource(t) && !holdsLargeFile(t))
  const victim = forcedVictim ?? rng.pick(preferred.length > 0 ? preferred : others)
  meta.delete(victim.key)
  // GC: files under the dropped location that no remaining snapshot object references
  const referenced = new Set<string>()
  for (const [path, bytes] of files) {
    if (isSnapshotPath(path) && !path.startsWith(victim.entry.location)) {
      for (const f of parseSnapshot(bytes).files) referenced.add(f.path)
    }
  }
  const removedPaths = [...files.keys()].filter((p) => p.startsWith(victim.entry.location) && !referenced.has(p)).sort()
  for (const p of removedPaths) files.delete(p)

  return {
    added,
    changedMeta,
    removedMeta: [victim.key],
    removedPaths,
    appended: { database: target.database, table: target.table, dataFile: appendedFile.entry.path, snapshot: newSnapshotPath, version: newSnapshot.version, rows },
    created: { database: createDb, table: plan.name, snapshot: newTableSnapshot, dataFiles: newFiles.map((f) => f.path) },
    dropped: { database: victim.database, table: victim.table, location: victim.entry.location },
    state: {
      files: [...files].map(([path, bytes]) => ({ path, bytes })).sort(byPath),
      meta: [...meta].map(([key, value]) => ({ key, value })).sort(byKey),
    },
  }
}

// ---------------------------------------------------------------------------
// Narration
// ---------------------------------------------------------------------------

const formatBytes = (n: number): string =>
  n >= 1024 * 1024 ? `${(n / (1024 * 1024)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`

/** e.g. "3 databases, 8 tables, 41 files (24 data, 17 snapshots), 14.2 MiB, largest file 10.6 MiB" */
export const describeSample = (state: SampleCluster): string => {
  const dbs = listDatabases(state).length
  const tables = listTables(state).length
  const snapshots = state.files.filter((f) => isSnapshotPath(f.path)).length
  const data = state.files.length - snapshots
  const bytes = state.files.reduce((n, f) => n + f.bytes.byteLength, 0)
  const largest = state.files.reduce((n, f) => Math.max(n, f.bytes.byteLength), 0)
  return `${dbs} databases, ${tables} tables, ${state.files.length} files (${data} data, ${snapshots} snapshots), ${formatBytes(bytes)}, largest file ${formatBytes(largest)}`
}

/** e.g. "appended 1,234 rows to sales.orders (v4); created events.sessions (2 files); dropped ops.deploys (5 files removed)" */
export const describeMutation = (m: SampleMutation): string =>
  `appended ${m.appended.rows} rows to ${m.appended.database}.${m.appended.table} (v${m.appended.version}); ` +
  `created ${m.created.database}.${m.created.table} (${m.created.dataFiles.length} data files); ` +
  `dropped ${m.dropped.database}.${m.dropped.table} (${m.removedPaths.length} files removed); ` +
  `${m.added.length} files written, ${formatBytes(m.added.reduce((n, f) => n + f.bytes.byteLength, 0))}`
