/**
 * Table clones (`@bendsave/clone`, docs/table-layout.md §7) against plain
 * file copies, in one run:
 *
 * 1. DEEP CLONE of a 1 GiB table (BENCH_CLONE_FILES data files) from one fs
 *    cluster into another, vs `cp -r` of the table's `_d/` directory;
 * 2. DEEP CLONE of the same table from the fs cluster into a cluster whose
 *    storage is a bucket on S3 (Ceph radosgw), vs `rclone copy` of the same
 *    files into another bucket of the same server;
 * 3. SHALLOW CLONE of a table of BENCH_SHALLOW_FILES (10 000) small files
 *    within the fs cluster (no data copied: goal well under a second);
 * 4. the incremental DEEP re-clone (`CREATE OR REPLACE ... DEEP CLONE` onto the
 *    clones of 1 and 2) after a commit that replaced 1 % of the source's
 *    files, vs `cp -r --update` (fs) and `rclone copy` (S3) of the directory.
 *
 * Every clone runs in a process of its own (`--worker clone`, timed with GNU
 * time like the other benchmarks: wall time includes Node's start-up and
 * loading the TypeScript sources); the worker also reports the time of the
 * `cloneTable` call itself. The data files are opaque bytes (AES-CTR
 * keystream from bench/dataset.ts, shared content-free and incompressible)
 * named `.parquet`: a clone never parses them. Clones are checked: the
 * metrics (files and bytes copied) and, once per target, every file of the
 * target's snapshot read back and compared by SHA-256.
 *
 * A benchmark, not a test: it exits non-zero only when something broke.
 *
 *   npm run bench:clone            (from the repository root)
 *
 * Environment:
 *   BENCH_GIB=1              size of the deep-cloned table in GiB
 *   BENCH_CLONE_FILES=100    data files of that table (1 % of them change for part 4)
 *   BENCH_SHALLOW_FILES=10000  data files of the shallow-cloned table (2 KiB each)
 *   BENCH_DIR=...            work directory (default bench/.work; data sets are kept and reused)
 *   BENCH_REPEAT=3           repetitions of every timed phase (medians reported)
 *   BENCH_SEED=42            seed of the data sets
 *   BENCH_QUIET_WAIT=60      total seconds the run may wait (at most 15 s at a time) for other programs to go quiet
 *   BENCH_S3_ENDPOINT / BENDSAVE_S3_ENDPOINT  S3 server (keys: BENCH_S3_ACCESS_KEY / BENDSAVE_S3_ACCESS_KEY,
 *                            ..._SECRET_KEY; default TESTAK / TESTSECRETKEY); neither: Ceph is started with scripts/s3-up.sh
 *
 * Markdown summary on stdout, progress on stderr, figures in <work>/clone-results.json.
 */
import { spawnSync } from "node:child_process"
import { createHash, randomFillSync } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { type DatasetSpec, ensureDataset, hashFile } from "./dataset.ts"
import { dropCaches, ensureTool, GNU_TIME, type Measured, measure, median, waitForQuiet } from "./measure.ts"

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const repoRoot = path.resolve(import.meta.dirname, "..")
const env = (name: string): string | undefined => process.env[name]
const num = (name: string, fallback: number, allowZero = false): number => {
  const raw = env(name)
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) {
    console.error(`error: ${name}=${raw} is not a positive number`)
    process.exit(2)
  }
  return value
}
const config = {
  gib: num("BENCH_GIB", 1),
  files: Math.floor(num("BENCH_CLONE_FILES", 100)),
  shallowFiles: Math.floor(num("BENCH_SHALLOW_FILES", 10_000)),
  workDir: path.resolve(env("BENCH_DIR") ?? path.join(repoRoot, "bench/.work")),
  repeat: Math.floor(num("BENCH_REPEAT", 3)),
  seed: Math.floor(num("BENCH_SEED", 42)),
  quietWait: num("BENCH_QUIET_WAIT", 60, true),
}
const log = (line: string) => process.stderr.write(`[bench-clone] ${line}\n`)
class BenchFailure extends Error {}
/** Throws (so that `finally` blocks still purge the buckets); the run exits 1. */
const fail = (message: string): never => {
  throw new BenchFailure(message)
}
/** SHA-256 over a sorted list of SHA-256s: one value to compare a whole table by. */
const digestOf = (shas: ReadonlyArray<string | undefined>): string =>
  createHash("sha256")
    .update([...shas].sort().join("\n"))
    .digest("hex")

const DB = "bench"
const BIG = "big"
const MANY = "many"
const enc = new TextEncoder()

// ---------------------------------------------------------------------------------------------
// Worker mode: one clone (or one check) in a process of its own, result as JSON on stdout
// ---------------------------------------------------------------------------------------------

interface WorkerArgs {
  readonly op: "clone" | "verify" | "setup" | "commit"
  /** cluster files: source and target (clone), the cluster to check (verify) */
  readonly from: string
  readonly to?: string
  readonly source?: string
  readonly target?: string
  readonly mode?: "SHALLOW" | "DEEP"
  readonly onExists?: "error" | "replace"
  /** setup / commit: tables to create, files to add */
  readonly dbId?: string
  readonly tables?: ReadonlyArray<{ readonly table: string; readonly id: string; readonly files: ReadonlyArray<SnapshotFileJson> }>
  readonly add?: ReadonlyArray<SnapshotFileJson>
  readonly remove?: ReadonlyArray<string>
}

interface SnapshotFileJson {
  readonly path: string
  readonly size: number
  readonly sha256?: string
}

const ref = (name: string) => {
  const [database, table] = name.split(".")
  return { database, table }
}

const worker = async (args: WorkerArgs) => {
  const Effect = await import("effect/Effect")
  const { loadClusterConfig, openCluster } = await import("@bendsave/core")
  const { cloneTable } = await import("@bendsave/clone")
  const dec = new TextDecoder()
  const open = (file: string) =>
    Effect.gen(function* () {
      return yield* openCluster(yield* loadClusterConfig(file), { create: true })
    })
  const readJson = <A>(bytes: Uint8Array | undefined): A | undefined =>
    bytes === undefined ? undefined : (JSON.parse(dec.decode(bytes)) as A)
  const started = performance.now()
  const result = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const from = yield* open(args.from)
        const openSeconds = (performance.now() - started) / 1000
        if (args.op === "clone") {
          const to = args.to === undefined || args.to === args.from ? from : yield* open(args.to)
          const t0 = performance.now()
          const r = yield* cloneTable({
            source: { kind: "live", cluster: from, table: ref(args.source as string) },
            target: { cluster: to, table: ref(args.target as string) },
            mode: args.mode ?? "DEEP",
            onExists: args.onExists ?? "error",
            dryRun: false,
          })
          return { openSeconds, cloneSeconds: (performance.now() - t0) / 1000, result: r }
        }
        if (args.op === "setup") {
          // The layout's commit protocol (docs/table-layout.md §6) for tables whose data files are already in storage.
          const dbId = args.dbId as string
          const created = new Date().toISOString()
          if (
            !(yield* from.meta.compareAndSwap(
              enc.encode(`catalog/databases/${DB}`),
              undefined,
              enc.encode(JSON.stringify({ id: dbId, created_at: created })),
            ))
          )
            return yield* Effect.die(new Error(`database ${DB} exists in ${args.from}`))
          for (const t of args.tables ?? []) {
            const location = `${dbId}/${t.id}/`
            const snapshot = `${location}_ss/00000001.json`
            yield* from.storage.put(snapshot, enc.encode(JSON.stringify({ version: 1, files: t.files })), { ifNotExists: true })
            const entry = {
              id: t.id,
              location,
              snapshot,
              schema: [{ name: "payload", type: "string" }],
              properties: { purpose: "bendsave clone benchmark" },
            }
            if (
              !(yield* from.meta.compareAndSwap(
                enc.encode(`catalog/tables/${DB}/${t.table}`),
                undefined,
                enc.encode(JSON.stringify(entry)),
              ))
            )
              return yield* Effect.die(new Error(`table ${DB}.${t.table} exists`))
          }
          return { openSeconds }
        }
        if (args.op === "commit") {
          const key = enc.encode(`catalog/tables/${args.source}`.replace(".", "/"))
          const raw = yield* from.meta.get(key)
          const entry = readJson<{ snapshot: string; location: string }>(raw)
          if (entry === undefined || raw === undefined) return yield* Effect.die(new Error(`no table ${args.source}`))
          const old = readJson<{ version: number; files: Array<SnapshotFileJson> }>(yield* from.storage.get(entry.snapshot)) as {
            version: number
            files: Array<SnapshotFileJson>
          }
          const removed = new Set(args.remove)
          const version = old.version + 1
          const snapshot = `${entry.location}_ss/${String(version).padStart(8, "0")}.json`
          const files = [...old.files.filter((f) => !removed.has(f.path)), ...(args.add ?? [])]
          yield* from.storage.put(snapshot, enc.encode(JSON.stringify({ version, files })), { ifNotExists: true })
          if (!(yield* from.meta.compareAndSwap(key, raw, enc.encode(JSON.stringify({ ...entry, snapshot })))))
            return yield* Effect.die(new Error("commit lost"))
          return { openSeconds, version, files: files.length }
        }
        // verify: every file of the table's current snapshot read back, size and SHA-256 against `expect`
        const entry = readJson<{ snapshot: string }>(yield* from.meta.get(enc.encode(`catalog/tables/${args.target}`.replace(".", "/"))))
        if (entry === undefined) return { openSeconds, ok: false, problems: [`no table ${args.target}`] }
        const snapshot = readJson<{ files: Array<SnapshotFileJson> }>(yield* from.storage.get(entry.snapshot)) as {
          files: Array<SnapshotFileJson>
        }
        const problems: Array<string> = []
        let bytes = 0
        for (const f of snapshot.files) {
          const data = yield* from.storage.get(f.path)
          bytes += data.length
          const sha = createHash("sha256").update(data).digest("hex")
          if (data.length !== f.size || (f.sha256 !== undefined && sha !== f.sha256))
            problems.push(`${f.path}: ${data.length} bytes, sha256 ${sha}`)
        }
        return {
          openSeconds,
          ok: problems.length === 0,
          files: snapshot.files.length,
          bytes,
          problems: problems.slice(0, 10),
          sha256s: snapshot.files.map((f) => f.sha256).sort(),
        }
      }),
    ),
  )
  // Written before exiting: a pipe takes the line asynchronously, and open sockets (S3) could keep the process alive.
  await new Promise<void>((resolve) => process.stdout.write(`${JSON.stringify(result)}\n`, () => resolve()))
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// Data sets and clusters
// ---------------------------------------------------------------------------------------------

/** `count` files of `size` bytes each, named like layout data files with counter ids (docs/table-layout.md §1). */
const tableSpec = (name: string, count: number, size: number, description: string): DatasetSpec => ({
  name,
  seed: config.seed,
  description,
  files: Array.from({ length: count }, (_, i) => ({ path: `${String(i + 1).padStart(8, "0")}.parquet`, size })),
})

const fsClusterToml = (dir: string, name: string): string => {
  fs.mkdirSync(dir, { recursive: true })
  const toml = path.join(dir, "cluster.toml")
  fs.writeFileSync(
    toml,
    `name = "${name}"\n[meta]\ntype = "local"\npath = "./meta"\n[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./data"\n`,
  )
  return toml
}

interface S3 {
  readonly endpoint: string
  readonly accessKey: string
  readonly secretKey: string
  readonly stop: () => void
}

const startS3 = (): S3 => {
  const endpoint = env("BENCH_S3_ENDPOINT") ?? env("BENDSAVE_S3_ENDPOINT")
  if (endpoint !== undefined && endpoint !== "") {
    return {
      endpoint,
      accessKey: env("BENCH_S3_ACCESS_KEY") ?? env("BENDSAVE_S3_ACCESS_KEY") ?? "TESTAK",
      secretKey: env("BENCH_S3_SECRET_KEY") ?? env("BENDSAVE_S3_SECRET_KEY") ?? "TESTSECRETKEY",
      stop: () => {},
    }
  }
  const dir = path.join(config.workDir, "s3-server")
  fs.rmSync(dir, { recursive: true, force: true })
  log("no S3 endpoint given: starting Ceph radosgw (scripts/s3-up.sh) ...")
  const up = spawnSync("bash", [path.join(repoRoot, "scripts/s3-up.sh"), dir], { encoding: "utf8" })
  if (up.status !== 0) fail(`scripts/s3-up.sh: ${up.stderr || up.stdout}`)
  return {
    endpoint: `http://127.0.0.1:${env("BENDSAVE_S3_PORT") ?? "18090"}`,
    accessKey: "TESTAK",
    secretKey: "TESTSECRETKEY",
    stop: () => void spawnSync("bash", [path.join(repoRoot, "scripts/s3-down.sh"), dir]),
  }
}

const s3ClusterToml = (dir: string, s3: S3, bucket: string): string => {
  fs.mkdirSync(dir, { recursive: true })
  const toml = path.join(dir, "cluster.toml")
  fs.writeFileSync(
    toml,
    [
      'name = "cloud"',
      "[meta]",
      'type = "local"',
      'path = "./meta"',
      "[storage]",
      'type = "s3"',
      "[storage.s3]",
      `bucket = "${bucket}"`,
      'root = "/cluster"',
      `endpoint_url = "${s3.endpoint}"`,
      'region = "us-east-1"',
      `access_key_id = "${s3.accessKey}"`,
      `secret_access_key = "${s3.secretKey}"`,
      "",
    ].join("\n"),
  )
  return toml
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

let quietBudget = config.quietWait
let cachesDropped = true
let worstStartLoad = 0

/** Before a timed command: wait (briefly) for other programs to go quiet, then sync and drop the page cache (as bench/bench.ts does). */
const settle = async (): Promise<void> => {
  const started = Date.now()
  const load = await waitForQuiet(0.25, Math.min(15, quietBudget))
  quietBudget = Math.max(0, quietBudget - (Date.now() - started) / 1000)
  worstStartLoad = Math.max(worstStartLoad, load)
  if (load > 0.25) log(`  note: ${load.toFixed(2)} cores busy with other programs; starting anyway`)
  if (!dropCaches()) cachesDropped = false
}

const check = (m: Measured): Measured => {
  if (m.exitCode !== 0) fail(`${m.label}: ${m.argv.join(" ")} exited ${m.exitCode}\n${m.stderr.slice(-3000)}${m.stdout.slice(-1000)}`)
  log(
    `  ${m.label}: ${m.seconds.toFixed(2)} s (+ sync ${m.syncSeconds.toFixed(2)} s), peak RSS ${m.peakRssMiB.toFixed(0)} MiB, CPU ${m.cpuSeconds.toFixed(1)} s, others ${m.otherCpuSeconds.toFixed(1)} CPU-s`,
  )
  return m
}

const timed = async (prepare: () => unknown, run: () => Promise<Measured>): Promise<Measured> => {
  await prepare()
  await settle()
  return check(await run())
}

const runWorker = async (label: string, args: WorkerArgs, timedRun = false): Promise<{ m: Measured; out: Record<string, unknown> }> => {
  const argsFile = path.join(config.workDir, `clone-worker-${process.pid}.json`)
  fs.writeFileSync(argsFile, JSON.stringify(args))
  const go = () => measure(label, process.execPath, [import.meta.filename, "--worker", argsFile])
  const m = timedRun ? await timed(() => {}, go) : await go()
  fs.rmSync(argsFile, { force: true })
  if (m.exitCode !== 0) fail(`${label}: worker exited ${m.exitCode}\n${m.stderr.slice(-3000)}`)
  const line = m.stdout.trim().split("\n").pop() ?? ""
  return { m, out: JSON.parse(line) as Record<string, unknown> }
}

interface CloneRun {
  readonly m: Measured
  readonly cloneSeconds: number
  readonly result: Record<string, number | string>
}

const clone = async (
  label: string,
  args: Omit<WorkerArgs, "op">,
  expect: { copiedFiles: number; copiedBytes: number; sourceFiles: number },
): Promise<CloneRun> => {
  const { m, out } = await runWorker(label, { op: "clone", ...args }, true)
  const result = out.result as Record<string, number | string>
  log(
    `    cloneTable: ${(out.cloneSeconds as number).toFixed(3)} s; copied ${result.num_copied_files} files / ${result.copied_files_size} bytes, removed ${result.num_removed_files}`,
  )
  if (
    result.num_copied_files !== expect.copiedFiles ||
    result.copied_files_size !== expect.copiedBytes ||
    result.source_num_of_files !== expect.sourceFiles
  )
    fail(`${label}: metrics ${JSON.stringify(result)}, expected ${JSON.stringify(expect)}`)
  return { m, cloneSeconds: out.cloneSeconds as number, result }
}

const verify = async (label: string, toml: string, table: string, expected: ReadonlyArray<string>) => {
  log(`verifying ${label}: every file of ${table} read back, SHA-256 against the source ...`)
  const { out } = await runWorker(`verify ${label}`, { op: "verify", from: toml, target: table })
  const want = [...expected].sort()
  const got = out.sha256s as Array<string>
  if (out.ok !== true || got.length !== want.length || got.some((s, i) => s !== want[i]))
    fail(`${label}: ${JSON.stringify(out.problems ?? out).slice(0, 800)}`)
  log(`  ${out.files} files, ${((out.bytes as number) / MiB).toFixed(1)} MiB: identical`)
}

/** Every file of `dir` (flat) by size and SHA-256, against the data set's records. */
const verifyDir = (label: string, dir: string, expected: ReadonlyArray<string>) => {
  const got = fs
    .readdirSync(dir)
    .map((f) => hashFile(path.join(dir, f)))
    .sort()
  const want = [...expected].sort()
  if (got.length !== want.length || got.some((s, i) => s !== want[i])) fail(`${label}: the copy in ${dir} differs from the source`)
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

interface Pair {
  readonly clone: CloneRun
  readonly reference: Measured
}

const main = async () => {
  ensureTool("rclone", "rclone", ["version"], "rclone", log)
  ensureTool("GNU time", GNU_TIME, ["--version"], "time", log)
  fs.mkdirSync(config.workDir, { recursive: true })
  const fileSize = Math.round((config.gib * GiB) / config.files)
  const bigSet = ensureDataset(
    path.join(config.workDir, "datasets", `clone-${config.files}x${fileSize}`),
    tableSpec("clone-big", config.files, fileSize, `${config.files} data files of ${(fileSize / MiB).toFixed(2)} MiB`),
    log,
  )
  const manySet = ensureDataset(
    path.join(config.workDir, "datasets", `clone-${config.shallowFiles}x2k`),
    tableSpec("clone-many", config.shallowFiles, 2048, `${config.shallowFiles} data files of 2 KiB`),
    log,
  )
  const runDir = path.join(config.workDir, "clone-run")
  fs.rmSync(runDir, { recursive: true, force: true })

  // The source cluster: the data set files hard-linked into two tables' `_d/`, then snapshot + catalog keys.
  const srcDir = path.join(runDir, "src")
  const srcToml = fsClusterToml(srcDir, "src")
  const dbId = crypto.randomUUID()
  const tables = [
    { table: BIG, id: crypto.randomUUID(), set: bigSet },
    { table: MANY, id: crypto.randomUUID(), set: manySet },
  ].map((t) => {
    const location = `${dbId}/${t.id}/`
    const dir = path.join(srcDir, "data", location, "_d")
    fs.mkdirSync(dir, { recursive: true })
    const files = t.set.files.map((f) => {
      const to = path.join(dir, f.path)
      try {
        fs.linkSync(path.join(t.set.dataDir, f.path), to)
      } catch {
        fs.copyFileSync(path.join(t.set.dataDir, f.path), to)
      }
      return { path: `${location}_d/${f.path}`, size: f.size, sha256: f.sha256 }
    })
    return { table: t.table, id: t.id, location, dir, files }
  })
  await runWorker("setup", { op: "setup", from: srcToml, dbId, tables: tables.map(({ table, id, files }) => ({ table, id, files })) })
  const big = tables[0]
  const bigBytes = bigSet.totalBytes
  log(
    `source cluster ${srcToml}: ${DB}.${BIG} (${big.files.length} files, ${(bigBytes / MiB).toFixed(1)} MiB), ${DB}.${MANY} (${tables[1].files.length} files)`,
  )

  const s3 = startS3()
  // rclone's remote "benchs3" from environment variables; AWS_CA_BUNDLE makes Debian's rclone refuse to start.
  const rcloneEnv: NodeJS.ProcessEnv = {
    ...process.env,
    RCLONE_CONFIG_BENCHS3_TYPE: "s3",
    RCLONE_CONFIG_BENCHS3_PROVIDER: "Ceph",
    RCLONE_CONFIG_BENCHS3_ENDPOINT: s3.endpoint,
    RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID: s3.accessKey,
    RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY: s3.secretKey,
    RCLONE_CONFIG_BENCHS3_REGION: "us-east-1",
    RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE: "true",
  }
  delete rcloneEnv.AWS_CA_BUNDLE
  const rcloneAdmin = (...args: Array<string>) => {
    const r = spawnSync("rclone", args, { env: rcloneEnv, encoding: "utf8" })
    if (r.status !== 0) fail(`rclone ${args.join(" ")}: ${r.stderr}`)
  }
  const rcloneCopy = (label: string, bucket: string) =>
    measure(label, "rclone", ["copy", big.dir, `benchs3:${bucket}/copy`], { env: rcloneEnv })
  const stamp = `${Date.now().toString(36)}-${process.pid}`
  const buckets: Array<string> = []
  const makeBucket = (name: string) => {
    rcloneAdmin("mkdir", `benchs3:${name}`)
    buckets.push(name)
    return name
  }
  const dropBucket = (name: string) => {
    rcloneAdmin("purge", `benchs3:${name}`)
    buckets.splice(buckets.indexOf(name), 1)
  }

  const all = { copiedFiles: big.files.length, copiedBytes: bigBytes, sourceFiles: big.files.length }
  const deepFs: Array<Pair> = []
  const deepS3: Array<Pair> = []
  const shallow: Array<CloneRun> = []
  const incFs: Array<Pair> = []
  const incS3: Array<Pair> = []
  const dstDir = path.join(runDir, "dst")
  const cloudDir = path.join(runDir, "cloud")
  const cpTarget = path.join(runDir, "cp-copy")
  let dstToml = ""
  let cloudToml = ""
  let rcloneBucket = ""
  const bigName = `${DB}.${BIG}`
  try {
    for (let r = 1; r <= config.repeat; r++) {
      log(`repetition ${r}/${config.repeat}`)
      const cloneFirst = r % 2 === 1
      // 1. fs -> fs
      const deepToFs = async () => {
        fs.rmSync(dstDir, { recursive: true, force: true })
        dstToml = fsClusterToml(dstDir, "dst")
        return clone("DEEP CLONE fs -> fs", { from: srcToml, to: dstToml, source: bigName, target: bigName, mode: "DEEP" }, all)
      }
      const cp = () =>
        timed(
          () => fs.rmSync(cpTarget, { recursive: true, force: true }),
          () => measure("cp -r", "cp", ["-r", big.dir, cpTarget]),
        )
      if (cloneFirst) {
        const c = await deepToFs()
        deepFs.push({ clone: c, reference: await cp() })
      } else {
        const ref = await cp()
        deepFs.push({ clone: await deepToFs(), reference: ref })
      }
      // 2. fs -> S3
      if (r > 1) {
        for (const b of [...buckets]) dropBucket(b)
      }
      const cloneBucket = makeBucket(`bench-clone-${stamp}-${r}`)
      rcloneBucket = makeBucket(`bench-clone-rclone-${stamp}-${r}`)
      const deepToS3 = async () => {
        fs.rmSync(cloudDir, { recursive: true, force: true })
        cloudToml = s3ClusterToml(cloudDir, s3, cloneBucket)
        return clone("DEEP CLONE fs -> S3", { from: srcToml, to: cloudToml, source: bigName, target: bigName, mode: "DEEP" }, all)
      }
      const rc = () =>
        timed(
          () => {},
          () => rcloneCopy("rclone copy", rcloneBucket),
        )
      if (cloneFirst) {
        const c = await deepToS3()
        deepS3.push({ clone: c, reference: await rc() })
      } else {
        const ref = await rc()
        deepS3.push({ clone: await deepToS3(), reference: ref })
      }
      // 3. SHALLOW, within the source cluster
      shallow.push(
        await clone(
          `SHALLOW CLONE of ${config.shallowFiles} files`,
          { from: srcToml, source: `${DB}.${MANY}`, target: `${DB}.${MANY}_shallow_${r}`, mode: "SHALLOW" },
          { copiedFiles: 0, copiedBytes: 0, sourceFiles: config.shallowFiles },
        ),
      )
      if (r === 1) {
        const shas = big.files.map((f) => f.sha256)
        await verify("the fs clone", dstToml, bigName, shas)
        await verify("the S3 clone", cloudToml, bigName, shas)
        verifyDir("cp -r", cpTarget, shas)
        await verify(
          "the shallow clone",
          srcToml,
          `${DB}.${MANY}_shallow_1`,
          tables[1].files.map((f) => f.sha256),
        )
      }
    }

    // 4. incremental re-clones onto the last repetition's clones, after commits that replace 1 % of the files
    const k = Math.max(1, Math.round(config.files / 100))
    let current = [...big.files]
    let next = config.files
    for (let i = 1; i <= config.repeat; i++) {
      log(`incremental ${i}/${config.repeat}: a commit replaces ${k} of ${config.files} files (${((k / config.files) * 100).toFixed(1)} %)`)
      const removed = current.slice(0, k)
      const added = Array.from({ length: k }, () => {
        const name = `${String(++next).padStart(8, "0")}.parquet`
        const bytes = randomFillSync(Buffer.allocUnsafe(fileSize))
        fs.writeFileSync(path.join(big.dir, name), bytes)
        return { path: `${big.location}_d/${name}`, size: fileSize, sha256: createHash("sha256").update(bytes).digest("hex") }
      })
      current = [...current.slice(k), ...added]
      await runWorker("commit", { op: "commit", from: srcToml, source: bigName, remove: removed.map((f) => f.path), add: added })
      const expect = { copiedFiles: k, copiedBytes: k * fileSize, sourceFiles: config.files }
      const onto = (label: string, to: string) =>
        clone(label, { from: srcToml, to, source: bigName, target: bigName, mode: "DEEP", onExists: "replace" }, expect)
      const f = await onto("incremental DEEP CLONE fs -> fs", dstToml)
      incFs.push({
        clone: f,
        reference: await timed(
          () => {},
          () => measure("cp -r --update", "cp", ["-r", "--update", "-T", big.dir, cpTarget]),
        ),
      })
      if (f.result.num_removed_files !== k) fail(`incremental fs: removed ${f.result.num_removed_files} files, expected ${k}`)
      const s = await onto("incremental DEEP CLONE fs -> S3", cloudToml)
      incS3.push({
        clone: s,
        reference: await timed(
          () => {},
          () => rcloneCopy("rclone copy (incremental)", rcloneBucket),
        ),
      })
    }
    const shas = current.map((f) => f.sha256)
    await verify("the fs clone after the re-clones", dstToml, bigName, shas)
    await verify("the S3 clone after the re-clones", cloudToml, bigName, shas)
  } finally {
    // Every bucket, even when one purge fails (a full S3 server refuses deletes too): say what is left.
    for (const b of [...buckets]) {
      try {
        dropBucket(b)
      } catch (e) {
        log(
          `could not purge bucket ${b} (${e instanceof Error ? e.message.trim().split("\n").pop() : e}); remove it by hand: rclone purge <remote>:${b}`,
        )
      }
    }
    s3.stop()
  }
  if (env("BENCH_KEEP") !== "1") fs.rmSync(runDir, { recursive: true, force: true })

  // -------------------------------------------------------------------------------------------
  // Summary
  // -------------------------------------------------------------------------------------------
  const mibps = (bytes: number, s: number) => (bytes / MiB / s).toFixed(0)
  const med = (xs: ReadonlyArray<number>) => median(xs)
  const busiest = (ms: ReadonlyArray<Measured>) => Math.max(...ms.map((m) => m.otherCpuSeconds))
  const row = (what: string, pairs: ReadonlyArray<Pair>, bytes: number, reference: string) => {
    const w = med(pairs.map((p) => p.clone.m.seconds))
    const ws = med(pairs.map((p) => p.clone.m.seconds + p.clone.m.syncSeconds))
    const c = med(pairs.map((p) => p.clone.cloneSeconds))
    const rw = med(pairs.map((p) => p.reference.seconds))
    const rs = med(pairs.map((p) => p.reference.seconds + p.reference.syncSeconds))
    const rss = Math.max(...pairs.map((p) => p.clone.m.peakRssMiB))
    return `| ${what} | ${w.toFixed(2)} (${ws.toFixed(2)}) | ${c.toFixed(2)} | ${mibps(bytes, c)} | ${rss.toFixed(0)} | ${reference} | ${rw.toFixed(2)} (${rs.toFixed(2)}) | ${mibps(bytes, rw)} | ${(w / rw).toFixed(2)} | ${(c / rw).toFixed(2)} | ${busiest(pairs.flatMap((p) => [p.clone.m, p.reference])).toFixed(1)} |`
  }
  const k = Math.max(1, Math.round(config.files / 100))
  const shallowWall = med(shallow.map((s) => s.m.seconds))
  const shallowCall = med(shallow.map((s) => s.cloneSeconds))
  const summary = [
    `## Table clones: ${config.files} files, ${(bigBytes / MiB).toFixed(0)} MiB; SHALLOW of ${config.shallowFiles} files; median of ${config.repeat}`,
    "",
    "Seconds are wall time of the whole process (Node start-up and loading the sources included); in brackets, with a `sync` after it.",
    "`cloneTable` is the library call alone (cold data; the process start-up loads Node and the sources from a dropped page cache too).",
    "MiB/s: bytes copied over the `cloneTable` time for bendsave, over wall time for the reference. Ratios: bendsave time / reference time (below 1: bendsave is faster).",
    "",
    "| phase | bendsave wall s | `cloneTable` s | MiB/s | peak RSS MiB | reference | reference s | MiB/s | ratio (wall) | ratio (`cloneTable`) | others' CPU-s (max) |",
    "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    row("DEEP CLONE fs → fs", deepFs, bigBytes, "`cp -r`"),
    row("DEEP CLONE fs → S3", deepS3, bigBytes, "`rclone copy`"),
    row(`incremental DEEP re-clone fs → fs (${k} of ${config.files} files changed)`, incFs, k * fileSize, "`cp -r --update`"),
    row(`incremental DEEP re-clone fs → S3 (${k} of ${config.files} files changed)`, incS3, k * fileSize, "`rclone copy`"),
    `| SHALLOW CLONE, ${config.shallowFiles} files | ${shallowWall.toFixed(2)} (${med(shallow.map((s) => s.m.seconds + s.m.syncSeconds)).toFixed(2)}) | ${shallowCall.toFixed(3)} | | ${Math.max(...shallow.map((s) => s.m.peakRssMiB)).toFixed(0)} | | | | | | ${busiest(shallow.map((s) => s.m)).toFixed(1)} |`,
    "",
    `SHALLOW CLONE of ${config.shallowFiles} files well under a second (\`cloneTable\` < 0.5 s): ${shallowCall < 0.5 ? "PASS" : "MISSED"} (${shallowCall.toFixed(3)} s; ${shallowWall.toFixed(2)} s with process start-up).`,
    `Incremental re-clone vs full DEEP CLONE (cloneTable): fs ${med(incFs.map((p) => p.clone.cloneSeconds)).toFixed(2)} s vs ${med(deepFs.map((p) => p.clone.cloneSeconds)).toFixed(2)} s; S3 ${med(incS3.map((p) => p.clone.cloneSeconds)).toFixed(2)} s vs ${med(deepS3.map((p) => p.clone.cloneSeconds)).toFixed(2)} s.`,
    `Page cache ${cachesDropped ? "dropped before every timed command" : "NOT dropped (needs root): warm-cache figures"}; busiest start: ${worstStartLoad.toFixed(2)} cores used by other programs. Every clone's metrics checked; the clones' files read back and compared by SHA-256.`,
    "",
  ].join("\n")
  process.stdout.write(`${summary}\n`)
  const strip = (m: Measured) => ({ ...m, stdout: undefined, stderr: undefined })
  const pairJson = (p: Pair) => ({ clone: { ...p.clone, m: strip(p.clone.m) }, reference: strip(p.reference) })
  fs.writeFileSync(
    path.join(config.workDir, "clone-results.json"),
    JSON.stringify(
      {
        config,
        table: { files: config.files, bytes: bigBytes, fileSize },
        deepFs: deepFs.map(pairJson),
        deepS3: deepS3.map(pairJson),
        shallow: shallow.map((s) => ({ ...s, m: strip(s.m) })),
        incrementalFs: incFs.map(pairJson),
        incrementalS3: incS3.map(pairJson),
        cachesDropped,
      },
      null,
      2,
    ),
  )
}

if (process.argv[2] === "--worker") {
  // The arguments come in a file (a snapshot of 10 000 files does not fit on a command line).
  await worker(JSON.parse(fs.readFileSync(process.argv[3], "utf8")) as WorkerArgs)
} else {
  try {
    await main()
  } catch (e) {
    log(`FAILED: ${e instanceof BenchFailure ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
    process.exitCode = 1
  }
}
