/**
 * `--json`: every verb prints exactly one JSON object on stdout and nothing
 * else, not even a progress bar when stderr is a terminal (the runs below
 * have a pseudo-terminal on stderr, where text mode does draw one).
 */
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  bendsaveWithTerminal,
  type ClusterFiles,
  describeRun,
  type JsonObject,
  MiB,
  makeTempDir,
  manifestPath,
  metaImportLines,
  parseSingleJson,
  removeTempDirs,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

type Run = Awaited<ReturnType<typeof bendsaveWithTerminal>>

/** A --json run with stderr on a terminal: the terminal stays blank, stdout is one JSON object. */
const jsonResult = (r: Run, exitCode = 0): JsonObject => {
  expect(r.code, describeRun(r)).toBe(exitCode)
  expect(r.terminal, describeRun(r)).toBe("")
  return parseSingleJson(r)
}

describe("7. --json on every verb: one JSON object on stdout, no progress output", () => {
  let root: string
  let src: ClusterFiles
  let repo: string
  let backupId: string

  beforeAll(async () => {
    root = await makeTempDir("json")
    src = await writeCluster(join(root, "source"))
    repo = join(root, "repo")
    await writeRandomFile(join(src.dataDir, "db/t/big.bin"), 3 * MiB)
    for (let i = 0; i < 10; i++) await writeRandomFile(join(src.dataDir, `db/t/f${i}.bin`), 10_000 + i)
    await writeFile(
      join(root, "meta.jsonl"),
      metaImportLines([
        { key: "a", value: "1" },
        { key: Buffer.from([0xff]), value: Buffer.from([0x00]) },
        { key: "c", value: "3" },
      ]),
    )
  })

  it("meta import --json", async () => {
    const r = await bendsaveWithTerminal(["meta", "import", "--cluster", src.toml, "--input", join(root, "meta.jsonl"), "--json"], {
      cwd: root,
    })
    expect(jsonResult(r)).toMatchObject({ imported: 3, added: 3, changed: 0, removed: 0, unchanged: 0 })
  })

  it("text mode does draw progress on a terminal (so the checks below can fail)", async () => {
    const r = await bendsaveWithTerminal(["backup", "--from", src.toml, "--to", join(root, "other-repo")], { cwd: root })
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.terminal).toMatch(/\r(meta|scan|backup|commit) /)
    expect(r.stdout).toMatch(/^backup \d{8}_\d{6} committed \(full\)/)
  })

  it("backup --json has every counter", async () => {
    const r = await bendsaveWithTerminal(["backup", "--from", src.toml, "--to", repo, "--json"], { cwd: root })
    const result = jsonResult(r)
    for (const key of [
      "backup_id",
      "manifest",
      "files_total",
      "files_reused",
      "files_read",
      "bytes_read",
      "blocks_uploaded",
      "bytes_uploaded",
      "blocks_deduplicated",
      "duration_ms",
    ]) {
      expect(result, key).toHaveProperty(key)
    }
    for (const key of [
      "files_total",
      "files_reused",
      "files_read",
      "bytes_read",
      "blocks_uploaded",
      "bytes_uploaded",
      "blocks_deduplicated",
      "duration_ms",
    ]) {
      expect(Number.isInteger(result[key]) && result[key] >= 0, `${key} = ${result[key]}`).toBe(true)
    }
    expect(result).toMatchObject({
      files_total: 11,
      files_read: 11,
      files_reused: 0,
      bytes_read: 3 * MiB + 10 * 10_000 + 45,
      blocks_uploaded: 11,
      meta_keys: 3,
    })
    backupId = result.backup_id
    expect(result.manifest).toBe(manifestPath(repo, backupId))
  })

  it("list, verify, verify --read-data and a dry-run restore --json", async () => {
    const target = await writeCluster(join(root, "target"))
    const [list, verify, verifyData, dryRun] = await Promise.all([
      bendsaveWithTerminal(["list", repo, "--json"], { cwd: root }),
      bendsaveWithTerminal(["verify", repo, "--json"], { cwd: root }),
      bendsaveWithTerminal(["verify", manifestPath(repo, backupId), "--read-data", "--json"], { cwd: root }),
      bendsaveWithTerminal(["restore", "--from", repo, "--to", target.toml, "--json"], { cwd: root }),
    ])
    const l = jsonResult(list)
    expect(l.backups).toHaveLength(1)
    expect(l.backups[0]).toMatchObject({ backup_id: backupId, backup_type: "full", cluster: "prod", files: 11, meta_keys: 3 })
    expect(jsonResult(verify)).toMatchObject({ ok: true, backups_checked: 1, files_checked: 11, blocks_checked: 11, blocks_read: 0 })
    expect(jsonResult(verifyData)).toMatchObject({ ok: true, blocks_read: 11, bytes_read: 3 * MiB + 10 * 10_000 + 45 })
    expect(jsonResult(dryRun)).toMatchObject({ backup_id: backupId, dry_run: true, files_to_write: 11, files_written: 0 })
  })

  it("restore --confirm --json", async () => {
    const target = await writeCluster(join(root, "target2"))
    const r = await bendsaveWithTerminal(["restore", "--from", repo, "--to", target.toml, "--confirm", "--json"], { cwd: root })
    expect(jsonResult(r)).toMatchObject({ backup_id: backupId, dry_run: false, files_written: 11, meta: { added: 3 } })
  })

  it("errors with --json: one {error:{tag,message,fix}} object on stdout, nothing on the terminal", async () => {
    const [list, restore] = await Promise.all([
      bendsaveWithTerminal(["list", join(root, "source"), "--json"], { cwd: root }),
      bendsaveWithTerminal(["restore", "--from", join(repo, "manifests", "20990101_000000.manifest"), "--to", src.toml, "--json"], {
        cwd: root,
      }),
    ])
    expect(jsonResult(list, 1)).toEqual({
      error: { tag: "RepositoryError", message: expect.stringContaining("no bendsave repository here"), fix: expect.any(String) },
    })
    expect(jsonResult(restore, 1)).toEqual({
      error: { tag: "ManifestError", message: expect.stringContaining("backup 20990101_000000 does not exist"), fix: expect.any(String) },
    })
  })
})
