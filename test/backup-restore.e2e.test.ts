/**
 * End to end, one repository: full backup, changes, incremental backup, a
 * no-change backup, the repository layout, restore into a new cluster, dry
 * runs, restore into the drifted source and a point-in-time restore.
 *
 * The tests of this file run in order and share the source cluster and the
 * repository (each step builds on the previous one).
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises"
import { dirname, join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  BLOCK_SIZE,
  bendsave,
  bendsaveJson,
  blockIdsOf,
  type ClusterFiles,
  compareDirs,
  compareDirWithFiles,
  describeRun,
  expectedMeta,
  exportMetaText,
  importMeta,
  type MetaInput,
  MiB,
  makeTempDir,
  parseMetaExport,
  parseSingleJson,
  readManifest,
  readManifestFiles,
  removeTempDirs,
  sha256,
  snapshotTree,
  tempFilesUnder,
  treePathsOf,
  walk,
  writeBytes,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

/** The source cluster's storage as the test believes it is: path -> bytes. */
type Model = Map<string, Buffer>

const sizeOf = (m: Model, paths: ReadonlyArray<string>) => paths.reduce((n, p) => n + (m.get(p)?.length ?? 0), 0)
const totalSize = (m: Model) => sizeOf(m, [...m.keys()])

describe("backup, incremental backup and restore of one cluster", () => {
  let root: string
  let src: ClusterFiles
  let repo: string
  const model: Model = new Map()
  let state1: Model
  let state2: Model
  let meta1: Array<MetaInput>
  let meta2: Array<MetaInput>
  let id1: string
  let id2: string
  let id3: string

  const BIG = "db1/orders/big.parquet"
  const EMPTY = "db1/orders/_empty"
  const MODIFIED = "db2/events/modified.bin"
  const DELETED = "db2/events/deleted.bin"
  const ADDED = "db2/events/added.bin"
  const COPY_OF_BIG = "db9/copy-of-big.parquet"
  const UNICODE = "db3/naïve/файл-😀.bin"

  const put = async (path: string, bytes: Buffer) => {
    await writeBytes(join(src.dataDir, path), bytes)
    model.set(path, bytes)
  }
  const putRandom = async (path: string, size: number) => {
    model.set(path, await writeRandomFile(join(src.dataDir, path), size))
  }
  const remove = async (path: string) => {
    await rm(join(src.dataDir, path))
    model.delete(path)
  }

  beforeAll(async () => {
    root = await makeTempDir("backup-restore")
    src = await writeCluster(join(root, "source"))
    repo = join(root, "repo")
    await putRandom(BIG, 9 * MiB + 12_345) // two blocks: 8 MiB + 1 MiB + 12345 B
    await put(EMPTY, Buffer.alloc(0))
    await putRandom(MODIFIED, 5000)
    await putRandom(DELETED, 7000)
    await putRandom(UNICODE, 1234)
    for (let i = 0; i < 20; i++) await putRandom(`db${1 + (i % 3)}/t${i % 4}/part-${String(i).padStart(3, "0")}.bin`, 1000 + i * 997)
    // Two files with the same bytes: one block, stored once.
    const same = Buffer.from("the same bytes in two files\n".repeat(100))
    await put("db1/dup-a.bin", same)
    await put("db2/dup-b.bin", same)
    state1 = new Map(model)
    meta1 = [
      { key: "catalog/databases/sales", value: '{"id":"7f1c","engine":"fuse"}' },
      { key: "catalog/tables/sales/orders", value: '{"columns":["id","amount"],"snapshot":"db1/orders/big.parquet"}' },
      { key: "ключ/😀", value: "значение ✓" },
      { key: "empty-value", value: "" },
      { key: Buffer.from([0xff, 0x00, 0x80, 0x01]), value: Buffer.from([0x00, 0x01, 0x02, 0xfe, 0xff]) },
      { key: "bin/value", value: Buffer.from([0xc3, 0x28, 0x00, 0xa0]) },
      { key: Buffer.from([0x00]), value: "nul key" },
      { key: "z/last", value: "last" },
    ]
    await importMeta(src, meta1)
  })

  it("1a. a full backup reads every file and uploads each distinct block once", async () => {
    const r = await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root })
    id1 = r.backup_id
    const allBlocks = [...model.values()].flatMap((b) => blockIdsOf(b))
    const distinct = new Set(allBlocks)
    expect(model.size).toBe(27)
    expect(allBlocks.length).toBe(27) // big: 2, empty: 0, 25 files of one block
    expect(distinct.size).toBe(26) // dup-a and dup-b share theirs
    expect(r).toMatchObject({
      backup_type: "full",
      parent_backup_id: null,
      files_total: model.size,
      bytes_total: totalSize(model),
      files_reused: 0,
      files_read: model.size,
      bytes_read: totalSize(model),
      blocks_uploaded: distinct.size,
      bytes_uploaded: totalSize(model) - model.get("db2/dup-b.bin")!.length,
      blocks_deduplicated: 1,
      meta_keys: meta1.length,
    })
    expect(r.backup_id).toMatch(/^\d{8}_\d{6}$/)
    expect(r.manifest).toBe(join(repo, "manifests", `${id1}.manifest`))
  })

  it("1b. an incremental backup reads only changed and added files and uploads only new blocks", async () => {
    const unchanged = [...model.keys()].filter((p) => p !== MODIFIED && p !== DELETED)
    await putRandom(MODIFIED, 5000) // same size, new bytes
    await remove(DELETED)
    await putRandom(ADDED, 3000)
    await put(COPY_OF_BIG, Buffer.from(model.get(BIG)!)) // same bytes as a stored file: nothing to upload
    state2 = new Map(model)
    meta2 = [
      ...meta1
        .filter((e) => e.key !== "z/last")
        .map((e) =>
          e.key === "catalog/tables/sales/orders" ? { key: e.key, value: '{"columns":["id","amount","ts"],"snapshot":"v2"}' } : e,
        ),
      { key: "catalog/tables/ops/new", value: "{}" },
    ]
    await importMeta(src, meta2, { replace: true })

    const r = await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root })
    id2 = r.backup_id
    expect(id2 > id1).toBe(true)
    expect(unchanged).toHaveLength(25)
    expect(r).toMatchObject({
      backup_type: "incremental",
      parent_backup_id: id1,
      files_total: model.size,
      bytes_total: totalSize(model),
      files_reused: unchanged.length,
      files_read: 3,
      bytes_read: sizeOf(model, [MODIFIED, ADDED, COPY_OF_BIG]),
      blocks_uploaded: 2, // MODIFIED and ADDED; COPY_OF_BIG's two blocks are already stored
      bytes_uploaded: 5000 + 3000,
      blocks_deduplicated: 2,
      meta_keys: expectedMeta(meta2).length,
    })
  })

  it("1c. a backup of an unchanged cluster reads 0 bytes and uploads 0 blocks", async () => {
    const r = await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root })
    id3 = r.backup_id
    expect(id3 > id2).toBe(true)
    expect(r).toMatchObject({
      backup_type: "incremental",
      parent_backup_id: id2,
      files_total: model.size,
      bytes_total: totalSize(model),
      files_reused: model.size,
      files_read: 0,
      bytes_read: 0,
      blocks_uploaded: 0,
      bytes_uploaded: 0,
      blocks_deduplicated: 0,
    })
  })

  it("restore --at <time> picks the newest backup at or before that time (dry run)", async () => {
    const iso = (id: string) =>
      `${id.slice(0, 4)}-${id.slice(4, 6)}-${id.slice(6, 8)}T${id.slice(9, 11)}:${id.slice(11, 13)}:${id.slice(13, 15)}.500Z`
    const [at2, at1] = await Promise.all(
      [id2, id1].map((id) => bendsaveJson(["restore", "--from", repo, "--at", iso(id), "--to", src.toml], { cwd: root })),
    )
    expect(at2).toMatchObject({ backup_id: id2, dry_run: true, files_to_write: 0, files_identical: model.size })
    expect(at1).toMatchObject({ backup_id: id1, dry_run: true, files_total: state1.size })
  })

  it("10. the repository layout on disk: config.json, bendsave.md, manifests/<id>.manifest, data/<sha256>", async () => {
    expect((await readdir(repo)).sort()).toEqual(["bendsave.md", "config.json", "data", "manifests"])
    const config = JSON.parse(await readFile(join(repo, "config.json"), "utf8"))
    expect(config).toMatchObject({
      format: "bendsave-repository",
      version: 1,
      min_reader_version: 1,
      block_size: BLOCK_SIZE,
      hash: "sha256",
      features: [],
    })
    expect((await readFile(join(repo, "bendsave.md"), "utf8")).length).toBeGreaterThan(100)
    const manifests = (await readdir(join(repo, "manifests"))).sort()
    for (const name of manifests) expect(name).toMatch(/^\d{8}_\d{6}\.manifest$/)
    expect(manifests).toEqual([id1, id2, id3].map((id) => `${id}.manifest`))

    // Every data/<name>: 64 lowercase hex, the SHA-256 of its bytes.
    const names = await readdir(join(repo, "data"))
    for (const name of names) {
      expect(name).toMatch(/^[0-9a-f]{64}$/)
      expect(sha256(await readFile(join(repo, "data", name))), `data/${name}`).toBe(name)
    }

    // The manifests reference exactly the stored blocks, and the file blocks are the source's 8 MiB slices.
    const referenced = new Set<string>()
    for (const [id, state] of [
      [id1, state1],
      [id2, state2],
      [id3, state2],
    ] as const) {
      const manifest = await readManifest(repo, id)
      expect(manifest.backupMeta?.backupId).toBe(id)
      expect(manifest.backupMeta?.clusterName).toBe("prod")
      for (const p of [...(manifest.storage?.pages ?? []), ...(manifest.metasrv?.pages ?? [])]) referenced.add(p.blockId)
      const files = await readManifestFiles(repo, manifest)
      expect(files.map((f) => f.path)).toEqual([...state.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))))
      for (const f of files) {
        const bytes = state.get(f.path)!
        expect(Number(f.size), f.path).toBe(bytes.length)
        expect(
          f.blocks.map((b) => [b.blockId, Number(b.blockSize)]),
          f.path,
        ).toEqual(blockIdsOf(bytes).map((id, i) => [id, Math.min(BLOCK_SIZE, bytes.length - i * BLOCK_SIZE)]))
        for (const b of f.blocks) referenced.add(b.blockId)
      }
    }
    expect(names.sort()).toEqual([...referenced].sort())
  })

  it("2a. restore into a new cluster: storage byte for byte, meta exactly (binary keys and values too)", async () => {
    const target = await writeCluster(join(root, "elsewhere", "new"), { name: "copy", meta: "m", data: "d" })
    const r = await bendsaveJson(["restore", "--from", repo, "--to", target.toml, "--confirm"], { cwd: root })
    expect(r).toMatchObject({
      backup_id: id3,
      dry_run: false,
      files_total: model.size,
      files_to_write: model.size,
      files_written: model.size,
      bytes_written: totalSize(model),
      files_identical: 0,
      files_deleted: 0,
      meta: { added: expectedMeta(meta2).length, changed: 0, removed: 0, unchanged: 0 },
    })
    expect(await compareDirs(src.dataDir, target.dataDir)).toEqual([])
    expect(await compareDirWithFiles(target.dataDir, model)).toEqual([])
    expect(await tempFilesUnder(dirname(target.toml))).toEqual([])
    const [srcMeta, targetMeta] = await Promise.all([exportMetaText(src), exportMetaText(target)])
    expect(targetMeta).toBe(srcMeta)
    expect(parseMetaExport(targetMeta)).toEqual(expectedMeta(meta2))
  })

  // The source drifts: one file changed, one added, one deleted; keys changed, added and removed.
  const DRIFT_CHANGED = "db1/t0/part-000.bin"
  const DRIFT_ADDED = "db5/stray/new.bin"
  const drift = async () => {
    await writeRandomFile(join(src.dataDir, DRIFT_CHANGED), state2.get(DRIFT_CHANGED)!.length)
    await writeRandomFile(join(src.dataDir, DRIFT_ADDED), 4321)
    await rm(join(src.dataDir, UNICODE))
    await importMeta(
      src,
      [
        ...meta2
          .filter((e) => e.key !== "ключ/😀")
          .map((e) => (e.key === "catalog/databases/sales" ? { key: e.key, value: "drifted" } : e)),
        { key: "drift/new-key", value: "x" },
      ],
      { replace: true },
    )
  }

  it("3a. a dry run into the drifted cluster changes nothing and prints the plan", async () => {
    await drift()
    const before = await snapshotTree(dirname(src.toml))
    const [text, json] = await Promise.all([
      bendsave(["restore", "--from", repo, "--to", src.toml], { cwd: root }),
      bendsave(["restore", "--from", repo, "--to", src.toml, "--json"], { cwd: root }),
    ])
    expect(text.code, describeRun(text)).toBe(0)
    expect(text.stdout).toContain(`DRY RUN: restore plan for backup ${id3}`)
    expect(text.stdout).toMatch(/files to write:\s+2 \(/)
    expect(text.stdout).toMatch(new RegExp(`already identical:\\s+${model.size - 2} `))
    expect(text.stdout).toMatch(/files to delete:\s+1 /)
    expect(text.stdout).toContain(DRIFT_ADDED)
    expect(text.stdout).toMatch(/meta keys:\s+1 to add, 1 to change, 1 to remove, \d+ unchanged/)
    expect(parseSingleJson(json)).toMatchObject({
      dry_run: true,
      files_to_write: 2,
      bytes_to_write: sizeOf(model, [DRIFT_CHANGED, UNICODE]),
      files_identical: model.size - 2,
      files_to_delete: 1,
      sample_delete: [DRIFT_ADDED],
      files_written: 0,
      files_deleted: 0,
      meta: { added: 1, changed: 1, removed: 1, unchanged: expectedMeta(meta2).length - 2 },
    })
    expect(await snapshotTree(dirname(src.toml))).toEqual(before)
  })

  it("2b. restore --confirm into the same drifted cluster brings it back exactly", async () => {
    const r = await bendsaveJson(["restore", "--from", repo, "--to", src.toml, "--confirm"], { cwd: root })
    expect(r).toMatchObject({
      backup_id: id3,
      dry_run: false,
      files_written: 2,
      bytes_written: sizeOf(model, [DRIFT_CHANGED, UNICODE]),
      files_identical: model.size - 2,
      files_deleted: 1,
      meta: { added: 1, changed: 1, removed: 1 },
    })
    expect(await compareDirWithFiles(src.dataDir, state2)).toEqual([])
    // Exactly: no leftover empty directory of the deleted file, no temp files.
    expect(await walk(src.dataDir)).toEqual(treePathsOf(state2.keys()))
    expect(await tempFilesUnder(dirname(src.toml))).toEqual([])
    expect(parseMetaExport(await exportMetaText(src))).toEqual(expectedMeta(meta2))
  })

  it("2c. restore --backup <first id> brings the cluster back to the first backup's state", async () => {
    const r = await bendsaveJson(["restore", "--from", repo, "--backup", id1, "--to", src.toml, "--confirm"], { cwd: root })
    expect(r).toMatchObject({
      backup_id: id1,
      files_total: state1.size,
      files_written: 2, // MODIFIED (old bytes) and DELETED
      files_deleted: 2, // ADDED and COPY_OF_BIG
      files_identical: state1.size - 2,
    })
    expect(await compareDirWithFiles(src.dataDir, state1)).toEqual([])
    expect(await walk(src.dataDir)).toEqual(treePathsOf(state1.keys()))
    expect(parseMetaExport(await exportMetaText(src))).toEqual(expectedMeta(meta1))
  })

  describe("3b. a dry run into a cluster that does not exist yet", () => {
    let dir: string
    let tmp: string
    let run: Awaited<ReturnType<typeof bendsave>>

    beforeAll(async () => {
      dir = join(root, "not-yet")
      await writeCluster(dir)
      tmp = join(root, "tmpdir")
      await mkdir(tmp)
      run = await bendsave(["restore", "--from", repo, "--to", join(dir, "cluster.toml")], {
        cwd: root,
        env: { TMPDIR: tmp },
      })
    })

    it("prints the full plan and creates nothing in the target", async () => {
      expect(run.code, describeRun(run)).toBe(0)
      expect(run.stdout).toContain("DRY RUN")
      expect(run.stdout).toMatch(new RegExp(`files to write:\\s+${model.size} \\(`))
      expect(run.stdout).toMatch(new RegExp(`meta keys:\\s+${expectedMeta(meta2).length} to add, 0 to change, 0 to remove`))
      expect(await walk(dir)).toEqual(["cluster.toml"])
    })

    // Product bug: the dry run opens a stand-in empty meta store in
    // mkdtemp(os.tmpdir()/bendsave-dry-run-XXXXXX) and never removes it
    // (packages/cli/src/main.ts, openRestoreTarget): one leaked directory per run.
    it("leaves nothing behind in the temp directory either", async () => {
      expect(run.code, describeRun(run)).toBe(0)
      // (Node's own compile cache may appear there; only bendsave's leftovers count.)
      expect((await readdir(tmp)).filter((name) => name.startsWith("bendsave"))).toEqual([])
    })
  })
})
