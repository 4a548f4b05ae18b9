/**
 * Temp files of killed writers in an fs repository: a backup SIGKILLed while
 * it writes blocks leaves the fs driver's temp files (temp + fsync + rename);
 * the next backup removes them, and so does a vacuum, while the temp file of
 * a live writer (another process on this host, or a writer on another host
 * that wrote it recently) is left alone. A dry-run vacuum removes nothing.
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { watch } from "node:fs"
import { mkdir, utimes, writeFile } from "node:fs/promises"
import { hostname } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import {
  BENDSAVE,
  bendsave,
  bendsaveJson,
  describeRun,
  importMeta,
  MiB,
  makeTempDir,
  removeTempDirs,
  tempFilesUnder,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

/** The fs driver's temp name: `.<name>.tmp-<host tag 4 hex><pid 6 hex><counter 6 hex>` (docs/repository-format.md §1). */
const tempName = (name: string, host: string, pid: number, counter: number) =>
  `.${name}.tmp-${host}${pid.toString(16).padStart(6, "0")}${counter.toString(16).padStart(6, "0")}`
const THIS_HOST = createHash("sha256").update(hostname()).digest("hex").slice(0, 4)
const OTHER_HOST = THIS_HOST === "ffff" ? "fffe" : "ffff"

/**
 * Runs `bendsave backup` and SIGKILLs it the moment a block's temp file
 * appears in the repository; returns the temp files it left (empty when the
 * backup won the race and renamed them all first).
 */
const backupKilledMidPut = async (args: ReadonlyArray<string>, cwd: string, repo: string): Promise<Array<string>> => {
  await mkdir(repo, { recursive: true })
  const child = spawn(BENDSAVE, args, {
    cwd,
    env: { ...process.env, PATH: `${join(BENDSAVE, "..")}:${process.env.PATH ?? ""}` },
    stdio: "ignore",
  })
  const watcher = watch(repo, { recursive: true }, (_event, file) => {
    if (typeof file === "string" && file.startsWith("data") && file.includes(".tmp-")) child.kill("SIGKILL")
  })
  await new Promise((resolve) => child.once("exit", resolve))
  watcher.close()
  return (await tempFilesUnder(repo)).filter((p) => p.startsWith("data/"))
}

describe("temp files left in an fs repository", () => {
  it("a backup killed mid-put leaves temp files; the next backup and vacuum remove them, never a live writer's", async () => {
    const root = await makeTempDir("temp-files")
    const src = await writeCluster(join(root, "src"))
    await mkdir(src.metaDir, { recursive: true })
    for (let i = 0; i < 6; i++) await writeRandomFile(join(src.dataDir, `db/t/big${i}.bin`), 20 * MiB + i)
    await importMeta(src, [{ key: "catalog/databases/db", value: '{"id":1}' }])

    // Kill until a kill lands while a temp file exists (normally the first time).
    let repo = ""
    let left: Array<string> = []
    for (let attempt = 0; attempt < 6 && left.length === 0; attempt++) {
      repo = join(root, `repo${attempt}`)
      left = await backupKilledMidPut(["backup", "--from", src.toml, "--to", repo], root, repo)
    }
    expect(left.length, "a SIGKILLed backup left a temp file").toBeGreaterThan(0)

    // Temp files that a live writer may still be writing: this test process's (alive, on this host), and
    // another host's written just now. Neither may be removed.
    const live = `data/${tempName("live", THIS_HOST, process.pid, 1)}`
    const foreign = `data/${tempName("foreign", OTHER_HOST, 4242, 2)}`
    await writeFile(join(repo, live), "live")
    await writeFile(join(repo, foreign), "foreign")

    const again = await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root, timeoutMs: 120_000 })
    expect(again.temp_files_removed).toBe(left.length)
    expect((await tempFilesUnder(repo)).sort()).toEqual([live, foreign].sort())
    const verified = await bendsaveJson(["verify", repo], { cwd: root })
    expect(verified.ok).toBe(true)

    // Two hours later the other host's file is a leftover too; this process still runs, so its file stays.
    const old = new Date(Date.now() - 2 * 3600_000)
    await utimes(join(repo, foreign), old, old)
    const dry = await bendsave(["vacuum", repo, "--max-backups", "5", "--dry-run"], { cwd: root })
    expect(dry.code, describeRun(dry)).toBe(0)
    expect((await tempFilesUnder(repo)).sort()).toEqual([live, foreign].sort())
    const vacuumed = await bendsaveJson(["vacuum", repo, "--max-backups", "5"], { cwd: root })
    expect(vacuumed.temp_files_removed).toBe(1)
    expect(await tempFilesUnder(repo)).toEqual([live])
  })
})
