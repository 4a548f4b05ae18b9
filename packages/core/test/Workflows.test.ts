import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Stream } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { backup, type Cluster, SourceChangedError } from "../src/Backup.ts"
import { BlobStoreError, type BlobStore } from "../src/BlobStore.ts"
import { makeLocalMetaStore } from "../src/drivers/LocalMetaStore.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import { listBackups } from "../src/List.ts"
import { compareBytes, type MetaEntry } from "../src/MetaStore.ts"
import { openRepository, readManifest, BLOCK_SIZE, type Repository } from "../src/Repository.ts"
import { restore } from "../src/Restore.ts"
import { verify } from "../src/Verify.ts"

const dirs: Array<string> = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

const enc = new TextEncoder()
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)

const makeCluster = async (name: string): Promise<Cluster> => {
  const dir = await mkdtemp(join(tmpdir(), "bendsave-wf-"))
  dirs.push(dir)
  return { name, meta: await run(makeLocalMetaStore(dir)), storage: makeMemoryBlobStore({ name }) }
}

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

const put = (c: Cluster, key: string, bytes: Uint8Array) => run(c.storage.put(key, bytes))
const setMeta = (c: Cluster, entries: Array<[string, string]>) =>
  run(
    c.meta.replace(
      Stream.fromIterable(
        entries.map(([k, v]): MetaEntry => ({ key: enc.encode(k), value: enc.encode(v) })).sort((a, b) => compareBytes(a.key, b.key)),
      ),
    ),
  )
const newRepo = () => run(openRepository(makeMemoryBlobStore(), { create: true }))

const dump = async (c: Cluster) => {
  const files = new Map<string, string>()
  const infos = await run(Stream.runCollect(c.storage.list("")))
  for (const info of infos) files.set(info.key, Buffer.from(await run(c.storage.get(info.key))).toString("hex"))
  const snap = await run(c.meta.snapshot())
  const meta = await run(Stream.runCollect(snap.entries))
  return { files, meta: [...meta].map((e) => [Buffer.from(e.key).toString("hex"), Buffer.from(e.value).toString("hex")]) }
}

describe("backup / restore workflows (memory storage, local meta)", () => {
  it("reads changed files concurrently even when the storage lists one key per chunk", async () => {
    const src = await makeCluster("batches")
    for (let i = 0; i < 64; i++) await put(src, `f${String(i).padStart(3, "0")}`, random(100 + i, i + 1))
    let inFlight = 0
    let most = 0
    const storage: BlobStore = {
      ...src.storage,
      list: (prefix) => Stream.rechunk(src.storage.list(prefix), 1),
      getRange: (key, offset, length) =>
        Effect.acquireUseRelease(
          Effect.sync(() => {
            most = Math.max(most, ++inFlight)
          }),
          () => Effect.andThen(Effect.sleep(5), src.storage.getRange(key, offset, length)),
          () => Effect.sync(() => void inFlight--),
        ),
    }
    const result = await run(backup({ ...src, storage }, await newRepo()))
    expect(result.files_read).toBe(64)
    expect(most).toBeGreaterThanOrEqual(8)
  })

  it("incremental backups reuse unchanged files and upload only new blocks; restore reproduces each point", async () => {
    const src = await makeCluster("prod")
    const big = random(BLOCK_SIZE + 12345, 7)
    await put(src, "db/t1/big.bin", big)
    for (let i = 0; i < 300; i++) await put(src, `db/t2/f${String(i).padStart(4, "0")}.bin`, random(1000 + i, i + 1))
    await put(src, "empty", new Uint8Array())
    await setMeta(src, [["catalog/databases/db", "{}"], ["catalog/tables/db/t1", "{\"id\":1}"]])
    const repo = await newRepo()
    const first = await run(backup(src, repo))
    expect(first.backup_type).toBe("full")
    expect(first.files_total).toBe(302)
    expect(first.files_read).toBe(302)
    expect(first.blocks_uploaded).toBe(2 + 300) // big file: 2 blocks; the empty file has none
    const firstState = await dump(src)

    // Change: modify one, add one identical to an existing file, delete one.
    await put(src, "db/t2/f0007.bin", random(500, 99))
    await put(src, "db/t3/copy.bin", random(1000 + 5, 6))
    await run(src.storage.delete("db/t2/f0100.bin"))
    await setMeta(src, [["catalog/databases/db", "{}"], ["catalog/tables/db/t1", "{\"id\":2}"]])
    const second = await run(backup(src, repo, { now: () => Date.now() + 2000 }))
    expect(second.backup_type).toBe("incremental")
    expect(second.parent_backup_id).toBe(first.backup_id)
    expect(second.files_total).toBe(302)
    expect(second.files_reused).toBe(300)
    expect(second.files_read).toBe(2)
    expect(second.bytes_read).toBe(500 + 1005)
    expect(second.blocks_uploaded).toBe(1)
    expect(second.blocks_deduplicated).toBe(1)

    const third = await run(backup(src, repo, { now: () => Date.now() + 4000 }))
    expect(third.files_reused).toBe(302)
    expect(third.bytes_read).toBe(0)
    expect(third.blocks_uploaded).toBe(0)

    expect((await run(listBackups(repo))).map((b) => b.backup_id)).toEqual([first.backup_id, second.backup_id, third.backup_id])
    expect((await run(verify(repo, { readDataPercent: 100 }))).ok).toBe(true)

    // Restore the first backup into a new cluster: equals the first state exactly.
    const dst = await makeCluster("dst")
    const plan = await run(restore(repo, await run(readManifest(repo, first.backup_id)), dst))
    expect(plan.dry_run).toBe(true)
    expect(plan.files_to_write).toBe(302)
    expect((await dump(dst)).files.size).toBe(0)
    await run(restore(repo, await run(readManifest(repo, first.backup_id)), dst, { confirm: true }))
    expect(await dump(dst)).toEqual(firstState)

    // Restore the newest over it: converges (writes 2, deletes 1, skips the rest).
    const latest = await run(restore(repo, await run(readManifest(repo, third.backup_id)), dst, { confirm: true }))
    expect(latest.files_to_write).toBe(2)
    expect(latest.files_identical).toBe(300)
    expect(latest.files_deleted).toBe(1)
    expect(latest.meta.changed).toBe(1)
    expect(await dump(dst)).toEqual(await dump(src))
  })

  it("shares unchanged file-list pages between backups", async () => {
    const src = await makeCluster("pages")
    for (let i = 0; i < 6000; i++) await put(src, `t/${String(i).padStart(5, "0")}`, enc.encode(`v${i}`))
    const repo = await newRepo()
    const first = await run(backup(src, repo))
    const m1 = await run(readManifest(repo, first.backup_id))
    expect(m1.storage!.pages.length).toBeGreaterThan(2)
    await put(src, "t/03000", enc.encode("changed!"))
    const second = await run(backup(src, repo, { now: () => Date.now() + 2000 }))
    const m2 = await run(readManifest(repo, second.backup_id))
    expect(second.files_reused).toBe(5999)
    const ids1 = new Set(m1.storage!.pages.map((p) => p.blockId))
    const shared = m2.storage!.pages.filter((p) => ids1.has(p.blockId)).length
    expect(shared).toBe(m2.storage!.pages.length - 1)
  })

  it("fails with SourceChangedError naming a file that vanishes mid-backup, and commits nothing", async () => {
    const src = await makeCluster("gc")
    await put(src, "a", enc.encode("a"))
    await put(src, "b", enc.encode("b"))
    const vanishing: BlobStore = {
      ...src.storage,
      getRange: (key, offset, length) =>
        key === "b"
          ? Effect.fail(new BlobStoreError({ reason: "NotFound", driver: "memory", operation: "getRange", key, detail: "gone" }))
          : src.storage.getRange(key, offset, length),
    }
    const repo: Repository = await newRepo()
    const error = await run(Effect.flip(backup({ ...src, storage: vanishing }, repo)))
    expect(error).toBeInstanceOf(SourceChangedError)
    expect((error as SourceChangedError).path).toBe("b")
    expect(await run(listBackups(repo))).toEqual([])
  })
})
