/**
 * bendsave vs `rclone copy` against an S3 server (single-node Ceph radosgw on
 * loopback, started by scripts/s3-up.sh unless BENCH_S3_ENDPOINT names one):
 *
 * 1. full backup of the benchmark data set (bench/dataset.ts, 1 GiB by
 *    default) from a local cluster into an S3 repository, side by side with
 *    `rclone copy` of the same files to the same server, each into a fresh
 *    bucket, alternating which goes first;
 * 2. no-change incremental backup (and rclone's no-change copy), timed, and
 *    once more through a counting proxy that classifies every request
 *    (LIST, GET, HEAD, PUT, POST, DELETE): a no-change backup should issue
 *    LIST requests plus the manifest and page reads only;
 * 3. a restore of the first backup from S3, checked byte for byte.
 *
 * A benchmark, not a test: it exits non-zero only when something broke.
 *
 *   npx node bench/s3.ts          (from the repository root)
 *
 * Environment:
 *   BENCH_GIB=1          size of the data set (shared with bench/bench.ts, in BENCH_DIR/datasets)
 *   BENCH_DIR=...        work directory (default bench/.work)
 *   BENCH_REPEAT=3       repetitions of the timed phases (medians reported)
 *   BENCH_SEED=42        seed of the data set
 *   BENCH_S3_ENDPOINT    an S3 server to use instead of starting Ceph (with BENCH_S3_ACCESS_KEY,
 *                        BENCH_S3_SECRET_KEY; default TESTAK / TESTSECRETKEY); else the test
 *                        servers' Ceph when BENDSAVE_S3_ENDPOINT is set (source /tmp/srv/env.sh)
 *
 * The buckets of each repetition are deleted after it (BENCH_KEEP_BUCKETS=1 keeps them).
 *
 * Markdown summary on stdout, progress on stderr, figures in <work>/s3-results.json.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { ensureDataset, mainSpec, verifyTree, writeCluster } from "./dataset.ts"
import { ensureTool, GNU_TIME, type Measured, measure, median } from "./measure.ts"

const repoRoot = path.resolve(import.meta.dirname, "..")
const cliEntry = path.join(repoRoot, "packages/cli/bin/bendsave.js")
const env = (name: string): string | undefined => process.env[name]
const num = (name: string, fallback: number) => {
  const raw = env(name)
  const value = raw === undefined || raw === "" ? fallback : Number(raw)
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`error: ${name}=${raw} is not a positive number`)
    process.exit(2)
  }
  return value
}
const config = {
  gib: num("BENCH_GIB", 1),
  workDir: path.resolve(env("BENCH_DIR") ?? path.join(repoRoot, "bench/.work")),
  repeat: Math.floor(num("BENCH_REPEAT", 3)),
  seed: Math.floor(num("BENCH_SEED", 42)),
}
const log = (line: string) => process.stderr.write(`[bench-s3] ${line}\n`)
const fail = (message: string): never => {
  log(`FAILED: ${message}`)
  process.exit(1)
}

// ---------------------------------------------------------------------------------------------
// The S3 server and a counting proxy
// ---------------------------------------------------------------------------------------------

interface Server {
  readonly endpoint: string
  readonly accessKey: string
  readonly secretKey: string
  readonly stop: () => void
}

const startServer = (): Server => {
  const given = env("BENCH_S3_ENDPOINT")
  if (given !== undefined) {
    return {
      endpoint: given,
      accessKey: env("BENCH_S3_ACCESS_KEY") ?? "TESTAK",
      secretKey: env("BENCH_S3_SECRET_KEY") ?? "TESTSECRETKEY",
      stop: () => {},
    }
  }
  const testServer = env("BENDSAVE_S3_ENDPOINT")
  if (testServer !== undefined) {
    log(`using the running test server at ${testServer} (BENDSAVE_S3_ENDPOINT)`)
    return {
      endpoint: testServer,
      accessKey: env("BENDSAVE_S3_ACCESS_KEY") ?? "TESTAK",
      secretKey: env("BENDSAVE_S3_SECRET_KEY") ?? "TESTSECRETKEY",
      stop: () => {},
    }
  }
  const dir = path.join(config.workDir, "s3-server")
  fs.rmSync(dir, { recursive: true, force: true })
  log("starting Ceph radosgw (scripts/s3-up.sh, bluestore) ...")
  const up = spawnSync("bash", [path.join(repoRoot, "scripts/s3-up.sh"), dir], { encoding: "utf8" })
  if (up.status !== 0) fail(`scripts/s3-up.sh: ${up.stderr || up.stdout}`)
  const port = env("BENDSAVE_S3_PORT") ?? "18090"
  return {
    endpoint: `http://127.0.0.1:${port}`,
    accessKey: "TESTAK",
    secretKey: "TESTSECRETKEY",
    stop: () => {
      spawnSync("bash", [path.join(repoRoot, "scripts/s3-down.sh"), dir])
    },
  }
}

type Kind = "LIST" | "GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "OTHER"

/** An HTTP proxy in front of the server that counts requests by kind (the Host header is kept: signatures stay valid). */
const startCountingProxy = async (target: string) => {
  const upstream = new URL(target)
  const counts: Record<Kind, number> = { LIST: 0, GET: 0, HEAD: 0, PUT: 0, POST: 0, DELETE: 0, OTHER: 0 }
  const kindOf = (req: http.IncomingMessage): Kind => {
    const url = new URL(req.url ?? "/", "http://x")
    const objectPath = url.pathname.split("/").filter((s) => s !== "").length >= 2
    if (req.method === "GET") return objectPath ? "GET" : "LIST"
    return (["HEAD", "PUT", "POST", "DELETE"] as const).find((m) => m === req.method) ?? "OTHER"
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  const server = http.createServer((req, res) => {
    counts[kindOf(req)]++
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent },
      (reply) => {
        res.writeHead(reply.statusCode ?? 502, reply.headers)
        reply.pipe(res)
      },
    )
    forward.on("error", () => res.destroy())
    req.pipe(forward)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    take: () => {
      const snapshot = { ...counts }
      for (const k of Object.keys(counts) as Array<Kind>) counts[k] = 0
      return snapshot
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

const node = path.join(repoRoot, "node_modules/.bin/node")

const main = async () => {
  const rclone = ensureTool("rclone", "rclone", ["version"], "rclone", log)
  ensureTool("GNU time", GNU_TIME, ["--version"], "time", log)
  void rclone
  fs.mkdirSync(config.workDir, { recursive: true })
  const dataset = ensureDataset(path.join(config.workDir, "datasets", "main"), mainSpec(config.gib, config.seed), log)
  log(`data set: ${dataset.files.length} files, ${(dataset.totalBytes / 2 ** 30).toFixed(2)} GiB in ${dataset.dataDir}`)
  const server = startServer()
  const proxy = await startCountingProxy(server.endpoint)
  // AWS_CA_BUNDLE makes Debian's rclone refuse to start; neither tool needs it for a local http endpoint.
  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: server.accessKey,
    AWS_SECRET_ACCESS_KEY: server.secretKey,
    AWS_REGION: "us-east-1",
  }
  delete baseEnv.AWS_CA_BUNDLE
  const runDir = path.join(config.workDir, "s3-run")
  fs.rmSync(runDir, { recursive: true, force: true })
  fs.mkdirSync(runDir, { recursive: true })

  const check = (m: Measured) => {
    if (m.exitCode !== 0) fail(`${m.argv.join(" ")} exited ${m.exitCode}\n${m.stderr.slice(-2000)}`)
    log(`  ${m.label}: ${m.seconds.toFixed(2)} s, peak RSS ${m.peakRssMiB.toFixed(0)} MiB, CPU ${m.cpuSeconds.toFixed(1)} s`)
    return m
  }
  const repoUrl = (bucket: string, endpoint = server.endpoint) =>
    `s3://${bucket}/repo?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1`
  const bendsaveBackup = (label: string, bucket: string, endpoint?: string) =>
    measure(label, node, [cliEntry, "backup", "--from", dataset.clusterToml, "--to", repoUrl(bucket, endpoint), "--json"], { env: baseEnv })
  const rcloneCopy = (label: string, bucket: string, endpoint = server.endpoint) =>
    measure(
      label,
      "rclone",
      [
        "copy",
        dataset.dataDir,
        `:s3:${bucket}/copy`,
        "--s3-provider",
        "Ceph",
        "--s3-endpoint",
        endpoint,
        "--s3-access-key-id",
        server.accessKey,
        "--s3-secret-access-key",
        server.secretKey,
        "--s3-region",
        "us-east-1",
        "--s3-force-path-style=true",
      ],
      { env: baseEnv },
    )
  const rcloneS3 = [
    "--s3-provider",
    "Ceph",
    "--s3-endpoint",
    server.endpoint,
    "--s3-access-key-id",
    server.accessKey,
    "--s3-secret-access-key",
    server.secretKey,
    "--s3-force-path-style=true",
  ]
  const buckets: Array<string> = []
  const makeBucket = (bucket: string) => {
    const made = spawnSync("rclone", ["mkdir", `:s3:${bucket}`, ...rcloneS3], { env: baseEnv, encoding: "utf8" })
    if (made.status !== 0) fail(`rclone mkdir ${bucket}: ${made.stderr}`)
    buckets.push(bucket)
  }
  /** Deletes the benchmark's buckets (the server may be shared: leave nothing behind). */
  const removeBuckets = () => {
    if (env("BENCH_KEEP_BUCKETS") === "1") return
    for (const bucket of buckets.splice(0)) {
      const purged = spawnSync("rclone", ["purge", `:s3:${bucket}`, ...rcloneS3], { env: baseEnv, encoding: "utf8" })
      if (purged.status !== 0) log(`could not delete bucket ${bucket}: ${purged.stderr.trim().split("\n").pop()}`)
    }
  }

  const results: Array<{
    repetition: number
    bendsave: { full: Measured; incremental: Measured }
    rclone: { full: Measured; incremental: Measured }
  }> = []
  let requests: Record<string, Record<Kind, number>> = {}
  try {
    for (let r = 1; r <= config.repeat; r++) {
      log(`repetition ${r}/${config.repeat}`)
      const bucketB = `bench-bendsave-${Date.now()}-${r}`
      const bucketR = `bench-rclone-${Date.now()}-${r}`
      makeBucket(bucketB)
      makeBucket(bucketR)
      const bendsaveFirst = r % 2 === 1
      const full = async (tool: "bendsave" | "rclone") =>
        check(tool === "bendsave" ? await bendsaveBackup("bendsave full backup", bucketB) : await rcloneCopy("rclone copy (full)", bucketR))
      const [first, second] = bendsaveFirst ? (["bendsave", "rclone"] as const) : (["rclone", "bendsave"] as const)
      const fullResults = { [first]: await full(first), [second]: await full(second) } as Record<"bendsave" | "rclone", Measured>
      const incB = check(await bendsaveBackup("bendsave no-change incremental", bucketB))
      const incR = check(await rcloneCopy("rclone copy (no change)", bucketR))
      results.push({
        repetition: r,
        bendsave: { full: fullResults.bendsave, incremental: incB },
        rclone: { full: fullResults.rclone, incremental: incR },
      })
      const report = JSON.parse(fullResults.bendsave.stdout)
      if (report.files_total !== dataset.files.length)
        fail(`bendsave backed up ${report.files_total} files, expected ${dataset.files.length}`)

      if (r === 1) {
        log("counting the requests of a no-change incremental backup (through a counting proxy) ...")
        proxy.take()
        check(await bendsaveBackup("bendsave no-change incremental (counted)", bucketB, proxy.endpoint))
        requests.bendsaveIncremental = proxy.take()
        check(await rcloneCopy("rclone no-change copy (counted)", bucketR, proxy.endpoint))
        requests.rcloneNoChange = proxy.take()

        log("restoring the first backup from S3 and checking it byte for byte ...")
        const target = path.join(runDir, "restored")
        const toml = writeCluster(target)
        check(
          await measure(
            "bendsave restore from S3",
            node,
            [cliEntry, "restore", "--from", repoUrl(bucketB), "--to", toml, "--confirm", "--json"],
            { env: baseEnv },
          ),
        )
        const verified = verifyTree(path.join(target, "data"), dataset)
        if (!verified.ok) fail(`the restored tree differs from the data set: ${JSON.stringify(verified).slice(0, 500)}`)
        fs.rmSync(target, { recursive: true, force: true })
      }
      // Each repetition's 2 GiB go before the next: the server's disk may be small and shared.
      removeBuckets()
    }
  } finally {
    await proxy.close()
    removeBuckets()
    server.stop()
  }

  const med = (pick: (r: (typeof results)[number]) => Measured) => median(results.map((r) => pick(r).seconds))
  const rss = (pick: (r: (typeof results)[number]) => Measured) => Math.max(...results.map((r) => pick(r).peakRssMiB))
  const gib = dataset.totalBytes / 2 ** 30
  const row = (what: string, b: (r: (typeof results)[number]) => Measured, c: (r: (typeof results)[number]) => Measured) =>
    `| ${what} | ${med(b).toFixed(2)} s (${((gib * 1024) / med(b)).toFixed(0)} MiB/s), ${rss(b).toFixed(0)} MiB | ${med(c).toFixed(2)} s, ${rss(c).toFixed(0)} MiB | ${(med(c) / med(b)).toFixed(2)}x |`
  const counts = (c: Record<Kind, number>) =>
    (Object.entries(c) as Array<[Kind, number]>)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")
  const summary = [
    `## bendsave vs rclone on S3 (Ceph radosgw, loopback): ${dataset.files.length} files, ${gib.toFixed(2)} GiB, median of ${results.length}`,
    "",
    "| phase | bendsave (wall, peak RSS) | rclone copy | rclone / bendsave |",
    "| --- | --- | --- | --- |",
    row(
      "full",
      (r) => r.bendsave.full,
      (r) => r.rclone.full,
    ),
    row(
      "no change",
      (r) => r.bendsave.incremental,
      (r) => r.rclone.incremental,
    ),
    "",
    `Requests of a no-change run: bendsave backup: ${counts(requests.bendsaveIncremental as Record<Kind, number>)}; rclone copy: ${counts(requests.rcloneNoChange as Record<Kind, number>)}.`,
    "",
  ].join("\n")
  process.stdout.write(`${summary}\n`)
  fs.writeFileSync(
    path.join(config.workDir, "s3-results.json"),
    JSON.stringify({ config, dataset: { files: dataset.files.length, bytes: dataset.totalBytes }, results, requests }, null, 2),
  )
  requests = {}
}

await main()
