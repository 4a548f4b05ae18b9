/**
 * Resumable backup and restore, and the fault kinds of issue 5, as workflow
 * tests: memory storage, a local meta store, the fault-injecting store of
 * @bendsave/core/testing and the core's own retry/timeout wrappers.
 * (The CLI kill-and-resume tests with real SIGKILLs are in test/resume.e2e.test.ts.)
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Fiber, Stream } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { backup, type Cluster, SourceChangedError } from "../src/Backup.ts"
import type { BlobStore } from "../src/BlobStore.ts"
import { abandonBackup, checkpointKey, listCheckpointIds, listIncompleteBackups, readCheckpoint } from "../src/Checkpoint.ts"
import { makeLocalMetaStore } from "../src/drivers/LocalMetaStore.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import { acquireSharedLease, BACKUP_LEASE } from "../src/Lease.ts"
import { compareBytes, type MetaEntry } from "../src/MetaStore.ts"
import { streamFiles } from "../src/Pages.ts"
import { BLOCK_SIZE, hasBlock, listBackupIds, openRepository, type Repository, readManifest } from "../src/Repository.ts"
import { restore } from "../src/Restore.ts"
import { applyStorageLimits } from "../src/StorageLimits.ts"
import { type FaultRule, makeFaultyBlobStore } from "../src/testing/FaultyBlobStore.ts"
import { vacuum } from "../src/Vacuum.ts"

const dirs: Array<string> = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

const enc = new TextEncoder()
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)

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
  const dir = await mkdtemp(join(tmpdir(), "bendsave-resume-"))
  dirs.push(dir)
  return { name, meta: await run(makeLocalMetaStore(dir)), storage }
}

/** A source cluster: two multi-block files and many small ones, and some meta keys. */
const makeSource = async (name = "prod") => {
  const c = await makeCluster(name)
  await run(c.storage.put("a/big1.bin", random(2 * BLOCK_SIZE + 1000, 1)))
  for (let i = 0; i < 120; i++) await run(c.storage.put(`b/${String(i).padStart(4, "0")}.bin`, random(2000 + i * 37, i + 10)))
  await run(c.storage.put("c/big2.bin", random(BLOCK_SIZE + 5, 2)))
  for (let i = 0; i < 80; i++) await run(c.storage.put(`d/${String(i).padStart(4, "0")}.bin`, random(500 + i, i + 500)))
  const entries: Array<MetaEntry> = Array.from({ length: 50 }, (_, i) => ({
    key: enc.encode(`k/${String(i).padStart(3, "0")}`),
    value: enc.encode(`v${i}`),
  }))
  await run(c.meta.replace(Stream.fromIterable(entries.sort((x, y) => compareBytes(x.key, y.key)))))
  return c
}

/** The source's reads per key, counted (proves which files a run read). */
const counting = (store: BlobStore) => {
  const reads = new Map<string, number>()
  const wrapped: BlobStore = {
    ...store,
    getRange: (key, offset, length) =>
      Effect.suspend(() => {
        reads.set(key, (reads.get(key) ?? 0) + 1)
        return store.getRange(key, offset, length)
      }),
  }
  return { store: wrapped, reads }
}

const newRepo = (store: BlobStore = makeMemoryBlobStore()) => run(openRepository(store, { create: true }))

const dumpFiles = async (store: BlobStore) => {
  const files = new Map<string, string>()
  for (const info of await run(Stream.runCollect(store.list(""))))
    files.set(info.key, Buffer.from(await run(store.get(info.key))).toString("hex"))
  return files
}

/**
 * Paths of the files a checkpoint holds as finished: those in its pages, and
 * partly read files whose every block is stored.
 */
const finishedPaths = async (repo: Repository, backupId: string) => {
  const checkpoint = await run(readCheckpoint(repo, backupId))
  if (checkpoint === undefined) return []
  const files = await run(Stream.runCollect(streamFiles(repo, checkpoint.storage?.pages ?? [])))
  const complete = (checkpoint.checkpoint?.partialFiles ?? []).filter(
    (f) => f.blocks.reduce((n, b) => n + Number(b.blockSize), 0) === Number(f.size),
  )
  return [...files, ...complete].map((f) => f.path)
}

/** Restores backup `id` into a fresh cluster and returns its files. */
const restoredFiles = async (repo: Repository, id: string) => {
  const dst = await makeCluster("dst")
  await run(restore(repo, await run(readManifest(repo, id)), dst, { confirm: true }))
  return dumpFiles(dst.storage)
}

/** Fast retries, so fault tests take milliseconds (10 attempts: a request failing at 25% fails for good once in a million). */
const limits = (requestTimeoutMs?: number) => ({
  retry: { attempts: 10, baseDelayMs: 1, maxDelayMs: 10 },
  concurrency: 32,
  upload: undefined,
  download: undefined,
  requestTimeoutMs,
})

/** Waits until the backup in `repo` has a checkpoint past its first (or the fiber ended), for interruption tests. */
const untilCheckpointed = async (repo: Repository, fiber: { pollUnsafe: () => unknown }) => {
  for (let polls = 0; polls < 5000 && fiber.pollUnsafe() === undefined; polls++) {
    const [id] = await run(listCheckpointIds(repo.store))
    if (id !== undefined && ((await run(readCheckpoint(repo, id)))?.checkpoint?.sequence ?? 0n) >= 2n) return
    await new Promise((r) => setTimeout(r, 2))
  }
}

describe("resuming an interrupted backup", () => {
  it("at 8 interruption points: each resumed backup commits the same pages, meta and blocks as an uninterrupted one, without re-reading finished files", async () => {
    const src = await makeSource()
    const expectedFiles = await dumpFiles(src.storage)
    const reference = await newRepo()
    const clean = await run(backup(src, reference))
    const cleanManifest = await run(readManifest(reference, clean.backup_id))

    let resumedRuns = 0
    const total = [...expectedFiles.values()].reduce((n, hex) => n + hex.length / 2, 0)
    for (const fraction of [0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75]) {
      const killAt = `${Math.round(fraction * 100)}% of the bytes checkpointed`
      const repo = await newRepo()
      // A slow source (every read waits), interrupted once a checkpoint holds `fraction` of the bytes
      // (the first checkpoint for 0): like a SIGKILL, minus the process.
      const slow = makeFaultyBlobStore(src.storage, [{ fault: "delay", delayMs: 8, operations: ["getRange"] }])
      const first = Effect.runFork(backup({ ...src, storage: slow.store }, repo, { checkpointIntervalMs: 10, fileConcurrency: 4 }))
      for (let polls = 0; polls < 6000 && first.pollUnsafe() === undefined; polls++) {
        const [id] = await run(listCheckpointIds(repo.store))
        const checkpoint = id === undefined ? undefined : await run(readCheckpoint(repo, id))
        const stored =
          Number(checkpoint?.storage?.totalBytes ?? 0n) +
          (checkpoint?.checkpoint?.partialFiles ?? []).reduce((n, f) => n + f.blocks.reduce((m, b) => m + Number(b.blockSize), 0), 0)
        if (checkpoint !== undefined && stored >= fraction * total) break
        await new Promise((r) => setTimeout(r, 2))
      }
      await run(Fiber.interrupt(first))
      const ids = await run(listCheckpointIds(repo.store))
      // Finished before the interruption.
      if (ids.length === 0) {
        console.log(`the backup finished before ${killAt}`)
        continue
      }
      expect(ids).toHaveLength(1)
      const finished = await finishedPaths(repo, ids[0])
      const source = counting(src.storage)
      const resumed = await run(backup({ ...src, storage: source.store }, repo))
      expect(resumed.resumed, `interrupted at ${killAt}`).toBe(true)
      expect(resumed.resumed_from).toBe(ids[0])
      expect(resumed.backup_id).toBe(ids[0])
      // No finished file was read again.
      for (const path of finished) expect(source.reads.get(path), `${path} was re-read`).toBeUndefined()
      expect(resumed.files_resumed).toBeGreaterThanOrEqual(finished.length)
      expect(resumed.files_read).toBeLessThanOrEqual(clean.files_total - finished.length)
      // Same file list pages and meta pages (content-addressed: same bytes) as the uninterrupted backup.
      const manifest = await run(readManifest(repo, resumed.backup_id))
      expect(manifest.checkpoint).toBeUndefined()
      expect(manifest.storage?.pages.map((p) => p.blockId)).toEqual(cleanManifest.storage?.pages.map((p) => p.blockId))
      expect(manifest.metasrv?.pages.map((p) => p.blockId)).toEqual(cleanManifest.metasrv?.pages.map((p) => p.blockId))
      expect(resumed.files_total).toBe(clean.files_total)
      expect(await run(listCheckpointIds(repo.store))).toEqual([])
      expect(await restoredFiles(repo, resumed.backup_id)).toEqual(expectedFiles)
      resumedRuns++
    }
    expect(resumedRuns).toBeGreaterThanOrEqual(6)
  })

  it("keeps the meta snapshot of the first start: keys changed after the interruption are not in the resumed backup", async () => {
    const src = await makeSource()
    const repo = await newRepo()
    const slow = makeFaultyBlobStore(src.storage, [{ fault: "delay", delayMs: 5, operations: ["getRange"] }])
    const first = Effect.runFork(backup({ ...src, storage: slow.store }, repo, { checkpointIntervalMs: 10 }))
    await untilCheckpointed(repo, first)
    await run(Fiber.interrupt(first))
    const [id] = await run(listCheckpointIds(repo.store))
    const revision = Number((await run(readCheckpoint(repo, id)))?.metasrv?.revision)
    await run(src.meta.replace(Stream.make({ key: enc.encode("k/new"), value: enc.encode("later") })))
    const resumed = await run(backup(src, repo))
    expect(resumed.resumed).toBe(true)
    expect(resumed.meta_revision).toBe(revision)
    expect(resumed.meta_keys).toBe(50)
  })

  it("continues a partly read multi-block file after its last stored block", async () => {
    const src = await makeCluster("partial")
    await run(src.storage.put("huge.bin", random(5 * BLOCK_SIZE, 3)))
    const repo = await newRepo()
    // Reads of blocks 3 and 4 hang: the backup stops with blocks 0-2 stored and checkpointed.
    const stuck = makeFaultyBlobStore(src.storage, [{ fault: "hang", operations: ["getRange"], after: 3 }])
    const first = Effect.runFork(backup({ ...src, storage: stuck.store }, repo, { checkpointIntervalMs: 10, byteBudget: 8 * BLOCK_SIZE }))
    for (let i = 0; i < 100; i++) {
      const [id] = await run(listCheckpointIds(repo.store))
      if (id !== undefined && ((await run(readCheckpoint(repo, id)))?.checkpoint?.partialFiles[0]?.blocks.length ?? 0) >= 3) break
      await new Promise((r) => setTimeout(r, 20))
    }
    await run(Fiber.interrupt(first))
    // A vacuum with no grace period in between keeps the partly read file's stored blocks (§13).
    const [id] = await run(listCheckpointIds(repo.store))
    const partial = (await run(readCheckpoint(repo, id)))?.checkpoint?.partialFiles[0]
    expect(partial?.blocks.length).toBe(3)
    const swept = await run(vacuum(repo, { maxBackups: 10 }, { graceMs: 0 }))
    expect(swept.sweep).toMatchObject({ status: "done", checkpoints_read: 1, blocks_deleted: 0 })
    for (const b of partial?.blocks ?? []) expect(await run(hasBlock(repo, b.blockId))).toBe(true)
    const source = counting(src.storage)
    const resumed = await run(backup({ ...src, storage: source.store }, repo))
    expect(resumed.resumed).toBe(true)
    expect(source.reads.get("huge.bin")).toBe(2)
    expect(resumed.bytes_read).toBe(2 * BLOCK_SIZE)
    expect(await restoredFiles(repo, resumed.backup_id)).toEqual(await dumpFiles(src.storage))
  })

  it("does not resume a backup whose lease is live (another process runs it): makes a backup of its own and says so", async () => {
    const src = await makeSource("busy")
    const repo = await newRepo()
    const slow = makeFaultyBlobStore(src.storage, [{ fault: "delay", delayMs: 5, operations: ["getRange"] }])
    const first = Effect.runFork(backup({ ...src, storage: slow.store }, repo, { checkpointIntervalMs: 10 }))
    await untilCheckpointed(repo, first)
    await run(Fiber.interrupt(first))
    const [id] = await run(listCheckpointIds(repo.store))
    const notices: Array<string> = []
    const separate = await run(
      Effect.scoped(
        Effect.gen(function* () {
          // A live holder of that backup (this very process: alive).
          yield* acquireSharedLease(repo.store, BACKUP_LEASE, { operation: "backup of cluster busy", details: { backup_id: id } })
          const incomplete = yield* listIncompleteBackups(repo)
          expect(incomplete.map((b) => [b.backup_id, b.running])).toEqual([[id, true]])
          const aborted = yield* Effect.flip(abandonBackup(repo, id))
          expect(aborted).toMatchObject({ _tag: "CheckpointError", reason: "Running" })
          return yield* backup(src, repo, { onNotice: (t) => notices.push(t), now: () => Date.now() + 5000 })
        }),
      ),
    )
    expect(separate.resumed).toBe(false)
    expect(separate.backup_id).not.toBe(id)
    expect(notices.join("\n")).toContain(`backup ${id} of cluster busy is running now`)
    // Its checkpoint is still there, and can be abandoned now that nobody holds it.
    expect(await run(listCheckpointIds(repo.store))).toEqual([id])
    expect((await run(listIncompleteBackups(repo)))[0]).toMatchObject({
      backup_id: id,
      state: "incomplete",
      running: false,
      cluster: "busy",
    })
    expect(await run(abandonBackup(repo, id))).toMatchObject({ backup_id: id, abandoned: true })
    expect(await run(listCheckpointIds(repo.store))).toEqual([])
    expect(await run(Effect.flip(abandonBackup(repo, id)))).toMatchObject({ _tag: "CheckpointError", reason: "NotFound" })
  })

  it("checkpoints by bytes count bytes read: files reused from the parent never trigger one", async () => {
    const src = await makeCluster("by-bytes")
    // More files than one listing batch (256), so an unchanged run hands finished batches to the writer as it goes.
    for (let i = 0; i < 700; i++) await run(src.storage.put(`f/${String(i).padStart(4, "0")}.bin`, random(300 + i, i + 1)))
    // A slow listing (2 ms a file), so the checkpoint ticker (every 250 ms) runs several times in each backup.
    const slow: Cluster = {
      ...src,
      storage: { ...src.storage, list: (prefix) => src.storage.list(prefix).pipe(Stream.tap(() => Effect.sleep(2))) },
    }
    const repo = await newRepo()
    const options = { checkpointBytes: 1, checkpointIntervalMs: 3_600_000 }
    const full = await run(backup(slow, repo, options))
    expect(full.files_read).toBe(700)
    expect(full.checkpoints_written).toBeGreaterThan(1)
    const unchanged = await run(backup(slow, repo, { ...options, now: () => Date.now() + 3000 }))
    expect(unchanged.files_reused).toBe(700)
    // Only the create-only first checkpoint that reserves the backup id.
    expect(unchanged.checkpoints_written).toBe(1)
  })

  it("a checkpoint left after the commit (killed before deleting it) is cleaned up, not resumed", async () => {
    const src = await makeSource("leftover")
    const repo = await newRepo()
    const first = await run(backup(src, repo))
    // Put back a checkpoint as the commit would have left it.
    const manifest = await run(readManifest(repo, first.backup_id))
    const { encodeCheckpoint } = await import("../src/Checkpoint.ts")
    await run(
      repo.store.put(
        checkpointKey(first.backup_id),
        encodeCheckpoint({
          ...manifest,
          checkpoint: {
            $typeName: "bendsave.manifest.v1.CheckpointState",
            sequence: 9n,
            resumeAfter: "",
            lastPageOpen: false,
            partialFiles: [],
            filesRead: 0n,
            bytesRead: 0n,
            resumes: 0,
            writer: "x",
          },
        }),
      ),
    )
    expect(await run(listIncompleteBackups(repo))).toEqual([])
    const second = await run(backup(src, repo, { now: () => Date.now() + 3000 }))
    expect(second.resumed).toBe(false)
    expect(second.parent_backup_id).toBe(first.backup_id)
    expect(await run(listCheckpointIds(repo.store))).toEqual([])
  })
})

describe("faults (fault-injecting store + the core's retry and timeout wrappers)", () => {
  const backupThrough = async (rules: ReadonlyArray<FaultRule>, options: { requestTimeoutMs?: number; seed?: number } = {}) => {
    const src = await makeSource()
    const inner = makeMemoryBlobStore()
    const faulty = makeFaultyBlobStore(inner, rules, { seed: options.seed ?? 7 })
    const repo = await newRepo(applyStorageLimits(faulty.store, limits(options.requestTimeoutMs)))
    const result = await run(Effect.result(backup(src, repo, { checkpointIntervalMs: 10 })))
    return { src, inner, faulty, repo, result }
  }

  const expectRestorable = async (repo: Repository, id: string, src: Cluster) => {
    expect(await restoredFiles(repo, id)).toEqual(await dumpFiles(src.storage))
  }

  it("transient errors (20% of all requests) are retried with backoff: the backup commits and restores", async () => {
    const { src, faulty, repo, result } = await backupThrough([{ fault: "transient", probability: 0.2 }])
    expect(result._tag).toBe("Success")
    expect(faulty.stats.injected.transient).toBeGreaterThan(20)
    if (result._tag === "Success") await expectRestorable(repo, result.success.backup_id, src)
  })

  it("transient errors after a write landed (lost answers) on create-only puts: retried, recognised as our own object", async () => {
    const { src, faulty, repo, result } = await backupThrough([
      { fault: "transient", operations: ["put"], when: "after", probability: 0.3 },
    ])
    expect(result._tag).toBe("Success")
    expect(faulty.stats.injected.transient).toBeGreaterThan(10)
    if (result._tag === "Success") await expectRestorable(repo, result.success.backup_id, src)
  })

  it("throttling (503 SlowDown / 429) is retried: the backup commits", async () => {
    const { src, faulty, repo, result } = await backupThrough([{ fault: "throttle", probability: 0.25 }])
    expect(result._tag).toBe("Success")
    expect(faulty.stats.injected.throttle).toBeGreaterThan(20)
    if (result._tag === "Success") await expectRestorable(repo, result.success.backup_id, src)
  })

  it("hung requests time out (per-request deadline) and are retried: the backup commits", async () => {
    const { src, faulty, repo, result } = await backupThrough([{ fault: "hang", operations: ["put", "head", "get"], probability: 0.05 }], {
      requestTimeoutMs: 150,
    })
    expect(result._tag).toBe("Success")
    expect(faulty.stats.injected.hang).toBeGreaterThan(3)
    if (result._tag === "Success") await expectRestorable(repo, result.success.backup_id, src)
  })

  it("a permanent error fails the backup clearly and commits nothing; the rerun resumes and commits", async () => {
    const { src, inner, faulty, repo, result } = await backupThrough([
      { fault: "permanent", operations: ["put"], keys: "data/", after: 60 },
    ])
    expect(result._tag).toBe("Failure")
    if (result._tag === "Failure") expect(result.failure).toMatchObject({ _tag: "BlobStoreError", reason: "PermissionDenied" })
    expect(await run(listBackupIds(repo))).toEqual([])
    const [id] = await run(listCheckpointIds(inner))
    expect(id).toBeDefined()
    const finished = await finishedPaths(repo, id)
    expect(finished.length).toBeGreaterThan(0)
    faulty.setRules([])
    const resumed = await run(backup(src, repo))
    expect(resumed).toMatchObject({ resumed: true, backup_id: id })
    await expectRestorable(repo, id, src)
  })

  it("an outage longer than the retries fails the backup (nothing committed); after it, the rerun resumes", async () => {
    const { src, inner, faulty, repo, result } = await backupThrough([{ fault: "transient", after: 150 }])
    expect(result._tag).toBe("Failure")
    if (result._tag === "Failure") expect(result.failure).toMatchObject({ _tag: "BlobStoreError", reason: "Unavailable" })
    faulty.setRules([])
    expect(await run(listBackupIds({ ...repo, store: inner }))).toEqual([])
    const resumed = await run(backup(src, repo))
    expect(resumed.resumed).toBe(true)
    await expectRestorable(repo, resumed.backup_id, src)
  })

  it("a source file that vanishes mid-backup fails it naming the file; the rerun starts afresh with a new meta snapshot", async () => {
    const src = await makeSource()
    const repo = await newRepo()
    let deleted = false
    const gc: BlobStore = {
      ...src.storage,
      getRange: (key, offset, length) =>
        Effect.suspend(() => {
          if (key === "b/0100.bin" && !deleted) {
            deleted = true
            return Effect.andThen(src.storage.delete(key), src.storage.getRange(key, offset, length))
          }
          return src.storage.getRange(key, offset, length)
        }),
    }
    const error = await run(Effect.flip(backup({ ...src, storage: gc }, repo, { checkpointIntervalMs: 5 })))
    expect(error).toBeInstanceOf(SourceChangedError)
    expect((error as SourceChangedError).path).toBe("b/0100.bin")
    expect(error.message).toContain("b/0100.bin")
    expect(await run(listBackupIds(repo))).toEqual([])
    expect(await run(listCheckpointIds(repo.store))).toEqual([])
    const again = await run(backup(src, repo))
    expect(again.resumed).toBe(false)
    expect(again.files_total).toBe(201)
  })
})

describe("resuming an interrupted restore", () => {
  it("skips the files an interrupted restore wrote, replaces the meta last, and ends identical", async () => {
    const src = await makeSource()
    const repo = await newRepo()
    const b = await run(backup(src, repo))
    const manifest = await run(readManifest(repo, b.backup_id))
    const dst = await makeCluster("dst")
    const slow = makeFaultyBlobStore(dst.storage, [{ fault: "delay", delayMs: 3, operations: ["put"] }])
    const first = Effect.runFork(restore(repo, manifest, { ...dst, storage: slow.store }, { confirm: true, fileConcurrency: 4 }))
    // Interrupted once a third of the files are in place.
    for (let polls = 0; polls < 5000 && first.pollUnsafe() === undefined; polls++) {
      if ((await run(Stream.runCollect(dst.storage.list("")))).length >= 67) break
      await new Promise((r) => setTimeout(r, 2))
    }
    await run(Fiber.interrupt(first))
    const partly = await dumpFiles(dst.storage)
    const expected = await dumpFiles(src.storage)
    expect(partly.size).toBeGreaterThan(0)
    expect(partly.size).toBeLessThan(expected.size)
    // Every file there is complete; the meta is not replaced yet.
    for (const [path, hex] of partly) expect(hex).toBe(expected.get(path))
    const metaBefore = await run(Stream.runCollect((await run(dst.meta.snapshot())).entries))
    expect(metaBefore.length).toBe(0)
    const again = await run(restore(repo, manifest, dst, { confirm: true }))
    expect(again.files_skipped).toBe(partly.size)
    expect(again.files_written).toBe(expected.size - partly.size)
    expect(await dumpFiles(dst.storage)).toEqual(expected)
    const metaAfter = await run(Stream.runCollect((await run(dst.meta.snapshot())).entries))
    expect(metaAfter.length).toBe(50)
  })
})
