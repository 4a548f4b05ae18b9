/**
 * `bendsave sql -f` end to end with REPLICATE and SHOW REPLICATION STATUS:
 * a script file run through the real CLI (a subprocess) between two local
 * clusters (local meta + fs storage) holding the sample data cluster
 * (Parquet tables per docs/table-layout.md). Replicate, change the source,
 * replicate again: the target equals the source byte for byte (meta
 * exactly) after each round; SHOW REPLICATION STATUS shows the round's
 * revision and a lag; MAX_DELETE stops a round before anything changes.
 */
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { generateSampleCluster, mutateSampleCluster, type SampleCluster } from "../packages/cli/src/SampleCluster.ts"
import {
  bendsave,
  type ClusterFiles,
  describeRun,
  expectOk,
  type JsonObject,
  makeTempDir,
  type RunResult,
  removeTempDirs,
  writeCluster,
} from "./helpers.ts"
import { dumpCluster, readTablesWithDuckDB, writeState } from "./replicateHelpers.ts"

afterAll(removeTempDirs)

/** The one JSON array a `sql --json` run printed on stdout. */
const jsonArray = (r: RunResult): Array<JsonObject> => {
  const lines = r.stdout.split("\n").filter((l) => l.trim() !== "")
  expect(lines, describeRun(r)).toHaveLength(1)
  return JSON.parse(lines[0])
}

describe("bendsave sql: REPLICATE and SHOW REPLICATION STATUS between local clusters", () => {
  let dir: string
  let prod: ClusterFiles
  let standby: ClusterFiles
  let state: SampleCluster
  const attach = "ATTACH CLUSTER 'prod.toml' AS prod;\nATTACH CLUSTER 'standby.toml' AS standby;\n"
  const script = async (name: string, body: string) => {
    const path = join(dir, name)
    await writeFile(path, `${attach}${body}`)
    return path
  }

  beforeAll(async () => {
    dir = await makeTempDir("sql-replicate")
    prod = await writeCluster(dir, { name: "prod", file: "prod.toml", meta: "prod-meta", data: "prod-data" })
    // The standby does not exist yet: the first real round creates its directories.
    standby = await writeCluster(dir, { name: "standby", file: "standby.toml", meta: "standby-meta", data: "standby-data" })
    state = generateSampleCluster({ seed: 23 })
    await writeState(prod.toml, state, { meta: { "settings/owner": "ops" } })
  })

  it("-f: replicate, change the source, replicate again; the target equals the source each time; status shows the revision and lag", async () => {
    const round = await script(
      "round.sql",
      "REPLICATE CLUSTER FROM prod TO standby DRY RUN;\nREPLICATE CLUSTER FROM prod TO standby;\nSHOW REPLICATION STATUS FOR standby;\n",
    )
    // Run from another directory: the script's paths resolve against its own.
    const first = jsonArray(await bendsave(["sql", "-f", round, "--json"], { cwd: "/", timeoutMs: 120_000 }))
    expect(first.map((o) => o.ok)).toEqual([true, true, true, true, true])
    const plan = first[2].result
    const totalBytes = state.files.reduce((n, f) => n + f.bytes.length, 0)
    expect(plan).toMatchObject({ dry_run: true, files_to_copy: state.files.length, bytes_to_copy: totalBytes, files_to_delete: 0 })
    const r1 = first[3].result
    expect(r1).toMatchObject({
      round: 1,
      outcome: "completed",
      files_copied: state.files.length,
      bytes_copied: totalBytes,
      files_deleted: 0,
    })
    expect(r1.source_manifest_hash).toBe(r1.target_manifest_hash)
    expect(await dumpCluster(standby.toml)).toEqual(await dumpCluster(prod.toml))
    const status1 = first[4].result.streams
    expect(status1).toHaveLength(1)
    expect(status1[0]).toMatchObject({ stream: "cluster", source: { name: "prod" }, last_success: { source_revision: r1.source_revision } })
    expect(status1[0].lag_ms).toBeGreaterThanOrEqual(0)

    // Change the source: a table appended, one created, one dropped, meta keys changed.
    const mutation = mutateSampleCluster(state, { seed: 5 })
    state = mutation.state
    await writeState(prod.toml, state, { meta: { "settings/owner": "dba", "settings/new": "x" } })
    await new Promise((r) => setTimeout(r, 1100))
    // Lag grows while the source changes and no round runs.
    const waiting = jsonArray(await bendsave(["sql", "-e", `${attach}SHOW REPLICATION STATUS FOR standby`, "--json"], { cwd: dir }))
    expect(waiting[2].result.streams[0].last_success.source_revision).toBe(r1.source_revision)
    expect(waiting[2].result.streams[0].lag_ms).toBeGreaterThanOrEqual(status1[0].lag_ms + 1000)

    const second = jsonArray(await bendsave(["sql", "-f", round, "--json"], { cwd: dir, timeoutMs: 120_000 }))
    expect(second.map((o) => o.ok)).toEqual([true, true, true, true, true])
    const r2 = second[3].result
    expect(r2.round).toBe(2)
    expect(r2.source_revision).toBeGreaterThan(r1.source_revision)
    // Only the change moved.
    expect(r2.files_copied).toBe(mutation.added.length)
    expect(r2.bytes_copied).toBe(mutation.added.reduce((n, f) => n + f.bytes.length, 0))
    expect(r2.files_deleted).toBe(mutation.removedPaths.length)
    expect(r2.files_unchanged).toBe(r2.files_total - r2.files_copied)
    expect(await dumpCluster(standby.toml)).toEqual(await dumpCluster(prod.toml))
    const tables = await readTablesWithDuckDB(standby.toml, standby.dataDir, dir)
    expect(Object.keys(tables)).toContain(`${mutation.created.database}/${mutation.created.table}`)
    expect(second[4].result.streams[0].last_success.source_revision).toBe(r2.source_revision)
    expect(second[4].result.streams[0].lag_ms).toBeLessThan(waiting[2].result.streams[0].lag_ms)

    // The text output: a round's row and the status table with revision and lag.
    const text = expectOk(
      await bendsave(["sql", "-e", `${attach}REPLICATE CLUSTER FROM prod TO standby; SHOW REPLICATION STATUS`], { cwd: dir }),
    )
    expect(text.stdout).toContain("replicated the cluster of prod to standby: round 3")
    expect(text.stdout).toContain("0 files copied, 0 files deleted, 0 keys changed")
    expect(text.stdout).toContain("1 replication stream into prod, standby")
    expect(text.stdout).toMatch(/cluster +stream +source +last_revision +replicated_at +lag/)
    expect(text.stdout).toMatch(new RegExp(`standby +cluster +prod +${r2.source_revision} `))
  })

  it("MAX_DELETE stops a round before anything changes and says so in the statement's words; a larger one lets it through", async () => {
    const before = await dumpCluster(standby.toml)
    const mutation = mutateSampleCluster(state, { seed: 9 })
    expect(mutation.removedPaths.length).toBeGreaterThan(0)
    state = mutation.state
    await writeState(prod.toml, state, { meta: { "settings/owner": "dba", "settings/new": "x" } })
    const limited = await script("limited.sql", "REPLICATE CLUSTER FROM prod TO standby WITH (MAX_DELETE = 0, PARALLELISM = 2);\n")
    const stopped = await bendsave(["sql", "-f", limited], { cwd: dir, timeoutMs: 120_000 })
    expect(stopped.code, describeRun(stopped)).toBe(1)
    expect(stopped.stderr).toContain("more than MAX_DELETE = 0; it stopped before copying or deleting anything")
    expect(stopped.stderr).toMatch(/fix: .*WITH \(MAX_DELETE = \d+\) or more, or WITH \(DELETE = 'KEEP'\)/)
    expect(stopped.stderr).not.toContain("--max-delete")
    expect(await dumpCluster(standby.toml)).toEqual(before)
    const status = jsonArray(await bendsave(["sql", "-e", `${attach}SHOW REPLICATION STATUS FOR standby`, "--json"], { cwd: dir }))
    expect(status[2].result.streams[0].last_round.outcome).toBe("stopped")

    const enough = await script(
      "enough.sql",
      `REPLICATE CLUSTER FROM prod TO standby WITH (MAX_DELETE = ${mutation.removedPaths.length + mutation.removedMeta.length + 10}, BANDWIDTH_LIMIT = '64MiB/s');\n`,
    )
    const ok = jsonArray(await bendsave(["sql", "-f", enough, "--json"], { cwd: dir, timeoutMs: 120_000 }))
    expect(ok[2]).toMatchObject({ ok: true, result: { outcome: "completed", files_deleted: mutation.removedPaths.length } })
    expect(await dumpCluster(standby.toml)).toEqual(await dumpCluster(prod.toml))
  })

  it("a syntax error in the options runs nothing and points at the option", async () => {
    const bad = await script("bad.sql", "REPLICATE CLUSTER FROM prod TO standby WITH (MAX_DELET = 5);\n")
    const r = await bendsave(["sql", "-f", bad], { cwd: dir })
    expect(r.code, describeRun(r)).toBe(1)
    expect(r.stderr).toContain("syntax error at line 3, column 46")
    expect(r.stderr).toContain("unknown option 'MAX_DELET'; did you mean MAX_DELETE?")
    expect(r.stderr).toContain("^^^^^^^^^")
    expect(r.stderr).toContain("no statement was run")
  })
})
