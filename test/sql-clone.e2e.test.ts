/**
 * `bendsave sql -f` end to end with the table-level statements: a Parquet
 * sample cluster (packages/cli/src/SampleCluster.ts) on a local cluster,
 * SHALLOW / DEEP / VERSION AS OF clones, an incremental DEEP re-clone, a
 * clone out of a backup after the source was dropped, DROP ... PURGE of a
 * cloned source, the catalog statements, and partial restore. After each
 * clone DuckDB (a Parquet reader we did not write) reads the files the
 * target's snapshot lists and must see the source's rows and aggregates.
 */
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3"
import { DuckDBInstance } from "@duckdb/node-api"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { generateSampleCluster } from "../packages/cli/src/SampleCluster.ts"
import { randomName, s3Server } from "./cloudServers.ts"
import {
  bendsave,
  type ClusterFiles,
  describeRun,
  exists,
  expectOk,
  exportMetaText,
  importMeta,
  type JsonObject,
  makeTempDir,
  type RunResult,
  removeTempDirs,
  writeBytes,
  writeCluster,
} from "./helpers.ts"

afterAll(removeTempDirs)

const jsonArray = (r: RunResult): Array<JsonObject> => {
  const lines = r.stdout.split("\n").filter((l) => l.trim() !== "")
  expect(lines, describeRun(r)).toHaveLength(1)
  return JSON.parse(lines[0])
}

/** The files of a table's current snapshot, as absolute paths in the cluster's data directory. */
const snapshotFiles = async (cluster: ClusterFiles, db: string, table: string): Promise<Array<string>> => {
  const key = `catalog/tables/${db}/${table}`
  const line = (await exportMetaText(cluster))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as { key: string; value: string })
    .find((e) => e.key === key)
  if (line === undefined) throw new Error(`no ${key} in ${cluster.toml}`)
  const entry = JSON.parse(line.value) as { snapshot: string }
  const snapshot = JSON.parse(await readFile(join(cluster.dataDir, entry.snapshot), "utf8")) as { files: Array<{ path: string }> }
  return snapshot.files.map((f) => join(cluster.dataDir, f.path))
}

let duck: Promise<DuckDBInstance> | undefined

/** Row count and aggregates of Parquet files, read by DuckDB. */
const aggregates = async (files: ReadonlyArray<string>, column: string): Promise<{ rows: number; sum: number; digest: string }> => {
  duck ??= DuckDBInstance.create(":memory:")
  const connection = await (await duck).connect()
  try {
    const reader = await connection.runAndReadAll(
      `SELECT count(*)::BIGINT, round(sum(${column}), 2)::DOUBLE, md5(string_agg(${column}::VARCHAR, ',' ORDER BY ${column}))
       FROM read_parquet([${files.map((f) => `'${f}'`).join(", ")}])`,
    )
    const [n, s, d] = reader.getRows()[0]
    return { rows: Number(n), sum: Number(s), digest: String(d) }
  } finally {
    connection.closeSync()
  }
}

const tableAggregates = async (cluster: ClusterFiles, db: string, table: string, column: string) =>
  aggregates(await snapshotFiles(cluster, db, table), column)

describe("bendsave sql: CLONE, DROP, SHOW, DESCRIBE and partial RESTORE on a Parquet sample cluster", () => {
  let dir: string
  let prod: ClusterFiles
  let dev: ClusterFiles
  let ordersBefore: { rows: number; sum: number; digest: string }
  let returnsBefore: { rows: number; sum: number; digest: string }

  beforeAll(async () => {
    dir = await makeTempDir("sql-clone")
    prod = await writeCluster(dir, { name: "prod", file: "prod.toml", meta: "prod-meta", data: "prod-data" })
    dev = await writeCluster(dir, { name: "dev", file: "dev.toml", meta: "dev-meta", data: "dev-data" })
    const sample = generateSampleCluster()
    for (const f of sample.files) await writeBytes(join(prod.dataDir, f.path), f.bytes)
    await importMeta(prod, sample.meta)
    ordersBefore = await tableAggregates(prod, "sales", "orders", "amount")
    returnsBefore = await tableAggregates(prod, "sales", "returns", "refund")
    expect(ordersBefore.rows).toBe(15_000)
    expect(returnsBefore.rows).toBe(1_400)
  })

  it("SHALLOW copies 0 bytes, DEEP copies every file into another cluster, a DEEP re-run copies nothing; DuckDB reads the targets", async () => {
    await writeFile(
      join(dir, "clone.sql"),
      `ATTACH CLUSTER 'prod.toml' AS prod;
ATTACH CLUSTER 'dev.toml' AS dev;
CREATE TABLE prod.sales.orders_shallow SHALLOW CLONE prod.sales.orders;
CREATE TABLE dev.sales.orders DEEP CLONE prod.sales.orders;
CREATE OR REPLACE TABLE dev.sales.orders DEEP CLONE prod.sales.orders;
CREATE TABLE IF NOT EXISTS dev.sales.orders CLONE prod.sales.orders;
CREATE TABLE prod.sales.orders_v1 SHALLOW CLONE prod.sales.orders VERSION AS OF 1;
CREATE TABLE dev.sales.orders_plan CLONE prod.sales.orders DRY RUN;
`,
    )
    const out = jsonArray(expectOk(await bendsave(["sql", "--json", "-f", join(dir, "clone.sql")], { cwd: "/" })))
    expect(out.map((o) => o.ok)).toEqual([true, true, true, true, true, true, true, true])
    const [shallow, deep, again, ifNotExists, v1, plan] = out.slice(2).map((o) => o.result)
    expect(shallow).toMatchObject({ mode: "SHALLOW", source_num_of_files: 4, num_copied_files: 0, copied_files_size: 0 })
    expect(shallow.source_table_size).toBeGreaterThan(0)
    expect(deep).toMatchObject({ mode: "DEEP", source_num_of_files: 4, num_copied_files: 4, num_removed_files: 0 })
    expect(deep.copied_files_size).toBe(shallow.source_table_size)
    expect(again).toMatchObject({ num_copied_files: 0, copied_files_size: 0, num_removed_files: 0 })
    expect(ifNotExists.status).toBe("skipped")
    expect(v1).toMatchObject({ source_num_of_files: 1, num_copied_files: 0 })
    expect(plan.status).toBe("planned")

    expect(await tableAggregates(prod, "sales", "orders_shallow", "amount")).toEqual(ordersBefore)
    expect(await tableAggregates(dev, "sales", "orders", "amount")).toEqual(ordersBefore)
    expect((await tableAggregates(prod, "sales", "orders_v1", "amount")).rows).toBe(4_000)
    // The deep clone's files are in dev's own storage.
    for (const f of await snapshotFiles(dev, "sales", "orders")) expect(f.startsWith(dev.dataDir)).toBe(true)
    // The DRY RUN wrote no table.
    expect(await exportMetaText(dev)).not.toContain("orders_plan")
  })

  it("DEEP CLONE from an fs cluster into an S3 cluster (Ceph); a re-run copies nothing; DuckDB reads the files from S3", async () => {
    const server = s3Server()
    const bucket = randomName("sql-clone")
    const s3 = new S3Client({
      region: "us-east-1",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      requestChecksumCalculation: "WHEN_REQUIRED",
    })
    try {
      await s3.send(new CreateBucketCommand({ Bucket: bucket }))
      const toml = join(dir, "lake.toml")
      await writeFile(
        toml,
        [
          'name = "lake"',
          "[meta]",
          'type = "local"',
          'path = "./lake-meta"',
          "[storage]",
          'type = "s3"',
          "[storage.s3]",
          `bucket = "${bucket}"`,
          'root = "/lake"',
          `endpoint_url = "${server.endpoint}"`,
          'region = "us-east-1"',
          `access_key_id = "${server.accessKeyId}"`,
          `secret_access_key = "${server.secretAccessKey}"`,
          "",
        ].join("\n"),
      )
      const script = join(dir, "to-s3.sql")
      await writeFile(
        script,
        "ATTACH CLUSTER 'prod.toml' AS prod;\nATTACH CLUSTER 'lake.toml' AS lake;\nCREATE OR REPLACE TABLE lake.sales.orders DEEP CLONE prod.sales.orders;\nCREATE OR REPLACE TABLE lake.sales.orders DEEP CLONE prod.sales.orders;\nSHALLOW_MISTAKE;",
      )
      // A syntax error anywhere: nothing runs, not even the first clone.
      const refused = await bendsave(["sql", "-f", script], { cwd: "/" })
      expect(refused.code).toBe(1)
      expect((await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).KeyCount ?? 0).toBe(0)
      await writeFile(script, (await readFile(script, "utf8")).replace("SHALLOW_MISTAKE;", ""))
      const out = jsonArray(expectOk(await bendsave(["sql", "--json", "-f", script], { cwd: "/" })))
      expect(out[2].result).toMatchObject({ mode: "DEEP", source_num_of_files: 4, num_copied_files: 4 })
      expect(out[3].result).toMatchObject({ num_copied_files: 0, copied_files_size: 0, num_removed_files: 0 })
      // The target's snapshot and data files, read back from S3 and checked by DuckDB.
      const lake = { toml, metaDir: join(dir, "lake-meta"), dataDir: join(dir, "lake-download") }
      const entry = JSON.parse(
        (await exportMetaText(lake))
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as { key: string; value: string })
          .find((e) => e.key === "catalog/tables/sales/orders")!.value,
      ) as { snapshot: string }
      const get = async (key: string) => {
        const o = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `lake/${key}` }))
        return new Uint8Array(await o.Body!.transformToByteArray())
      }
      const snapshot = JSON.parse(new TextDecoder().decode(await get(entry.snapshot))) as { files: Array<{ path: string }> }
      const locals: Array<string> = []
      for (const f of snapshot.files) {
        const local = join(lake.dataDir, f.path)
        await writeBytes(local, await get(f.path))
        locals.push(local)
      }
      expect(await aggregates(locals, "amount")).toEqual(ordersBefore)
    } finally {
      s3.destroy()
    }
  })

  it("catalog statements as text tables: SHOW DATABASES / TABLES / CLONES, DESCRIBE", async () => {
    const r = expectOk(
      await bendsave(
        [
          "sql",
          "-e",
          "ATTACH CLUSTER 'prod.toml' AS prod; SHOW DATABASES; SHOW TABLES IN sales; DESCRIBE TABLE sales.orders_shallow; SHOW CLONES OF sales.orders",
        ],
        { cwd: dir },
      ),
    )
    expect(r.stdout).toMatch(/^3 databases\nname +id +created_at +tables\n-+/m)
    expect(r.stdout).toMatch(/^sales +[0-9a-f-]{36} /m)
    expect(r.stdout).toMatch(/^database +table +files +bytes/m)
    expect(r.stdout).toMatch(/^sales +orders_shallow +4 /m)
    expect(r.stdout).toMatch(/^prod\.sales\.orders_shallow\nproperty +value\n/m)
    expect(r.stdout).toMatch(/^clone_of +\{.*"table":"orders"/m)
    expect(r.stdout).toMatch(/^sales\.orders_shallow +sales\.orders +SHALLOW/m)
  })

  it("clone from a backup after the source was dropped; DROP ... PURGE of a cloned source keeps the clone readable", async () => {
    await writeFile(
      join(dir, "recover.sql"),
      `ATTACH CLUSTER 'prod.toml' AS prod;
BACKUP CLUSTER prod TO './backups';
DROP TABLE sales.returns PURGE;
CREATE TABLE sales.returns CLONE sales.returns FROM './backups';
DROP TABLE sales.orders PURGE;
DROP TABLE IF EXISTS sales.orders;
`,
    )
    const out = jsonArray(expectOk(await bendsave(["sql", "--json", "-f", join(dir, "recover.sql")], { cwd: "/" })))
    expect(out.map((o) => o.ok)).toEqual([true, true, true, true, true, true])
    expect(out[3].result).toMatchObject({ mode: "DEEP", source_num_of_files: 2, num_copied_files: 2 })
    expect(out[3].result.source_backup).toBe(out[1].result.backup_id)
    expect(await tableAggregates(prod, "sales", "returns", "refund")).toEqual(returnsBefore)
    expect(out[4].result.dropped).toBe(true)
    expect(out[4].result.files_kept_for_clones).toBeGreaterThan(0)
    expect(out[5].result.dropped).toBe(false)
    // orders is gone; its shallow clone still reads every row.
    expect(await exportMetaText(prod)).not.toContain('"key":"catalog/tables/sales/orders"')
    expect(await tableAggregates(prod, "sales", "orders_shallow", "amount")).toEqual(ordersBefore)
  })

  it("RESTORE TABLE ... AS and RESTORE DATABASE into another cluster; DRY RUN writes nothing", async () => {
    const fresh = await writeCluster(dir, { name: "fresh", file: "fresh.toml", meta: "fresh-meta", data: "fresh-data" })
    const out = jsonArray(
      expectOk(
        await bendsave(
          [
            "sql",
            "--json",
            "-e",
            "ATTACH CLUSTER 'prod.toml' AS prod; ATTACH CLUSTER 'fresh.toml' AS fresh; RESTORE DATABASE ops FROM './backups' TO fresh DRY RUN; RESTORE TABLE sales.orders AS sales.orders_restored FROM './backups' TO prod; RESTORE DATABASE ops FROM './backups' TO fresh",
          ],
          { cwd: dir },
        ),
      ),
    )
    expect(out.map((o) => o.ok)).toEqual([true, true, true, true, true])
    expect(out[2].result.dry_run).toBe(true)
    expect(out[3].result.restored).toEqual(["sales.orders_restored"])
    expect(await tableAggregates(prod, "sales", "orders_restored", "amount")).toEqual(ordersBefore)
    expect(out[4].result.tables).toBe(3)
    expect(await exists(fresh.dataDir)).toBe(true)
    expect((await tableAggregates(fresh, "ops", "deploys", "duration_s")).rows).toBe(2_500)
  })

  it("clone errors are statement errors with the workflow's fix: an existing target, a missing source", async () => {
    const r = await bendsave(
      [
        "sql",
        "--continue-on-error",
        "-e",
        "ATTACH CLUSTER 'prod.toml' AS prod; CREATE TABLE sales.orders_shallow CLONE sales.customers; DESCRIBE sales.nope",
      ],
      { cwd: dir },
    )
    expect(r.code, describeRun(r)).toBe(1)
    expect(r.stderr).toContain("bendsave: error: statement 2 (line 1): ")
    expect(r.stderr).toContain("bendsave: error: statement 3 (line 1): ")
    expect(r.stderr.match(/ {2}fix: /g)?.length).toBe(2)
    expect(r.stderr).toContain("2 of 3 statements failed")
  })
})
