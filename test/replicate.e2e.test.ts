/**
 * End to end, through the CLI as a subprocess: `bendsave replicate` between
 * two local clusters (local meta + fs storage).
 *
 * - several rounds over a sample data cluster (Parquet tables per
 *   docs/table-layout.md) with tables and files added, changed and dropped
 *   and meta keys changed between rounds: after each round the target equals
 *   the source (storage byte for byte, meta exactly; reserved prefixes
 *   excluded and left alone), only the change moved, and DuckDB reads every
 *   replicated table;
 * - a round SIGKILLed at several points resumes without copying again;
 * - MAX_DELETE stops a round before anything changes;
 * - a second replicator onto the same target fails clearly; SIGTERM
 *   checkpoints; continuous mode (--every) and its clean stop;
 * - lag reported and growing while the source changes and no round runs;
 * - table scope and a repository in between (--via).
 */
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { generateSampleCluster, mutateSampleCluster, type SampleCluster } from "../packages/cli/src/SampleCluster.ts"
import {
  bendsave,
  bendsaveJson,
  type ClusterFiles,
  describeRun,
  importMeta,
  MiB,
  makeTempDir,
  removeTempDirs,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"
import { dumpCluster, readTablesWithDuckDB, startCli, waitFor, writeState } from "./replicateHelpers.ts"

afterAll(removeTempDirs)

const countFiles = async (dir: string): Promise<number> => {
  let n = 0
  const visit = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.name === ".bendsave" || e.name.includes(".tmp-")) continue
      if (e.isDirectory()) await visit(join(d, e.name))
      else n++
    }
  }
  await visit(dir)
  return n
}

describe("bendsave replicate between local clusters", () => {
  let dir: string
  let src: ClusterFiles
  let dst: ClusterFiles
  let state: SampleCluster
  const extraMeta: Record<string, string> = { "settings/retention": "7d", "settings/owner": "ops" }

  beforeAll(async () => {
    dir = await makeTempDir("replicate")
    src = await writeCluster(join(dir, "prod"), { name: "prod" })
    dst = await writeCluster(join(dir, "standby"), { name: "standby" })
    state = generateSampleCluster({ seed: 11 })
    await writeState(src.toml, state, { meta: extraMeta, files: { "misc/notes.txt": Buffer.from("v1") } })
  })

  it("rounds with tables added, appended, dropped, files changed and keys changed: the target equals the source each time and DuckDB reads it", async () => {
    const totalBytes = state.files.reduce((n, f) => n + f.bytes.length, 0) + 2
    const r1 = await bendsaveJson(["replicate", "--from", src.toml, "--to", dst.toml], { cwd: dir, timeoutMs: 120_000 })
    expect(r1).toMatchObject({
      round: 1,
      outcome: "completed",
      files_copied: state.files.length + 1,
      bytes_copied: totalBytes,
      files_deleted: 0,
    })
    expect(r1.source_manifest_hash).toBe(r1.target_manifest_hash)
    expect(await dumpCluster(dst.toml)).toEqual(await dumpCluster(src.toml))
    const counts = await readTablesWithDuckDB(dst.toml, dst.dataDir, dir)
    expect(Object.keys(counts).length).toBe(8)

    // The target's own reserved key survives every round.
    await importMeta(dst, [{ key: "bendsave/standby-note", value: "keep" }])

    for (let round = 2; round <= 4; round++) {
      const mutation = mutateSampleCluster(state, { seed: round })
      state = mutation.state
      extraMeta["settings/retention"] = `${round * 7}d`
      if (round === 3) delete extraMeta["settings/owner"]
      if (round === 4) extraMeta["settings/new"] = "added"
      const notes = Buffer.from(`v${round} ${"x".repeat(round * 100)}`)
      const revisionBefore = r1.source_revision
      await writeState(src.toml, state, { meta: extraMeta, files: { "misc/notes.txt": notes } })
      const addedBytes = mutation.added.reduce((n, f) => n + f.bytes.length, 0) + notes.length
      const r = await bendsaveJson(["replicate", "--from", src.toml, "--to", dst.toml], { cwd: dir, timeoutMs: 120_000 })
      expect(r.round).toBe(round)
      expect(r.source_revision).toBeGreaterThan(revisionBefore)
      // Only the change moved.
      expect(r.files_copied).toBe(mutation.added.length + 1)
      expect(r.bytes_copied).toBe(addedBytes)
      expect(r.files_deleted).toBe(mutation.removedPaths.length)
      expect(r.files_unchanged).toBe(r.files_total - r.files_copied)
      expect(r.keys_removed).toBe(mutation.removedMeta.length + (round === 3 ? 1 : 0))
      expect(r.source_manifest_hash).toBe(r.target_manifest_hash)
      expect(await dumpCluster(dst.toml)).toEqual(await dumpCluster(src.toml))
      const tables = await readTablesWithDuckDB(dst.toml, dst.dataDir, dir)
      expect(Object.keys(tables)).toContain(`${mutation.created.database}/${mutation.created.table}`)
      expect(Object.keys(tables)).not.toContain(`${mutation.dropped.database}/${mutation.dropped.table}`)
      const note = await bendsave(["meta", "export", "--cluster", dst.toml], { cwd: dir })
      expect(note.stdout).toContain('"key":"bendsave/standby-note"')
    }

    const again = await bendsaveJson(["replicate", "--from", src.toml, "--to", dst.toml], { cwd: dir })
    expect(again).toMatchObject({ files_copied: 0, bytes_copied: 0, files_deleted: 0, keys_added: 0, keys_changed: 0, keys_removed: 0 })
  })

  it("status: last round, revision, lag growing while the source changes and no round runs", async () => {
    const s1 = await bendsaveJson(["replicate", "status", "--to", dst.toml], { cwd: dir })
    expect(s1.streams).toHaveLength(1)
    const cluster = s1.streams[0]
    expect(cluster).toMatchObject({ stream: "cluster", source: { name: "prod" }, last_round: { outcome: "completed" } })
    expect(cluster.last_success.source_manifest_hash).toMatch(/^[0-9a-f]{64}$/)
    const revision = cluster.last_success.source_revision
    await writeState(src.toml, state, { meta: { ...extraMeta, "settings/late": "changed after the round" } })
    await new Promise((r) => setTimeout(r, 1500))
    const s2 = await bendsaveJson(["replicate", "status", "--to", dst.toml], { cwd: dir })
    expect(s2.streams[0].last_success.source_revision).toBe(revision)
    expect(s2.streams[0].lag_ms).toBeGreaterThanOrEqual(cluster.lag_ms + 1400)
    const text = await bendsave(["replicate", "status", "--to", dst.toml], { cwd: dir })
    expect(text.code, describeRun(text)).toBe(0)
    expect(text.stdout).toMatch(/STREAM\s+SOURCE\s+LAST ROUND\s+REVISION/)
    expect(text.stdout).toContain("completed")
    // The round catches up.
    const r = await bendsaveJson(["replicate", "--from", src.toml, "--to", dst.toml], { cwd: dir })
    expect(r.keys_added).toBe(1)
    const s3 = await bendsaveJson(["replicate", "status", "--to", dst.toml], { cwd: dir })
    expect(s3.streams[0].lag_ms).toBeLessThan(s2.streams[0].lag_ms)
  })

  it("MAX_DELETE stops a round before anything changes and says so", async () => {
    const before = await dumpCluster(dst.toml)
    const victims = state.files.filter((f) => f.path.includes("/_ss/")).slice(0, 3)
    const trimmed = { ...state, files: state.files.filter((f) => !victims.includes(f)) }
    await writeState(src.toml, trimmed, { meta: { ...extraMeta, "settings/late": "changed after the round", "settings/more": "x" } })
    const run = await bendsave(["replicate", "--from", src.toml, "--to", dst.toml, "--max-delete", "2"], { cwd: dir })
    expect(run.code, describeRun(run)).toBe(1)
    expect(run.stderr).toMatch(/would delete 3 file\(s\).*MAX_DELETE = 2.*stopped before/)
    expect(run.stderr).toContain("--max-delete")
    expect(await dumpCluster(dst.toml)).toEqual(before)
    const status = await bendsaveJson(["replicate", "status", "--to", dst.toml], { cwd: dir })
    expect(status.streams[0].last_round.outcome).toBe("stopped")
    const dry = await bendsaveJson(["replicate", "--from", src.toml, "--to", dst.toml, "--max-delete", "2", "--dry-run"], { cwd: dir })
    expect(dry).toMatchObject({ dry_run: true, files_to_delete: 3, keys_added: 1 })
    const ok = await bendsaveJson(["replicate", "--from", src.toml, "--to", dst.toml, "--max-delete", "3"], { cwd: dir })
    expect(ok).toMatchObject({ files_deleted: 3, files_copied: 0 })
    expect(await dumpCluster(dst.toml)).toEqual(await dumpCluster(src.toml))
    await writeState(src.toml, state, { meta: extraMeta })
  })

  it("a round SIGKILLed at several points resumes without copying again what landed", async () => {
    const kdir = join(dir, "kill")
    const a = await writeCluster(join(kdir, "a"), { name: "a" })
    const b = await writeCluster(join(kdir, "b"), { name: "b" })
    const files = 24
    for (let i = 0; i < files; i++) await writeRandomFile(join(a.dataDir, `t/part-${String(i).padStart(3, "0")}.bin`), MiB)
    await importMeta(a, [{ key: "catalog/databases/db", value: '{"id":"1"}' }])
    const args = ["replicate", "--from", a.toml, "--to", b.toml, "--bandwidth-limit", "3MiB", "--parallelism", "2", "--json"]
    // 1. Killed right away (maybe before the first file lands).
    const first = startCli(args, kdir)
    await waitFor(
      "the lease",
      async () => (await readdir(join(b.dataDir, ".bendsave/leases/exclusive/replicate")).catch(() => [])).length > 0,
    )
    first.child.kill("SIGKILL")
    await first.exit
    // 2. and 3. Killed while files land.
    for (const landed of [5, 12]) {
      const run = startCli(args, kdir)
      await waitFor(`${landed} files landed`, async () => (await countFiles(b.dataDir)) >= landed)
      run.child.kill("SIGKILL")
      expect((await run.exit).signal).toBe("SIGKILL")
    }
    const landedBefore = await countFiles(b.dataDir)
    expect(landedBefore).toBeLessThan(files)
    const done = await bendsaveJson(["replicate", "--from", a.toml, "--to", b.toml], { cwd: kdir, timeoutMs: 120_000 })
    expect(done.round).toBe(1)
    // What landed before the kills (journaled) is not copied again; at most the few files in flight are.
    expect(done.files_resumed).toBeGreaterThanOrEqual(landedBefore - 3)
    expect(done.files_copied).toBeLessThanOrEqual(files - landedBefore + 3)
    expect(done.files_copied + done.files_unchanged).toBe(files)
    expect(await dumpCluster(b.toml)).toEqual(await dumpCluster(a.toml))
  })

  it("two replicators onto one target: the second fails clearly; SIGTERM checkpoints the first", async () => {
    const tdir = join(dir, "two")
    const a = await writeCluster(join(tdir, "a"), { name: "a" })
    const b = await writeCluster(join(tdir, "b"), { name: "b" })
    for (let i = 0; i < 8; i++) await writeRandomFile(join(a.dataDir, `f${i}`), MiB)
    await importMeta(a, [{ key: "k", value: "v" }])
    const slow = startCli(["replicate", "--from", a.toml, "--to", b.toml, "--bandwidth-limit", "1MiB", "--parallelism", "1"], tdir)
    await waitFor("the first file", async () => (await countFiles(b.dataDir)) >= 1)
    const second = await bendsave(["replicate", "--from", a.toml, "--to", b.toml], { cwd: tdir })
    expect(second.code, describeRun(second)).toBe(1)
    expect(second.stderr).toMatch(/holds the replicate lease \(pid \d+ on /)
    expect(second.stderr).toContain("fix:")
    const secondJson = await bendsave(["replicate", "--from", a.toml, "--to", b.toml, "--json"], { cwd: tdir })
    expect(JSON.parse(secondJson.stdout).error.tag).toBe("LeaseHeldError")
    slow.child.kill("SIGTERM")
    const exit = await slow.exit
    expect(exit.code).not.toBe(0)
    expect(slow.stderr()).toContain("journaled")
    const status = await bendsaveJson(["replicate", "status", "--to", b.toml], { cwd: tdir })
    expect(status.streams[0].last_round.outcome).toBe("interrupted")
    // The lease was released: the next run goes ahead at once and continues.
    const next = await bendsaveJson(["replicate", "--from", a.toml, "--to", b.toml], { cwd: tdir })
    expect(next.files_resumed).toBeGreaterThanOrEqual(1)
    expect(await dumpCluster(b.toml)).toEqual(await dumpCluster(a.toml))
  })

  it("--every runs rounds on a schedule; SIGTERM stops it cleanly (exit 0)", async () => {
    const edir = join(dir, "every")
    const a = await writeCluster(join(edir, "a"), { name: "a" })
    const b = await writeCluster(join(edir, "b"), { name: "b" })
    await writeRandomFile(join(a.dataDir, "f0"), 1000)
    await importMeta(a, [{ key: "k", value: "v" }])
    const run = startCli(["replicate", "--from", a.toml, "--to", b.toml, "--every", "1s", "--json"], edir)
    const rounds = () =>
      run
        .stdout()
        .split("\n")
        .filter((l) => l.trim() !== "")
    await waitFor("the first round", () => rounds().length >= 1)
    await writeRandomFile(join(a.dataDir, "f1"), 2000)
    await waitFor("two more rounds", () => rounds().length >= 3)
    run.child.kill("SIGTERM")
    const exit = await run.exit
    expect(exit.code, run.stderr()).toBe(0)
    const results = rounds().map((l) => JSON.parse(l))
    expect(results[0].files_copied).toBe(1)
    expect(results.reduce((n: number, r: { files_copied: number }) => n + r.files_copied, 0)).toBe(2)
    expect(results.map((r: { round: number }) => r.round)).toEqual(results.map((_: unknown, i: number) => i + 1))
    expect(await dumpCluster(b.toml)).toEqual(await dumpCluster(a.toml))
  })

  it("--table replicates one table; --via feeds the target from incremental backups in a repository", async () => {
    const vdir = join(dir, "scoped")
    const t = await writeCluster(join(vdir, "t"), { name: "tables-only" })
    const table = state.meta.find((m) => m.key.startsWith("catalog/tables/sales/"))!
    const [db, name] = table.key.slice("catalog/tables/".length).split("/")
    const r = await bendsaveJson(["replicate", "--from", src.toml, "--to", t.toml, "--table", `${db}.${name}`], { cwd: vdir })
    expect(r).toMatchObject({ stream: `table.${db}.${name}`, keys_total: 2 })
    const dump = await dumpCluster(t.toml)
    expect(Object.keys(dump.meta).sort()).toEqual([`catalog/databases/${db}`, table.key])
    const counts = await readTablesWithDuckDB(t.toml, t.dataDir, vdir)
    expect(Object.keys(counts)).toEqual([`${db}/${name}`])
    const missing = await bendsave(["replicate", "--from", src.toml, "--to", t.toml, "--table", `${db}.no_such_table`], { cwd: vdir })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain(`has no table ${db}.no_such_table`)

    const v = await writeCluster(join(vdir, "v"), { name: "via" })
    const repo = join(vdir, "repo")
    const v1 = await bendsaveJson(["replicate", "--from", src.toml, "--to", v.toml, "--via", repo], { cwd: vdir, timeoutMs: 120_000 })
    expect(v1.backup_id).toMatch(/^\d{8}_\d{6}$/)
    expect(await dumpCluster(v.toml)).toEqual(await dumpCluster(src.toml))
    const mutation = mutateSampleCluster(state, { seed: 99 })
    state = mutation.state
    await writeState(src.toml, state, { meta: extraMeta })
    await new Promise((r) => setTimeout(r, 1000))
    const v2 = await bendsaveJson(["replicate", "--from", src.toml, "--to", v.toml, "--via", repo], { cwd: vdir, timeoutMs: 120_000 })
    expect(v2.files_copied).toBe(mutation.added.length)
    expect(await dumpCluster(v.toml)).toEqual(await dumpCluster(src.toml))
    const list = await bendsaveJson(["list", repo], { cwd: vdir })
    expect(list.backups.map((x: { backup_type: string }) => x.backup_type)).toEqual(["full", "incremental"])
    await readTablesWithDuckDB(v.toml, v.dataDir, vdir)
  })

  it("clear errors: both scopes, a bad interval, the target being the source", async () => {
    const both = await bendsave(["replicate", "--from", src.toml, "--to", dst.toml, "--table", "a.b", "--database", "a"], { cwd: dir })
    expect(both.code).toBe(1)
    expect(both.stderr).toContain("not both")
    const every = await bendsave(["replicate", "--from", src.toml, "--to", dst.toml, "--every", "5 minutes"], { cwd: dir })
    expect(every.code).toBe(1)
    expect(every.stderr).toContain("--every '5 minutes' is not a duration")
    expect(every.stderr).toContain("fix: write a number with a unit, e.g. --every 5m")
    const same = await bendsave(["replicate", "--from", src.toml, "--to", src.toml], { cwd: dir })
    expect(same.code).toBe(1)
    expect(same.stderr).toContain("same cluster")
    const none = await bendsave(["replicate", "status", "--to", src.toml], { cwd: dir })
    expect(none.code, describeRun(none)).toBe(0)
    expect(none.stdout).toContain("no replication has run into")
  })
})
