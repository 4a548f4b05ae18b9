/**
 * Vacuum: the retention policy (pure, with an injected clock), the on-disk
 * sorted id set, and the workflow with real backups through the core API on
 * memory and fs stores: what is deleted, what survives, dry runs, pins,
 * checkpoints, running backups, a second vacuum, and a vacuum killed midway.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { create } from "@bufbuild/protobuf"
import { Effect, Exit, Fiber, Stream } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { backup, type Cluster } from "../src/Backup.ts"
import { type BlobStore, BlobStoreError } from "../src/BlobStore.ts"
import { makeFsBlobStore } from "../src/drivers/FsBlobStore.ts"
import { makeLocalMetaStore } from "../src/drivers/LocalMetaStore.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import { hashBlock } from "../src/Hash.ts"
import { makeIdSorter } from "../src/IdSorter.ts"
import { acquireSharedLease, BACKUP_LEASE, listLeases } from "../src/Lease.ts"
import { BackupManifestSchema, encodeManifest, makeBackupFile } from "../src/Manifest.ts"
import { makeFilePageWriter, streamFiles } from "../src/Pages.ts"
import { listPins, pinBackup, USER_PIN_REASON, unpinBackup } from "../src/Pins.ts"
import { listBackupIds, openRepository, type Repository, readManifest } from "../src/Repository.ts"
import { restore } from "../src/Restore.ts"
import {
  isoWeekOf,
  planRetention,
  type RetentionInput,
  type RetentionPlan,
  type RetentionPolicy,
  VacuumError,
  type VacuumOptions,
  vacuum,
  validatePolicy,
} from "../src/Vacuum.ts"
import { verify } from "../src/Verify.ts"

const dirs: Array<string> = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})
const tempDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), "bendsave-vacuum-"))
  dirs.push(dir)
  return dir
}

const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)
const enc = new TextEncoder()
const DAY = 86_400_000
const HOUR = 3_600_000

// ---------------------------------------------------------------------------
// planRetention

const T0 = Date.UTC(2025, 0, 31, 12, 0, 0) // a Friday
const input = (id: string, daysAgo: number, cluster = "prod", protections: Array<string> = []): RetentionInput => ({
  backup_id: id,
  cluster,
  time: T0 - daysAgo * DAY,
  protections,
})
const plan = (backups: Array<RetentionInput>, policy: RetentionPolicy, now = T0): RetentionPlan => {
  const p = planRetention(backups, policy, now)
  if (p instanceof VacuumError) throw new Error(`unexpected refusal: ${p.message}`)
  return p
}
const deletedIds = (p: RetentionPlan) => p.deleted.map((d) => d.backup_id).sort()
/** Ten daily backups of one cluster: b9 is 9 days old, b0 is from today. */
const daily = () => Array.from({ length: 10 }, (_, i) => input(`b${i}`, i))

describe("planRetention", () => {
  it("age: deletes backups older than retention-days, keeps the rest with a reason", () => {
    const p = plan(daily(), { retentionDays: 6 })
    expect(deletedIds(p)).toEqual(["b7", "b8", "b9"])
    expect(p.deleted.find((d) => d.backup_id === "b9")?.reasons).toEqual(["retention-days 6: older than 6 days"])
    expect(p.kept.find((d) => d.backup_id === "b6")?.reasons[0]).toMatch(/within retention/)
    // exactly 6 days old is not older than 6 days
    expect(p.kept.map((d) => d.backup_id)).toContain("b6")
  })

  it("count: deletes backups beyond the newest max-backups", () => {
    const p = plan(daily(), { maxBackups: 3 })
    expect(deletedIds(p)).toEqual(["b3", "b4", "b5", "b6", "b7", "b8", "b9"])
    expect(p.deleted.find((d) => d.backup_id === "b3")?.reasons[0]).toBe("max-backups 3: number 4 counting from the newest")
  })

  it("candidates are the union of age and count; min-backups and min-retention-days protect", () => {
    expect(deletedIds(plan(daily(), { retentionDays: 8, maxBackups: 5 }))).toEqual(["b5", "b6", "b7", "b8", "b9"])
    const p = plan(daily(), { maxBackups: 2, minRetentionDays: 4 })
    expect(deletedIds(p)).toEqual(["b4", "b5", "b6", "b7", "b8", "b9"])
    const b3 = p.kept.find((d) => d.backup_id === "b3")
    expect(b3?.reasons).toEqual(["min-retention-days 4: younger than 4 days"])
    expect(b3?.expired_by).toEqual(["max-backups 2: number 4 counting from the newest"])
    expect(deletedIds(plan(daily(), { retentionDays: 0, minBackups: 4 }))).toEqual(["b4", "b5", "b6", "b7", "b8", "b9"])
  })

  it("pins and running restores protect whatever the policy says", () => {
    const backups = daily()
    backups[8] = input("b8", 8, "prod", ["pinned (user)"])
    const p = plan(backups, { maxBackups: 2 })
    expect(deletedIds(p)).not.toContain("b8")
    expect(p.kept.find((d) => d.backup_id === "b8")?.reasons).toEqual(["pinned (user)"])
  })

  it("applies per cluster", () => {
    const backups = [...daily(), input("x1", 20, "other"), input("x2", 15, "other"), input("x3", 1, "other")]
    const p = plan(backups, { maxBackups: 2 })
    expect(deletedIds(p)).toEqual(["b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "x1"])
  })

  it("calendar keeps follow restic: newest backup of each of the last N days/weeks/months that have one", () => {
    // Two backups a day for 40 days.
    const backups: Array<RetentionInput> = []
    for (let d = 0; d < 40; d++) {
      backups.push(input(`d${d}-pm`, d))
      backups.push({ ...input(`d${d}-am`, d), time: T0 - d * DAY - 6 * HOUR })
    }
    const daysOnly = plan(backups, { keepDaily: 3 })
    expect(daysOnly.kept.map((d) => d.backup_id).sort()).toEqual(["d0-pm", "d1-pm", "d2-pm"])
    expect(daysOnly.kept.find((d) => d.backup_id === "d0-pm")?.reasons).toEqual(["keep-daily 3: newest backup of 2025-01-31"])

    const weekly = plan(backups, { keepWeekly: 2 })
    // 2025-01-31 is a Friday of ISO week 05; the newest of week 04 is Sunday 2025-01-26 (5 days ago).
    expect(isoWeekOf(T0)).toBe("2025-W05")
    expect(weekly.kept.map((d) => d.backup_id).sort()).toEqual(["d0-pm", "d5-pm"])

    const monthly = plan(backups, { keepMonthly: 2 })
    // January's newest is today; December's newest is 2024-12-31 (31 days ago).
    expect(monthly.kept.map((d) => d.backup_id).sort()).toEqual(["d0-pm", "d31-pm"])

    // Rules combine as a union, and with retention-days only old backups are candidates.
    const combined = plan(backups, { retentionDays: 7, keepDaily: 2, keepMonthly: 2 })
    expect(combined.deleted.every((d) => d.age_days > 7)).toBe(true)
    expect(combined.kept.map((d) => d.backup_id)).toContain("d31-pm")
    expect(combined.kept.filter((d) => d.backup_id.startsWith("d3") && d.age_days > 7).map((d) => d.backup_id)).toEqual(["d31-pm"])
  })

  it("refuses a policy that deletes every backup of a cluster", () => {
    const refused = planRetention(daily(), { retentionDays: 0 }, T0 + DAY)
    expect(refused).toBeInstanceOf(VacuumError)
    expect((refused as VacuumError).reason).toBe("WouldDeleteEverything")
    expect((refused as VacuumError).message).toContain("prod (10 backups)")
    expect((refused as VacuumError).fix).toContain("--min-backups 1")
    const other = planRetention([...daily(), input("x1", 30, "other")], { retentionDays: 20 }, T0)
    expect((other as VacuumError).message).toContain("other (1 backup)")
  })

  it("validates: negative or fractional numbers, min above max, nothing that deletes", () => {
    const problem = (p: RetentionPolicy) => validatePolicy(p)?.message ?? ""
    expect(problem({ retentionDays: -1 })).toContain("--retention-days must be a whole number, 0 or more (got -1)")
    expect(problem({ maxBackups: 1.5 })).toContain("--max-backups must be a whole number")
    expect(problem({ retentionDays: 5, minRetentionDays: 7 })).toContain("--min-retention-days 7 is more than --retention-days 5")
    expect(problem({ maxBackups: 2, minBackups: 3 })).toContain("--min-backups 3 is more than --max-backups 2")
    expect(problem({})).toContain("no retention policy was given")
    expect(validatePolicy({})?.fix).toContain("--retention-days N")
    expect(problem({ minBackups: 3 })).toContain("--min-backups only protects backups")
    expect(validatePolicy({ keepDaily: 7 })).toBeUndefined()
  })
})

// ---------------------------------------------------------------------------
// IdSorter

describe("IdSorter", () => {
  it("yields every distinct id once, in order, across runs spilled to disk", async () => {
    const dir = await tempDir()
    const ids: Array<string> = []
    for (let i = 0; i < 3000; i++) ids.push((await run(hashBlock(enc.encode(`id ${i % 1700}`)))).id)
    const expected = [...new Set(ids)].sort()
    const out = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const sorter = yield* makeIdSorter({ chunkIds: 256, bufferIds: 7, tempDir: dir })
          for (const id of ids) yield* sorter.add(id)
          expect(sorter.runs()).toBeGreaterThan(5)
          const cursor = yield* sorter.finish
          const seen: Array<string> = []
          for (let id = cursor.peek(); id !== undefined; id = cursor.peek()) {
            seen.push(id)
            yield* cursor.next
          }
          return seen
        }),
      ),
    )
    expect(out).toEqual(expected)
    // The runs are removed with the scope.
    const { readdir } = await import("node:fs/promises")
    expect(await readdir(dir)).toEqual([])
  })

  it("seek answers membership for ascending probes", async () => {
    const present = ["1".repeat(64), "3".repeat(64), "5".repeat(64)]
    const answers = await run(
      Effect.scoped(
        Effect.gen(function* () {
          const sorter = yield* makeIdSorter({ chunkIds: 2 })
          for (const id of [...present, present[0]]) yield* sorter.add(id)
          const cursor = yield* sorter.finish
          const out: Array<boolean> = []
          for (const probe of ["0", "1", "2", "3", "4", "5", "6"]) out.push(yield* cursor.seek(probe.repeat(64)))
          return out
        }),
      ),
    )
    expect(answers).toEqual([false, true, false, true, false, true, false])
  })
})

// ---------------------------------------------------------------------------
// The workflow, with real backups

const random = (n: number, seed: number) => {
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

const makeCluster = async (name: string, storage: BlobStore = makeMemoryBlobStore({ name })): Promise<Cluster> => {
  const dir = await tempDir()
  return { name, meta: await run(makeLocalMetaStore(dir)), storage }
}

const files = async (c: Cluster) => {
  const out = new Map<string, string>()
  for (const info of await run(Stream.runCollect(c.storage.list("")))) {
    out.set(info.key, Buffer.from(await run(c.storage.get(info.key))).toString("hex"))
  }
  return out
}

/** Every object of a store: key, size, etag (equal listings = nothing changed). */
const listing = async (store: BlobStore) => (await run(Stream.runCollect(store.list("")))).map((o) => `${o.key} ${o.size} ${o.etag}`)

const blockIdsOf = async (repo: Repository, backupId: string) => {
  const m = await run(readManifest(repo, backupId))
  const ids = new Set<string>()
  for (const f of await run(Stream.runCollect(streamFiles(repo, m.storage?.pages ?? [])))) for (const b of f.blocks) ids.add(b.blockId)
  return ids
}

const hasKey = async (store: BlobStore, key: string) =>
  run(
    store.head(key).pipe(
      Effect.as(true),
      Effect.catchIf(
        (e) => e.reason === "NotFound",
        () => Effect.succeed(false),
      ),
    ),
  )

/**
 * Four daily backups (5, 4, 3, 2 days before `now`) of a cluster whose files
 * change between them; each state is remembered for restore checks.
 */
const fourBackups = async (repoStore: BlobStore = makeMemoryBlobStore()) => {
  const src = await makeCluster("prod")
  const repo = await run(openRepository(repoStore, { create: true }))
  const now = Date.now() + 2 * HOUR
  const states: Array<{ id: string; files: Map<string, string> }> = []
  await run(src.storage.put("shared/always.bin", random(5000, 1)))
  for (let i = 0; i < 4; i++) {
    await run(src.storage.put(`v/${i}.bin`, random(3000 + i, 100 + i)))
    await run(src.storage.put("changing.bin", random(2000, 200 + i)))
    if (i === 2) await run(src.storage.delete("v/0.bin"))
    const r = await run(backup(src, repo, { now: () => now - (5 - i) * DAY }))
    states.push({ id: r.backup_id, files: await files(src) })
  }
  return { src, repo, now, states }
}

const restoredFiles = async (repo: Repository, backupId: string) => {
  const dst = await makeCluster("dst")
  await run(restore(repo, await run(readManifest(repo, backupId)), dst, { confirm: true }))
  return files(dst)
}

/** A store that counts gets per key. */
const counting = (store: BlobStore) => {
  const reads: Array<string> = []
  const wrapped: BlobStore = {
    ...store,
    get: (key) => Effect.tap(store.get(key), () => Effect.sync(() => reads.push(key))),
    getRange: (key, o, l) => Effect.tap(store.getRange(key, o, l), () => Effect.sync(() => reads.push(key))),
    getStream: (key) =>
      Stream.ensuring(
        store.getStream(key),
        Effect.sync(() => reads.push(key)),
      ),
  }
  return { store: wrapped, reads }
}

describe("vacuum (real backups, memory store)", () => {
  it("max-backups: deletes the oldest backups and their own blocks; shared blocks survive; kept backups restore byte for byte and verify", async () => {
    const { repo, now, states } = await fourBackups()
    const before = await Promise.all(states.map((s) => blockIdsOf(repo, s.id)))
    const result = await run(vacuum(repo, { maxBackups: 2 }, { now: () => now }))
    expect(result.deleted.map((d) => d.backup_id)).toEqual([states[0].id, states[1].id])
    expect(result.kept.map((d) => d.backup_id)).toEqual([states[2].id, states[3].id])
    expect(result.manifests_deleted).toBe(2)
    expect(await run(listBackupIds(repo))).toEqual([states[2].id, states[3].id])
    expect(result.sweep.status).toBe("done")
    // What the deleted backups alone referenced is gone; what they shared with a kept one is not.
    const keptIds = new Set([...before[2], ...before[3]])
    const onlyDeleted = [...before[0], ...before[1]].filter((id) => !keptIds.has(id))
    expect(onlyDeleted.length).toBeGreaterThan(0)
    const sharedWithKept = [...before[0]].filter((id) => keptIds.has(id))
    expect(sharedWithKept.length).toBeGreaterThan(0)
    for (const id of onlyDeleted) expect(await hasKey(repo.store, `data/${id}`)).toBe(false)
    for (const id of keptIds) expect(await hasKey(repo.store, `data/${id}`)).toBe(true)
    expect(result.sweep.blocks_deleted).toBeGreaterThanOrEqual(new Set(onlyDeleted).size)
    expect((await run(verify(repo, { readDataPercent: 100 }))).problems).toEqual([])
    for (const s of states.slice(2)) expect(await restoredFiles(repo, s.id)).toEqual(s.files)
    // A second run finds nothing left to do.
    const again = await run(vacuum(repo, { maxBackups: 2 }, { now: () => now }))
    expect(again.deleted).toEqual([])
    expect(again.sweep.blocks_deleted).toBe(0)
    // The vacuum lease was released.
    expect((await run(listLeases(repo.store))).filter((l) => l.live)).toEqual([])
  })

  it("retention-days with min-backups, on the injected clock", async () => {
    const { repo, now, states } = await fourBackups()
    const r = await run(vacuum(repo, { retentionDays: 3, minBackups: 1 }, { now: () => now, dryRun: true }))
    // 5 and 4 days old are older than 3 days; 3 days old is not.
    expect(r.deleted.map((d) => d.backup_id)).toEqual([states[0].id, states[1].id])
    const later = await run(vacuum(repo, { retentionDays: 3, minBackups: 1 }, { now: () => now + 30 * DAY, dryRun: true }))
    expect(later.deleted.map((d) => d.backup_id)).toEqual(states.slice(0, 3).map((s) => s.id))
    expect(later.kept[0].reasons[0]).toMatch(/^min-backups 1/)
    // Without the floor, every backup would go: refused, and nothing is written (not even a lease).
    const before = await listing(repo.store)
    const refused = await run(Effect.flip(vacuum(repo, { retentionDays: 3 }, { now: () => now + 30 * DAY })))
    expect(refused._tag).toBe("VacuumError")
    expect(refused.message).toContain("would delete every backup of cluster prod (4 backups)")
    expect(await listing(repo.store)).toEqual(before)
  })

  it("dry run changes nothing and reports what a run deletes", async () => {
    const { repo, now } = await fourBackups()
    const before = await listing(repo.store)
    const dry = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now, dryRun: true }))
    expect(await listing(repo.store)).toEqual(before)
    expect(dry.dry_run).toBe(true)
    expect(dry.sweep.status).toBe("planned")
    expect(dry.sweep.blocks_to_delete).toBeGreaterThan(0)
    expect(dry.sweep.blocks_deleted).toBe(0)
    const real = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now }))
    expect(real.deleted).toEqual(dry.deleted)
    expect(real.sweep.blocks_deleted).toBe(dry.sweep.blocks_to_delete)
    expect(real.sweep.bytes_reclaimed).toBe(dry.sweep.bytes_to_reclaim)
  })

  it("reads manifests and pages only: no file data block is downloaded", async () => {
    const { repo, now, states } = await fourBackups()
    const pageIds = new Set<string>()
    for (const s of states) {
      const m = await run(readManifest(repo, s.id))
      for (const p of [...(m.storage?.pages ?? []), ...(m.metasrv?.pages ?? [])]) pageIds.add(p.blockId)
    }
    const { store, reads } = counting(repo.store)
    const r = await run(vacuum({ ...repo, store }, { maxBackups: 1 }, { now: () => now }))
    expect(r.sweep.blocks_deleted).toBeGreaterThan(0)
    const dataReads = reads.filter((k) => k.startsWith("data/"))
    expect(dataReads.length).toBeGreaterThan(0) // the file pages
    expect(dataReads.filter((k) => !pageIds.has(k.slice(5)))).toEqual([])
  })

  it("the grace period keeps young unreferenced blocks", async () => {
    const { repo, now } = await fourBackups()
    // A block a backup just uploaded and has not referenced yet.
    const young = await run(hashBlock(enc.encode("fresh upload")))
    await run(repo.store.put(`data/${young.id}`, young.bytes))
    const r = await run(vacuum(repo, { maxBackups: 4 }, { now: () => Date.now() }))
    expect(r.sweep.blocks_deleted).toBe(0)
    expect(r.sweep.deferred[0].reason).toMatch(/younger than the grace period/)
    expect(await hasKey(repo.store, `data/${young.id}`)).toBe(true)
    const zero = await run(vacuum(repo, { maxBackups: 4 }, { now: () => Date.now(), graceMs: 0 }))
    expect(zero.sweep.blocks_deleted).toBe(1)
    expect(await hasKey(repo.store, `data/${young.id}`)).toBe(false)
    void now
  })

  it("keeps what a checkpoint of an unfinished backup references (pages and file blocks)", async () => {
    const { repo, now } = await fourBackups()
    // Blocks of an unfinished backup: a file whose two blocks are in no manifest, and its page.
    const a = await run(hashBlock(enc.encode("checkpointed block a")))
    const b = await run(hashBlock(enc.encode("checkpointed block b")))
    for (const blk of [a, b]) await run(repo.store.put(`data/${blk.id}`, blk.bytes))
    const writer = makeFilePageWriter(repo)
    await run(
      writer.add(
        makeBackupFile({
          path: "new/file",
          size: a.bytes.length + b.bytes.length,
          etag: "e",
          lastModified: 0,
          blocks: [a, b].map((x) => ({ id: x.id, size: x.bytes.length })),
        }),
      ),
    )
    const pages = await run(writer.finish)
    const checkpoint = create(BackupManifestSchema, {
      formatVersion: 1,
      minReaderVersion: 1,
      backupMeta: { backupId: "20991231_000000", clusterName: "prod" },
      storage: { pages },
    })
    await run(repo.store.put("checkpoints/20991231_000000.checkpoint", encodeManifest(checkpoint)))
    const r = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now }))
    expect(r.sweep.checkpoints_read).toBe(1)
    for (const id of [a.id, b.id, pages[0].blockId]) expect(await hasKey(repo.store, `data/${id}`)).toBe(true)
    // Once the checkpoint is gone (the backup gave up), the next vacuum collects them.
    await run(repo.store.delete("checkpoints/20991231_000000.checkpoint"))
    const next = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now }))
    expect(next.sweep.blocks_deleted).toBe(3)
    for (const id of [a.id, b.id, pages[0].blockId]) expect(await hasKey(repo.store, `data/${id}`)).toBe(false)
    // An unreadable checkpoint stops the sweep (its references are unknown); it is reported.
    await run(repo.store.put("checkpoints/x.checkpoint", enc.encode("not protobuf \xff\xff")))
    const garbage = await run(hashBlock(enc.encode("garbage")))
    await run(repo.store.put(`data/${garbage.id}`, garbage.bytes))
    const skipped = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now, graceMs: 0 }))
    expect(skipped.sweep.status).toBe("skipped")
    expect(skipped.sweep.reason).toContain("checkpoints/x.checkpoint")
    expect(await hasKey(repo.store, `data/${garbage.id}`)).toBe(true)
  })

  it("pinned backups (tag --keep) and backups a running restore uses are kept", async () => {
    const { repo, now, states } = await fourBackups()
    await run(pinBackup(repo, states[0].id, USER_PIN_REASON))
    await run(
      Effect.scoped(
        Effect.gen(function* () {
          yield* acquireSharedLease(repo.store, "restore", { operation: "restore", details: { backup_id: states[1].id } })
          const r = yield* vacuum(repo, { maxBackups: 1 }, { now: () => now })
          expect(r.deleted.map((d) => d.backup_id)).toEqual([states[2].id])
          expect(r.kept.find((k) => k.backup_id === states[0].id)?.reasons).toEqual(["pinned (user)"])
          expect(r.kept.find((k) => k.backup_id === states[1].id)?.reasons[0]).toMatch(/^in use by a running restore/)
        }),
      ),
    )
    expect((await run(verify(repo))).ok).toBe(true)
    expect(await restoredFiles(repo, states[0].id)).toEqual(states[0].files)
    // Unpinned, it goes at the next vacuum.
    expect((await run(unpinBackup(repo, states[0].id, USER_PIN_REASON))).length).toBe(1)
    expect(await run(listPins(repo))).toEqual([])
    const r = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now }))
    expect(r.deleted.map((d) => d.backup_id).sort()).toEqual([states[0].id, states[1].id])
    // Pinning a backup that does not exist fails clearly.
    const missing = await run(Effect.flip(pinBackup(repo, "20000101_000000", USER_PIN_REASON)))
    expect(missing.message).toContain("backup 20000101_000000 does not exist")
  })

  it("a pin written while a vacuum deletes manifests waits for it, then fails if its backup was deleted", async () => {
    const { repo, now, states } = await fourBackups()
    const slowExpire: BlobStore = {
      ...repo.store,
      deleteMany: (keys) =>
        keys[0]?.startsWith("manifests/") ? Effect.andThen(Effect.sleep(500), repo.store.deleteMany(keys)) : repo.store.deleteMany(keys),
    }
    const out = await run(
      Effect.gen(function* () {
        const v = yield* Effect.forkChild(vacuum({ ...repo, store: slowExpire }, { maxBackups: 3 }, { now: () => now }))
        yield* waitFor(
          "the expiring phase",
          listLeases(repo.store).pipe(Effect.map((ls) => ls.some((l) => l.live && l.record.details.phase === "expiring"))),
        )
        const pin = yield* Effect.flip(pinBackup(repo, states[0].id, USER_PIN_REASON))
        return { pin, v: yield* Fiber.join(v) }
      }),
    )
    expect(out.v.deleted.map((d) => d.backup_id)).toEqual([states[0].id])
    expect(out.pin.message).toContain(`backup ${states[0].id} does not exist`)
    expect(await run(listPins(repo))).toEqual([])
  })

  it("a backup pinned while its vacuum is deleting manifests is spared by the next batch", async () => {
    const { repo, now, states } = await fourBackups()
    const calls = { n: 0 }
    const slowExpire: BlobStore = {
      ...repo.store,
      deleteMany: (keys) =>
        keys[0]?.startsWith("manifests/")
          ? Effect.andThen(
              Effect.sync(() => calls.n++),
              Effect.andThen(Effect.sleep(400), repo.store.deleteMany(keys)),
            )
          : repo.store.deleteMany(keys),
    }
    const out = await run(
      Effect.gen(function* () {
        const v = yield* Effect.forkChild(vacuum({ ...repo, store: slowExpire }, { maxBackups: 1 }, { now: () => now, batchSize: 1 }))
        yield* waitFor(
          "the first manifest batch",
          Effect.sync(() => calls.n > 0),
        )
        const pin = yield* pinBackup(repo, states[2].id, USER_PIN_REASON)
        return { pin, v: yield* Fiber.join(v) }
      }),
    )
    expect(out.v.deleted.map((d) => d.backup_id)).toEqual([states[0].id, states[1].id])
    expect(out.v.kept.find((k) => k.backup_id === states[2].id)?.reasons).toEqual(["pinned (user)"])
    expect(out.pin.backup_id).toBe(states[2].id)
    expect((await run(verify(repo, { readDataPercent: 100 }))).problems).toEqual([])
    expect(await restoredFiles(repo, states[2].id)).toEqual(states[2].files)
  })

  it("reports a damaged manifest, never deletes it, and does not sweep", async () => {
    const { repo, now, states } = await fourBackups()
    await run(repo.store.put("manifests/20000101_000000.manifest", enc.encode("damaged")))
    const garbage = await run(hashBlock(enc.encode("garbage")))
    await run(repo.store.put(`data/${garbage.id}`, garbage.bytes))
    const r = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now, graceMs: 0 }))
    expect(r.damaged.map((d) => d.backup_id)).toEqual(["20000101_000000"])
    expect(r.deleted.map((d) => d.backup_id)).toEqual(states.slice(0, 3).map((s) => s.id))
    expect(r.sweep.status).toBe("skipped")
    expect(r.sweep.reason).toContain("manifest 20000101_000000")
    expect(await hasKey(repo.store, "manifests/20000101_000000.manifest")).toBe(true)
    expect(await hasKey(repo.store, `data/${garbage.id}`)).toBe(true)
  })

  it("bounded memory: the same result when the referenced ids spill to disk in many runs", async () => {
    const a = await fourBackups()
    const inMemory = await run(vacuum(a.repo, { maxBackups: 2 }, { now: () => a.now, dryRun: true }))
    const spilled = await run(vacuum(a.repo, { maxBackups: 2 }, { now: () => a.now, dryRun: true, sorter: { chunkIds: 3, bufferIds: 2 } }))
    expect(spilled.sweep).toEqual({ ...inMemory.sweep })
    expect(spilled.sweep.blocks_to_delete).toBeGreaterThan(0)
  })
})

/** A repository store whose deleteMany of data/ keys is slow (a sweep that takes a while). */
const slowSweep = (store: BlobStore, ms: number, calls: { n: number } = { n: 0 }): BlobStore => ({
  ...store,
  deleteMany: (keys) =>
    keys[0]?.startsWith("data/")
      ? Effect.andThen(
          Effect.sync(() => calls.n++),
          Effect.andThen(Effect.sleep(ms), store.deleteMany(keys)),
        )
      : store.deleteMany(keys),
})

const waitFor = (what: string, check: Effect.Effect<boolean, unknown>, timeoutMs = 10_000) =>
  Effect.gen(function* () {
    const started = Date.now()
    while (!(yield* check)) {
      if (Date.now() - started > timeoutMs) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(10)
    }
  })

describe("vacuum beside backups and other vacuums", () => {
  for (const kind of ["memory", "fs"] as const) {
    it(`a running backup defers the sweep; the next vacuum finishes (${kind} store)`, async () => {
      const repoStore = kind === "memory" ? makeMemoryBlobStore() : await run(makeFsBlobStore(await tempDir()))
      const { src, repo, now, states } = await fourBackups(repoStore)
      // A backup whose source reads are slow: it holds its lease for a while.
      const slowSrc: Cluster = {
        ...src,
        storage: { ...src.storage, getRange: (k, o, l) => Effect.andThen(Effect.sleep(1500), src.storage.getRange(k, o, l)) },
      }
      await run(src.storage.put("new/file.bin", random(4000, 999)))
      const result = await run(
        Effect.gen(function* () {
          const running = yield* Effect.forkChild(backup(slowSrc, repo, { now: () => now - DAY }))
          yield* waitFor(
            "the backup lease",
            listLeases(repo.store).pipe(Effect.map((ls) => ls.some((l) => l.record.kind === BACKUP_LEASE))),
          )
          const r = yield* vacuum(repo, { maxBackups: 2 }, { now: () => now })
          const b = yield* Fiber.join(running)
          return { r, b }
        }),
      )
      expect(result.r.deleted.map((d) => d.backup_id)).toEqual([states[0].id, states[1].id])
      expect(result.r.manifests_deleted).toBe(2)
      expect(result.r.sweep.status).toBe("deferred")
      expect(result.r.sweep.reason).toMatch(/1 backup is running \(prod: pid/)
      expect(result.r.sweep.blocks_deleted).toBe(0)
      expect((await run(verify(repo, { readDataPercent: 100 }))).problems).toEqual([])
      const next = await run(vacuum(repo, { maxBackups: 3 }, { now: () => now }))
      expect(next.sweep.status).toBe("done")
      expect(next.sweep.blocks_deleted).toBeGreaterThan(0)
      expect((await run(verify(repo, { readDataPercent: 100 }))).problems).toEqual([])
      expect(await restoredFiles(repo, result.b.backup_id)).toEqual(await files(src))
    })
  }

  it("a backup that starts while a vacuum sweeps waits; the sweep stops between batches for it", async () => {
    const { src, repo, now, states } = await fourBackups()
    const calls = { n: 0 }
    const slowRepo: Repository = { ...repo, store: slowSweep(repo.store, 300, calls) }
    let waited = false
    const out = await run(
      Effect.gen(function* () {
        const sweeping = yield* Effect.forkChild(vacuum(slowRepo, { maxBackups: 1 }, { now: () => now, batchSize: 1 }))
        yield* waitFor(
          "the first delete batch",
          Effect.sync(() => calls.n > 0),
        )
        const b = yield* backup(src, repo, { now: () => now - HOUR, onVacuumWait: () => (waited = true) })
        return { v: yield* Fiber.join(sweeping), b }
      }),
    )
    expect(waited).toBe(true)
    expect(out.v.sweep.status).toBe("stopped")
    expect(out.v.sweep.reason).toMatch(/a backup started/)
    expect(out.v.sweep.blocks_deleted).toBeGreaterThan(0)
    expect(out.v.sweep.blocks_deferred).toBeGreaterThan(0)
    expect(out.v.deleted.map((d) => d.backup_id)).toEqual(states.slice(0, 3).map((s) => s.id))
    expect((await run(verify(repo, { readDataPercent: 100 }))).problems).toEqual([])
    expect(await restoredFiles(repo, out.b.backup_id)).toEqual(await files(src))
    const next = await run(vacuum(repo, { maxBackups: 2 }, { now: () => now }))
    expect(next.sweep.status).toBe("done")
    expect(next.sweep.blocks_deleted).toBe(out.v.sweep.blocks_deferred)
  })

  it("a second vacuum fails naming the first, or waits for it with waitMs", async () => {
    const { repo, now } = await fourBackups()
    const slowRepo: Repository = { ...repo, store: slowSweep(repo.store, 200) }
    const calls = await run(
      Effect.gen(function* () {
        const first = yield* Effect.forkChild(vacuum(slowRepo, { maxBackups: 1 }, { now: () => now, batchSize: 1 }))
        yield* waitFor(
          "the vacuum lease",
          listLeases(repo.store).pipe(Effect.map((ls) => ls.some((l) => l.live && l.record.kind === "vacuum"))),
        )
        const failed = yield* Effect.flip(vacuum(repo, { maxBackups: 1 }, { now: () => now }))
        const waited = yield* vacuum(repo, { maxBackups: 1 }, { now: () => now, waitMs: 30_000 })
        yield* Fiber.join(first)
        return { failed, waited }
      }),
    )
    expect(calls.failed._tag).toBe("LeaseHeldError")
    expect(calls.failed.message).toMatch(/vacuum holds the vacuum lease \(pid \d+/)
    expect(calls.waited.sweep.status).toBe("done")
  })

  it("killed midway (a crash between delete batches, lease left behind): the repository verifies and the next run finishes", async () => {
    const { repo, now, states } = await fourBackups()
    const clean = await fourBackups()
    const expected = await run(vacuum(clean.repo, { maxBackups: 1 }, { now: () => clean.now }))
    // Crash: the second data delete batch dies, and the lease object stays as a killed process leaves it.
    let batches = 0
    const crashing: BlobStore = {
      ...repo.store,
      deleteMany: (keys) =>
        keys[0]?.startsWith("data/") && ++batches === 2 ? Effect.die(new Error("killed")) : repo.store.deleteMany(keys),
      put: (key, body, o) => (key.startsWith("leases/") && batches >= 2 ? Effect.die(new Error("killed")) : repo.store.put(key, body, o)),
    }
    const exit = await Effect.runPromiseExit(
      vacuum({ ...repo, store: crashing }, { maxBackups: 1 }, { now: () => now, batchSize: 2, leaseTtlMs: 300 }),
    )
    expect(Exit.isFailure(exit)).toBe(true)
    expect(await run(listBackupIds(repo))).toEqual([states[3].id])
    expect((await run(verify(repo, { readDataPercent: 100 }))).problems).toEqual([])
    // The dead vacuum's lease is live for its TTL: a rerun right away is refused clearly...
    const held = await run(Effect.flip(vacuum(repo, { maxBackups: 1 }, { now: () => now })))
    expect(held._tag).toBe("LeaseHeldError")
    // ...and once it expired, the rerun takes it over and finishes the job.
    const rerun = await run(vacuum(repo, { maxBackups: 1 }, { now: () => now, waitMs: 60_000, leaseSkewMs: 0 }))
    expect(rerun.deleted).toEqual([])
    expect(rerun.sweep.blocks_deleted).toBe(expected.sweep.blocks_deleted - 2)
    expect(await listing(repo.store).then((l) => l.filter((k) => k.startsWith("data/")).length)).toBe(
      await listing(clean.repo.store).then((l) => l.filter((k) => k.startsWith("data/")).length),
    )
    expect(await restoredFiles(repo, states[3].id)).toEqual(states[3].files)
  })

  it("rejects bad options before touching the repository", async () => {
    const repo = await run(openRepository(makeMemoryBlobStore(), { create: true }))
    const before = await listing(repo.store)
    const bad = async (policy: RetentionPolicy, options: VacuumOptions = {}) =>
      (await run(Effect.flip(vacuum(repo, policy, options)))).message
    expect(await bad({})).toContain("no retention policy")
    expect(await bad({ maxBackups: 1 }, { graceMs: -1 })).toContain("grace period must be 0 or more")
    expect(await listing(repo.store)).toEqual(before)
  })
})

void BlobStoreError
