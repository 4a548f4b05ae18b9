/**
 * Clones on real servers (never mocked; a missing server fails the test):
 * DEEP clone from an fs cluster into a cluster on S3 (Ceph radosgw), a
 * server-side DEEP copy and a PURGE inside the S3 cluster, and clusters whose
 * meta lives in etcd (compare-and-swap by etcd transactions).
 */
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3"
import type { Cluster } from "@bendsave/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { randomName, s3Server } from "../../../test/cloudServers.ts"
import { etcdctlOk, etcdEndpoints } from "../../meta-etcd/test/etcdServers.ts"
import { cloneTable, describeTable, dropTable, listClones } from "../src/index.ts"
import {
  cleanup,
  commit,
  createTable,
  openTestCluster,
  randomSuffix,
  readCurrentSnapshot,
  readEntry,
  run,
  runError,
  tableAggregates,
  tempDir,
} from "./helpers.ts"

afterAll(cleanup)

const t = (database: string, table: string) => ({ database, table })

describe("DEEP clone from an fs cluster into an S3 cluster (Ceph)", () => {
  let local: Cluster
  let cloud: Cluster
  let s3: S3Client | undefined
  beforeAll(async () => {
    const server = s3Server()
    const bucket = randomName("clone")
    s3 = new S3Client({
      region: "us-east-1",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    })
    await s3.send(new CreateBucketCommand({ Bucket: bucket }))
    const dir = await tempDir("s3")
    local = await openTestCluster(dir, "local")
    cloud = await openTestCluster(dir, "cloud", {
      storage: [
        "[storage]",
        'type = "s3"',
        "[storage.s3]",
        `bucket = "${bucket}"`,
        'root = "/cluster"',
        `endpoint_url = "${server.endpoint}"`,
        'region = "us-east-1"',
        `access_key_id = "${server.accessKeyId}"`,
        `secret_access_key = "${server.secretAccessKey}"`,
        "",
      ].join("\n"),
    })
    await createTable(local, t("sales", "orders"), [500, 400, 300])
  })
  afterAll(() => s3?.destroy())

  it("copies every file to S3; DuckDB reads the same rows there; a re-run copies nothing; a change copies one file", async () => {
    const req = {
      source: { kind: "live" as const, cluster: local, table: t("sales", "orders") },
      target: { cluster: cloud, table: t("sales", "orders") },
      mode: "DEEP" as const,
      onExists: "replace" as const,
      dryRun: false,
    }
    const first = await run(cloneTable(req))
    expect(first).toMatchObject({ status: "cloned", num_copied_files: 3, source: "local.sales.orders" })
    expect(first.copied_files_size).toBe(first.source_table_size)
    expect(await tableAggregates(cloud, t("sales", "orders"))).toEqual(await tableAggregates(local, t("sales", "orders")))
    expect((await tableAggregates(cloud, t("sales", "orders"))).rows).toBe(1200)

    expect(await run(cloneTable(req))).toMatchObject({ num_copied_files: 0, num_removed_files: 0 })
    await commit(local, t("sales", "orders"), { appendRows: 100 })
    const sync = await run(cloneTable(req))
    expect(sync).toMatchObject({ num_copied_files: 1, num_removed_files: 0, source_num_of_files: 4 })
    expect(await tableAggregates(cloud, t("sales", "orders"))).toEqual(await tableAggregates(local, t("sales", "orders")))
  })

  it("SHALLOW from fs to S3 is refused (no shared storage root)", async () => {
    const e = await runError(
      cloneTable({
        source: { kind: "live", cluster: local, table: t("sales", "orders") },
        target: { cluster: cloud, table: t("sales", "shallow") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(e).toMatchObject({ reason: "ShallowNotPossible" })
  })

  it("inside the S3 cluster: SHALLOW references, DEEP copies server-side, PURGE of the source keeps the shallow clone readable", async () => {
    await run(
      cloneTable({
        source: { kind: "live", cluster: cloud, table: t("sales", "orders") },
        target: { cluster: cloud, table: t("sales", "orders_dev") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    const deep = await run(
      cloneTable({
        source: { kind: "live", cluster: cloud, table: t("sales", "orders") },
        target: { cluster: cloud, table: t("sales", "orders_copy") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(deep.num_copied_files).toBe(4)
    const expected = await tableAggregates(cloud, t("sales", "orders"))
    const source = await run(describeTable(cloud, t("sales", "orders")))
    const dropped = await run(dropTable(cloud, t("sales", "orders"), { ifExists: false, purge: true }))
    expect(dropped).toMatchObject({ dropped: true, files_kept_for_clones: 4 })
    expect(dropped.files_deleted).toBeGreaterThan(0) // the source's snapshot objects
    expect(await tableAggregates(cloud, t("sales", "orders_dev"))).toEqual(expected)
    expect(await tableAggregates(cloud, t("sales", "orders_copy"))).toEqual(expected)
    const left = await run(cloud.storage.list(source.location).pipe(Stream.runCollect))
    expect([...left].every((i) => i.key.includes("/_d/"))).toBe(true)
  })
})

describe("clusters with etcd meta", () => {
  const prefix = `/clone-test-${randomSuffix()}/`
  let endpoints: string
  let c: Cluster
  beforeAll(async () => {
    ;({ endpoints } = etcdEndpoints())
    const dir = await tempDir("etcd")
    c = await openTestCluster(dir, "etcdc", { meta: `[meta]\ntype = "etcd"\nendpoints = ["${endpoints}"]\nprefix = "${prefix}"\n` })
    await createTable(c, t("ops", "incidents"), [300, 200])
  })
  afterAll(() => {
    if (endpoints) etcdctlOk(endpoints, ["del", prefix, "--prefix"])
  })

  it("SHALLOW and DEEP clones commit through etcd; DuckDB reads the same rows; SHOW CLONES lists them", async () => {
    const s = await run(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("ops", "incidents") },
        target: { cluster: c, table: t("ops", "review") },
        mode: "SHALLOW",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(s.num_copied_files).toBe(0)
    const d = await run(
      cloneTable({
        source: { kind: "live", cluster: c, table: t("ops", "incidents") },
        target: { cluster: c, table: t("archive", "incidents") },
        mode: "DEEP",
        onExists: "error",
        dryRun: false,
      }),
    )
    expect(d.num_copied_files).toBe(2)
    const expected = await tableAggregates(c, t("ops", "incidents"))
    expect(await tableAggregates(c, t("ops", "review"))).toEqual(expected)
    expect(await tableAggregates(c, t("archive", "incidents"))).toEqual(expected)
    expect((await run(listClones(c, t("ops", "incidents")))).map((x) => x.clone).sort()).toEqual(["archive.incidents", "ops.review"])
    // What etcd holds, read with etcdctl (not through our driver).
    const raw = etcdctlOk(endpoints, ["get", `${prefix}catalog/tables/ops/review`, "--print-value-only"])
      .toString()
      .trim()
    expect(JSON.parse(raw).clone_of).toMatchObject({ table: "incidents", mode: "SHALLOW" })
  })

  it("two concurrent clones onto one target: one wins the etcd compare-and-swap, the other fails", async () => {
    const clone = (table: string) =>
      Effect.exit(
        cloneTable({
          source: { kind: "live", cluster: c, table: t("ops", table) },
          target: { cluster: c, table: t("ops", "race") },
          mode: "SHALLOW",
          onExists: "error",
          dryRun: false,
        }),
      )
    const results = await run(Effect.all([clone("incidents"), clone("review"), clone("incidents")], { concurrency: 3 }))
    expect(results.filter((r) => r._tag === "Success")).toHaveLength(1)
    for (const r of results) {
      if (r._tag === "Failure") {
        const e = Cause.findErrorOption(r.cause)
        expect(Option.isSome(e) && e.value._tag === "CloneError" && e.value.reason).toBe("TableExists")
      }
    }
    const entry = await readEntry(c, t("ops", "race"))
    expect((await readCurrentSnapshot(c, t("ops", "race"))).files).toHaveLength(2)
    expect(entry?.clone_of?.table === "incidents" || entry?.clone_of?.table === "review").toBe(true)
  })
})
