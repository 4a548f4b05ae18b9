/**
 * Restore edge cases: drift where a file became a directory (or the other way
 * round), and clusters that share one meta keyspace under different prefixes.
 */
import { mkdir, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import {
  bendsave,
  bendsaveJson,
  type ClusterFiles,
  compareDirWithFiles,
  describeRun,
  expectedMeta,
  exportMetaText,
  importMeta,
  makeTempDir,
  parseMetaExport,
  removeTempDirs,
  treePathsOf,
  walk,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

/** A cluster with a few files, backed up once; returns it, its files and the repository. */
const backedUpCluster = async (label: string, paths: ReadonlyArray<string>) => {
  const root = await makeTempDir(label)
  const cluster = await writeCluster(join(root, "cluster"))
  const files = new Map<string, Buffer>()
  for (const p of paths) files.set(p, await writeRandomFile(join(cluster.dataDir, p), 1000 + files.size))
  await mkdir(cluster.metaDir)
  const repo = join(root, "repo")
  await bendsaveJson(["backup", "--from", cluster.toml, "--to", repo], { cwd: root })
  return { root, cluster, files, repo }
}

// Product bug: Restore.ts writes the backup's files first and deletes the
// target's extra files afterwards. When the drift turned a file into a
// directory (or a directory into a file), the write needs the path that an
// extra file still occupies, so the fs driver fails with InvalidKey
// ("the key conflicts with an existing object or directory") and the restore
// aborts half done instead of bringing the cluster back.
describe.concurrent("2d. restore into the same cluster after a file and a directory swapped places", () => {
  it("a file that became a directory (backup: 'db/t/x'; now: 'db/t/x/new.bin')", async () => {
    const { root, cluster, files, repo } = await backedUpCluster("file-to-dir", ["db/t/x", "db/t/y.bin", "z.bin"])
    await rm(join(cluster.dataDir, "db/t/x"))
    await writeRandomFile(join(cluster.dataDir, "db/t/x/new.bin"), 10)
    const r = await bendsave(["restore", "--from", repo, "--to", cluster.toml, "--confirm"], { cwd: root })
    expect(r.code, describeRun(r)).toBe(0)
    expect(await compareDirWithFiles(cluster.dataDir, files)).toEqual([])
    expect(await walk(cluster.dataDir)).toEqual(treePathsOf(files.keys()))
  })

  it("a directory that became a file (backup: 'db/u/part.bin'; now: a file 'db/u')", async () => {
    const { root, cluster, files, repo } = await backedUpCluster("dir-to-file", ["db/u/part.bin", "db/v.bin"])
    await rm(join(cluster.dataDir, "db/u"), { recursive: true })
    await writeFile(join(cluster.dataDir, "db/u"), "now a file")
    const r = await bendsave(["restore", "--from", repo, "--to", cluster.toml, "--confirm"], { cwd: root })
    expect(r.code, describeRun(r)).toBe(0)
    expect(await compareDirWithFiles(cluster.dataDir, files)).toEqual([])
    expect(await walk(cluster.dataDir)).toEqual(treePathsOf(files.keys()))
  })
})

describe("a target whose meta directory was lost but whose storage is intact", () => {
  it("the dry run plans exactly what --confirm then does (files identical, keys to add)", async () => {
    const root = await makeTempDir("meta-lost")
    const cluster = await writeCluster(join(root, "cluster"))
    const files = new Map<string, Buffer>()
    for (const p of ["a.bin", "b/c.bin"]) files.set(p, await writeRandomFile(join(cluster.dataDir, p), 2000))
    await importMeta(cluster, [
      { key: "k1", value: "v1" },
      { key: "k2", value: "v2" },
    ])
    const repo = join(root, "repo")
    await bendsaveJson(["backup", "--from", cluster.toml, "--to", repo], { cwd: root })
    await rm(cluster.metaDir, { recursive: true })
    const plan = await bendsaveJson(["restore", "--from", repo, "--to", cluster.toml], { cwd: root })
    expect(await walk(root)).not.toContain("cluster/meta")
    const done = await bendsaveJson(["restore", "--from", repo, "--to", cluster.toml, "--confirm"], { cwd: root })
    const expected = { files_to_write: 0, files_identical: 2, files_to_delete: 0, meta: { added: 2, changed: 0, removed: 0, unchanged: 0 } }
    expect(plan).toMatchObject({ dry_run: true, ...expected })
    expect(done).toMatchObject({ dry_run: false, ...expected, files_written: 0 })
    expect(await compareDirWithFiles(cluster.dataDir, files)).toEqual([])
    expect(parseMetaExport(await exportMetaText(cluster))).toEqual(
      expectedMeta([
        { key: "k1", value: "v1" },
        { key: "k2", value: "v2" },
      ]),
    )
  })
})

describe("meta prefixes: two clusters share one meta keyspace", () => {
  const prefixed = async (dir: string, name: string, prefix: string, data: string): Promise<ClusterFiles> => {
    const toml = join(dir, `${name}.toml`)
    await writeFile(
      toml,
      [
        `name = "${name}"`,
        "[meta]",
        'type = "local"',
        'path = "./meta"',
        `prefix = "${prefix}"`,
        "[storage]",
        'type = "fs"',
        "[storage.fs]",
        `data_path = "./${data}"`,
        "",
      ].join("\n"),
    )
    return { toml, metaDir: join(dir, "meta"), dataDir: join(dir, data) }
  }

  it("backup and restore of one cluster only see and change the keys under its prefix", async () => {
    const root = await makeTempDir("prefix")
    const a = await prefixed(root, "a", "a/", "data-a")
    const b = await prefixed(root, "b", "b/", "data-b")
    await writeRandomFile(join(a.dataDir, "f.bin"), 100)
    const aKeys = [
      { key: "k1", value: "A1" },
      { key: Buffer.from([0xff]), value: Buffer.from([0x01]) },
    ]
    const bKeys = [{ key: "k1", value: "B1" }]
    await importMeta(a, aKeys)
    await importMeta(b, bKeys)
    const repo = join(root, "repo")
    const backup = await bendsaveJson(["backup", "--from", a.toml, "--to", repo], { cwd: root })
    expect(backup.meta_keys).toBe(2)

    // a drifts; b changes too (it is another cluster: restoring a must not touch it).
    await importMeta(a, [{ key: "k3", value: "A3" }], { replace: true })
    await importMeta(b, [{ key: "k2", value: "B2" }])
    const r = await bendsaveJson(["restore", "--from", repo, "--to", a.toml, "--confirm"], { cwd: root })
    expect(r.meta).toMatchObject({ added: 2, changed: 0, removed: 1, unchanged: 0 })
    const [aMeta, bMeta] = await Promise.all([exportMetaText(a), exportMetaText(b)])
    expect(parseMetaExport(aMeta)).toEqual(expectedMeta(aKeys))
    expect(parseMetaExport(bMeta)).toEqual(expectedMeta([...bKeys, { key: "k2", value: "B2" }]))

    // Into a cluster with another prefix: the keys land under that prefix.
    const c = await prefixed(root, "c", "c/", "data-c")
    await bendsaveJson(["restore", "--from", repo, "--to", c.toml, "--confirm"], { cwd: root })
    expect(parseMetaExport(await exportMetaText(c))).toEqual(expectedMeta(aKeys))
    const everything = await prefixed(root, "all", "", "data-all")
    await mkdir(everything.dataDir)
    expect(parseMetaExport(await exportMetaText(everything))).toEqual(
      expectedMeta([
        ...aKeys.map((e) => ({ key: Buffer.concat([Buffer.from("a/"), Buffer.from(e.key)]), value: e.value })),
        { key: "b/k1", value: "B1" },
        { key: "b/k2", value: "B2" },
        ...aKeys.map((e) => ({ key: Buffer.concat([Buffer.from("c/"), Buffer.from(e.key)]), value: e.value })),
      ]),
    )
  })
})
