/**
 * `bendsave sql` end to end: scripts run through the real CLI (a
 * subprocess) on real local clusters and repositories. Backup and restore
 * statements, relative paths against the script's directory, -e / -f /
 * stdin, text tables and --json, stopping at the first failure and
 * --continue-on-error, syntax errors with line, column and caret (and nothing
 * run).
 */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  bendsave,
  bendsaveWithTerminal,
  type ClusterFiles,
  compareDirs,
  describeRun,
  exists,
  expectOk,
  exportMetaText,
  importMeta,
  type JsonObject,
  makeTempDir,
  type RunResult,
  removeTempDirs,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

/** The one JSON array a `sql --json` run printed on stdout. */
const jsonArray = (r: RunResult): Array<JsonObject> => {
  const lines = r.stdout.split("\n").filter((l) => l.trim() !== "")
  expect(lines, describeRun(r)).toHaveLength(1)
  const value = JSON.parse(lines[0])
  expect(Array.isArray(value), describeRun(r)).toBe(true)
  return value
}

describe("bendsave sql: backup and restore statements", () => {
  let root: string
  let scripts: string
  let prod: ClusterFiles

  beforeAll(async () => {
    root = await makeTempDir("sql")
    // The script lives in its own directory with the cluster files; the CLI runs from elsewhere.
    scripts = join(root, "dr")
    prod = await writeCluster(scripts, { name: "prod", file: "prod.toml", meta: "prod-meta", data: "prod-data" })
    await writeCluster(scripts, { name: "fresh", file: "fresh.toml", meta: "fresh-meta", data: "fresh-data" })
    for (let i = 0; i < 5; i++) await writeRandomFile(join(prod.dataDir, `db1/t${i}/part-${i}.parquet`), 20_000 + i)
    await importMeta(prod, [
      { key: "catalog/databases/db1", value: '{"id":"1"}' },
      { key: "catalog/tables/db1/t0", value: '{"id":"2"}' },
    ])
  })

  it("-f: ATTACH and repositories resolve against the script's directory; backup, list, dry-run restore, restore byte for byte", async () => {
    const script = join(scripts, "nightly.sql")
    await writeFile(
      script,
      `-- nightly disaster-recovery drill
ATTACH CLUSTER 'prod.toml' AS prod;
attach cluster './fresh.toml' as fresh;
BACKUP CLUSTER prod TO './backups';
SHOW BACKUPS IN './backups';
RESTORE CLUSTER FROM './backups' TO fresh DRY RUN;
`,
    )
    const r = expectOk(await bendsave(["sql", "-f", script], { cwd: root }))
    expect(r.stdout).toContain("attached cluster prod")
    expect(r.stdout).toMatch(/backup \d{8}_\d{6} of prod committed \(full\)/)
    expect(r.stdout).toMatch(/1 backup in fs:\/\/.*\/dr\/backups/)
    expect(r.stdout).toContain("DRY RUN: restore plan of backup")
    // SHOW BACKUPS is an aligned table: header, dashes, one row.
    const lines = r.stdout.split("\n")
    const header = lines.findIndex((l) => l.startsWith("1 backup in")) + 1
    expect(lines[header]).toMatch(/^backup_id +type +cluster +started_at +files +bytes/)
    expect(lines[header + 1]).toMatch(/^-+ {2}-+/)
    expect(lines[header + 2]).toMatch(/^\d{8}_\d{6} {2}full {2}prod /)
    expect(await exists(join(scripts, "backups", "manifests"))).toBe(true)
    expect(await exists(join(root, "backups"))).toBe(false)
    // The dry run created nothing of the new cluster.
    expect(await exists(join(scripts, "fresh-data"))).toBe(false)
  })

  it("-e and stdin: relative paths resolve against the working directory; RESTORE executes without DRY RUN", async () => {
    const listed = jsonArray(expectOk(await bendsave(["sql", "--json", "-e", "SHOW BACKUPS IN './backups'"], { cwd: scripts })))
    const backupId = listed[0].result.backups[0].backup_id as string
    const r = expectOk(
      await bendsave(["sql"], {
        cwd: scripts,
        input: `ATTACH CLUSTER 'fresh.toml' AS fresh;\nRESTORE CLUSTER FROM './backups' AT BACKUP '${backupId}' TO fresh;`,
      }),
    )
    expect(r.stdout).toContain(`restored backup ${backupId} into fresh`)
    expect(await compareDirs(prod.dataDir, join(scripts, "fresh-data"))).toEqual([])
    expect(await exportMetaText({ toml: join(scripts, "fresh.toml") })).toBe(await exportMetaText(prod))
  })

  it("--json: one array of {statement, line, ok, result}; the backup's own result", async () => {
    const r = expectOk(
      await bendsave(
        [
          "sql",
          "--json",
          "-e",
          "ATTACH CLUSTER 'prod.toml' AS prod;\nBACKUP CLUSTER prod TO './backups';\nBACKUP CLUSTER prod TO './backups' DRY RUN",
        ],
        { cwd: scripts },
      ),
    )
    const out = jsonArray(r)
    expect(out.map((o) => [o.statement, o.line, o.ok])).toEqual([
      ["ATTACH CLUSTER 'prod.toml' AS prod", 1, true],
      ["BACKUP CLUSTER prod TO './backups'", 2, true],
      ["BACKUP CLUSTER prod TO './backups' DRY RUN", 3, true],
    ])
    expect(out[1].result).toMatchObject({ backup_type: "incremental", files_total: 5, files_reused: 5, files_read: 0 })
    expect(out[2].result).toMatchObject({
      dry_run: true,
      backup_type: "incremental",
      parent_backup_id: out[1].result.backup_id,
      files_total: 5,
    })
    expect(r.stderr).toBe("")
  })

  it("on a terminal BACKUP draws a progress bar on stderr (cleared before the result); --json draws nothing", async () => {
    const script = "ATTACH CLUSTER 'prod.toml' AS prod; BACKUP CLUSTER prod TO './progress'"
    const text = await bendsaveWithTerminal(["sql", "-e", script], { cwd: scripts })
    expect(text.code, describeRun(text)).toBe(0)
    expect(text.terminal).toMatch(/\r(meta|scan|backup|commit) /)
    expect(text.stdout).toMatch(/backup \d{8}_\d{6} of prod committed/)
    const json = await bendsaveWithTerminal(["sql", "--json", "-e", script], { cwd: scripts })
    expect(json.code, describeRun(json)).toBe(0)
    expect(json.terminal).toBe("")
    expect(jsonArray(json).map((o) => o.ok)).toEqual([true, true])
  })

  it("a failing statement stops the script (exit 1); --continue-on-error runs the rest and still exits 1", async () => {
    const script = "ATTACH CLUSTER 'prod.toml' AS prod;\nSHOW BACKUPS IN './no-such-repo';\nBACKUP CLUSTER prod TO './second'"
    const stopped = await bendsave(["sql", "-e", script], { cwd: scripts })
    expect(stopped.code, describeRun(stopped)).toBe(1)
    expect(stopped.stderr).toContain("bendsave: error: statement 2 (line 2): ")
    expect(stopped.stderr).toContain("fix: ")
    expect(stopped.stderr).toContain("stopped at statement 2 of 3; 1 not run (--continue-on-error runs the rest)")
    expect(await exists(join(scripts, "second"))).toBe(false)

    const json = await bendsave(["sql", "--json", "-e", script], { cwd: scripts })
    expect(json.code).toBe(1)
    const out = jsonArray(json)
    expect(out.map((o) => o.ok)).toEqual([true, false])
    expect(out[1].error).toMatchObject({ tag: "RepositoryError" })
    expect(out[1].error.message).toContain("no-such-repo")
    expect(typeof out[1].error.fix).toBe("string")

    const all = await bendsave(["sql", "--json", "--continue-on-error", "-e", script], { cwd: scripts })
    expect(all.code, describeRun(all)).toBe(1)
    expect(jsonArray(all).map((o) => o.ok)).toEqual([true, false, true])
    expect(await exists(join(scripts, "second", "manifests"))).toBe(true)
  })

  it("VACUUM BACKUPS: DRY RUN prints the plan and deletes nothing; then it deletes by the policy", async () => {
    const before = jsonArray(expectOk(await bendsave(["sql", "--json", "-e", "SHOW BACKUPS IN './backups'"], { cwd: scripts })))[0].result
      .backups as Array<JsonObject>
    expect(before.length).toBeGreaterThanOrEqual(2)
    const plan = expectOk(await bendsave(["sql", "-e", "VACUUM BACKUPS IN './backups' WITH (MAX_BACKUPS = 1) DRY RUN"], { cwd: scripts }))
    expect(plan.stdout).toContain("DRY RUN: vacuum plan for")
    expect(plan.stdout).toMatch(new RegExp(`^backups_deleted +${before.length - 1}$`, "m"))
    const out = jsonArray(
      expectOk(
        await bendsave(["sql", "--json", "-e", "VACUUM BACKUPS IN './backups' WITH (MAX_BACKUPS = 1);\nSHOW BACKUPS IN './backups'"], {
          cwd: scripts,
        }),
      ),
    )
    expect(out[0].result.deleted.map((d: JsonObject) => d.backup_id)).toEqual(before.slice(0, -1).map((b) => b.backup_id))
    expect(out[1].result.backups.map((b: JsonObject) => b.backup_id)).toEqual([before[before.length - 1].backup_id])
  })

  it("names that cannot be resolved: the error points at the name with a caret", async () => {
    await writeCluster(join(scripts, "other"), { name: "other" })
    const r = await bendsave(
      ["sql", "-e", "ATTACH CLUSTER 'prod.toml' AS prod;\nATTACH CLUSTER 'other/cluster.toml' AS other;\nBACKUP CLUSTER prd TO './x'"],
      { cwd: scripts },
    )
    expect(r.code).toBe(1)
    expect(r.stderr).toContain("bendsave: error: statement 3 (line 3): no cluster named 'prd' is attached; did you mean prod?")
    expect(r.stderr).toContain("  3 | BACKUP CLUSTER prd TO './x'\n    |                ^^^")
  })
})

describe("bendsave sql: syntax errors and input errors", () => {
  let dir: string

  beforeAll(async () => {
    dir = await makeTempDir("sql-syntax")
    await writeCluster(dir, { name: "prod", file: "prod.toml" })
    await mkdir(join(dir, "data"), { recursive: true })
    await mkdir(join(dir, "meta"), { recursive: true })
  })

  it("a syntax error shows line, column, the source line, a caret and what was expected; nothing runs", async () => {
    const script = join(dir, "broken.sql")
    await writeFile(script, "ATTACH CLUSTER 'prod.toml' AS prod;\nBACKUP CLUSTER prod TO './repo';\nBACKUP CLUSTER prod INTO './repo';\n")
    const r = await bendsave(["sql", "-f", script], { cwd: dir })
    expect(r.code, describeRun(r)).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain(`bendsave: error: syntax error at line 3, column 21 of ${script}: expected TO, found 'INTO'`)
    expect(r.stderr).toContain("  3 | BACKUP CLUSTER prod INTO './repo';\n    |                     ^^^^\n")
    expect(r.stderr).toContain("  fix: BACKUP CLUSTER <cluster> TO '<repository>' [DRY RUN]")
    expect(r.stderr).toContain("1 syntax error; no statement was run")
    // The valid BACKUP before the error did not run.
    expect(await exists(join(dir, "repo"))).toBe(false)
  })

  it("every syntax error is reported; --json gives them as one array", async () => {
    const r = await bendsave(["sql", "--json", "-e", "SHOW TABLES;\nBAKUP CLUSTER prod TO 'x';\nDROP TABLE orders"], { cwd: dir })
    expect(r.code).toBe(1)
    const out = jsonArray(r)
    expect(out.map((o) => o.statement)).toEqual(["BAKUP CLUSTER prod TO 'x'", "DROP TABLE orders"])
    expect(out.map((o) => [o.ok, o.line, o.error.tag, o.error.line, o.error.column])).toEqual([
      [false, 2, "SqlSyntaxError", 2, 1],
      [false, 3, "SqlSyntaxError", 3, 12],
    ])
    expect(out[0].error.message).toBe("syntax error at line 2, column 1: unknown statement 'BAKUP'; did you mean BACKUP?")
    expect(out[0].error.excerpt).toBe("2 | BAKUP CLUSTER prod TO 'x';\n  | ^^^^^")
    expect(out[1].error.fix).toBe("name the database too, e.g. <db>.orders")
  })

  it("input errors: -e with -f, a missing script file", async () => {
    const both = await bendsave(["sql", "-e", "SHOW TABLES", "-f", "x.sql"], { cwd: dir })
    expect(both.code).toBe(1)
    expect(both.stderr).toContain("bendsave: error: both -e and -f were given")
    const missing = await bendsave(["sql", "-f", "nope.sql"], { cwd: dir })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain(`cannot read the script ${join(dir, "nope.sql")}: it does not exist`)
    expect(missing.stderr).toContain("fix: check the path given to -f")
    const missingJson = await bendsave(["sql", "--json", "-f", "nope.sql"], { cwd: dir })
    expect(JSON.parse(missingJson.stdout).error.tag).toBe("SqlInputError")
  })

  it("statements that begin with a -- comment after -e; -f - reads stdin; flags in any order; --json before sql", async () => {
    const script = "-- nightly check\nATTACH CLUSTER 'prod.toml' AS prod; -- the cluster\nSHOW DATABASES"
    const forms: ReadonlyArray<ReadonlyArray<string>> = [
      ["sql", "-e", script],
      ["sql", "--execute", script],
      ["sql", `-e=${script}`],
      ["sql", `--execute=${script}`],
      ["sql", "--continue-on-error", "-e", script],
      ["sql", "-e", script, "--continue-on-error"],
    ]
    for (const args of forms) {
      const r = await bendsave(args, { cwd: dir })
      expect(r.code, describeRun(r)).toBe(0)
      expect(r.stdout, describeRun(r)).toContain("attached cluster prod")
    }
    for (const args of [
      ["sql", "--json", "-e", script],
      ["sql", "-e", script, "--json"],
      ["--json", "sql", "-e", script],
      ["sql", "--json", "-f", "-"],
    ]) {
      const r = await bendsave(args, { cwd: dir, input: script })
      expect(r.code, describeRun(r)).toBe(0)
      expect(
        jsonArray(r).map((o) => [o.ok, o.line]),
        describeRun(r),
      ).toEqual([
        [true, 2],
        [true, 3],
      ])
    }
    // A value that is only a flag-like word stays a usage error, with a fix that says how to pass such text.
    const bare = await bendsave(["sql", "-e", "--nightly"], { cwd: dir })
    expect(bare.code).toBe(1)
    expect(bare.stderr).toContain("-e='-- ...'")
    const directory = await bendsave(["sql", "-f", dir], { cwd: dir })
    expect(directory.code).toBe(1)
    expect(directory.stderr).toContain(`cannot read the script ${dir}: it is a directory`)
  })

  it("an empty script succeeds and prints nothing ([] with --json)", async () => {
    const r = expectOk(await bendsave(["sql"], { cwd: dir, input: "-- nothing to do\n;" }))
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain("no statements to run")
    expect(jsonArray(expectOk(await bendsave(["sql", "--json"], { cwd: dir, input: "" })))).toEqual([])
  })
})
