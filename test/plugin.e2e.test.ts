/**
 * Storage plugins and storage limits through the CLI (a subprocess running
 * the bundle): the example plugin (examples/driver-plugin) as a cluster's
 * storage, named by path, and as a repository scheme registered with
 * --driver or BENDSAVE_DRIVERS; a module that is not a driver; and
 * --limit-upload / --limit-download.
 */
import { mkdir, readdir, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  bendsave,
  bendsaveJson,
  compareDirs,
  describeRun,
  MiB,
  makeTempDir,
  REPO_ROOT,
  removeTempDirs,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

const PLUGIN = resolve(REPO_ROOT, "examples/driver-plugin/src/index.ts")

describe("storage driver plugins", () => {
  let dir: string
  let src: Awaited<ReturnType<typeof writeCluster>>
  beforeAll(async () => {
    dir = await makeTempDir("plugin")
    src = await writeCluster(join(dir, "src"))
    await writeRandomFile(join(src.dataDir, "db/t/part-1.parquet"), 9 * MiB)
    await writeRandomFile(join(src.dataDir, "db/t/part-2.parquet"), 1000)
    await writeRandomFile(join(src.dataDir, "db/u/x"), 10)
    await mkdir(src.metaDir, { recursive: true })
  })

  it("a plugin scheme registered with --driver holds a repository; restore into a cluster whose storage is the plugin, named by path", async () => {
    const repo = `flatdir://${join(dir, "repo")}`
    const backup = await bendsaveJson(["--driver", PLUGIN, "backup", "--from", src.toml, "--to", repo], { cwd: dir })
    expect(backup.files_total).toBe(3)
    // Without the plugin, the scheme is unknown; BENDSAVE_DRIVERS registers it too.
    const unknown = await bendsave(["list", repo], { cwd: dir })
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain("unknown repository scheme 'flatdir'")
    const listed = await bendsave(["list", repo], { cwd: dir, env: { BENDSAVE_DRIVERS: PLUGIN } })
    expect(listed.code, describeRun(listed)).toBe(0)

    const targetDir = join(dir, "target")
    await mkdir(targetDir, { recursive: true })
    const toml = join(targetDir, "cluster.toml")
    await writeFile(toml, `[meta]\ntype = "local"\npath = "./meta"\n[storage]\ntype = "${PLUGIN}"\n[storage.flatdir]\ndir = "./objects"\n`)
    const restored = await bendsave(["--driver", PLUGIN, "restore", "--from", repo, "--to", toml, "--confirm"], { cwd: dir })
    expect(restored.code, describeRun(restored)).toBe(0)
    // The plugin keeps every object as one flat file named by its encoded key.
    expect((await readdir(join(targetDir, "objects"))).sort()).toEqual([
      "db%2Ft%2Fpart-1%2Eparquet",
      "db%2Ft%2Fpart-2%2Eparquet",
      "db%2Fu%2Fx",
    ])
    // And back: a backup of the plugin-stored cluster restores into a plain directory identical to the source.
    const again = await bendsaveJson(["backup", "--from", toml, "--to", join(dir, "repo2")], { cwd: dir })
    expect(again.files_total).toBe(3)
    const plain = await writeCluster(join(dir, "plain"))
    const back = await bendsave(["restore", "--from", join(dir, "repo2"), "--to", plain.toml, "--confirm"], { cwd: dir })
    expect(back.code, describeRun(back)).toBe(0)
    expect(await compareDirs(src.dataDir, plain.dataDir)).toEqual([])
  })

  it("a module that is not a driver is refused with what is missing", async () => {
    const bad = join(dir, "not-a-driver.mjs")
    await writeFile(bad, 'export default { name: "x", schemes: [] }\n')
    const run = await bendsave(["--driver", bad, "list", join(dir, "repo2")], { cwd: dir })
    expect(run.code).toBe(1)
    expect(run.stderr).toContain("not a valid bendsave storage driver")
    expect(run.stderr).toContain("configSchema")
    expect(run.stderr).toContain("fix:")
  })
})

describe("--limit-upload and --limit-download", () => {
  let dir: string
  let src: Awaited<ReturnType<typeof writeCluster>>
  beforeAll(async () => {
    dir = await makeTempDir("limits")
    src = await writeCluster(join(dir, "src"))
    await writeRandomFile(join(src.dataDir, "big.bin"), 6 * MiB)
    await mkdir(src.metaDir, { recursive: true })
  })

  it("a backup with --limit-upload 2MiB of 6 MiB takes its time; restore with --limit-download too", async () => {
    const started = Date.now()
    const backup = await bendsaveJson(["--limit-upload", "2MiB", "backup", "--from", src.toml, "--to", join(dir, "repo")], { cwd: dir })
    const took = Date.now() - started
    expect(backup.bytes_uploaded).toBeGreaterThanOrEqual(6 * MiB)
    // 6 MiB at 2 MiB/s after a 0.2 MiB burst: at least 2.9 s.
    expect(took).toBeGreaterThan(2800)
    const target = await writeCluster(join(dir, "target"))
    const t0 = Date.now()
    const restore = await bendsave(["--limit-download", "3MiB", "restore", "--from", join(dir, "repo"), "--to", target.toml, "--confirm"], {
      cwd: dir,
    })
    expect(restore.code, describeRun(restore)).toBe(0)
    expect(Date.now() - t0).toBeGreaterThan(1800)
    expect(await compareDirs(src.dataDir, target.dataDir)).toEqual([])
  })

  it("a rate that is not one is a usage error", async () => {
    const run = await bendsave(["--limit-upload", "fast", "list", join(dir, "repo")], { cwd: dir })
    expect(run.code).toBe(1)
    expect(run.stderr).toContain("'fast' is not a rate")
  })
})
