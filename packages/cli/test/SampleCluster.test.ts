import { createHash } from "node:crypto"
import { parquetMetadata, parquetReadObjects } from "hyparquet"
import { describe, expect, it } from "vitest"
import {
  BLOCK_SIZE,
  type ColumnType,
  type DatabaseEntry,
  type SampleCluster,
  type Snapshot,
  type TableEntry,
  describeMutation,
  describeSample,
  generateSampleCluster,
  mutateSampleCluster,
  verifySampleLayout,
} from "../src/SampleCluster.ts"

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex")
const toArrayBuffer = (b: Uint8Array): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer
const decode = (b: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(b))
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const tablesOf = (state: SampleCluster) =>
  state.meta
    .filter((m) => m.key.startsWith("catalog/tables/"))
    .map((m) => {
      const [db, table] = m.key.slice("catalog/tables/".length).split("/")
      return { db, table, entry: JSON.parse(m.value) as TableEntry }
    })

const expectedJsType = (type: ColumnType, v: unknown): boolean => {
  if (v === null) return true
  switch (type) {
    case "int64":
      return typeof v === "bigint"
    case "double":
      return typeof v === "number"
    case "string":
      return typeof v === "string"
    case "boolean":
      return typeof v === "boolean"
    case "timestamp_ms":
      return v instanceof Date
  }
}

/** Independent (re-implemented) layout checks + Parquet read-back of every listed data file. */
const checkLayout = async (state: SampleCluster): Promise<void> => {
  const files = new Map(state.files.map((f) => [f.path, f.bytes]))
  expect(files.size).toBe(state.files.length)
  for (const f of state.files) {
    expect(f.path).not.toMatch(/^\/|\/$|\/\/|(^|\/)\.\.?(\/|$)|\\/)
  }

  const dbs = new Map<string, DatabaseEntry>()
  for (const m of state.meta.filter((m) => m.key.startsWith("catalog/databases/"))) {
    const db = JSON.parse(m.value) as DatabaseEntry
    expect(db.id).toMatch(UUID_RE)
    expect(Number.isNaN(Date.parse(db.created_at))).toBe(false)
    dbs.set(m.key.slice("catalog/databases/".length), db)
  }
  expect(state.meta.every((m) => m.key.startsWith("catalog/databases/") || m.key.startsWith("catalog/tables/"))).toBe(true)

  const referenced = new Set<string>()
  for (const { db, table, entry } of tablesOf(state)) {
    const label = `${db}.${table}`
    expect(dbs.has(db), label).toBe(true)
    expect(entry.id).toMatch(UUID_RE)
    expect(entry.location).toBe(`${dbs.get(db)?.id}/${entry.id}/`)
    expect(entry.snapshot).toMatch(new RegExp(`^${entry.location}_ss/\\d{8}\\.json$`))
    const snapBytes = files.get(entry.snapshot)
    expect(snapBytes, `${label} snapshot exists`).toBeDefined()
    const snapshot = decode(snapBytes as Uint8Array) as Snapshot
    expect(entry.snapshot.endsWith(`/${String(snapshot.version).padStart(8, "0")}.json`)).toBe(true)
    expect(snapshot.files.length).toBeGreaterThan(0)
    const columns = entry.schema ?? []
    expect(columns.length).toBeGreaterThan(1)
    for (const f of snapshot.files) {
      referenced.add(f.path)
      const bytes = files.get(f.path)
      expect(bytes, `${label}: ${f.path} exists`).toBeDefined()
      const b = bytes as Uint8Array
      expect(b.byteLength).toBe(f.size)
      expect(sha256(b)).toBe(f.sha256)
      expect(f.path).toMatch(/\/_d\/[0-9a-f-]{36}\.parquet$/)
      if (!entry.clone_of) expect(f.path.startsWith(entry.location)).toBe(true)

      const file = toArrayBuffer(b)
      expect(Number(parquetMetadata(file).num_rows)).toBe(f.rows)
      const rows = await parquetReadObjects({ file })
      expect(rows.length, `${label}: ${f.path} rows`).toBe(f.rows)
      expect(Object.keys(rows[0])).toEqual(columns.map((c) => c.name))
      for (const row of [rows[0], rows[rows.length - 1]]) {
        for (const c of columns) expect(expectedJsType(c.type, row[c.name]), `${label}.${c.name}`).toBe(true)
      }
    }
  }
  // no orphan data files: every data file is referenced by some current snapshot
  for (const f of state.files) {
    if (f.path.endsWith(".parquet")) expect(referenced.has(f.path), `orphan ${f.path}`).toBe(true)
  }
  expect(verifySampleLayout(state)).toEqual([])
}

describe("SampleCluster", () => {
  const sample = generateSampleCluster({ seed: 7 })

  it("has the documented shape", () => {
    const dbNames = sample.meta.filter((m) => m.key.startsWith("catalog/databases/")).map((m) => m.key)
    expect(dbNames).toEqual(["catalog/databases/events", "catalog/databases/ops", "catalog/databases/sales"])
    const tables = tablesOf(sample)
    for (const db of ["sales", "events", "ops"]) {
      const n = tables.filter((t) => t.db === db).length
      expect(n).toBeGreaterThanOrEqual(2)
      expect(n).toBeLessThanOrEqual(3)
    }
    for (const { entry } of tables) {
      const snapshot = decode(sample.files.find((f) => f.path === entry.snapshot)?.bytes as Uint8Array) as Snapshot
      expect(snapshot.files.length).toBeGreaterThanOrEqual(2)
      expect(snapshot.files.length).toBeLessThanOrEqual(4)
      for (const f of snapshot.files) {
        expect(f.rows).toBeGreaterThanOrEqual(500)
        expect(f.rows).toBeLessThanOrEqual(5000)
      }
    }
    // a shallow clone lists files of its source's location
    const clone = tables.find((t) => t.entry.clone_of)
    expect(clone).toBeDefined()
    const cloneSnap = decode(sample.files.find((f) => f.path === clone?.entry.snapshot)?.bytes as Uint8Array) as Snapshot
    const source = tables.find((t) => t.entry.id === clone?.entry.clone_of?.table_id)
    expect(cloneSnap.files.some((f) => f.path.startsWith(source?.entry.location as string))).toBe(true)
    expect(describeSample(sample)).toMatch(/^3 databases, 8 tables, \d+ files/)
  })

  it("is deterministic", () => {
    const again = generateSampleCluster({ seed: 7 })
    expect(again.meta).toEqual(sample.meta)
    expect(again.files.map((f) => f.path)).toEqual(sample.files.map((f) => f.path))
    for (let i = 0; i < sample.files.length; i++) {
      expect(Buffer.from(again.files[i].bytes).equals(Buffer.from(sample.files[i].bytes))).toBe(true)
    }
    const other = generateSampleCluster({ seed: 8 })
    expect(other.meta).not.toEqual(sample.meta)
    expect(mutateSampleCluster(sample, { seed: 3 }).state.meta).toEqual(mutateSampleCluster(again, { seed: 3 }).state.meta)
  })

  it("has exactly one file crossing the 8 MiB block boundary, in events.clicks", () => {
    const large = sample.files.filter((f) => f.bytes.byteLength > BLOCK_SIZE)
    expect(large).toHaveLength(1)
    expect(large[0].bytes.byteLength).toBeGreaterThan(8 * 1024 * 1024)
    expect(large[0].bytes.byteLength).toBeLessThan(12 * 1024 * 1024)
    const clicks = tablesOf(sample).find((t) => t.db === "events" && t.table === "clicks")
    expect(large[0].path.startsWith(clicks?.entry.location as string)).toBe(true)
  })

  it("has a consistent layout whose Parquet files read back", async () => {
    await checkLayout(sample)
  })

  it("mutates into a consistent layout", async () => {
    const m = mutateSampleCluster(sample, { seed: 1 })
    const before = new Map(sample.files.map((f) => [f.path, f.bytes]))
    // applying the returned operations to the old state yields m.state
    const files = new Map(before)
    for (const f of m.added) {
      expect(files.has(f.path), `${f.path} is new`).toBe(false)
      files.set(f.path, f.bytes)
    }
    const meta = new Map(sample.meta.map((e) => [e.key, e.value]))
    for (const c of m.changedMeta) {
      expect(meta.get(c.key) ?? null).toBe(c.previous)
      meta.set(c.key, c.value)
    }
    for (const k of m.removedMeta) expect(meta.delete(k)).toBe(true)
    for (const p of m.removedPaths) expect(files.delete(p)).toBe(true)
    expect([...files.keys()].sort()).toEqual(m.state.files.map((f) => f.path))
    expect([...meta].map(([key, value]) => ({ key, value })).sort((a, b) => (a.key < b.key ? -1 : 1))).toEqual(m.state.meta)

    // appended: new snapshot version with one more file
    const appended = tablesOf(m.state).find((t) => t.db === m.appended.database && t.table === m.appended.table)
    expect(appended?.entry.snapshot).toBe(m.appended.snapshot)
    const oldEntry = tablesOf(sample).find((t) => t.db === m.appended.database && t.table === m.appended.table)?.entry
    const oldSnap = decode(before.get(oldEntry?.snapshot as string) as Uint8Array) as Snapshot
    const newSnap = decode(files.get(m.appended.snapshot) as Uint8Array) as Snapshot
    expect(newSnap.version).toBe(oldSnap.version + 1)
    expect(newSnap.files.map((f) => f.path)).toEqual([...oldSnap.files.map((f) => f.path), m.appended.dataFile])
    expect(files.has(oldEntry?.snapshot as string)).toBe(true) // old snapshot object kept

    // created
    expect(m.changedMeta.find((c) => c.key === `catalog/tables/${m.created.database}/${m.created.table}`)?.previous).toBeNull()
    // dropped: meta key gone, nothing left under its location
    expect(m.removedMeta).toEqual([`catalog/tables/${m.dropped.database}/${m.dropped.table}`])
    expect(m.removedPaths.length).toBeGreaterThan(0)
    expect(m.state.files.some((f) => f.path.startsWith(m.dropped.location))).toBe(false)
    expect(tablesOf(m.state)).toHaveLength(tablesOf(sample).length)

    await checkLayout(m.state)
    expect(describeMutation(m)).toContain(`dropped ${m.dropped.database}.${m.dropped.table}`)

    // successive days keep working and differ
    const m2 = mutateSampleCluster(m.state, { seed: 1 })
    expect(m2.appended.dataFile).not.toBe(m.appended.dataFile)
    await checkLayout(m2.state)
  })

  it("dropping a clone source keeps the files its shallow clone still references", async () => {
    const m = mutateSampleCluster(sample, { seed: 2, dropTable: "ops.incidents" })
    expect(m.dropped).toMatchObject({ database: "ops", table: "incidents" })
    const clone = tablesOf(m.state).find((t) => t.db === "ops" && t.table === "incidents_review")
    const cloneSnap = decode(m.state.files.find((f) => f.path === clone?.entry.snapshot)?.bytes as Uint8Array) as Snapshot
    const shared = cloneSnap.files.filter((f) => f.path.startsWith(m.dropped.location))
    expect(shared.length).toBeGreaterThan(0)
    for (const f of shared) expect(m.removedPaths).not.toContain(f.path)
    // the source's snapshot objects and unshared data files are removed
    expect(m.removedPaths.some((p) => p.includes("/_ss/"))).toBe(true)
    expect(m.removedPaths.some((p) => p.endsWith(".parquet"))).toBe(true)
    expect(verifySampleLayout(m.state)).toEqual([])
    await checkLayout(m.state)
  })

  it("stays consistent over several simulated days", async () => {
    let state = sample
    for (let day = 0; day < 4; day++) {
      state = mutateSampleCluster(state, { seed: day }).state
      expect(verifySampleLayout(state)).toEqual([])
    }
    await checkLayout(state)
  })
})
