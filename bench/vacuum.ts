/**
 * Vacuum benchmark: a synthetic repository of 100 000 blocks and 200 daily
 * backups, vacuumed by a retention policy; reports the time, the peak memory
 * and the number of block reads (file data blocks must be 0: vacuum reads
 * manifests, checkpoints and file pages only).
 *
 * The repository is built fast, without a cluster: tiny blocks written
 * directly (fs: plain files; S3: puts), file pages and manifests written with
 * core's own writers (makeFilePageWriter, makeMetaPageWriter,
 * commitManifest). A cluster of 20 000 one-block files; each backup after the
 * first rewrites 400 consecutive files (rotating through the cluster), so
 * 20 000 + 199 × 400 = 99 600 file blocks plus the pages.
 *
 * Each measurement runs the vacuum in a child process (this file with
 * `--child`) that wraps the store in a counter of GETs, so its peak RSS
 * (process.resourceUsage().maxRSS) is the vacuum's alone.
 *
 *   npx node bench/vacuum.ts                 (fs repository under BENCH_DIR)
 *   BENCH_VACUUM_S3=1 npx node bench/vacuum.ts   (also on S3 at BENDSAVE_S3_ENDPOINT)
 *
 * Environment: BENCH_DIR (default bench/.work), BENCH_VACUUM_FILES (20000),
 * BENCH_VACUUM_BACKUPS (200), BENCH_VACUUM_CHANGED (400), BENCH_VACUUM_S3,
 * BENDSAVE_S3_ENDPOINT / BENDSAVE_S3_ACCESS_KEY / BENDSAVE_S3_SECRET_KEY.
 * Markdown summary on stdout, progress on stderr, figures in
 * <work>/vacuum-results.json. Exits non-zero when something broke (a data
 * block read, a repository that does not verify afterwards).
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  BackupManifestSchema,
  BackupType,
  type BlobStore,
  backupIdOf,
  commitManifest,
  makeBackupFile,
  makeFilePageWriter,
  makeMetaPageWriter,
  openRepositoryAt,
  putBlock,
  type Repository,
  registerStorageDriverLoader,
  vacuum,
  verify,
} from "@bendsave/core"
import { create } from "@bufbuild/protobuf"
import { timestampFromMs } from "@bufbuild/protobuf/wkt"
import * as Effect from "effect/Effect"

registerStorageDriverLoader("s3", () => import("@bendsave/drivers-s3"))

const repoRoot = path.resolve(import.meta.dirname, "..")
const env = (name: string): string | undefined => process.env[name]
const num = (name: string, fallback: number) => {
  const raw = env(name)
  const value = raw === undefined || raw === "" ? fallback : Number(raw)
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`error: ${name}=${raw} is not a positive whole number`)
    process.exit(2)
  }
  return value
}
const log = (line: string) => process.stderr.write(`[bench-vacuum] ${line}\n`)
const DAY = 86_400_000
/** The policy of the benchmark: 60 days, at least 10 backups. */
const POLICY = { retentionDays: 60, minBackups: 10 }

const run = <A, E>(effect: Effect.Effect<A, E, never>) => Effect.runPromise(effect)
const scoped = <A, E>(effect: Effect.Effect<A, E, import("effect/Scope").Scope>) => Effect.runPromise(Effect.scoped(effect))

const blockOf = (n: number) => {
  const bytes = Buffer.from(`block ${n}`)
  return { id: createHash("sha256").update(bytes).digest("hex"), bytes }
}

interface Built {
  readonly blocks: number
  readonly pages: number
  readonly backups: number
  readonly seconds: number
  readonly now: number
}

/** Writes the synthetic repository; returns the ids of every page (the only data/ objects vacuum may read). */
const build = async (repo: Repository, fsDataDir: string | undefined, pageIdsFile: string): Promise<Built> => {
  const files = num("BENCH_VACUUM_FILES", 20_000)
  const backups = num("BENCH_VACUUM_BACKUPS", 200)
  const changed = num("BENCH_VACUUM_CHANGED", 400)
  const started = Date.now()
  const now = Date.now()
  // The version of each file: block number (file i at version v = block i + v * files).
  const version = new Array<number>(files).fill(0)
  let next = 0
  const pending: Array<{ id: string; bytes: Buffer }> = []
  let written = 0
  const flush = async () => {
    const batch = pending.splice(0)
    if (fsDataDir !== undefined) {
      for (let i = 0; i < batch.length; i += 256) {
        await Promise.all(batch.slice(i, i + 256).map((b) => fs.promises.writeFile(path.join(fsDataDir, b.id), b.bytes)))
      }
    } else {
      await run(Effect.forEach(batch, (b) => putBlock(repo, b.id, b.bytes), { concurrency: 32, discard: true }))
    }
    written += batch.length
  }
  const blockIdOfFile: Array<string> = new Array(files)
  const blockSizeOfFile: Array<number> = new Array(files)
  const pathOf = (i: number) => `db/t${String(i % 50).padStart(2, "0")}/part-${String(i).padStart(6, "0")}.parquet`
  const order = Array.from({ length: files }, (_, i) => i).sort((a, b) => (pathOf(a) < pathOf(b) ? -1 : 1))
  for (let i = 0; i < files; i++) {
    const b = blockOf(next++)
    blockIdOfFile[i] = b.id
    blockSizeOfFile[i] = b.bytes.length
    pending.push(b)
    version[i] = 0
  }
  await flush()
  const pageIds = new Set<string>()
  for (let k = 0; k < backups; k++) {
    if (k > 0) {
      const from = ((k - 1) * changed) % files
      for (let j = 0; j < changed; j++) {
        const i = (from + j) % files
        const b = blockOf(next++)
        blockIdOfFile[i] = b.id
        blockSizeOfFile[i] = b.bytes.length
        version[i]++
        pending.push(b)
      }
      await flush()
    }
    const time = now - (backups - k) * DAY
    const fileWriter = makeFilePageWriter(repo)
    await run(
      fileWriter.addAll(
        order.map((i) =>
          makeBackupFile({
            path: pathOf(i),
            size: blockSizeOfFile[i],
            etag: `v${version[i]}`,
            lastModified: 0,
            blocks: [{ id: blockIdOfFile[i], size: blockSizeOfFile[i] }],
          }),
        ),
      ),
    )
    const filePages = await run(fileWriter.finish)
    const metaWriter = makeMetaPageWriter(repo)
    await run(metaWriter.add({ key: Buffer.from("catalog/revision"), value: Buffer.from(String(k)) }))
    const metaPages = await run(metaWriter.finish)
    for (const p of [...filePages, ...metaPages]) pageIds.add(p.blockId)
    const id = backupIdOf(time)
    await run(
      commitManifest(
        repo,
        create(BackupManifestSchema, {
          formatVersion: 1,
          minReaderVersion: 1,
          backupMeta: {
            backupId: id,
            backupType: k === 0 ? BackupType.FULL : BackupType.INCREMENTAL,
            toolVersion: "bench",
            clusterName: "bench",
            startedAt: timestampFromMs(time),
            completedAt: timestampFromMs(time + 1000),
          },
          metasrv: { pages: metaPages, keyCount: 1n },
          storage: { pages: filePages, fileCount: BigInt(files) },
        }),
      ),
    )
    if (k % 20 === 0) log(`built backup ${k + 1}/${backups} (${written} blocks)`)
  }
  fs.writeFileSync(pageIdsFile, JSON.stringify([...pageIds]))
  return { blocks: written, pages: pageIds.size, backups, seconds: (Date.now() - started) / 1000, now }
}

/** The child: one vacuum with a GET counter around the store; prints one JSON line. */
const child = async (repoUrl: string, pageIdsFile: string, now: number, dryRun: boolean) => {
  const pageIds = new Set<string>(JSON.parse(fs.readFileSync(pageIdsFile, "utf8")))
  const counts = { manifest_gets: 0, page_gets: 0, data_block_gets: 0, other_gets: 0, deletes: 0, delete_requests: 0 }
  const classify = (key: string) => {
    if (key.startsWith("data/")) {
      if (pageIds.has(key.slice(5))) counts.page_gets++
      else counts.data_block_gets++
    } else if (key.startsWith("manifests/")) counts.manifest_gets++
    else counts.other_gets++
  }
  const started = Date.now()
  const result = await scoped(
    Effect.gen(function* () {
      const repo = yield* openRepositoryAt(repoUrl)
      const s = repo.store
      const store: BlobStore = {
        ...s,
        get: (k) => Effect.tap(s.get(k), () => Effect.sync(() => classify(k))),
        getRange: (k, o, l) => Effect.tap(s.getRange(k, o, l), () => Effect.sync(() => classify(k))),
        getStream: (k) => {
          classify(k)
          return s.getStream(k)
        },
        deleteMany: (keys) =>
          Effect.tap(s.deleteMany(keys), () =>
            Effect.sync(() => {
              counts.deletes += keys.length
              counts.delete_requests++
            }),
          ),
      }
      // The backups are dated back from `now` (the build's start); the blocks were written after it.
      const at = Math.max(now, Date.now())
      return yield* vacuum({ ...repo, store }, POLICY, { now: () => at, graceMs: 0, dryRun })
    }),
  )
  const seconds = (Date.now() - started) / 1000
  process.stdout.write(
    `${JSON.stringify({ seconds, peak_rss_mib: process.resourceUsage().maxRSS / 1024, counts, result: { ...result, kept: result.kept.length, deleted: result.deleted.length } })}\n`,
  )
}

interface Measured {
  readonly seconds: number
  readonly peak_rss_mib: number
  readonly counts: Record<string, number>
  // biome-ignore lint/suspicious/noExplicitAny: the vacuum result, printed as is
  readonly result: any
}

const measure = (repoUrl: string, pageIdsFile: string, now: number, dryRun: boolean, extraEnv: Record<string, string>) =>
  new Promise<Measured>((resolve, reject) => {
    const p = spawn(process.execPath, [import.meta.filename, "--child", repoUrl, pageIdsFile, String(now), dryRun ? "dry" : "run"], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...extraEnv },
    })
    let out = ""
    p.stdout.on("data", (c: Buffer) => {
      out += c.toString("utf8")
    })
    p.on("error", reject)
    p.on("close", (code) => {
      if (code !== 0) return reject(new Error(`vacuum child exited ${code}`))
      resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "{}"))
    })
  })

interface Row {
  readonly store: string
  readonly build: Built
  readonly dry: Measured
  readonly real: Measured
  readonly verifyOk: boolean
}

const bench = async (
  label: string,
  repoUrl: string,
  fsDataDir: string | undefined,
  workDir: string,
  extraEnv: Record<string, string>,
): Promise<Row> => {
  const pageIdsFile = path.join(workDir, `vacuum-${label}-pages.json`)
  log(`${label}: building the repository at ${repoUrl.replace(/\?.*/, "")}`)
  const repo = await scoped(openRepositoryAt(repoUrl, { create: true }))
  if (fsDataDir !== undefined) fs.mkdirSync(fsDataDir, { recursive: true })
  const built = await build(repo, fsDataDir, pageIdsFile)
  log(`${label}: ${built.blocks} blocks, ${built.pages} pages, ${built.backups} backups in ${built.seconds.toFixed(1)} s; dry run`)
  const dry = await measure(repoUrl, pageIdsFile, built.now, true, extraEnv)
  log(`${label}: dry run ${dry.seconds.toFixed(2)} s; vacuum`)
  const real = await measure(repoUrl, pageIdsFile, built.now, false, extraEnv)
  log(`${label}: vacuum ${real.seconds.toFixed(2)} s; verify`)
  const verified = await scoped(Effect.flatMap(openRepositoryAt(repoUrl), (r) => verify(r)))
  return { store: label, build: built, dry, real, verifyOk: verified.ok }
}

const main = async () => {
  const workDir = path.resolve(env("BENCH_DIR") ?? path.join(repoRoot, "bench/.work"))
  fs.mkdirSync(workDir, { recursive: true })
  const rows: Array<Row> = []
  const fsRepo = path.join(workDir, "vacuum-repo")
  fs.rmSync(fsRepo, { recursive: true, force: true })
  rows.push(await bench("fs", fsRepo, path.join(fsRepo, "data"), workDir, {}))
  fs.rmSync(fsRepo, { recursive: true, force: true })
  if (env("BENCH_VACUUM_S3") === "1") {
    const endpoint = env("BENDSAVE_S3_ENDPOINT")
    if (endpoint === undefined) {
      log("BENCH_VACUUM_S3=1 needs BENDSAVE_S3_ENDPOINT (source /tmp/srv/env.sh or scripts/s3-up.sh's env.sh)")
      process.exit(2)
    }
    const s3Env = {
      AWS_ACCESS_KEY_ID: env("BENDSAVE_S3_ACCESS_KEY") ?? "TESTAK",
      AWS_SECRET_ACCESS_KEY: env("BENDSAVE_S3_SECRET_KEY") ?? "TESTSECRETKEY",
    }
    Object.assign(process.env, s3Env)
    const { S3Client, CreateBucketCommand } = await import("@aws-sdk/client-s3")
    const bucket = `bench-vacuum-${Date.now().toString(36)}`
    const client = new S3Client({
      region: "us-east-1",
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: s3Env.AWS_ACCESS_KEY_ID, secretAccessKey: s3Env.AWS_SECRET_ACCESS_KEY },
    })
    await client.send(new CreateBucketCommand({ Bucket: bucket }))
    client.destroy()
    rows.push(await bench("s3 (Ceph radosgw)", `s3://${bucket}/repo?endpoint=${endpoint}&region=us-east-1`, undefined, workDir, s3Env))
  }
  fs.writeFileSync(path.join(workDir, "vacuum-results.json"), JSON.stringify(rows, null, 2))
  const lines = [
    `## Vacuum: ${rows[0].build.blocks} blocks, ${rows[0].build.backups} backups, policy --retention-days ${POLICY.retentionDays} --min-backups ${POLICY.minBackups} --grace 0`,
    "",
    "| store | run | time (s) | peak RSS (MiB) | backups deleted | blocks deleted | manifest GETs | page GETs | file data block GETs | delete requests | verify after |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ]
  let failed = false
  for (const r of rows) {
    for (const [name, m] of [
      ["dry run", r.dry],
      ["vacuum", r.real],
    ] as const) {
      const s = m.result.sweep
      lines.push(
        `| ${r.store} | ${name} | ${m.seconds.toFixed(2)} | ${m.peak_rss_mib.toFixed(0)} | ${m.result.deleted} | ${name === "dry run" ? `(${s.blocks_to_delete})` : s.blocks_deleted} | ${m.counts.manifest_gets} | ${m.counts.page_gets} | **${m.counts.data_block_gets}** | ${m.counts.delete_requests} | ${name === "vacuum" ? (r.verifyOk ? "OK" : "FAILED") : ""} |`,
      )
      if (m.counts.data_block_gets !== 0) failed = true
    }
    if (!r.verifyOk || r.real.result.sweep.status !== "done") failed = true
    lines.push("")
    lines.push(`Built in ${r.build.seconds.toFixed(1)} s (${r.store}): ${r.build.blocks} file blocks, ${r.build.pages} distinct pages.`)
  }
  console.log(lines.join("\n"))
  if (failed) {
    log("FAILED: a file data block was read, the sweep did not finish, or the repository does not verify")
    process.exit(1)
  }
}

const argv = process.argv.slice(2)
if (argv[0] === "--child") {
  child(argv[1], argv[2], Number(argv[3]), argv[4] === "dry").catch((e) => {
    console.error(e)
    process.exit(1)
  })
} else {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
