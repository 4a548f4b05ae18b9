/**
 * End to end across clouds, through the CLI as a subprocess, against the real
 * servers of the vitest global setup (Ceph radosgw for S3, Azurite, the GCS
 * emulator): a cluster whose storage is on S3 is backed up into a repository
 * on Azure, on S3 and on GCS, and each backup is restored into a new cluster
 * whose storage is on GCS; the restored objects must equal the source byte
 * for byte, and the meta keyspace too. Secrets never appear in the output.
 */
import { createHash, randomBytes } from "node:crypto"
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import { BlobServiceClient } from "@azure/storage-blob"
import { Storage } from "@google-cloud/storage"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { azuriteServer, gcsServer, randomName, s3Server } from "./cloudServers.ts"
import { bendsave, bendsaveJson, describeRun, exportMetaText, importMeta, type MetaInput, MiB, makeTempDir, removeTempDirs } from "./helpers.ts"

afterAll(removeTempDirs)

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** The source cluster's objects: a multi-block file, an empty one, nested and non-ASCII names. */
const sourceObjects = (): Map<string, Buffer> =>
  new Map([
    ["1/10/_b/part-0001.parquet", randomBytes(20 * MiB + 12345)],
    ["1/10/_b/part-0002.parquet", randomBytes(3 * MiB)],
    ["1/10/_ss/snapshot_v1.json", Buffer.from('{"version":1,"files":[]}')],
    ["1/11/données été/ünïcødé 😀.bin", randomBytes(70_000)],
    ["2/empty", Buffer.alloc(0)],
    ["2/a b+c%d", randomBytes(10)],
  ])

const meta: Array<MetaInput> = [
  { key: "catalog/databases/sales", value: '{"id":"1"}' },
  { key: "catalog/tables/sales/orders", value: '{"id":"10","location":"1/10/"}' },
  { key: Buffer.from([0xff, 0x00, 0x01]), value: Buffer.from([0xc3, 0x28]) },
]

describe("S3 cluster → Azure / S3 / GCS repository → GCS cluster", () => {
  let dir: string
  let env: Record<string, string>
  let s3: S3Client
  const s3Bucket = randomName("e2e-cluster")
  const s3RepoBucket = randomName("e2e-repo")
  const gcsBucket = randomName("e2e-gcs")
  const container = randomName("e2e-repo")
  const source = sourceObjects()
  let sourceToml: string
  let repos: Array<{ readonly name: string; readonly url: string }>

  const gcsObjects = async (root: string) => {
    const storage = new Storage({ apiEndpoint: gcsServer().emulatorHost, projectId: "demo-test" })
    const [files] = await storage.bucket(gcsBucket).getFiles({ prefix: `${root}/` })
    const out = new Map<string, string>()
    for (const f of files) out.set(f.name.slice(root.length + 1), sha((await f.download())[0]))
    return out
  }

  beforeAll(async () => {
    dir = await makeTempDir("cloud")
    const server = s3Server()
    s3 = new S3Client({
      region: "us-east-1",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      requestChecksumCalculation: "WHEN_REQUIRED",
    })
    await s3.send(new CreateBucketCommand({ Bucket: s3Bucket }))
    await s3.send(new CreateBucketCommand({ Bucket: s3RepoBucket }))
    await BlobServiceClient.fromConnectionString(azuriteServer().connectionString).getContainerClient(container).create()
    for (const [key, bytes] of source) await s3.send(new PutObjectCommand({ Bucket: s3Bucket, Key: `prod/${key}`, Body: bytes }))
    // Credentials of the repositories come from the environment, the way the SDKs expect them.
    env = {
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AZURE_STORAGE_CONNECTION_STRING: azuriteServer().connectionString,
    }
    sourceToml = join(dir, "source.toml")
    await writeFile(
      sourceToml,
      [
        'name = "prod"',
        "[meta]",
        'type = "local"',
        'path = "./source-meta"',
        "[storage]",
        'type = "s3"',
        "[storage.s3]",
        `bucket = "${s3Bucket}"`,
        'root = "/prod"',
        `endpoint_url = "${server.endpoint}"`,
        'region = "us-east-1"',
        `access_key_id = "${server.accessKeyId}"`,
        `secret_access_key = "${server.secretAccessKey}"`,
        "",
      ].join("\n"),
    )
    await importMeta({ toml: sourceToml, metaDir: join(dir, "source-meta"), dataDir: "" }, meta)
    repos = [
      { name: "Azure", url: `azblob://${container}/backups/prod` },
      { name: "S3", url: `s3://${s3RepoBucket}/backups/prod?endpoint=${server.endpoint}&region=us-east-1` },
      { name: "GCS", url: `gs://${gcsBucket}/backups/prod?endpoint=${gcsServer().emulatorHost}` },
    ]
  })
  afterAll(() => s3?.destroy())

  const secrets = () => [s3Server().secretAccessKey, /AccountKey=([^;]+)/.exec(azuriteServer().connectionString)![1]]
  const expectNoSecret = (text: string) => {
    for (const secret of secrets()) expect(text).not.toContain(secret)
  }

  for (const repoName of ["Azure", "S3", "GCS"] as const) {
    it(`repository on ${repoName}: backup, no-change incremental, verify --read-data, restore into a GCS cluster byte for byte`, async () => {
      const repo = repos.find((r) => r.name === repoName)!.url
      const full = await bendsaveJson(["backup", "--from", sourceToml, "--to", repo], { cwd: dir, env, timeoutMs: 300_000 })
      expect(full.backup_type).toBe("full")
      expect(full.files_total).toBe(source.size)
      expect(full.bytes_total).toBe([...source.values()].reduce((n, b) => n + b.length, 0))
      expect(full.meta_keys).toBe(meta.length)

      const again = await bendsaveJson(["backup", "--from", sourceToml, "--to", repo], { cwd: dir, env, timeoutMs: 300_000 })
      expect(again).toMatchObject({ backup_type: "incremental", files_reused: source.size, files_read: 0, blocks_uploaded: 0 })

      const verify = await bendsave(["verify", repo, "--read-data"], { cwd: dir, env, timeoutMs: 300_000 })
      expect(verify.code, describeRun(verify)).toBe(0)
      expect(verify.stdout).toContain("verify: OK")

      const root = `restored-from-${repoName.toLowerCase()}`
      const targetToml = join(dir, `target-${repoName}.toml`)
      await writeFile(
        targetToml,
        [
          `name = "prod-copy"`,
          "[meta]",
          'type = "local"',
          `path = "./target-meta-${repoName}"`,
          "[storage]",
          'type = "gcs"',
          "[storage.gcs]",
          `bucket = "${gcsBucket}"`,
          `root = "/${root}"`,
          `endpoint_url = "${gcsServer().emulatorHost}"`,
          "",
        ].join("\n"),
      )
      const plan = await bendsave(["restore", "--from", repo, "--to", targetToml], { cwd: dir, env, timeoutMs: 300_000 })
      expect(plan.code, describeRun(plan)).toBe(0)
      expect(plan.stdout).toContain(`files to write:    ${source.size}`)
      expect((await gcsObjects(root)).size).toBe(0)

      const restored = await bendsave(["restore", "--from", repo, "--to", targetToml, "--confirm"], { cwd: dir, env, timeoutMs: 300_000 })
      expect(restored.code, describeRun(restored)).toBe(0)
      const objects = await gcsObjects(root)
      expect(Object.fromEntries(objects)).toEqual(Object.fromEntries([...source].map(([k, v]) => [k, sha(v)])))
      expect(await exportMetaText({ toml: targetToml })).toBe(await exportMetaText({ toml: sourceToml }))

      // Restoring again finds everything identical and writes nothing.
      const second = await bendsaveJson(["restore", "--from", repo, "--to", targetToml, "--confirm"], { cwd: dir, env, timeoutMs: 300_000 })
      expect(second).toMatchObject({ files_written: 0, files_deleted: 0 })

      for (const run of [plan, restored, verify]) expectNoSecret(run.stdout + run.stderr)
    })
  }

  it("list of an S3 repository shows the full and the incremental backup", async () => {
    const list = await bendsave(["list", repos.find((r) => r.name === "S3")!.url], { cwd: dir, env })
    expect(list.code, describeRun(list)).toBe(0)
    expect(list.stdout.match(/\b(full|incr)/g)?.length).toBe(2)
  })

  it("a wrong bucket in the cluster file is a clear error naming the bucket, the server and the fix; no secret shown", async () => {
    const wrong = join(dir, "wrong-bucket.toml")
    const text = await readFile(sourceToml, "utf8")
    await writeFile(wrong, text.replace(`bucket = "${s3Bucket}"`, 'bucket = "no-such-bucket-e2e"'))
    const run = await bendsave(["backup", "--from", wrong, "--to", join(dir, "unused-repo")], { cwd: dir, env })
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/bucket 'no-such-bucket-e2e' on the S3 server at http:\/\/127\.0\.0\.1:\d+ \(region us-east-1\) does not exist/)
    expect(run.stderr).toContain("fix:")
    expectNoSecret(run.stdout + run.stderr)
  })

  it("a wrong secret in the cluster file is PermissionDenied that says so, without printing it", async () => {
    const wrong = join(dir, "wrong-secret.toml")
    const text = await readFile(sourceToml, "utf8")
    await writeFile(wrong, text.replace(`secret_access_key = "${s3Server().secretAccessKey}"`, 'secret_access_key = "WRONG-SECRET-VALUE"'))
    const run = await bendsave(["backup", "--from", wrong, "--to", join(dir, "unused-repo"), "--json"], { cwd: dir, env })
    expect(run.code).toBe(1)
    const error = JSON.parse(run.stdout).error
    expect(error.message).toContain("secret key is wrong")
    expect(error.fix).toContain("secret_access_key")
    expect(run.stdout + run.stderr).not.toContain("WRONG-SECRET-VALUE")
  })

  it("an unknown option in [storage.s3] names the key and lists the known ones", async () => {
    const bad = join(dir, "bad-option.toml")
    const text = await readFile(sourceToml, "utf8")
    await writeFile(bad, text.replace('region = "us-east-1"', 'regoin = "us-east-1"'))
    const run = await bendsave(["backup", "--from", bad, "--to", join(dir, "unused-repo")], { cwd: dir, env })
    expect(run.code).toBe(1)
    expect(run.stderr).toContain("key 'storage.s3.regoin': unknown option")
    expect(run.stderr).toContain("endpoint_url")
    expectNoSecret(run.stdout + run.stderr)
  })

  it("the S3 objects of the source are untouched by the backups", async () => {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: s3Bucket, Prefix: "prod/" }))
    expect(listed.Contents?.length).toBe(source.size)
  })
})
