/**
 * End to end across backends and meta drivers, through the CLI, against the
 * real servers of the vitest global setup (etcd, Ceph radosgw for S3,
 * Azurite, the GCS emulator): an etcd + S3 cluster replicated to a local +
 * fs cluster and back to another etcd + S3 cluster, and an Azure cluster
 * replicated to a GCS cluster, each over two rounds with a change between
 * them. After each round the target equals the source (objects byte for
 * byte, meta exactly; reserved prefixes excluded) and DuckDB reads the
 * replicated tables.
 */
import { randomBytes } from "node:crypto"
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3"
import { BlobServiceClient } from "@azure/storage-blob"
import { Storage } from "@google-cloud/storage"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { generateSampleCluster, mutateSampleCluster, type SampleCluster } from "../packages/cli/src/SampleCluster.ts"
import { etcdEndpoints } from "../packages/meta-etcd/test/etcdServers.ts"
import { azuriteServer, gcsServer, randomName, s3Server } from "./cloudServers.ts"
import { bendsaveJson, makeTempDir, removeTempDirs } from "./helpers.ts"
import { dumpCluster, readTablesWithDuckDB, writeState } from "./replicateHelpers.ts"

afterAll(removeTempDirs)

const toml = (name: string, meta: ReadonlyArray<string>, storage: ReadonlyArray<string>) =>
  [`name = "${name}"`, "[meta]", ...meta, "[storage]", ...storage, ""].join("\n")

describe("replicate across backends and meta drivers", () => {
  let dir: string
  let s3: S3Client
  const bucket = randomName("repl-s3")
  const container = randomName("repl-az")
  const gcsBucket = randomName("repl-gcs")
  const run = randomBytes(4).toString("hex")
  const files: Record<string, string> = {}

  const s3Storage = (root: string) => {
    const s = s3Server()
    return [
      'type = "s3"',
      "[storage.s3]",
      `bucket = "${bucket}"`,
      `root = "/${root}"`,
      `endpoint_url = "${s.endpoint}"`,
      'region = "us-east-1"',
      `access_key_id = "${s.accessKeyId}"`,
      `secret_access_key = "${s.secretAccessKey}"`,
    ]
  }
  const etcdMeta = (prefix: string) => [
    'type = "etcd"',
    `endpoints = ["${etcdEndpoints().endpoints}"]`,
    `prefix = "/repl-${run}/${prefix}/"`,
  ]
  const localMeta = (path: string) => ['type = "local"', `path = "./${path}"`]

  beforeAll(async () => {
    dir = await makeTempDir("replicate-cloud")
    await mkdir(join(dir, "scratch"), { recursive: true })
    const server = s3Server()
    s3 = new S3Client({
      region: "us-east-1",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    })
    await s3.send(new CreateBucketCommand({ Bucket: bucket }))
    await BlobServiceClient.fromConnectionString(azuriteServer().connectionString).getContainerClient(container).create()
    // The GCS emulator (firebase-tools) has every bucket already; check it answers.
    await new Storage({ apiEndpoint: gcsServer().emulatorHost, projectId: "demo-test" }).bucket(gcsBucket).getFiles({ maxResults: 1 })
    const write = async (name: string, text: string) => {
      files[name] = join(dir, `${name}.toml`)
      await writeFile(files[name], text)
    }
    await write("etcd-s3", toml("prod", etcdMeta("prod"), s3Storage("prod")))
    await write("local-fs", toml("standby", localMeta("standby-meta"), ['type = "fs"', "[storage.fs]", 'data_path = "./standby-data"']))
    await write("etcd-s3-back", toml("back", etcdMeta("back"), s3Storage("back")))
    const az = azuriteServer().connectionString
    const account = /AccountName=([^;]+)/.exec(az)![1]
    const key = /AccountKey=([^;]+)/.exec(az)![1]
    const endpoint = /BlobEndpoint=([^;]+)/.exec(az)![1]
    await write(
      "azure",
      toml("az", localMeta("az-meta"), [
        'type = "azblob"',
        "[storage.azblob]",
        `container = "${container}"`,
        'root = "/az"',
        `endpoint_url = "${endpoint}"`,
        `account_name = "${account}"`,
        `account_key = "${key}"`,
      ]),
    )
    await write(
      "gcs",
      toml("gcs", localMeta("gcs-meta"), [
        'type = "gcs"',
        "[storage.gcs]",
        `bucket = "${gcsBucket}"`,
        'root = "/standby"',
        `endpoint_url = "${gcsServer().emulatorHost}"`,
      ]),
    )
  })
  afterAll(() => s3?.destroy())

  /** Two rounds from `from` to `to` with a change between them; both rounds leave the target equal to the source. */
  const twoRounds = async (from: string, to: string, seed: number, local: string | undefined, seedSource = true) => {
    let state: SampleCluster = generateSampleCluster({ seed })
    if (seedSource) await writeState(from, state, { meta: { "settings/a": "1" } })
    const r1 = await bendsaveJson(["replicate", "--from", from, "--to", to], { cwd: dir, timeoutMs: 300_000 })
    expect(r1.outcome).toBe("completed")
    expect(r1.source_manifest_hash).toBe(r1.target_manifest_hash)
    expect(await dumpCluster(to)).toEqual(await dumpCluster(from))
    await readTablesWithDuckDB(to, local, join(dir, "scratch"))
    if (!seedSource) return r1
    const mutation = mutateSampleCluster(state, { seed: seed + 1 })
    state = mutation.state
    await writeState(from, state, { meta: { "settings/a": "2", "settings/b": "new" } })
    const r2 = await bendsaveJson(["replicate", "--from", from, "--to", to], { cwd: dir, timeoutMs: 300_000 })
    expect(r2).toMatchObject({ round: 2, files_copied: mutation.added.length, files_deleted: mutation.removedPaths.length, keys_added: 2 })
    expect(r2.bytes_copied).toBe(mutation.added.reduce((n, f) => n + f.bytes.length, 0))
    expect(await dumpCluster(to)).toEqual(await dumpCluster(from))
    await readTablesWithDuckDB(to, local, join(dir, "scratch"))
    return r2
  }

  it("etcd + S3 → local + fs, then local + fs → another etcd + S3", async () => {
    await twoRounds(files["etcd-s3"], files["local-fs"], 21, join(dir, "standby-data"))
    const back = await twoRounds(files["local-fs"], files["etcd-s3-back"], 0, undefined, false)
    expect(back.files_copied).toBeGreaterThan(0)
    const status = await bendsaveJson(["replicate", "status", "--to", files["etcd-s3-back"]], { cwd: dir })
    expect(status.streams[0]).toMatchObject({ stream: "cluster", source: { name: "standby" }, last_round: { outcome: "completed" } })
  })

  it("Azure → GCS", async () => {
    await twoRounds(files.azure, files.gcs, 31, undefined)
    const status = await bendsaveJson(["replicate", "status", "--to", files.gcs], { cwd: dir })
    expect(status.streams[0].last_success.round).toBe(2)
    expect(status.streams[0].lag_ms).toBeGreaterThanOrEqual(0)
  })
})
