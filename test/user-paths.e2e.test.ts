/**
 * Inputs a user gets wrong on the way through the quickstart and the verbs,
 * run through the real CLI: paths that are files where a directory belongs
 * (repository, cluster directories, quickstart --dir, output files), paths
 * that can never be created, unknown or malformed backup ids, meta
 * import/export files, a damaged manifest in `list`, a pipe closed early.
 * Each fails (or succeeds) with a clear message and a fix, never an internal
 * error or a stack trace, and leaves nothing half-written.
 */
import { spawn } from "node:child_process"
import { readdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  BENDSAVE,
  bendsave,
  bendsaveJson,
  describeRun,
  exists,
  importMeta,
  makeTempDir,
  type RunResult,
  removeTempDirs,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

/** Exit 1, `bendsave: error:` + `fix:` on stderr, each needle present, no internal error or stack trace. */
const expectClearError = (r: RunResult, ...needles: ReadonlyArray<string>) => {
  expect(r.code, describeRun(r)).toBe(1)
  expect(r.stderr, describeRun(r)).toMatch(/^bendsave: error: \S/)
  expect(r.stderr, describeRun(r)).toMatch(/\n {2}fix: \S/)
  expect(r.stderr, describeRun(r)).not.toContain("internal error")
  expect(r.stderr, describeRun(r)).not.toMatch(/\n\s+at /)
  for (const n of needles) expect(r.stderr, describeRun(r)).toContain(n)
}

describe("user paths: wrong inputs get clear errors", () => {
  let dir = ""
  let repo = ""
  let cluster = ""
  let backupId = ""

  beforeAll(async () => {
    dir = await makeTempDir("user-paths")
    const c = await writeCluster(dir, { name: "prod", file: "prod.toml" })
    cluster = c.toml
    for (let i = 0; i < 3; i++) await writeRandomFile(join(c.dataDir, `db/t/part-${i}.parquet`), 10_000 + i)
    await importMeta(c, [{ key: "catalog/databases/db", value: '{"id":"1"}' }])
    repo = join(dir, "repo")
    backupId = (await bendsaveJson(["backup", "--from", cluster, "--to", repo], { cwd: dir })).backup_id as string
    await writeFile(join(dir, "afile"), "not a directory")
  })

  it("a repository path that is a file, or lies under one", async () => {
    expectClearError(
      await bendsave(["backup", "--from", cluster, "--to", "./afile"], { cwd: dir }),
      `repository ./afile: cannot create the directory ${join(dir, "afile")}: it is a file, not a directory`,
      "fix: give the path of a directory",
    )
    expectClearError(
      await bendsave(["backup", "--from", cluster, "--to", "./afile/sub/repo"], { cwd: dir }),
      `${join(dir, "afile")} is a file, not a directory`,
    )
    expectClearError(await bendsave(["list", "./afile"], { cwd: dir }), `${join(dir, "afile")} is a file, not a directory`)
    expect(await readFile(join(dir, "afile"), "utf8")).toBe("not a directory")
  })

  it("a repository path that can never be created fails at once (Node's recursive mkdir loops forever under /proc)", async () => {
    const r = await bendsave(["backup", "--from", cluster, "--to", "/proc/bendsave-no-such-dir/repo"], { cwd: dir, timeoutMs: 30_000 })
    expect(r.timedOut, describeRun(r)).toBe(false)
    expectClearError(r, "cannot create the directory /proc/bendsave-no-such-dir/repo")
  })

  it("cluster directories that are files are named by their key", async () => {
    await writeFile(
      join(dir, "broken.toml"),
      [
        'name = "broken"',
        "[meta]",
        'type = "local"',
        'path = "./broken-meta"',
        "[storage]",
        'type = "fs"',
        "[storage.fs]",
        'data_path = "./afile"',
        "",
      ].join("\n"),
    )
    expectClearError(
      await bendsave(["restore", "--from", repo, "--to", "broken.toml", "--confirm"], { cwd: dir }),
      "broken.toml: key 'storage.fs.data_path'",
      "it is a file, not a directory",
      "fix: point `data_path` in the cluster file at a directory",
    )
    await writeFile(
      join(dir, "broken-meta.toml"),
      [
        'name = "broken"',
        "[meta]",
        'type = "local"',
        'path = "./afile"',
        "[storage]",
        'type = "fs"',
        "[storage.fs]",
        'data_path = "./d2"',
        "",
      ].join("\n"),
    )
    expectClearError(
      await bendsave(["meta", "export", "--cluster", "broken-meta.toml"], { cwd: dir }),
      "broken-meta.toml: key 'meta.path'",
      "fix: point `path`",
    )
  })

  it("quickstart --dir that is a file, or under one", async () => {
    expectClearError(
      await bendsave(["quickstart", "--dir", "./afile"], { cwd: dir }),
      `${join(dir, "afile")} is a file, not a directory`,
      "fix: pass --dir",
    )
    expectClearError(
      await bendsave(["quickstart", "--dir", "./afile/qs"], { cwd: dir }),
      `${join(dir, "afile")} is a file, not a directory`,
    )
  })

  it("unknown and malformed backup ids", async () => {
    expectClearError(
      await bendsave(["tag", repo, "20200101_000000", "--unkeep"], { cwd: dir }),
      "backup 20200101_000000 does not exist",
      "bendsave list",
    )
    expectClearError(await bendsave(["tag", repo, "../x", "--keep"], { cwd: dir }), "backup ../x does not exist")
    expectClearError(
      await bendsave(["abandon", repo, "../../etc"], { cwd: dir }),
      "incomplete backup ../../etc: there is no such incomplete backup",
    )
    expectClearError(
      await bendsave(["restore", "--from", repo, "--backup", "nonsense", "--to", cluster], { cwd: dir }),
      "backup nonsense does not exist",
    )
    // Contradicting choices of the backup are refused; the manifest's file name works as an id.
    expectClearError(
      await bendsave(
        ["restore", "--from", join(repo, "manifests", `${backupId}.manifest`), "--backup", "20990101_000000", "--to", cluster],
        { cwd: dir },
      ),
      `--from names one backup's manifest (${backupId}), so --backup cannot choose another`,
    )
    expectClearError(
      await bendsave(["restore", "--from", repo, "--backup", backupId, "--at", "2020-01-01", "--to", cluster], { cwd: dir }),
      "--backup and --at both choose the backup",
    )
    const byFileName = await bendsave(["restore", "--from", repo, "--backup", `${backupId}.manifest`, "--to", cluster], { cwd: dir })
    expect(byFileName.code, describeRun(byFileName)).toBe(0)
    expect(byFileName.stdout).toContain(`DRY RUN: restore plan for backup ${backupId}`)
    // The real one still works.
    const kept = await bendsave(["tag", repo, backupId, "--keep"], { cwd: dir })
    expect(kept.code, describeRun(kept)).toBe(0)
  })

  it("meta import and export files: missing, a directory, an output whose directory is missing; output is atomic", async () => {
    expectClearError(
      await bendsave(["meta", "import", "--cluster", cluster, "--input", "nope.jsonl"], { cwd: dir }),
      `${join(dir, "nope.jsonl")}: cannot read it: it does not exist`,
      "fix: check the path given to --input",
    )
    expectClearError(await bendsave(["meta", "import", "--cluster", cluster, "--input", dir], { cwd: dir }), "it is a directory")
    expectClearError(
      await bendsave(["meta", "export", "--cluster", cluster, "--output", "missing-dir/out.jsonl"], { cwd: dir }),
      `the directory ${join(dir, "missing-dir")} does not exist`,
      "fix: give --output a path",
    )
    expectClearError(
      await bendsave(["meta", "export", "--cluster", cluster, "--output", "afile/out.jsonl"], { cwd: dir }),
      "a part of the path is a file",
    )
    const ok = await bendsave(["meta", "export", "--cluster", cluster, "--output", "out.jsonl"], { cwd: dir })
    expect(ok.code, describeRun(ok)).toBe(0)
    expect((await readFile(join(dir, "out.jsonl"), "utf8")).trim().split("\n").length).toBe(1)
    // No temp file of the export is left behind.
    expect((await readdir(dir)).filter((n) => n.includes(".tmp-"))).toEqual([])
  })

  it("a reader that closes the pipe early (| head) ends the export quietly", async () => {
    // More output than a pipe holds, so the export is still writing when the reader goes away.
    const big = await writeCluster(join(dir, "big"), { name: "big" })
    await importMeta(
      big,
      Array.from({ length: 5000 }, (_, i) => ({ key: `k/${String(i).padStart(6, "0")}`, value: "v".repeat(64) })),
    )
    const child = spawn(BENDSAVE, ["meta", "export", "--cluster", big.toml, "--json"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (d) => {
      stderr += d
    })
    child.stdout.once("data", () => child.stdout.destroy())
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve))
    expect(stderr).not.toContain("error")
    expect(code).toBe(0)
  })

  it("list keeps its table aligned around a damaged manifest and names the problem under it", async () => {
    const damagedRepo = join(dir, "repo-damaged")
    await bendsaveJson(["backup", "--from", cluster, "--to", damagedRepo], { cwd: dir })
    const [id] = await readdir(join(damagedRepo, "manifests"))
    await writeFile(join(damagedRepo, "manifests", id), "junk")
    const r = await bendsave(["list", damagedRepo], { cwd: dir })
    expect(r.code, describeRun(r)).toBe(0)
    const lines = r.stdout.split("\n")
    expect(lines[0]).toMatch(/^BACKUP +STATE +TYPE +CLUSTER/)
    expect(lines[2]).toMatch(/^\d{8}_\d{6} {2}DAMAGED \(see below\)$/)
    expect(lines[0].length).toBeLessThan(160)
    expect(r.stdout).toMatch(/\n\d{8}_\d{6} DAMAGED: it is not a valid BackupManifest protobuf/)
  })

  it("verify --read-data N (with a space) is the percentage", async () => {
    const r = await bendsave(["verify", repo, "--read-data", "50", "--json"], { cwd: dir })
    expect(r.code, describeRun(r)).toBe(0)
    expect(JSON.parse(r.stdout).ok).toBe(true)
    expect(await exists(join(dir, "50"))).toBe(false)
  })
})
