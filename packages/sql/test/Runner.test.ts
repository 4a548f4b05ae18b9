/**
 * Runner tests: statements executed against real local clusters (local meta
 * + fs storage in temp directories) and real fs repositories; the
 * table-level workflows are a recording CloneApi here (the end-to-end tests
 * in test/sql.e2e.test.ts run them for real through the CLI).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Cluster } from "@bendsave/core"
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { afterAll } from "vitest"
import {
  type CloneApi,
  type CloneResult,
  type Outcome,
  parseScript,
  type ReplicateOptions,
  type ReplicationApi,
  type ReplicationRoundResult,
  type RunOptions,
  runStatements,
  type SqlError,
  type VacuumRequest,
} from "../src/index.ts"

const dirs: Array<string> = []
const tempDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), "bendsave-sql-runner-"))
  dirs.push(dir)
  return dir
}
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))))

/** A cluster file `<dir>/<name>.toml` naming `<name>-meta` and `<name>-data` (created unless `create` is false). */
const writeCluster = async (dir: string, name: string, options: { create?: boolean; files?: Record<string, string> } = {}) => {
  const toml = join(dir, `${name}.toml`)
  await writeFile(
    toml,
    `name = "${name}"\n[meta]\ntype = "local"\npath = "./${name}-meta"\n[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./${name}-data"\n`,
  )
  if (options.create !== false) {
    await mkdir(join(dir, `${name}-meta`), { recursive: true })
    await mkdir(join(dir, `${name}-data`), { recursive: true })
  }
  for (const [path, content] of Object.entries(options.files ?? {})) {
    await mkdir(join(dir, `${name}-data`, path, ".."), { recursive: true })
    await writeFile(join(dir, `${name}-data`, path), content)
  }
  return toml
}

interface Call {
  readonly op: string
  readonly args: ReadonlyArray<unknown>
}

const metrics = (target: string, source: string): CloneResult => ({
  target,
  source,
  mode: "DEEP",
  status: "cloned",
  source_table_size: 10,
  source_num_of_files: 1,
  num_removed_files: 0,
  num_copied_files: 1,
  removed_files_size: 0,
  copied_files_size: 10,
  source_version: 1,
  target_version: 1,
})

/** A CloneApi that records its calls and answers with fixed rows. */
const recordingClone = () => {
  const calls: Array<Call> = []
  const record =
    <A>(op: string, answer: A) =>
    (...args: ReadonlyArray<unknown>) =>
      Effect.sync(() => {
        calls.push({ op, args })
        return answer
      })
  const api: CloneApi = {
    cloneTable: (request) =>
      record("cloneTable", metrics(`${request.target.table.database}.${request.target.table.table}`, "src"))(request),
    cloneDatabase: (request) =>
      record("cloneDatabase", [metrics(`${request.target.database}.a`, "x.a"), metrics(`${request.target.database}.b`, "x.b")])(request),
    dropTable: record("dropTable", { dropped: true, files_deleted: 0 }),
    listDatabases: (cluster) => record("listDatabases", [{ name: `db_of_${cluster.name}`, tables: 1 }])(cluster),
    listTables: record("listTables", [{ database: "sales", table: "orders", files: 2 }]),
    describeTable: record("describeTable", { database: "sales", table: "orders", files: 2, schema: [{ name: "id", type: "int64" }] }),
    listClones: record("listClones", []),
    restoreTables: record("restoreTables", { backup_id: "x", tables: 1 }),
  }
  return { api, calls }
}

/** Parses and runs a script (it must parse) within a scope. */
const run = (source: string, options: Partial<RunOptions> & { baseDir: string }) =>
  Effect.gen(function* () {
    const parsed = parseScript(source)
    if (parsed.errors.length > 0) return yield* Effect.die(new Error(parsed.errors[0].message))
    return yield* Effect.scoped(runStatements(parsed.statements, { source, clone: recordingClone().api, ...options }))
  })

const errorOf = (o: Outcome | undefined): SqlError => {
  if (o === undefined || o.ok) throw new Error(`expected a failed statement, got ${JSON.stringify(o)}`)
  return o.error as SqlError
}

const clusterArg = (call: Call | undefined, index = 0) => (call?.args[index] as Cluster | undefined)?.name

describe("runner: backup and restore statements on real local clusters", () => {
  it.live(
    "ATTACH resolves against the script directory; BACKUP, SHOW BACKUPS, RESTORE CLUSTER (dry run creates nothing, then restores)",
    () =>
      Effect.gen(function* () {
        const dir = yield* Effect.promise(tempDir)
        yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "a/one.bin": "one", "b/two.bin": "two two" } }))
        yield* Effect.promise(() => writeCluster(dir, "fresh", { create: false }))
        const outcomes = yield* run(
          `ATTACH CLUSTER 'prod.toml' AS prod;
         ATTACH CLUSTER './fresh.toml' AS fresh;
         BACKUP CLUSTER prod TO 'repo';
         SHOW BACKUPS IN 'repo';
         RESTORE CLUSTER FROM 'repo' TO fresh DRY RUN;`,
          { baseDir: dir },
        )
        expect(outcomes.map((o) => o.ok)).toEqual([true, true, true, true, true])
        const backup = outcomes[2].ok
          ? (outcomes[2].result.value as { backup_id: string; files_total: number; bytes_total: number })
          : undefined
        expect(backup?.files_total).toBe(2)
        expect(backup?.bytes_total).toBe(10)
        const shown = outcomes[3].ok ? outcomes[3].result : undefined
        expect(shown?.rows.map((r) => r.backup_id)).toEqual([backup?.backup_id])
        expect(shown?.columns.slice(0, 3)).toEqual(["backup_id", "type", "cluster"])
        const plan = outcomes[4].ok ? outcomes[4].result.rows[0] : undefined
        expect(plan).toMatchObject({ dry_run: true, files_to_write: 2, bytes_to_write: 10 })
        // The dry run created nothing of the new cluster.
        expect((yield* Effect.promise(() => readdir(dir))).sort()).toEqual(["fresh.toml", "prod-data", "prod-meta", "prod.toml", "repo"])

        const restored = yield* run(
          `ATTACH CLUSTER 'fresh.toml' AS fresh; RESTORE CLUSTER FROM 'repo' AT BACKUP '${backup?.backup_id}' TO fresh`,
          {
            baseDir: dir,
          },
        )
        expect(restored.map((o) => o.ok)).toEqual([true, true])
        expect(yield* Effect.promise(() => readFile(join(dir, "fresh-data", "b/two.bin"), "utf8"))).toBe("two two")
      }),
  )

  it.live("BACKUP ... DRY RUN reads the cluster and writes nothing, not even the repository", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "x.bin": "12345" } }))
      const [, plan] = yield* run("ATTACH CLUSTER 'prod.toml' AS prod; BACKUP CLUSTER prod TO './never' DRY RUN", { baseDir: dir })
      assert.isTrue(plan.ok)
      if (plan.ok) {
        expect(plan.result.value).toMatchObject({
          dry_run: true,
          backup_type: "full",
          files_total: 1,
          bytes_total: 5,
          repository_exists: false,
        })
        expect(plan.result.message).toContain("DRY RUN")
      }
      expect((yield* Effect.promise(() => readdir(dir))).includes("never")).toBe(false)
    }),
  )

  it.live(
    "RESTORE AT TIMESTAMP before the first backup, and from a missing repository, fail (the first with the position of the clause)",
    () =>
      Effect.gen(function* () {
        const dir = yield* Effect.promise(tempDir)
        yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "x.bin": "x" } }))
        const source =
          "ATTACH CLUSTER 'prod.toml' AS prod;\nBACKUP CLUSTER prod TO 'r';\nRESTORE CLUSTER FROM 'r' AT TIMESTAMP '2001-01-01T00:00:00Z' TO prod"
        const outcomes = yield* run(source, { baseDir: dir })
        const e = errorOf(outcomes[2])
        expect(e.reason).toBe("NoBackup")
        expect(e.detail).toBe("there is no backup in 'r' at or before 2001-01-01T00:00:00.000Z")
        expect([e.line, e.column]).toEqual([3, 39])
        yield* Effect.promise(() => mkdir(join(dir, "empty")))
        const empty = yield* run(
          "ATTACH CLUSTER 'prod.toml' AS prod; BACKUP CLUSTER prod TO 'empty' DRY RUN; RESTORE CLUSTER FROM 'r2' TO prod",
          {
            baseDir: dir,
          },
        )
        expect(empty.map((o) => o.ok)).toEqual([true, true, false])
        expect((errorOf(empty[2]) as unknown as { _tag: string })._tag).toBe("RepositoryError")
      }),
  )
})

describe("runner: names resolve against the attached clusters", () => {
  it.live("db.table uses the only cluster; with two it is ambiguous until USE; cluster.db.table names one", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod"))
      yield* Effect.promise(() => writeCluster(dir, "dev"))
      const one = recordingClone()
      const single = yield* run("ATTACH CLUSTER 'prod.toml' AS prod; DESCRIBE TABLE sales.orders", { baseDir: dir, clone: one.api })
      expect(single.map((o) => o.ok)).toEqual([true, true])
      expect(clusterArg(one.calls[0])).toBe("prod")
      expect(one.calls[0].args[1]).toEqual({ database: "sales", table: "orders" })
      const described = single[1].ok ? single[1].result : undefined
      expect(described?.columns).toEqual(["property", "value"])
      expect(described?.rows).toContainEqual({ property: "files", value: 2 })

      const two = recordingClone()
      const source =
        "ATTACH CLUSTER 'prod.toml' AS prod;\nATTACH CLUSTER 'dev.toml' AS dev;\nDROP TABLE sales.orders;\nDROP TABLE dev.sales.orders PURGE;\nUSE prod;\nDROP TABLE IF EXISTS sales.orders DRY RUN"
      const outcomes = yield* run(source, { baseDir: dir, clone: two.api, continueOnError: true })
      expect(outcomes.map((o) => o.ok)).toEqual([true, true, false, true, true, true])
      const ambiguous = errorOf(outcomes[2])
      expect(ambiguous.reason).toBe("AmbiguousCluster")
      expect(ambiguous.detail).toBe("'sales.orders' does not say which cluster: prod, dev are attached")
      expect(ambiguous.fix).toBe("name the cluster (prod.sales.orders) or choose a default with USE prod;")
      expect(ambiguous.excerpt).toBe("3 | DROP TABLE sales.orders;\n  |            ^^^^^^^^^^^^")
      expect(two.calls.map((c) => [c.op, clusterArg(c), c.args[1], c.args[2]])).toEqual([
        ["dropTable", "dev", { database: "sales", table: "orders" }, { ifExists: false, purge: true, dryRun: false }],
        ["dropTable", "prod", { database: "sales", table: "orders" }, { ifExists: true, purge: false, dryRun: true }],
      ])
    }),
  )

  it.live("unknown clusters get a did-you-mean; no cluster attached; attaching a name twice; DETACH", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod"))
      const outcomes = yield* run(
        "SHOW TABLES IN sales; ATTACH CLUSTER 'prod.toml' AS prod; SHOW DATABASES IN prd; ATTACH CLUSTER 'prod.toml' AS prod; DETACH CLUSTER prod; SHOW TABLES; ATTACH CLUSTER 'missing.toml' AS m",
        { baseDir: dir, continueOnError: true },
      )
      expect(outcomes.map((o) => o.ok)).toEqual([false, true, false, false, true, false, false])
      expect(errorOf(outcomes[0]).reason).toBe("NoCluster")
      expect(errorOf(outcomes[2]).detail).toBe("no cluster named 'prd' is attached; did you mean prod?")
      expect(errorOf(outcomes[3]).reason).toBe("AlreadyAttached")
      expect(errorOf(outcomes[5]).detail).toBe("no cluster is attached")
      const noFile = errorOf(outcomes[6])
      expect(noFile.reason).toBe("NoClusterFile")
      expect(noFile.detail).toBe(`the cluster file ${join(dir, "missing.toml")} does not exist`)
      expect(noFile.fix).toContain(`resolves against ${dir}`)
      expect(noFile.excerpt).toMatch(/\^{14}$/)
    }),
  )

  it.live("SHOW DATABASES / TABLES / CLONES without IN list every attached cluster, with a cluster column", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod"))
      yield* Effect.promise(() => writeCluster(dir, "dev"))
      const clone = recordingClone()
      const outcomes = yield* run(
        "ATTACH CLUSTER 'prod.toml' AS prod; ATTACH CLUSTER 'dev.toml' AS dev; SHOW DATABASES; SHOW TABLES IN dev.sales",
        {
          baseDir: dir,
          clone: clone.api,
        },
      )
      const dbs = outcomes[2].ok ? outcomes[2].result : undefined
      expect(dbs?.columns).toEqual(["cluster", "name", "tables"])
      expect(dbs?.rows).toEqual([
        { cluster: "prod", name: "db_of_prod", tables: 1 },
        { cluster: "dev", name: "db_of_dev", tables: 1 },
      ])
      expect(clone.calls.at(-1)?.op).toBe("listTables")
      expect(clusterArg(clone.calls.at(-1))).toBe("dev")
      expect(clone.calls.at(-1)?.args[1]).toBe("sales")
    }),
  )
})

describe("runner: clone statements map onto the clone workflows", () => {
  it.live("CREATE TABLE ... CLONE: live source with VERSION AS OF, OR REPLACE / IF NOT EXISTS, backup source by id or time", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "f.bin": "f" } }))
      yield* Effect.promise(() => writeCluster(dir, "dev", { create: false }))
      const clone = recordingClone()
      const attach = "ATTACH CLUSTER 'prod.toml' AS prod; ATTACH CLUSTER 'dev.toml' AS dev;"
      const dry = yield* run(`${attach} CREATE OR REPLACE TABLE dev.sales.o2 SHALLOW CLONE prod.sales.orders VERSION AS OF 2 DRY RUN`, {
        baseDir: dir,
        clone: clone.api,
      })
      expect(dry.map((o) => o.ok)).toEqual([true, true, true])
      // The DRY RUN did not create the target cluster.
      expect((yield* Effect.promise(() => readdir(dir))).some((n) => n.startsWith("dev-"))).toBe(false)
      const outcomes = yield* run(
        `${attach}
         BACKUP CLUSTER prod TO 'r';
         CREATE TABLE IF NOT EXISTS prod.sales.o3 CLONE sales.orders FROM 'r' AT TIMESTAMP '2100-01-01T00:00:00Z';
         CREATE TABLE prod.sales.o4 CLONE sales.orders FROM 'r' AT BACKUP '20250114_201500';
         CREATE DATABASE dev.sales2 SHALLOW CLONE prod.sales;`,
        { baseDir: dir, clone: clone.api },
      )
      expect(outcomes.map((o) => o.ok)).toEqual([true, true, true, true, true, true])
      const [shallow, fromTime, fromId, database] = clone.calls
      // biome-ignore lint/suspicious/noExplicitAny: request objects checked field by field
      const req = (c: Call) => c.args[0] as any
      expect(req(shallow).source.kind).toBe("live")
      expect(req(shallow).source.cluster.name).toBe("prod")
      expect(req(shallow).source.table).toEqual({ database: "sales", table: "orders" })
      expect(req(shallow).source.version).toBe(2)
      expect(req(shallow).target.cluster.name).toBe("dev")
      expect(req(shallow).target.table).toEqual({ database: "sales", table: "o2" })
      expect([req(shallow).mode, req(shallow).onExists, req(shallow).dryRun]).toEqual(["SHALLOW", "replace", true])
      expect(req(fromTime).source.kind).toBe("backup")
      expect(req(fromTime).source.repo.location).toContain(join(dir, "r"))
      expect(req(fromTime).source.at.toISOString()).toBe("2100-01-01T00:00:00.000Z")
      expect([req(fromTime).mode, req(fromTime).onExists, req(fromTime).dryRun]).toEqual(["DEEP", "ignore", false])
      expect(req(fromId).source.backupId).toBe("20250114_201500")
      expect(req(fromId).onExists).toBe("error")
      expect(req(database).source).toMatchObject({ kind: "live", database: "sales" })
      expect(req(database).target.database).toBe("sales2")
      const dbResult = outcomes[5].ok ? outcomes[5].result : undefined
      expect(dbResult?.rows).toHaveLength(2)
      expect(dbResult?.columns.slice(0, 6)).toEqual(["target", "source", "mode", "status", "source_table_size", "source_num_of_files"])
      // A clone into dev (not a dry run) created its directories.
      expect((yield* Effect.promise(() => readdir(dir))).filter((n) => n.startsWith("dev-")).sort()).toEqual(["dev-data", "dev-meta"])
    }),
  )

  it.live("RESTORE DATABASE / TABLE [AS] call the partial restore with the backup and names", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "f.bin": "f" } }))
      const clone = recordingClone()
      const outcomes = yield* run(
        "ATTACH CLUSTER 'prod.toml' AS prod; BACKUP CLUSTER prod TO 'r'; RESTORE TABLE sales.orders AS sales.orders_old FROM 'r' AT BACKUP 'b1' TO prod; RESTORE DATABASE sales FROM 'r' TO prod DRY RUN",
        { baseDir: dir, clone: clone.api },
      )
      expect(outcomes.map((o) => o.ok)).toEqual([true, true, true, true])
      // biome-ignore lint/suspicious/noExplicitAny: request objects checked field by field
      const [table, database] = clone.calls.map((c) => c.args[0] as any)
      expect(table).toMatchObject({
        backupId: "b1",
        database: "sales",
        table: "orders",
        as: { database: "sales", table: "orders_old" },
        dryRun: false,
      })
      expect(table.target.name).toBe("prod")
      expect(database).toMatchObject({ database: "sales", dryRun: true })
      expect(database.table).toBeUndefined()
      expect(database.backupId).toBeUndefined()
    }),
  )
})

describe("runner: failures and VACUUM", () => {
  it.live("the run stops at the first failing statement unless continueOnError; onOutcome sees each statement", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod"))
      const seen: Array<number> = []
      const script = "ATTACH CLUSTER 'prod.toml' AS prod; SHOW BACKUPS IN 'nowhere'; SHOW TABLES"
      const stopped = yield* run(script, { baseDir: dir, onOutcome: (o) => Effect.sync(() => void seen.push(o.index)) })
      expect(stopped.map((o) => o.ok)).toEqual([true, false])
      expect(seen).toEqual([1, 2])
      const all = yield* run(script, { baseDir: dir, continueOnError: true })
      expect(all.map((o) => o.ok)).toEqual([true, false, true])
      expect(all.map((o) => o.statement.text)).toEqual(["ATTACH CLUSTER 'prod.toml' AS prod", "SHOW BACKUPS IN 'nowhere'", "SHOW TABLES"])
    }),
  )

  it.live("a defect in a workflow becomes an internal error of that statement", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod"))
      const broken: CloneApi = { ...recordingClone().api, listTables: () => Effect.die(new Error("boom")) }
      const outcomes = yield* run("ATTACH CLUSTER 'prod.toml' AS prod; SHOW TABLES", { baseDir: dir, clone: broken })
      const e = errorOf(outcomes[1])
      expect([e.reason, e.detail]).toEqual(["Internal", "bendsave hit an internal error: boom"])
    }),
  )

  it.live("VACUUM BACKUPS: the options and DRY RUN reach the workflow as its policy", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "f.bin": "f" } }))
      const script =
        "ATTACH CLUSTER 'prod.toml' AS prod; BACKUP CLUSTER prod TO 'r'; VACUUM BACKUPS IN 'r' WITH (MAX_BACKUPS = 5, MIN_BACKUPS = 2, KEEP_WEEKLY = 3) DRY RUN"
      const requests: Array<VacuumRequest> = []
      const withVacuum = yield* run(script, {
        baseDir: dir,
        vacuum: (request) =>
          Effect.sync(() => {
            requests.push(request)
            return { backups_deleted: 0 }
          }),
      })
      expect(withVacuum.map((o) => o.ok)).toEqual([true, true, true])
      expect(requests).toHaveLength(1)
      expect(requests[0].policy).toEqual({ maxBackups: 5, minBackups: 2, keepWeekly: 3 })
      expect(requests[0].dryRun).toBe(true)
      expect(requests[0].repo.location).toContain(dir)
    }),
  )

  it.live(
    "VACUUM BACKUPS with core's vacuum: a policy that deletes nothing is refused in the statement's words; DRY RUN plans, then it deletes",
    () =>
      Effect.gen(function* () {
        const dir = yield* Effect.promise(tempDir)
        yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "f.bin": "f" } }))
        const first = yield* run("ATTACH CLUSTER 'prod.toml' AS prod; BACKUP CLUSTER prod TO 'r'", { baseDir: dir })
        expect(first.map((o) => o.ok)).toEqual([true, true])
        // Backup ids are seconds: the second backup needs a later second.
        yield* Effect.sleep("1100 millis")
        const outcomes = yield* run(
          `ATTACH CLUSTER 'prod.toml' AS prod;
         BACKUP CLUSTER prod TO 'r';
         VACUUM BACKUPS IN 'r' WITH (MIN_BACKUPS = 1);
         VACUUM BACKUPS IN 'r' WITH (MAX_BACKUPS = 1) DRY RUN;
         SHOW BACKUPS IN 'r';
         VACUUM BACKUPS IN 'r' WITH (MAX_BACKUPS = 1);
         SHOW BACKUPS IN 'r'`,
          { baseDir: dir, continueOnError: true },
        )
        expect(outcomes.map((o) => o.ok)).toEqual([true, true, false, true, true, true, true])
        const refused = errorOf(outcomes[2]) as unknown as { _tag: string; detail: string; fix: string }
        expect(refused._tag).toBe("VacuumError")
        expect(refused.detail).toBe("MIN_BACKUPS only protects backups; nothing says which to delete")
        expect(refused.fix).toContain("RETENTION_DAYS N")
        expect(refused.fix).not.toContain("--")
        const plan = outcomes[3].ok ? outcomes[3].result : undefined
        const oldest = outcomes[0].ok && first[1].ok ? (first[1].result.value as { backup_id: string }).backup_id : ""
        expect(plan?.rows[0]).toMatchObject({ dry_run: true, backups_total: 2, backups_kept: 1, backups_deleted: 1, deleted: oldest })
        expect(outcomes[4].ok ? outcomes[4].result.rows.length : -1).toBe(2)
        expect(outcomes[5].ok ? outcomes[5].result.rows[0] : undefined).toMatchObject({
          dry_run: false,
          backups_deleted: 1,
          manifests_deleted: 1,
        })
        const left = outcomes[6].ok ? outcomes[6].result.rows.map((r) => r.backup_id) : []
        expect(left).toHaveLength(1)
        expect(left).not.toContain(oldest)
      }),
  )
})

/** A ReplicationApi that records its calls and answers with a fixed round and an empty status. */
const recordingReplication = () => {
  const calls: Array<{ source: string; target: string; options: ReplicateOptions }> = []
  const api: ReplicationApi = {
    round: (source, target, options) =>
      Effect.sync(() => {
        calls.push({ source: source.name, target: target.name, options })
        return {
          stream: "cluster",
          scope: "cluster",
          dry_run: options.dryRun === true,
          round: 1,
          outcome: "completed",
          source_revision: 7,
          source_time: "2025-01-01T00:00:00.000Z",
          files_copied: 0,
          files_deleted: 0,
          keys_added: 0,
          keys_changed: 0,
          keys_removed: 0,
          errors: [],
          backup_id: null,
        } as unknown as ReplicationRoundResult
      }),
    status: (target) => Effect.succeed({ target: target.name, streams: [] }),
  }
  return { api, calls }
}

const resultValue = <A>(o: Outcome | undefined): A => {
  if (o === undefined || !o.ok) throw new Error(`expected a result, got ${JSON.stringify(o)}`)
  return o.result.value as A
}

describe("runner: REPLICATE and SHOW REPLICATION STATUS", () => {
  it.live(
    "with @bendsave/replicate on real local clusters: DRY RUN creates nothing, rounds copy the change, MAX_DELETE stops a round in the statement's words, DELETE = 'KEEP' keeps, status shows revision and lag",
    () =>
      Effect.gen(function* () {
        const dir = yield* Effect.promise(tempDir)
        yield* Effect.promise(() => writeCluster(dir, "prod", { files: { "db/t/a.bin": "aaaa", "db/t/b.bin": "bb", "c.bin": "c" } }))
        yield* Effect.promise(() => writeCluster(dir, "standby", { create: false }))
        const attach = "ATTACH CLUSTER 'prod.toml' AS prod; ATTACH CLUSTER 'standby.toml' AS standby;"
        const [, , plan] = yield* run(`${attach} REPLICATE CLUSTER FROM prod TO standby DRY RUN`, { baseDir: dir })
        assert.isTrue(plan.ok)
        if (plan.ok) {
          expect(plan.result.message).toBe("DRY RUN: replication plan of the cluster of prod to standby (nothing was changed)")
          expect(plan.result.rows[0]).toMatchObject({ status: "dry run", files_to_copy: 3, bytes_to_copy: 7, files_to_delete: 0 })
        }
        expect((yield* Effect.promise(() => readdir(dir))).sort()).toEqual(["prod-data", "prod-meta", "prod.toml", "standby.toml"])

        const [, , first] = yield* run(`${attach} REPLICATE CLUSTER FROM prod TO standby`, { baseDir: dir })
        assert.isTrue(first.ok)
        if (first.ok) {
          expect(first.result.record).toBe(true)
          expect(first.result.columns.slice(0, 4)).toEqual(["stream", "round", "status", "source_revision"])
          expect(first.result.rows[0]).toMatchObject({ stream: "cluster", round: 1, status: "completed", files_copied: 3, bytes_copied: 7 })
        }
        expect(yield* Effect.promise(() => readFile(join(dir, "standby-data", "db/t/a.bin"), "utf8"))).toBe("aaaa")

        // The source changes: one file changed, one deleted.
        yield* Effect.promise(() => writeFile(join(dir, "prod-data", "db/t/a.bin"), "AAAAAA"))
        yield* Effect.promise(() => rm(join(dir, "prod-data", "c.bin")))
        const stopped = yield* run(`${attach} REPLICATE CLUSTER FROM prod TO standby WITH (MAX_DELETE = 0)`, { baseDir: dir })
        const e = stopped[2].ok ? undefined : (stopped[2].error as { _tag: string; message: string; fix: string })
        expect(e?._tag).toBe("MaxDeleteExceededError")
        expect(e?.message).toContain("more than MAX_DELETE = 0")
        expect(e?.fix).toContain("WITH (MAX_DELETE = 1) or more")
        expect(e?.fix).toContain("WITH (DELETE = 'KEEP')")
        expect(e?.fix).not.toContain("--")
        // Nothing changed on the target.
        expect(yield* Effect.promise(() => readFile(join(dir, "standby-data", "db/t/a.bin"), "utf8"))).toBe("aaaa")

        const [, , kept] = yield* run(`${attach} REPLICATE CLUSTER FROM prod TO standby WITH (MAX_DELETE = 0, DELETE = 'KEEP')`, {
          baseDir: dir,
        })
        expect(resultValue<ReplicationRoundResult>(kept)).toMatchObject({
          files_copied: 1,
          bytes_copied: 6,
          files_deleted: 0,
          delete_mode: "keep",
        })
        expect(yield* Effect.promise(() => readFile(join(dir, "standby-data", "c.bin"), "utf8"))).toBe("c")
        const [, , mirrored] = yield* run(`${attach} REPLICATE CLUSTER FROM prod TO standby WITH (MAX_DELETE = 1)`, { baseDir: dir })
        const round = resultValue<ReplicationRoundResult>(mirrored)
        expect(round).toMatchObject({ files_copied: 0, files_deleted: 1, max_delete: 1 })
        expect((yield* Effect.promise(() => readdir(join(dir, "standby-data")))).includes("c.bin")).toBe(false)

        const [, , status] = yield* run(`${attach} SHOW REPLICATION STATUS FOR standby`, { baseDir: dir })
        assert.isTrue(status.ok)
        if (status.ok) {
          expect(status.result.message).toBe("1 replication stream into standby")
          expect(status.result.columns.slice(0, 5)).toEqual(["stream", "source", "last_revision", "replicated_at", "lag"])
          const row = status.result.rows[0]
          expect(row).toMatchObject({ stream: "cluster", source: "prod", last_revision: round.source_revision, outcome: "completed" })
          expect(row.last_round).toBe(round.round)
          expect(row.lag_ms as number).toBeGreaterThanOrEqual(0)
          expect(typeof row.lag).toBe("string")
        }
        // Without FOR: every attached cluster, with a cluster column (prod was never a target).
        const [, , all] = yield* run(`${attach} SHOW REPLICATION STATUS`, { baseDir: dir })
        assert.isTrue(all.ok)
        if (all.ok) expect(all.result.rows.map((r) => [r.cluster, r.stream])).toEqual([["standby", "cluster"]])
      }),
  )

  it.live("options and scopes map onto the round's options; VIA is opened (and created) only by a real round", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod"))
      yield* Effect.promise(() => writeCluster(dir, "standby"))
      const { api, calls } = recordingReplication()
      const outcomes = yield* run(
        `ATTACH CLUSTER 'prod.toml' AS prod; ATTACH CLUSTER 'standby.toml' AS standby;
         REPLICATE DATABASE sales FROM prod TO standby VIA 'repo' WITH (MAX_DELETE = 10, DELETE = 'keep', BANDWIDTH_LIMIT = '2MiB/s', PARALLELISM = 3) DRY RUN;
         REPLICATE TABLE sales.orders FROM prod TO standby VIA 'repo';
         REPLICATE CLUSTER FROM prod TO standby`,
        { baseDir: dir, replication: api },
      )
      expect(outcomes.map((o) => o.ok)).toEqual([true, true, true, true, true])
      expect(calls.map((c) => [c.source, c.target])).toEqual([
        ["prod", "standby"],
        ["prod", "standby"],
        ["prod", "standby"],
      ])
      expect(calls[0].options).toMatchObject({
        scope: { kind: "database", database: "sales" },
        maxDelete: 10,
        deleteMode: "keep",
        bandwidthLimit: 2 * 1024 * 1024,
        parallelism: 3,
        dryRun: true,
      })
      expect(calls[0].options.via).toBeUndefined()
      expect(calls[1].options).toMatchObject({
        scope: { kind: "table", database: "sales", table: "orders" },
        deleteMode: "mirror",
        dryRun: false,
      })
      expect(calls[1].options.via?.location).toContain(join(dir, "repo"))
      expect(calls[1].options.maxDelete).toBeUndefined()
      expect(calls[2].options.scope).toEqual({ kind: "cluster" })
    }),
  )

  it.live("names: an unknown cluster, a quoted name the table layout cannot have, two names for one cluster", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(tempDir)
      yield* Effect.promise(() => writeCluster(dir, "prod"))
      yield* Effect.promise(() => writeCluster(dir, "standby"))
      const attach = "ATTACH CLUSTER 'prod.toml' AS prod; ATTACH CLUSTER 'standby.toml' AS standby;\n"
      const unknown = errorOf((yield* run(`${attach}REPLICATE CLUSTER FROM prod TO stanby`, { baseDir: dir }))[2])
      expect([unknown.reason, unknown.detail]).toEqual(["UnknownCluster", "no cluster named 'stanby' is attached; did you mean standby?"])
      expect([unknown.line, unknown.column]).toEqual([2, 32])
      const bad = errorOf((yield* run(`${attach}REPLICATE DATABASE "Sales" FROM prod TO standby`, { baseDir: dir }))[2])
      expect(bad.reason).toBe("BadName")
      expect(bad.detail).toContain(`'"Sales"' is not a database of the table layout`)
      expect([bad.line, bad.column]).toEqual([2, 20])
      const same = yield* run(
        "ATTACH CLUSTER 'prod.toml' AS prod; ATTACH CLUSTER 'prod.toml' AS again; REPLICATE CLUSTER FROM prod TO again",
        {
          baseDir: dir,
        },
      )
      const e = same[2].ok ? undefined : (same[2].error as { _tag: string; reason: string; message: string; fix: string })
      expect([e?._tag, e?.reason]).toEqual(["ReplicationError", "SameCluster"])
      expect(e?.fix).toBe("attach another cluster (the standby) and name it after TO")
    }),
  )
})
