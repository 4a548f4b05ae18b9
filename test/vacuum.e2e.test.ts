/**
 * `bendsave vacuum` and `bendsave tag` end to end, through the CLI as a
 * subprocess: a dry run changes nothing on disk; a run deletes the oldest
 * backups and their own blocks while the kept ones verify with --read-data
 * and restore byte for byte; tags protect; bad input gets a clear error; a
 * vacuum killed with SIGKILL mid-sweep leaves a repository that verifies, a
 * second vacuum is refused naming the first, and the next run finishes. And
 * once against the real S3 server (Ceph radosgw).
 */
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { readdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { randomName, s3Server } from "./cloudServers.ts"
import {
  BENDSAVE,
  bendsave,
  bendsaveJson,
  compareDirs,
  copyFiles,
  describeRun,
  importMeta,
  makeTempDir,
  REPO_ROOT,
  removeTempDirs,
  snapshotTree,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

/** Three backups of a cluster whose files change between them; returns the ids and a copy of each state. */
const threeBackups = async (repo: string) => {
  const dir = await makeTempDir("vacuum")
  const cluster = await writeCluster(dir)
  await importMeta(cluster, [{ key: "catalog/databases/sales", value: '{"id":"1"}' }])
  const ids: Array<string> = []
  const states: Array<string> = []
  await writeRandomFile(join(cluster.dataDir, "shared.bin"), 100_000)
  for (let i = 0; i < 3; i++) {
    await writeRandomFile(join(cluster.dataDir, "changing.bin"), 50_000 + i)
    await writeRandomFile(join(cluster.dataDir, `added-${i}.bin`), 20_000)
    const r = await bendsaveJson(["backup", "--from", cluster.toml, "--to", repo], { cwd: dir })
    ids.push(r.backup_id)
    const state = join(dir, `state-${i}`)
    await copyFiles(cluster.dataDir, state)
    states.push(state)
  }
  return { dir, cluster, ids, states }
}

const restoreInto = async (dir: string, repo: string, backupId: string) => {
  const target = await writeCluster(join(dir, `restored-${backupId}-${randomBytes(3).toString("hex")}`))
  const r = await bendsave(["restore", "--from", repo, "--backup", backupId, "--to", target.toml, "--confirm"], { cwd: dir })
  expect(r.code, describeRun(r)).toBe(0)
  return target.dataDir
}

describe("bendsave vacuum (fs repository)", () => {
  it("dry run changes nothing; the run deletes what it planned; kept backups verify and restore byte for byte", async () => {
    const root = await makeTempDir("vacuum-repo")
    const repo = join(root, "repo")
    const { dir, ids, states } = await threeBackups(repo)
    const before = await snapshotTree(repo)
    const dry = await bendsaveJson(["vacuum", repo, "--max-backups", "1", "--grace", "0", "--dry-run"], { cwd: dir })
    expect(await snapshotTree(repo)).toEqual(before)
    expect(dry.dry_run).toBe(true)
    expect(dry.deleted.map((d: { backup_id: string }) => d.backup_id)).toEqual(ids.slice(0, 2))
    expect(dry.sweep.blocks_to_delete).toBeGreaterThan(0)
    const text = await bendsave(["vacuum", repo, "--max-backups", "1", "--grace", "0", "--dry-run"], { cwd: dir })
    expect(text.stdout).toContain("DRY RUN")
    expect(text.stdout).toMatch(new RegExp(`DELETE\\s+${ids[0]}\\s+prod`))
    expect(await snapshotTree(repo)).toEqual(before)

    const done = await bendsaveJson(["vacuum", repo, "--max-backups", "1", "--grace", "0"], { cwd: dir })
    expect(done.deleted).toEqual(dry.deleted.map((d: object) => ({ ...d, age_days: expect.any(Number) })))
    expect(done.sweep.status).toBe("done")
    expect(done.sweep.blocks_deleted).toBe(dry.sweep.blocks_to_delete)
    expect(await readdir(join(repo, "manifests"))).toEqual([`${ids[2]}.manifest`])
    const verify = await bendsave(["verify", repo, "--read-data"], { cwd: dir })
    expect(verify.code, describeRun(verify)).toBe(0)
    expect(await compareDirs(states[2], await restoreInto(dir, repo, ids[2]))).toEqual([])
  })

  it("tag --keep protects a backup from vacuum; --unkeep removes the protection", async () => {
    const root = await makeTempDir("vacuum-tag")
    const repo = join(root, "repo")
    const { dir, ids, states } = await threeBackups(repo)
    const tagged = await bendsaveJson(["tag", repo, ids[0], "--keep"], { cwd: dir })
    expect(tagged).toMatchObject({ backup_id: ids[0], kept: true })
    const r = await bendsaveJson(["vacuum", repo, "--max-backups", "1", "--grace", "0"], { cwd: dir })
    expect(r.deleted.map((d: { backup_id: string }) => d.backup_id)).toEqual([ids[1]])
    expect(r.kept.find((k: { backup_id: string }) => k.backup_id === ids[0]).reasons).toEqual(["pinned (user)"])
    expect(await compareDirs(states[0], await restoreInto(dir, repo, ids[0]))).toEqual([])
    const untagged = await bendsaveJson(["tag", repo, ids[0], "--unkeep"], { cwd: dir })
    expect(untagged).toMatchObject({ kept: false, pins: [] })
    const next = await bendsaveJson(["vacuum", repo, "--max-backups", "1", "--grace", "0"], { cwd: dir })
    expect(next.deleted.map((d: { backup_id: string }) => d.backup_id)).toEqual([ids[0]])
    const missing = await bendsave(["tag", repo, "20000101_000000", "--keep"], { cwd: dir })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain("backup 20000101_000000 does not exist")
  })

  it("explains bad input and changes nothing", async () => {
    const root = await makeTempDir("vacuum-bad")
    const repo = join(root, "repo")
    const { dir } = await threeBackups(repo)
    const before = await snapshotTree(repo)
    const cases: Array<[Array<string>, string]> = [
      [[], "no retention policy was given"],
      [["--retention-days", "-3"], "--retention-days must be a whole number, 0 or more (got '-3')"],
      [["--max-backups", "two"], "--max-backups must be a whole number"],
      [["--retention-days", "5", "--min-retention-days", "9"], "--min-retention-days 9 is more than --retention-days 5"],
      [["--max-backups", "2", "--min-backups", "3"], "--min-backups 3 is more than --max-backups 2"],
      [["--min-backups", "3"], "--min-backups only protects backups"],
      [["--max-backups", "0"], "would delete every backup of cluster prod (3 backups)"],
      [["--max-backups", "1", "--grace", "soon"], "--grace 'soon' is not a duration"],
    ]
    for (const [args, message] of cases) {
      const r = await bendsave(["vacuum", repo, ...args], { cwd: dir })
      expect(r.code, describeRun(r)).toBe(1)
      expect(r.stderr).toContain(message)
      expect(r.stderr).toContain("fix:")
    }
    expect(await snapshotTree(repo)).toEqual(before)
  })

  it("killed with SIGKILL mid-sweep: the repository verifies, a second vacuum is refused naming the first, the next run finishes", async () => {
    const root = await makeTempDir("vacuum-kill")
    const repo = join(root, "repo")
    const { dir, ids, states } = await threeBackups(repo)
    // Garbage a crashed backup left behind: many small unreferenced blocks.
    const garbage = 30_000
    const dataDir = join(repo, "data")
    for (let i = 0; i < garbage; i += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, j) => {
          const bytes = Buffer.from(`garbage ${i + j}`)
          return writeFile(join(dataDir, createHash("sha256").update(bytes).digest("hex")), bytes)
        }),
      )
    }
    const total = (await readdir(dataDir)).length
    const child = spawn(BENDSAVE, ["vacuum", repo, "--max-backups", "2", "--grace", "0", "--json"], {
      cwd: dir,
      env: { ...process.env, PATH: `${join(REPO_ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}`, NO_COLOR: "1" },
      stdio: "ignore",
    })
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()))
    let count = total
    const started = Date.now()
    while (count === total && Date.now() - started < 60_000) {
      await new Promise((r) => setTimeout(r, 5))
      count = (await readdir(dataDir)).length
    }
    child.kill("SIGKILL")
    await exited
    const left = (await readdir(dataDir)).length
    expect(left, "the vacuum was killed in the middle of its sweep").toBeLessThan(total)
    expect(left, "the vacuum was killed before it finished").toBeGreaterThan(total - garbage)
    expect(await readdir(join(repo, "manifests"))).toEqual(ids.slice(1).map((id) => `${id}.manifest`))

    const verify = await bendsave(["verify", repo, "--read-data"], { cwd: dir })
    expect(verify.code, describeRun(verify)).toBe(0)

    // Had the killed vacuum run on another machine, its lease would hold until it expired.
    const leaseDir = join(repo, "leases", "exclusive", "vacuum")
    const rewrite = async (change: (record: Record<string, unknown>) => Record<string, unknown>) => {
      for (const name of await readdir(leaseDir)) {
        const record = JSON.parse(await readFile(join(leaseDir, name), "utf8"))
        if (record.released !== true) await writeFile(join(leaseDir, name), JSON.stringify(change(record)))
      }
    }
    await rewrite((record) => ({ ...record, holder: { ...(record.holder as object), host: "another-machine" } }))
    const refused = await bendsave(["vacuum", repo, "--max-backups", "2", "--grace", "0"], { cwd: dir })
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/vacuum holds the vacuum lease \(pid \d+/)
    expect(refused.stderr).toContain("fix:")

    // Time passes: the dead process's lease expires (rewritten here as its TTL running out would leave it).
    await rewrite((record) => ({ ...record, expires_at: new Date(Date.now() - 3_600_000).toISOString() }))
    const rerun = await bendsaveJson(["vacuum", repo, "--max-backups", "2", "--grace", "0"], { cwd: dir })
    expect(rerun.sweep.status).toBe("done")
    expect(rerun.sweep.blocks_deleted).toBeGreaterThan(0)
    expect(rerun.sweep.blocks_unreferenced).toBe(rerun.sweep.blocks_deleted)
    const after = await bendsave(["verify", repo, "--read-data"], { cwd: dir })
    expect(after.code, describeRun(after)).toBe(0)
    expect(await compareDirs(states[1], await restoreInto(dir, repo, ids[1]))).toEqual([])
    const clean = await bendsaveJson(["vacuum", repo, "--max-backups", "2", "--grace", "0", "--dry-run"], { cwd: dir })
    expect(clean.sweep.blocks_unreferenced).toBe(0)
  })
})

describe("bendsave vacuum (S3 repository on Ceph radosgw)", () => {
  let s3: S3Client
  const bucket = randomName("vacuum-repo")
  beforeAll(async () => {
    const server = s3Server()
    s3 = new S3Client({
      region: "us-east-1",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    })
    await s3.send(new CreateBucketCommand({ Bucket: bucket }))
  })
  afterAll(() => s3?.destroy())

  it("deletes the oldest backups and their blocks in batches; the kept one verifies with --read-data and restores byte for byte", async () => {
    const server = s3Server()
    const env = { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey }
    const repo = `s3://${bucket}/backups/prod?endpoint=${server.endpoint}&region=us-east-1`
    const dir = await makeTempDir("vacuum-s3")
    const cluster = await writeCluster(dir)
    await importMeta(cluster, [{ key: "catalog/databases/sales", value: '{"id":"1"}' }])
    const ids: Array<string> = []
    await writeRandomFile(join(cluster.dataDir, "shared.bin"), 100_000)
    for (let i = 0; i < 3; i++) {
      await writeRandomFile(join(cluster.dataDir, "changing.bin"), 9 * 1024 * 1024 + i)
      ids.push((await bendsaveJson(["backup", "--from", cluster.toml, "--to", repo], { cwd: dir, env })).backup_id)
    }
    const dry = await bendsaveJson(["vacuum", repo, "--max-backups", "1", "--grace", "0", "--dry-run"], { cwd: dir, env })
    expect(dry.sweep.blocks_to_delete).toBeGreaterThanOrEqual(4) // two backups' changing.bin: 2 blocks each, plus their pages
    const r = await bendsaveJson(["vacuum", repo, "--max-backups", "1", "--grace", "0"], { cwd: dir, env, timeoutMs: 120_000 })
    expect(r.deleted.map((d: { backup_id: string }) => d.backup_id)).toEqual(ids.slice(0, 2))
    expect(r.sweep.status).toBe("done")
    expect(r.sweep.blocks_deleted).toBe(dry.sweep.blocks_to_delete)
    const list = await bendsaveJson(["list", repo], { cwd: dir, env })
    expect(list.backups.map((b: { backup_id: string }) => b.backup_id)).toEqual([ids[2]])
    const verify = await bendsave(["verify", repo, "--read-data"], { cwd: dir, env })
    expect(verify.code, describeRun(verify)).toBe(0)
    const target = await writeCluster(join(dir, "restored"))
    const restored = await bendsave(["restore", "--from", repo, "--to", target.toml, "--confirm"], { cwd: dir, env })
    expect(restored.code, describeRun(restored)).toBe(0)
    expect(await compareDirs(cluster.dataDir, target.dataDir)).toEqual([])
    const again = await bendsaveJson(["vacuum", repo, "--max-backups", "1", "--grace", "0", "--dry-run"], { cwd: dir, env })
    expect(again.sweep.blocks_unreferenced).toBe(0)
  })
})
