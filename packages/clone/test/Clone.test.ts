/**
 * Clone workflows end to end on real local clusters (fs storage + local
 * meta, opened from cluster files): every kind of clone, checked afterwards
 * by DuckDB reading the Parquet files the target's snapshot lists.
 */
import { backup, type Cluster, liveSharedLeases, openRepositoryAt, type Repository } from "@bendsave/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  cloneDatabase,
  cloneTable,
  describeTable,
  dropTable,
  listClones,
  listDatabases,
  listPins,
  listTables,
  restoreTables,
} from "../src/index.ts"
import {
  cleanup,
  commit,
  createTable,
  openTestCluster,
  readCurrentSnapshot,
  readEntry,
  run,
  runError,
  tableAggregates,
  tempDir,
} from "./helpers.ts"

afterAll(cleanup)

const t = (database: string, table: string) => ({ database, table })

/** Every object key under a storage prefix. */
const keys = (cluster: Cluster, prefix = "") =>
  run(
    cluster.storage.list(prefix).pipe(
      Stream.map((i) => i.key),
      Stream.runCollect,
    ),
  ).then((c) => [...c])

describe("SHALLOW and DEEP clone of live tables", () => {
  let dir: string
  let prod: Cluster
  let other: Cluster
  beforeAll(async () => {
    dir = await tempDir("live")
    prod = await openTestCluster(dir, "prod")
    other = await openTestCluster(dir, "other")
    await createTable(prod, t("sales", "orders"), [400, 300, 500])
    await commit(prod, t("sales", "orders"), { appendRows: 200 }) // version 2: 4 files
  })

  it("SHALLOW CLONE writes a new entry and snapshot that reference the source's files; zero bytes copied", async () => {
    const before = await keys(prod)
    const r = await run(
      cloneTable({
        source: { kind: "live", cluster: prod, table: t("sales", "orders") },
        target: { cluster: prod, table: t("sales", "orders_dev") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(r).toMatchObject({
      status: "cloned",
      mode: "SHALLOW",
      target: "sales.orders_dev",
      source: "sales.orders",
      num_copied_files: 0,
      copied_files_size: 0,
      num_removed_files: 0,
      source_num_of_files: 4,
    })
    const source = await readCurrentSnapshot(prod, t("sales", "orders"))
    expect(r.source_table_size).toBe(source.files.reduce((n, f) => n + f.size, 0))
    const clone = await readCurrentSnapshot(prod, t("sales", "orders_dev"))
    expect(clone.files.map((f) => f.path)).toEqual(source.files.map((f) => f.path))
    // Only the clone's snapshot object is new in storage: no data file was written.
    const added = (await keys(prod)).filter((k) => !before.includes(k))
    expect(added).toHaveLength(1)
    expect(added[0]).toMatch(/_ss\/00000001\.json$/)
    const entry = await readEntry(prod, t("sales", "orders_dev"))
    const src = await readEntry(prod, t("sales", "orders"))
    expect(entry?.id).not.toBe(src?.id)
    expect(entry?.location.startsWith(src?.location.split("/")[0] ?? "x")).toBe(true)
    expect(entry?.clone_of).toMatchObject({
      database: "sales",
      table: "orders",
      table_id: src?.id,
      snapshot: src?.snapshot,
      mode: "SHALLOW",
      version: 2,
    })
    expect(await tableAggregates(prod, t("sales", "orders_dev"))).toEqual(await tableAggregates(prod, t("sales", "orders")))
    expect((await tableAggregates(prod, t("sales", "orders_dev"))).rows).toBe(1400)
  })

  it("DEEP CLONE copies every file into the target's own location (same cluster: server-side copy)", async () => {
    const r = await run(
      cloneTable({
        source: { kind: "live", cluster: prod, table: t("sales", "orders") },
        target: { cluster: prod, table: t("sales", "orders_copy") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    const source = await readCurrentSnapshot(prod, t("sales", "orders"))
    expect(r).toMatchObject({ status: "cloned", num_copied_files: 4, copied_files_size: r.source_table_size, num_removed_files: 0 })
    const entry = await readEntry(prod, t("sales", "orders_copy"))
    const clone = await readCurrentSnapshot(prod, t("sales", "orders_copy"))
    expect(clone.files.every((f) => f.path.startsWith(`${entry?.location}_d/`))).toBe(true)
    expect(clone.files.map((f) => f.rows)).toEqual(source.files.map((f) => f.rows))
    expect(clone.files.map((f) => f.sha256)).toEqual(source.files.map((f) => f.sha256))
    expect(await tableAggregates(prod, t("sales", "orders_copy"))).toEqual(await tableAggregates(prod, t("sales", "orders")))
  })

  it("DEEP CLONE into another cluster streams the files; the target database is created; DuckDB reads the same rows", async () => {
    const r = await run(
      cloneTable({
        source: { kind: "live", cluster: prod, table: t("sales", "orders") },
        target: { cluster: other, table: t("analytics", "orders") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(r).toMatchObject({ source: "prod.sales.orders", num_copied_files: 4 })
    expect((await run(listDatabases(other))).map((d) => d.name)).toEqual(["analytics"])
    expect(await tableAggregates(other, t("analytics", "orders"))).toEqual(await tableAggregates(prod, t("sales", "orders")))
    expect((await readEntry(other, t("analytics", "orders")))?.clone_of).toMatchObject({ cluster: "prod", mode: "DEEP" })
  })

  it("SHALLOW CLONE across storage roots is refused with a fix that suggests DEEP", async () => {
    const e = await runError(
      cloneTable({
        source: { kind: "live", cluster: prod, table: t("sales", "orders") },
        target: { cluster: other, table: t("analytics", "orders_s") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(e).toMatchObject({ _tag: "CloneError", reason: "ShallowNotPossible" })
    expect(e.fix).toContain("DEEP CLONE")
    expect(await readEntry(other, t("analytics", "orders_s"))).toBeUndefined()
  })

  it("VERSION AS OF n clones that version; a version that does not exist is a clear error", async () => {
    const r = await run(
      cloneTable({
        source: { kind: "live", cluster: prod, table: t("sales", "orders"), version: 1 },
        target: { cluster: prod, table: t("sales", "orders_v1") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(r).toMatchObject({ source_version: 1, source_num_of_files: 3 })
    expect((await tableAggregates(prod, t("sales", "orders_v1"))).rows).toBe(1200)
    const e = await runError(
      cloneTable({
        source: { kind: "live", cluster: prod, table: t("sales", "orders"), version: 9 },
        target: { cluster: prod, table: t("sales", "orders_v9") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(e).toMatchObject({ reason: "VersionNotFound" })
    expect(e.message).toContain("current version is 2")
  })

  it("plain CREATE fails on an existing target; IF NOT EXISTS skips it; OR REPLACE replaces it keeping its id", async () => {
    const target = { cluster: prod, table: t("sales", "orders_dev") }
    const source = { kind: "live" as const, cluster: prod, table: t("sales", "orders") }
    const before = await readEntry(prod, target.table)
    const e = await runError(cloneTable({ source, target, mode: "SHALLOW", onExists: "error", dryRun: false }))
    expect(e).toMatchObject({ reason: "TableExists" })
    expect(e.fix).toMatch(/OR REPLACE/)
    const skipped = await run(cloneTable({ source, target, mode: "DEEP", onExists: "ignore", dryRun: false }))
    expect(skipped).toMatchObject({ status: "skipped", num_copied_files: 0 })
    expect(await readEntry(prod, target.table)).toEqual(before)
    const replaced = await run(
      cloneTable({ source: { ...source, version: 1 }, target, mode: "SHALLOW", onExists: "replace", dryRun: false }),
    )
    expect(replaced).toMatchObject({ status: "cloned", target_version: 2, num_removed_files: 1, num_copied_files: 0 })
    const after = await readEntry(prod, target.table)
    expect(after?.id).toBe(before?.id)
    expect(after?.snapshot).toMatch(/_ss\/00000002\.json$/)
    expect((await tableAggregates(prod, target.table)).rows).toBe(1200)
  })

  it("a dry run reports the metrics and writes nothing", async () => {
    const before = await keys(other)
    const r = await run(
      cloneTable({
        source: { kind: "live", cluster: prod, table: t("sales", "orders") },
        target: { cluster: other, table: t("planned", "orders") },
        mode: "DEEP",
        onExists: "error",
        dryRun: true,
      }),
    )
    expect(r).toMatchObject({ status: "planned", num_copied_files: 4, source_num_of_files: 4 })
    expect(r.copied_files_size).toBe(r.source_table_size)
    expect(await keys(other)).toEqual(before)
    expect((await run(listDatabases(other))).map((d) => d.name)).toEqual(["analytics"])
  })

  it("SHOW TABLES, DESCRIBE TABLE and SHOW CLONES show the clones and their sources", async () => {
    const tables = await run(listTables(prod, "sales"))
    expect(tables.map((x) => x.table)).toEqual(["orders", "orders_copy", "orders_dev", "orders_v1"])
    expect(tables.find((x) => x.table === "orders_dev")).toMatchObject({ clone_of: "sales.orders", files: 3 })
    expect(tables.find((x) => x.table === "orders")?.clone_of).toBeUndefined()
    const d = await run(describeTable(prod, t("sales", "orders_copy")))
    expect(d).toMatchObject({ database: "sales", table: "orders_copy", version: 1, files: 4 })
    expect(d.snapshot.startsWith(d.location)).toBe(true)
    expect(d.clone_of).toMatchObject({ table: "orders", mode: "DEEP" })
    const clones = await run(listClones(prod, t("sales", "orders")))
    expect(clones.map((c) => [c.clone, c.mode]).sort()).toEqual([
      ["sales.orders_copy", "DEEP"],
      ["sales.orders_dev", "SHALLOW"],
      ["sales.orders_v1", "SHALLOW"],
    ])
    expect(await run(listClones(prod, t("sales", "orders_copy")))).toEqual([])
    expect(await runError(listTables(prod, "nope"))).toMatchObject({ reason: "DatabaseNotFound" })
    expect(await runError(describeTable(prod, t("sales", "nope")))).toMatchObject({ reason: "TableNotFound" })
    expect(await runError(describeTable(prod, t("Sales", "x")))).toMatchObject({ reason: "InvalidName" })
  })
})

describe("incremental DEEP re-clone", () => {
  it("CREATE OR REPLACE ... DEEP CLONE copies only the files the target lacks and removes what the source no longer has", async () => {
    const dir = await tempDir("incr")
    const a = await openTestCluster(dir, "a")
    const b = await openTestCluster(dir, "b")
    await createTable(a, t("db", "src"), [300, 300, 300])
    const req = {
      source: { kind: "live" as const, cluster: a, table: t("db", "src") },
      target: { cluster: b, table: t("db", "dst") },
      mode: "DEEP" as const,
      onExists: "replace" as const,
      dryRun: false,
    }
    const first = await run(cloneTable(req))
    expect(first).toMatchObject({ num_copied_files: 3, num_removed_files: 0, target_version: 1 })

    // Unchanged source: nothing is copied or removed.
    const again = await run(cloneTable(req))
    expect(again).toMatchObject({
      num_copied_files: 0,
      copied_files_size: 0,
      num_removed_files: 0,
      removed_files_size: 0,
      target_version: 2,
    })

    // One file added, one removed (a compaction-like rewrite) in the source.
    const snap = await commit(a, t("db", "src"), { appendRows: 150, removeIndexes: [0] })
    const removedFile = (await readCurrentSnapshot(b, t("db", "dst"))).files[0]
    const dataBefore = (await keys(b)).filter((k) => k.includes("/_d/"))
    const sync = await run(cloneTable(req))
    expect(sync).toMatchObject({ num_copied_files: 1, num_removed_files: 1, source_num_of_files: 3, target_version: 3 })
    expect(sync.copied_files_size).toBe(snap.files[2].size)
    expect(sync.removed_files_size).toBe(removedFile.size)
    const dataAfter = (await keys(b)).filter((k) => k.includes("/_d/"))
    expect(dataAfter.filter((k) => !dataBefore.includes(k))).toHaveLength(1)
    expect(await tableAggregates(b, t("db", "dst"))).toEqual(await tableAggregates(a, t("db", "src")))
    expect((await tableAggregates(b, t("db", "dst"))).rows).toBe(750)
  })
})

describe("DROP TABLE ... PURGE", () => {
  it("keeps the files a shallow clone still references; the clone stays readable; unreferenced files are deleted", async () => {
    const dir = await tempDir("purge")
    const c = await openTestCluster(dir, "c")
    const src = await createTable(c, t("db", "src"), [200, 250])
    await run(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("db", "src") },
        target: { cluster: c, table: t("db", "shallow") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    // The source moves on: one more file that no clone references.
    await commit(c, t("db", "src"), { appendRows: 100 })
    const expected = await tableAggregates(c, t("db", "shallow"))

    const plan = await run(dropTable(c, t("db", "src"), { ifExists: false, purge: true, dryRun: true }))
    expect(plan).toMatchObject({ dropped: true, dry_run: true, files_kept_for_clones: 2, files_deleted: 3 }) // 1 data file + 2 snapshot objects
    expect(await readEntry(c, t("db", "src"))).toBeDefined()

    const r = await run(dropTable(c, t("db", "src"), { ifExists: false, purge: true }))
    expect(r).toMatchObject({ dropped: true, files_kept_for_clones: 2, files_deleted: 3 })
    expect(await readEntry(c, t("db", "src"))).toBeUndefined()
    expect(await keys(c, src.location)).toHaveLength(2)
    expect(await tableAggregates(c, t("db", "shallow"))).toEqual(expected)
    expect(expected.rows).toBe(450)

    // Dropping the clone with PURGE deletes its own objects; the source's files under the dropped
    // source location are now garbage no table lists, and are not the clone's to delete.
    const r2 = await run(dropTable(c, t("db", "shallow"), { ifExists: false, purge: true }))
    expect(r2).toMatchObject({ dropped: true, files_deleted: 1, files_kept_for_clones: 0 })
    expect(await run(dropTable(c, t("db", "shallow"), { ifExists: true, purge: true }))).toMatchObject({ dropped: false })
    expect(await runError(dropTable(c, t("db", "shallow"), { ifExists: false, purge: false }))).toMatchObject({ reason: "TableNotFound" })
  })

  it("a shallow clone's older snapshots also protect files (time travel on the clone)", async () => {
    const dir = await tempDir("purge-tt")
    const c = await openTestCluster(dir, "c")
    const src = await createTable(c, t("db", "src"), [100, 100])
    await run(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("db", "src") },
        target: { cluster: c, table: t("db", "clone") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    await commit(c, t("db", "clone"), { removeIndexes: [0] }) // the clone's current snapshot drops one source file
    const r = await run(dropTable(c, t("db", "src"), { ifExists: false, purge: true }))
    expect(r.files_kept_for_clones).toBe(2)
    expect((await keys(c, `${src.location}_d/`)).length).toBe(2)
  })

  it("a shallow clone in another cluster sharing the storage root is recorded in the source cluster, and PURGE keeps its files", async () => {
    const dir = await tempDir("shared")
    const a = await openTestCluster(dir, "a", { storage: '[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./shared-data"\n' })
    const b = await openTestCluster(dir, "b", { storage: '[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./shared-data"\n' })
    const src = await createTable(a, t("db", "src"), [120, 80])
    const r = await run(
      cloneTable({
        source: { kind: "live", cluster: a, table: t("db", "src") },
        target: { cluster: b, table: t("dev", "src") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(r).toMatchObject({ source: "a.db.src", num_copied_files: 0 })
    expect(await run(listClones(a, t("db", "src")))).toEqual([
      expect.objectContaining({ clone: "b.dev.src", source: "db.src", mode: "SHALLOW" }),
    ])
    expect(await run(listClones(b))).toEqual([expect.objectContaining({ clone: "dev.src", source: "a.db.src" })])
    const dropped = await run(dropTable(a, t("db", "src"), { ifExists: false, purge: true }))
    expect(dropped).toMatchObject({ files_kept_for_clones: 2, files_deleted: 1 })
    expect(await keys(a, `${src.location}_d/`)).toHaveLength(2)
    expect((await tableAggregates(b, t("dev", "src"))).rows).toBe(200)
  })

  it("without clones, PURGE deletes every object of the table", async () => {
    const dir = await tempDir("purge-all")
    const c = await openTestCluster(dir, "c")
    const src = await createTable(c, t("db", "lonely"), [100, 100, 100])
    const r = await run(dropTable(c, t("db", "lonely"), { ifExists: false, purge: true }))
    expect(r).toMatchObject({ dropped: true, files_deleted: 4, files_kept_for_clones: 0 })
    expect(await keys(c, src.location)).toEqual([])
  })
})

describe("clone from a backup", () => {
  let dir: string
  let prod: Cluster
  let repo: Repository
  let firstBackup: string
  let expectedV1: Awaited<ReturnType<typeof tableAggregates>>
  beforeAll(async () => {
    dir = await tempDir("backup")
    prod = await openTestCluster(dir, "prod")
    await createTable(prod, t("sales", "orders"), [300, 200])
    await createTable(prod, t("sales", "refunds"), [120])
    repo = await run(Effect.scoped(openRepositoryAt(`${dir}/repo`, { create: true })))
    firstBackup = (await run(backup(prod, repo))).backup_id
    expectedV1 = await tableAggregates(prod, t("sales", "orders"))
  })

  it("a table dropped (and purged) live is DEEP-cloned out of last week's backup, and a pin keeps that backup", async () => {
    await commit(prod, t("sales", "orders"), { appendRows: 50 })
    await run(dropTable(prod, t("sales", "orders"), { ifExists: false, purge: true }))
    expect(await readEntry(prod, t("sales", "orders"))).toBeUndefined()

    // While it copies, a shared `clone` lease names the backup (the vacuum keeps it).
    const leasesSeen: Array<string> = []
    const watched: Cluster = {
      ...prod,
      storage: {
        ...prod.storage,
        put: (key, body, options) =>
          liveSharedLeases(repo.store, "clone").pipe(
            Effect.tap((ls) => Effect.sync(() => leasesSeen.push(...ls.map((l) => l.record.details.backup_id ?? "")))),
            Effect.andThen(prod.storage.put(key, body, options)),
          ),
      },
    }
    const r = await run(
      cloneTable({
        source: { kind: "backup", repo, backupId: firstBackup, table: t("sales", "orders") },
        target: { cluster: watched, table: t("sales", "orders_back") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(r).toMatchObject({ status: "cloned", source_backup: firstBackup, num_copied_files: 2, source_num_of_files: 2 })
    expect(await tableAggregates(prod, t("sales", "orders_back"))).toEqual(expectedV1)
    expect(leasesSeen.length).toBeGreaterThan(0)
    expect(new Set(leasesSeen)).toEqual(new Set([firstBackup]))
    expect(await run(liveSharedLeases(repo.store, "clone"))).toEqual([]) // released
    const entry = await readEntry(prod, t("sales", "orders_back"))
    expect(entry?.clone_of).toMatchObject({ source_backup: firstBackup, mode: "DEEP", database: "sales", table: "orders" })
    expect(entry?.clone_of?.cluster).toBeUndefined() // the backup is of this very cluster
    const pins = await run(listPins(repo, firstBackup))
    expect(pins).toHaveLength(1)
    expect(pins[0].key).toMatch(new RegExp(`^pins/${firstBackup}/[0-9a-f-]{36}\\.json$`))
    expect(pins[0].pin).toMatchObject({ backup_id: firstBackup, reason: "clone", cluster: "prod", table: "sales.orders_back" })
    expect(entry?.clone_of?.pin).toBe(pins[0].key)
    const shown = await run(listClones(prod, t("sales", "orders")))
    expect(shown).toEqual([expect.objectContaining({ clone: "sales.orders_back", source_backup: firstBackup, mode: "DEEP" })])
  })

  it("SHALLOW from a backup whose files were purged is refused, suggesting DEEP", async () => {
    const e = await runError(
      cloneTable({
        source: { kind: "backup", repo, table: t("sales", "orders") },
        target: { cluster: prod, table: t("sales", "orders_sh") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(e).toMatchObject({ reason: "ShallowNotPossible" })
    expect(e.fix).toContain("DEEP CLONE")
  })

  it("SHALLOW from a backup references the files in place when they are still in the cluster's storage (dropped without PURGE)", async () => {
    await run(dropTable(prod, t("sales", "refunds"), { ifExists: false, purge: false }))
    const before = await keys(prod)
    const r = await run(
      cloneTable({
        source: { kind: "backup", repo, at: new Date(), table: t("sales", "refunds") },
        target: { cluster: prod, table: t("sales", "refunds") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(r).toMatchObject({ num_copied_files: 0, source_backup: firstBackup })
    expect((await keys(prod)).filter((k) => !before.includes(k))).toHaveLength(1) // the snapshot object only
    expect((await tableAggregates(prod, t("sales", "refunds"))).rows).toBe(120)
  })

  it("AT TIMESTAMP before the first backup, a missing backup id and a table the backup lacks are clear errors", async () => {
    const old = await runError(
      cloneTable({
        source: { kind: "backup", repo, at: new Date("2001-01-01T00:00:00Z"), table: t("sales", "orders") },
        target: { cluster: prod, table: t("sales", "x") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(old).toMatchObject({ reason: "VersionNotFound" })
    const missing = await runError(
      cloneTable({
        source: { kind: "backup", repo, backupId: "20010101_000000", table: t("sales", "orders") },
        target: { cluster: prod, table: t("sales", "x") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(missing).toMatchObject({ reason: "VersionNotFound" })
    const noTable = await runError(
      cloneTable({
        source: { kind: "backup", repo, table: t("sales", "nope") },
        target: { cluster: prod, table: t("sales", "x") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(noTable).toMatchObject({ reason: "TableNotFound" })
    expect(noTable.fix).toContain("orders")
  })

  it("CREATE DATABASE ... DEEP CLONE from the backup clones every table into another cluster", async () => {
    const copy = await openTestCluster(dir, "copy")
    const results = await run(
      cloneDatabase({
        source: { kind: "backup", repo, backupId: firstBackup, database: "sales" },
        target: { cluster: copy, database: "sales_copy" },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(results.map((r) => [r.target, r.num_copied_files])).toEqual([
      ["sales_copy.orders", 2],
      ["sales_copy.refunds", 1],
    ])
    expect((await readEntry(copy, t("sales_copy", "orders")))?.clone_of).toMatchObject({ cluster: "prod", source_backup: firstBackup })
    expect(await tableAggregates(copy, t("sales_copy", "orders"))).toEqual(expectedV1)
  })

  it("RESTORE TABLE puts a dropped table back in place; RESTORE TABLE ... AS copies it under a new name", async () => {
    const target = await openTestCluster(dir, "restored")
    const plan = await run(restoreTables({ repo, database: "sales", table: "orders", target, dryRun: true }))
    expect(plan).toMatchObject({ tables: 1, files_written: 3, files_skipped: 0, dry_run: true })
    expect(await readEntry(target, t("sales", "orders"))).toBeUndefined()
    const r = await run(restoreTables({ repo, database: "sales", table: "orders", target, dryRun: false }))
    expect(r).toMatchObject({ tables: 1, files_written: 3, backup_id: firstBackup })
    const entry = await readEntry(target, t("sales", "orders"))
    expect(entry?.clone_of).toBeUndefined()
    expect(await tableAggregates(target, t("sales", "orders"))).toEqual(expectedV1)
    // Again: everything is already there.
    expect(await run(restoreTables({ repo, database: "sales", table: "orders", target, dryRun: false }))).toMatchObject({
      files_written: 0,
      files_skipped: 3,
    })
    const as = await run(restoreTables({ repo, database: "sales", table: "orders", as: t("sales", "orders_old"), target, dryRun: false }))
    expect(as).toMatchObject({ tables: 1, files_written: 2, restored: ["sales.orders_old"] })
    expect(await tableAggregates(target, t("sales", "orders_old"))).toEqual(expectedV1)
    expect((await readEntry(target, t("sales", "orders_old")))?.id).not.toBe(entry?.id)
    // RESTORE DATABASE: every table of the database.
    const db = await run(restoreTables({ repo, database: "sales", target, dryRun: false }))
    expect(db.restored).toEqual(["sales.orders", "sales.refunds"])
    expect((await tableAggregates(target, t("sales", "refunds"))).rows).toBe(120)
    expect(await runError(restoreTables({ repo, database: "nope", target, dryRun: false }))).toMatchObject({ reason: "DatabaseNotFound" })
  })
})

describe("catalog updates are compare-and-swap", () => {
  it("two concurrent clones onto one target: exactly one wins, the loser's files are removed", async () => {
    const dir = await tempDir("cas")
    const a = await openTestCluster(dir, "a")
    const b = await openTestCluster(dir, "b")
    await createTable(a, t("db", "one"), [200, 200, 200])
    await createTable(a, t("db", "two"), [150, 150])
    // Both clones reach their compare-and-swap of the table key before either may run it.
    let arrived = 0
    let release: () => void = () => {}
    const barrier = new Promise<void>((resolve) => {
      release = resolve
    })
    const gated: Cluster = {
      ...b,
      meta: {
        ...b.meta,
        snapshot: () => b.meta.snapshot(),
        replace: (entries, options) => b.meta.replace(entries, options),
        get: (key) => b.meta.get(key),
        compareAndSwap: (key, expected, next) =>
          new TextDecoder().decode(key).startsWith("catalog/tables/")
            ? Effect.promise(() => {
                if (++arrived === 2) release()
                return barrier
              }).pipe(Effect.andThen(b.meta.compareAndSwap(key, expected, next)))
            : b.meta.compareAndSwap(key, expected, next),
      },
    }
    const clone = (table: string) =>
      Effect.exit(
        cloneTable({
          source: { kind: "live", cluster: a, table: t("db", table) },
          target: { cluster: gated, table: t("db", "target") },
          mode: "DEEP",
          onExists: "error",
          dryRun: false,
        }),
      )
    const [x, y] = await run(Effect.all([clone("one"), clone("two")], { concurrency: 2 }))
    const wins = [x, y].filter((e) => e._tag === "Success")
    expect(wins).toHaveLength(1)
    const loser = [x, y].find((e) => e._tag === "Failure")
    const error = loser?._tag === "Failure" ? Cause.findErrorOption(loser.cause) : Option.none()
    expect(Option.isSome(error) && error.value._tag === "CloneError" && error.value.reason).toBe("TableExists")
    expect(Option.isSome(error) && error.value.message).toContain("by another writer while this clone ran")
    const winner = wins[0]._tag === "Success" ? wins[0].value : undefined
    const winnerRows = winner?.source === "a.db.one" ? 600 : 300
    expect((await tableAggregates(b, t("db", "target"))).rows).toBe(winnerRows)
    // Only the winner's location holds objects.
    const entry = await readEntry(b, t("db", "target"))
    const all = await keys(b)
    expect(all.filter((k) => !k.startsWith(entry?.location ?? "?"))).toEqual([])
  })

  it("a commit by another writer between plan and CAS makes OR REPLACE fail with Conflict, changing nothing visible", async () => {
    const dir = await tempDir("cas2")
    const c = await openTestCluster(dir, "c")
    await createTable(c, t("db", "src"), [100])
    await run(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("db", "src") },
        target: { cluster: c, table: t("db", "dst") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    // A writer that commits to the target while the clone runs: wrap the target's meta so its
    // next compareAndSwap first lets that writer commit.
    const interfering: Cluster = {
      ...c,
      meta: {
        ...c.meta,
        snapshot: () => c.meta.snapshot(),
        replace: (entries, options) => c.meta.replace(entries, options),
        get: (key) => c.meta.get(key),
        compareAndSwap: (key, expected, next) =>
          Effect.promise(() => commit(c, t("db", "dst"), { appendRows: 10 })).pipe(
            Effect.andThen(c.meta.compareAndSwap(key, expected, next)),
          ),
      },
    }
    const before = await readEntry(c, t("db", "dst"))
    const e = await runError(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("db", "src") },
        target: { cluster: interfering, table: t("db", "dst") },
        mode: "DEEP",
        onExists: "replace",
        dryRun: false,
      }),
    )
    expect(e).toMatchObject({ reason: "Conflict" })
    const after = await readEntry(c, t("db", "dst"))
    expect(after?.snapshot).not.toBe(before?.snapshot)
    expect((await tableAggregates(c, t("db", "dst"))).rows).toBe(110) // the other writer's commit stands
  })
})

describe("a shallow clone racing a DROP of its source", () => {
  it("is undone when the source was dropped before the clone could be seen by a PURGE", async () => {
    const dir = await tempDir("race-drop")
    const c = await openTestCluster(dir, "c")
    await createTable(c, t("db", "src"), [100])
    // The source is dropped (entry removed) right after the clone's commit, before its re-check.
    const dropping: Cluster = {
      ...c,
      meta: {
        ...c.meta,
        snapshot: () => c.meta.snapshot(),
        replace: (entries, options) => c.meta.replace(entries, options),
        get: (key) => c.meta.get(key),
        compareAndSwap: (key, expected, next) =>
          c.meta
            .compareAndSwap(key, expected, next)
            .pipe(
              Effect.tap((ok) =>
                ok && new TextDecoder().decode(key) === "catalog/tables/db/clone" && next !== undefined
                  ? dropTable(c, t("db", "src"), { ifExists: false, purge: false }).pipe(Effect.orDie)
                  : Effect.void,
              ),
            ),
      },
    }
    const e = await runError(
      cloneTable({
        source: { kind: "live", cluster: dropping, table: t("db", "src") },
        target: { cluster: dropping, table: t("db", "clone") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(e).toMatchObject({ reason: "Conflict" })
    expect(e.message).toContain("dropped while it was being cloned")
    expect(await readEntry(c, t("db", "clone"))).toBeUndefined()
  })
})

describe("a cluster made by the sample writer (packages/cli/src/SampleCluster.ts)", () => {
  it("its tables clone SHALLOW and DEEP; DuckDB reads the same rows", async () => {
    const { generateSampleCluster } = await import("../../cli/src/SampleCluster.ts")
    const dir = await tempDir("sample")
    const c = await openTestCluster(dir, "sample")
    const sample = generateSampleCluster()
    const enc = new TextEncoder()
    // Only the small ops database, to keep the test light.
    const opsDb = JSON.parse(sample.meta.find((m) => m.key === "catalog/databases/ops")?.value ?? "{}") as { id: string }
    for (const f of sample.files.filter((f) => f.path.startsWith(opsDb.id))) await run(c.storage.put(f.path, f.bytes))
    for (const m of sample.meta.filter((m) => m.key.includes("/ops")))
      await run(c.meta.compareAndSwap(enc.encode(m.key), undefined, enc.encode(m.value)))
    expect((await run(listClones(c))).map((x) => [x.clone, x.source])).toEqual([["ops.incidents_review", "ops.incidents"]])
    const shallow = await run(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("ops", "incidents_review") },
        target: { cluster: c, table: t("ops", "review2") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(shallow.num_copied_files).toBe(0)
    const deep = await run(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("ops", "deploys") },
        target: { cluster: c, table: t("ops", "deploys_copy") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(deep.num_copied_files).toBe(deep.source_num_of_files)
    const rows = async (table: string) => duckRowCount(c, (await readCurrentSnapshot(c, t("ops", table))).files)
    expect(await rows("review2")).toBe(await rows("incidents_review"))
    expect(await rows("deploys_copy")).toBe(await rows("deploys"))
    expect(await rows("deploys")).toBe((await readCurrentSnapshot(c, t("ops", "deploys"))).files.reduce((n, f) => n + (f.rows ?? 0), 0))
  })
})

/** Row count of arbitrary Parquet files (the sample's schemas differ from the helper tables'). */
const duckRowCount = async (cluster: Cluster, files: ReadonlyArray<{ path: string }>) => {
  const { DuckDBInstance } = await import("@duckdb/node-api")
  const { writeFile } = await import("node:fs/promises")
  const dir = await tempDir("duck-rows")
  const locals: Array<string> = []
  for (const [i, f] of files.entries()) {
    const p = `${dir}/${i}.parquet`
    await writeFile(p, await run(cluster.storage.get(f.path)))
    locals.push(`'${p}'`)
  }
  const db = await DuckDBInstance.create(":memory:")
  const conn = await db.connect()
  const r = await conn.runAndReadAll(`SELECT count(*)::BIGINT FROM read_parquet([${locals.join(", ")}])`)
  conn.closeSync()
  return Number(r.getRows()[0][0])
}
