/**
 * Workflow tests of replication rounds over in-process stores (memory
 * storage, the local meta driver in temp directories): incremental rounds,
 * deletions and MAX_DELETE, the reserved prefixes, resume after a failed
 * round, keep mode, table scope, the repository in between, the lease and
 * the status. The CLI and the real servers are covered by test/replicate*.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  type BlobStore,
  BlobStoreError,
  type Cluster,
  compareBytes,
  type MetaEntry,
  makeLocalMetaStore,
  makeMemoryBlobStore,
  openRepository,
} from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import { afterEach, describe, expect, it } from "vitest"
import {
  acquireReplicationLease,
  MaxDeleteExceededError,
  parseInterval,
  parseScope,
  readReplicationStatus,
  replicate,
  replicateEvery,
  reservedArea,
} from "../src/index.ts"

const dirs: Array<string> = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

const enc = new TextEncoder()
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)
const runExit = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromiseExit(e)

const makeCluster = async (name: string, storage?: BlobStore): Promise<Cluster> => {
  const dir = await mkdtemp(join(tmpdir(), "bendsave-repl-"))
  dirs.push(dir)
  return { name, meta: await run(makeLocalMetaStore(dir)), storage: storage ?? makeMemoryBlobStore({ name }) }
}

const bytes = (n: number, seed: number) => {
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

const put = (c: Cluster, key: string, data: Uint8Array | string) =>
  run(c.storage.put(key, typeof data === "string" ? enc.encode(data) : data))
const remove = (c: Cluster, key: string) => run(c.storage.delete(key))
const setMeta = (c: Cluster, entries: Record<string, string>) =>
  run(
    c.meta.replace(
      Stream.fromIterable(
        Object.entries(entries)
          .map(([k, v]): MetaEntry => ({ key: enc.encode(k), value: enc.encode(v) }))
          .sort((a, b) => compareBytes(a.key, b.key)),
      ),
    ),
  )

/** Storage (hex contents) and meta of a cluster, reserved prefixes excluded. */
const dump = async (c: Cluster) => {
  const files: Record<string, string> = {}
  const infos = await run(Stream.runCollect(c.storage.list("")))
  for (const info of infos) {
    if (info.key.startsWith(".bendsave/")) continue
    files[info.key] = Buffer.from(await run(c.storage.get(info.key))).toString("hex")
  }
  const snap = await run(c.meta.snapshot())
  const meta: Record<string, string> = {}
  for (const e of await run(Stream.runCollect(snap.entries))) {
    const k = Buffer.from(e.key).toString("utf8")
    if (!k.startsWith("bendsave/")) meta[k] = Buffer.from(e.value).toString("utf8")
  }
  return { files, meta }
}

/** A store that fails every put after `okPuts` puts of keys outside `.bendsave/`. */
const failingAfter = (store: BlobStore, okPuts: number): BlobStore => {
  let n = 0
  return {
    ...store,
    put: (key, body, options) =>
      key.startsWith(".bendsave/") || n++ < okPuts
        ? store.put(key, body, options)
        : Effect.fail(new BlobStoreError({ reason: "Unavailable", driver: "test", operation: "put", key, detail: "injected failure" })),
  }
}

describe("replication rounds (memory storage, local meta)", () => {
  // keepPlanItems 3: the plan's walk does not fit, so the copy lists both sides again.
  it.each([{ keepPlanItems: undefined }, { keepPlanItems: 3 }])(
    "copies everything, then only what changed; deletions mirrored; meta switched; reserved prefixes untouched (%o)",
    async ({ keepPlanItems }) => {
      const source = await makeCluster("src")
      const target = await makeCluster("dst")
      for (let i = 0; i < 20; i++) await put(source, `db/t/_d/f${String(i).padStart(2, "0")}.parquet`, bytes(1000 + i, i + 1))
      await put(source, ".bendsave/private", "not replicated")
      await setMeta(source, { "catalog/databases/db": '{"id":"1"}', "bendsave/source-own": "x", "k/1": "v1" })
      await setMeta(target, { "bendsave/target-own": "keep me", "stale/key": "removed by mirror" })
      await put(target, ".bendsave/other", "keep")

      const r1 = await run(replicate(source, target, { keepPlanItems }))
      expect(r1).toMatchObject({ round: 1, outcome: "completed", files_copied: 20, files_unchanged: 0, keys_total: 2, keys_removed: 1 })
      expect(await dump(target)).toEqual(await dump(source))
      expect(r1.source_manifest_hash).toBe(r1.target_manifest_hash)
      // Reserved: the target's own key and object survive; the source's are not copied.
      const targetMeta = await run(target.meta.get(enc.encode("bendsave/target-own")))
      expect(Buffer.from(targetMeta ?? []).toString()).toBe("keep me")
      expect(await run(target.meta.get(enc.encode("bendsave/source-own")))).toBeUndefined()
      expect(Buffer.from(await run(target.storage.get(".bendsave/other"))).toString()).toBe("keep")
      await expect(run(target.storage.head(".bendsave/private"))).rejects.toThrow()

      const r2 = await run(replicate(source, target, { keepPlanItems }))
      expect(r2).toMatchObject({
        round: 2,
        files_copied: 0,
        bytes_copied: 0,
        files_unchanged: 20,
        files_deleted: 0,
        keys_added: 0,
        keys_changed: 0,
      })
      expect(r2.source_manifest_hash).toBe(r1.source_manifest_hash)

      await put(source, "db/t/_d/f03.parquet", bytes(5000, 99))
      await put(source, "db/t/_d/new.parquet", bytes(300, 98))
      await remove(source, "db/t/_d/f07.parquet")
      await remove(source, "db/t/_d/f08.parquet")
      await setMeta(source, { "catalog/databases/db": '{"id":"1"}', "k/1": "v2", "k/2": "new" })
      const r3 = await run(replicate(source, target, { keepPlanItems }))
      expect(r3).toMatchObject({ files_copied: 2, bytes_copied: 5300, files_deleted: 2, keys_added: 1, keys_changed: 1, keys_removed: 0 })
      expect(await dump(target)).toEqual(await dump(source))
      expect(r3.source_manifest_hash).not.toBe(r1.source_manifest_hash)
      expect(r3.source_manifest_hash).toBe(r3.target_manifest_hash)

      // A file changed behind replication's back on the target is copied again.
      await put(target, "db/t/_d/f01.parquet", "tampered")
      const r4 = await run(replicate(source, target, { keepPlanItems }))
      expect(r4).toMatchObject({ files_copied: 1, files_deleted: 0 })
      expect(await dump(target)).toEqual(await dump(source))

      const status = await run(readReplicationStatus(reservedArea(target)))
      expect(status.streams).toHaveLength(1)
      expect(status.streams[0]).toMatchObject({ stream: "cluster", last_round: { round: 4, outcome: "completed" } })
      expect(status.streams[0].lag_ms).toBeGreaterThanOrEqual(0)
    },
  )

  it("MAX_DELETE stops the round before anything changes, and says so; --delete keep keeps", async () => {
    const source = await makeCluster("src")
    const target = await makeCluster("dst")
    for (let i = 0; i < 10; i++) await put(source, `f${i}`, bytes(100, i + 1))
    await setMeta(source, { a: "1", b: "2", c: "3" })
    await run(replicate(source, target))
    const before = await dump(target)
    for (let i = 0; i < 4; i++) await remove(source, `f${i}`)
    await put(source, "added", "new file")
    await setMeta(source, { a: "1" })
    const exit = await runExit(replicate(source, target, { maxDelete: 3 }))
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
    expect(error?._tag === "Fail" && error.error).toBeInstanceOf(MaxDeleteExceededError)
    expect(String(error?._tag === "Fail" && (error.error as MaxDeleteExceededError).message)).toMatch(
      /4 file\(s\) and 2 meta key\(s\).*MAX_DELETE = 3/,
    )
    expect(await dump(target)).toEqual(before)
    const status = await run(readReplicationStatus(reservedArea(target)))
    expect(status.streams[0].last_round.outcome).toBe("stopped")
    expect(status.streams[0].last_round.errors[0]).toContain("MAX_DELETE")
    expect(status.streams[0].last_success?.round).toBe(1)

    const kept = await run(replicate(source, target, { maxDelete: 3, deleteMode: "keep" }))
    expect(kept).toMatchObject({ files_copied: 1, files_deleted: 0, keys_removed: 0 })
    const after = await dump(target)
    expect(Object.keys(after.files)).toHaveLength(11)
    expect(after.meta).toEqual({ a: "1", b: "2", c: "3" })

    const mirrored = await run(replicate(source, target, { maxDelete: 4 }))
    expect(mirrored).toMatchObject({ files_copied: 0, files_deleted: 4, keys_removed: 2 })
    expect(await dump(target)).toEqual(await dump(source))
  })

  it("a dry run reports the plan and changes nothing", async () => {
    const source = await makeCluster("src")
    const target = await makeCluster("dst")
    await put(source, "a", "1")
    await put(source, "b", "22")
    await put(target, "extra", "x")
    await setMeta(source, { k: "v" })
    const plan = await run(replicate(source, target, { dryRun: true, maxDelete: 0 }))
    expect(plan).toMatchObject({ dry_run: true, files_to_copy: 2, bytes_to_copy: 3, files_to_delete: 1, keys_added: 1, files_copied: 0 })
    expect(plan.errors[0]).toContain("MAX_DELETE")
    expect(await dump(target)).toEqual({ files: { extra: Buffer.from("x").toString("hex") }, meta: {} })
    expect((await run(Stream.runCollect(target.storage.list(".bendsave/")))).length).toBe(0)
  })

  it("a round that fails midway resumes without copying again what landed, and deletes nothing", async () => {
    const source = await makeCluster("src")
    const targetStorage = makeMemoryBlobStore({ name: "dst" })
    const target = await makeCluster("dst", targetStorage)
    for (let i = 0; i < 30; i++) await put(source, `f${String(i).padStart(2, "0")}`, bytes(2000, i + 1))
    await run(targetStorage.put("extra", enc.encode("to be deleted")))
    await setMeta(source, { k: "v" })
    const failing = { ...target, storage: failingAfter(targetStorage, 12) }
    const exit = await runExit(replicate(source, failing, { parallelism: 1 }))
    expect(Exit.isFailure(exit)).toBe(true)
    // Nothing deleted, meta not switched.
    expect(Buffer.from(await run(targetStorage.get("extra"))).toString()).toBe("to be deleted")
    expect(await run(target.meta.get(enc.encode("k")))).toBeUndefined()
    const status = await run(readReplicationStatus(reservedArea(target)))
    expect(status.streams[0].last_round).toMatchObject({ outcome: "failed", files_copied: 12 })
    expect(status.streams[0].last_round.errors[0]).toContain("injected failure")

    const resumed = await run(replicate(source, target))
    expect(resumed).toMatchObject({ round: 1, files_copied: 18, files_resumed: 12, files_unchanged: 12, files_deleted: 1 })
    expect(await dump(target)).toEqual(await dump(source))
  })

  it("table scope: the table's key, its database key and its files; other tables and keys untouched; a drop is mirrored", async () => {
    const source = await makeCluster("src")
    const target = await makeCluster("dst")
    const loc = "d1/t1/"
    await put(source, `${loc}_d/a.parquet`, bytes(500, 1))
    await put(source, `${loc}_d/b.parquet`, bytes(600, 2))
    await put(source, "d1/other/_d/shared.parquet", bytes(700, 3))
    await put(source, "d1/other/_d/not-shared.parquet", bytes(800, 4))
    const snapshot = (v: number, files: Array<string>) => JSON.stringify({ version: v, files: files.map((path) => ({ path, size: 1 })) })
    await put(source, `${loc}_ss/00000001.json`, snapshot(1, [`${loc}_d/a.parquet`, "d1/other/_d/shared.parquet"]))
    const table = (ss: string) => JSON.stringify({ id: "t1", location: loc, snapshot: ss })
    await setMeta(source, {
      "catalog/databases/db": '{"id":"d1"}',
      "catalog/tables/db/t1": table(`${loc}_ss/00000001.json`),
      "catalog/tables/db/other": JSON.stringify({ id: "other", location: "d1/other/", snapshot: "d1/other/_ss/00000001.json" }),
    })
    await setMeta(target, { "mine/key": "target's own" })
    await put(target, "mine/file", "target's own")
    const scope = parseScope({ table: "db.t1" })
    if (!("kind" in scope)) throw scope
    const r1 = await run(replicate(source, target, { scope }))
    expect(r1).toMatchObject({ stream: "table.db.t1", files_copied: 4, keys_total: 2 })
    const t = await dump(target)
    expect(Object.keys(t.files).sort()).toEqual([
      "d1/other/_d/shared.parquet",
      `${loc}_d/a.parquet`,
      `${loc}_d/b.parquet`,
      `${loc}_ss/00000001.json`,
      "mine/file",
    ])
    expect(Object.keys(t.meta).sort()).toEqual(["catalog/databases/db", "catalog/tables/db/t1", "mine/key"])

    // Drop the table on the source: the key and its files go; the target's own stay.
    await setMeta(source, { "catalog/databases/db": '{"id":"d1"}' })
    const r2 = await run(replicate(source, target, { scope }))
    expect(r2).toMatchObject({ files_deleted: 4, keys_removed: 1 })
    const t2 = await dump(target)
    expect(Object.keys(t2.files)).toEqual(["mine/file"])
    expect(Object.keys(t2.meta).sort()).toEqual(["catalog/databases/db", "mine/key"])

    // An unknown table is a clear error before anything happens.
    const missing = parseScope({ table: "db.nope" })
    if (!("kind" in missing)) throw missing
    await expect(run(replicate(source, target, { scope: missing }))).rejects.toThrow(/has no table db.nope/)
  })

  it("through a repository: each round is an incremental backup, and the target is fed from it", async () => {
    const source = await makeCluster("src")
    const target = await makeCluster("dst")
    const repo = await run(openRepository(makeMemoryBlobStore({ name: "repo" }), { create: true }))
    for (let i = 0; i < 5; i++) await put(source, `f${i}`, bytes(10_000 + i, i + 1))
    await setMeta(source, { k: "v1" })
    const r1 = await run(replicate(source, target, { via: repo }))
    expect(r1.backup_id).toMatch(/^\d{8}_\d{6}$/)
    expect(r1).toMatchObject({ files_copied: 5 })
    expect(await dump(target)).toEqual(await dump(source))
    await put(source, "f2", bytes(123, 77))
    await setMeta(source, { k: "v2" })
    await new Promise((resolve) => setTimeout(resolve, 1100))
    const r2 = await run(replicate(source, target, { via: repo }))
    expect(r2).toMatchObject({ files_copied: 1, bytes_copied: 123, files_unchanged: 4, keys_changed: 1 })
    expect(r2.backup_id).not.toBe(r1.backup_id)
    expect(await dump(target)).toEqual(await dump(source))
  })

  it("a second replicator onto the same target fails clearly while the first holds the lease", async () => {
    const source = await makeCluster("src")
    const target = await makeCluster("dst")
    await put(source, "a", "1")
    await run(
      Effect.scoped(
        Effect.gen(function* () {
          yield* acquireReplicationLease(source, target, { kind: "cluster" })
          const second = yield* Effect.exit(replicate(source, target))
          expect(Exit.isFailure(second)).toBe(true)
          const reason = Exit.isFailure(second) ? second.cause.reasons.find((r) => r._tag === "Fail") : undefined
          expect(reason?._tag === "Fail" && (reason.error as { _tag: string })._tag).toBe("LeaseHeldError")
        }),
      ),
    )
    // Released: the next one runs.
    expect((await run(replicate(source, target))).files_copied).toBe(1)
  })

  it("continuous mode runs rounds on a schedule without overlap", async () => {
    const source = await makeCluster("src")
    const target = await makeCluster("dst")
    await put(source, "a", "1")
    const seen: Array<number> = []
    const result = await run(
      replicateEvery(source, target, {
        everyMs: 1000,
        rounds: 3,
        onRound: (exit) => {
          if (exit._tag === "Success") seen.push(exit.value.files_copied)
        },
      }),
    )
    expect(result).toMatchObject({ rounds: 3, completed: 3, failed: 0 })
    expect(seen).toEqual([1, 0, 0])
  })

  it("parses intervals and scopes, with clear errors", () => {
    expect(parseInterval("5m")).toBe(300_000)
    expect(parseInterval("1h30m")).toBe(5_400_000)
    expect(parseInterval("1500ms")).toBe(1500)
    expect(String(parseInterval("5 minutes"))).toContain("--every '5 minutes' is not a duration")
    expect(String(parseInterval("10ms"))).toContain("--every '10ms' is shorter than 1s")
    expect(parseScope({})).toEqual({ kind: "cluster" })
    expect(parseScope({ database: "sales" })).toEqual({ kind: "database", database: "sales" })
    expect(String(parseScope({ table: "sales" }))).toContain("<database>.<table>")
    expect(String(parseScope({ table: "a.b", database: "a" }))).toContain("not both")
  })
})
