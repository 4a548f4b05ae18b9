/**
 * bendsave vs restic: backup, no-change incremental backup and restore of a
 * local data set, wall time and peak RSS, plus a plain `cp -r` reference and
 * a peak-memory-versus-file-size check. A benchmark, not a test: it exits
 * non-zero only when something broke (a command failed, a restore is not
 * byte-identical), never because a goal was missed.
 *
 *   npm run bench                  (from the repository root)
 *
 * Environment:
 *   BENCH_GIB=1       size of the main data set in GiB (4 large files + 4000 x GiB small files)
 *   BENCH_DIR=...     work directory (default bench/.work); data sets are kept there and reused
 *   BENCH_REPEAT=3    repetitions of the main phases (medians are reported, with the spread)
 *   BENCH_MEMORY=1    0 skips the single-file memory check (64 MiB, 256 MiB, 1 GiB)
 *   BENCH_MEMORY_RUNS=3  bendsave runs per file size in the memory check (the worst peak counts)
 *   BENCH_KEEP=0      1 keeps repositories and restored trees of the last run
 *   BENCH_PROFILE=0   1 runs bendsave with --cpu-prof (profiles in <work>/profiles; slows it down)
 *   BENCH_SEED=42     seed of the data sets
 *   BENCH_QUIET_WAIT=120  total seconds the run may wait (at most 30 s at a time) for other programs to go quiet
 *   BENCH_RETRIES=2   extra attempts of a timed command that other programs competed with for the CPU
 *                     (main phases only, and only in the first 6 minutes of the run)
 *
 * Progress goes to stderr; the markdown summary to stdout; all figures to <work>/results.json.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type Dataset, ensureDataset, mainSpec, singleFileSpec, treeSize, verifyTree, writeCluster } from "./dataset.ts"
import { dropCaches, ensureTool, GNU_TIME, type Measured, measure, median, waitForQuiet } from "./measure.ts"

const MiB = 1024 * 1024
const GiB = 1024 * MiB

const repoRoot = path.resolve(import.meta.dirname, "..")
const cliEntry = path.join(repoRoot, "packages/cli/bin/bendsave.js")

/** Reads a BENCH_* variable (the bench runs outside turbo, so these are not turbo task inputs). */
const envVar = (name: string): string | undefined => process.env[name]

const numEnv = (name: string, fallback: number, allowZero = false): number => {
  const raw = envVar(name)
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) {
    console.error(`error: ${name}=${raw} is not a positive number`)
    process.exit(2)
  }
  return value
}

const config = {
  gib: numEnv("BENCH_GIB", 1),
  workDir: path.resolve(envVar("BENCH_DIR") ?? path.join(repoRoot, "bench/.work")),
  repeat: Math.floor(numEnv("BENCH_REPEAT", 3)),
  seed: Math.floor(numEnv("BENCH_SEED", 42)),
  memoryCheck: envVar("BENCH_MEMORY") !== "0",
  memoryRuns: Math.floor(numEnv("BENCH_MEMORY_RUNS", 3)),
  keep: envVar("BENCH_KEEP") === "1",
  profile: envVar("BENCH_PROFILE") === "1",
  quietWait: numEnv("BENCH_QUIET_WAIT", 120, true),
  retries: Math.floor(numEnv("BENCH_RETRIES", 2, true)),
}

const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`)
}

class BenchFailure extends Error {}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

const runDir = path.join(config.workDir, "run")
const profileDir = path.join(config.workDir, "profiles")
const resticEnv = (cacheDir: string): NodeJS.ProcessEnv => ({
  ...process.env,
  RESTIC_PASSWORD: "bendsave-bench",
  RESTIC_CACHE_DIR: cacheDir,
})

let profileCount = 0
const bendsave = (label: string, args: ReadonlyArray<string>, profile = config.profile): Promise<Measured> => {
  const flags = profile
    ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${String(++profileCount).padStart(2, "0")}-${label}.cpuprofile`]
    : []
  return measure(`bendsave ${label}`, process.execPath, [...flags, cliEntry, ...args])
}

const restic = (label: string, args: ReadonlyArray<string>, cacheDir: string): Promise<Measured> =>
  measure(`restic ${label}`, "restic", args, { env: resticEnv(cacheDir) })

const fail = (m: Measured, why: string): never => {
  throw new BenchFailure(
    `${m.label} ${why}\n  command: ${m.argv.join(" ")}\n  exit code: ${m.exitCode}\n  stdout: ${m.stdout.slice(-2000)}\n  stderr: ${m.stderr.slice(-2000)}`,
  )
}

/** The one JSON object `bendsave ... --json` printed; fails on a non-zero exit or an error object. */
const bendsaveJson = (m: Measured): Record<string, unknown> => {
  const line = m.stdout
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .pop()
  if (m.exitCode !== 0 || line === undefined) return fail(m, "failed")
  const parsed = JSON.parse(line) as Record<string, unknown>
  if (parsed.error !== undefined) return fail(m, "reported an error")
  return parsed
}

/** The summary line of `restic backup --json`. */
const resticSummary = (m: Measured): Record<string, unknown> => {
  if (m.exitCode !== 0) return fail(m, "failed")
  const line = m.stdout
    .trim()
    .split("\n")
    .filter((l) => l.includes('"message_type":"summary"'))
    .pop()
  if (line === undefined) return fail(m, "printed no summary")
  return JSON.parse(line) as Record<string, unknown>
}

const requireOk = (m: Measured): Measured => (m.exitCode === 0 ? m : fail(m, "failed"))

let cachesDropped = true
/** Busiest "other load" (cores) seen when a timed command had to start anyway. */
let worstStartLoad = 0
let quietBudget = config.quietWait
const benchStarted = Date.now()
const RETRY_WINDOW_MS = 6 * 60 * 1000

/**
 * Before every timed command: wait until other programs use less than a quarter of a core (at most
 * 30 s, and BENCH_QUIET_WAIT seconds over the whole run), then (unless `cold` is false) sync and
 * drop the page cache.
 */
const settle = async (cold = true): Promise<void> => {
  const waitStarted = Date.now()
  const load = await waitForQuiet(0.25, Math.min(30, quietBudget))
  quietBudget = Math.max(0, quietBudget - (Date.now() - waitStarted) / 1000)
  if (load > 0.25) log(`note: the machine is busy (${load.toFixed(2)} cores used by other programs); starting anyway`)
  worstStartLoad = Math.max(worstStartLoad, load)
  if (cold && !dropCaches()) cachesDropped = false
}

/** Whether other programs competed noticeably for the CPU while `m` ran. */
const disturbed = (m: Measured): boolean => m.otherCpuSeconds > 0.1 * m.seconds + 0.05

/**
 * One timed command: `prepare` (untimed: reset its target), settle (quiet machine, cold cache),
 * `run`. When other programs competed for the CPU during the run, prepares and measures again
 * (up to `retries` times, default BENCH_RETRIES, while the run is young) and keeps the least
 * disturbed attempt.
 */
const timed = async (
  prepare: () => unknown,
  run: () => Promise<Measured>,
  options: { cold?: boolean; retries?: number } = {},
): Promise<Measured> => {
  let best: Measured | undefined
  const retries = options.retries ?? config.retries
  for (let attempt = 0; ; attempt++) {
    await prepare()
    await settle(options.cold ?? true)
    const m = { ...(await run()), attempts: attempt + 1 }
    if (best === undefined || m.otherCpuSeconds < best.otherCpuSeconds) best = m
    if (!disturbed(m) || m.exitCode !== 0) return m
    if (attempt >= retries || Date.now() - benchStarted > RETRY_WINDOW_MS) return best
    log(`  ${m.label}: other programs used ${m.otherCpuSeconds.toFixed(2)} CPU-s during its ${m.seconds.toFixed(2)} s; measuring again`)
  }
}

const fresh = (dir: string): string => {
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

// ---------------------------------------------------------------------------------------------
// One repetition of the main phases
// ---------------------------------------------------------------------------------------------

interface Pair {
  readonly bendsave: Measured
  readonly restic: Measured
}

interface Repetition {
  readonly copy: Measured
  readonly full: Pair
  readonly incremental: Pair
  readonly restore: Pair
  readonly bendsaveStats: { full: Record<string, unknown>; incremental: Record<string, unknown>; restore: Record<string, unknown> }
  readonly resticStats: { full: Record<string, unknown>; incremental: Record<string, unknown> }
  readonly repoBytes: { bendsave: number; restic: number }
  readonly verified: { bendsave: ReturnType<typeof verifyTree>; restic: ReturnType<typeof verifyTree> }
}

const runMain = async (dataset: Dataset, rep: number): Promise<Repetition> => {
  const dir = fresh(path.join(runDir, "main"))
  const bsRepo = path.join(dir, "bendsave-repo")
  const rsRepo = path.join(dir, "restic-repo")
  const rsCache = path.join(dir, "restic-cache")
  const bsTarget = path.join(dir, "bendsave-restore")
  const rsTarget = path.join(dir, "restic-restore")
  const copyTarget = path.join(dir, "copy")
  const tag = config.repeat > 1 ? ` (repetition ${rep + 1}/${config.repeat})` : ""
  const resticInit = async () => {
    fs.rmSync(rsRepo, { recursive: true, force: true })
    fs.rmSync(rsCache, { recursive: true, force: true })
    requireOk(await restic("init", ["-r", rsRepo, "init"], rsCache))
  }
  const bsBackup = (label: string) => () => bendsave(label, ["backup", "--from", dataset.clusterToml, "--to", bsRepo, "--json"])
  const rsBackup = (label: string) => () => restic(label, ["-r", rsRepo, "backup", "--json", dataset.dataDir], rsCache)

  log(`reference: cp -r${tag}`)
  const copy = requireOk(
    await timed(
      () => fs.rmSync(copyTarget, { recursive: true, force: true }),
      () => measure("cp -r", "cp", ["-r", dataset.dataDir, copyTarget]),
    ),
  )
  fs.rmSync(copyTarget, { recursive: true, force: true })

  log(`full backup${tag}`)
  const bsFull = await timed(() => fs.rmSync(bsRepo, { recursive: true, force: true }), bsBackup("backup-full"))
  const bsFullStats = bendsaveJson(bsFull)
  // The repository holds the backup of the LAST attempt (each attempt starts from an empty
  // repository), which is not the kept one when an earlier attempt was less disturbed.
  const fullManifest = path.join(bsRepo, "manifests", fs.readdirSync(path.join(bsRepo, "manifests"))[0])
  const rsFull = await timed(resticInit, rsBackup("backup-full"))
  const rsFullStats = resticSummary(rsFull)
  if (bsFullStats.files_total !== dataset.files.length || bsFullStats.bytes_total !== dataset.totalBytes) {
    fail(
      bsFull,
      `backed up ${bsFullStats.files_total} files / ${bsFullStats.bytes_total} bytes, expected ${dataset.files.length} / ${dataset.totalBytes}`,
    )
  }

  // A repeated attempt is another no-change backup: the same work.
  log(`no-change incremental backup${tag}`)
  const bsIncr = await timed(() => {}, bsBackup("backup-incremental"))
  const bsIncrStats = bendsaveJson(bsIncr)
  const rsIncr = await timed(() => {}, rsBackup("backup-incremental"))
  const rsIncrStats = resticSummary(rsIncr)
  if (bsIncrStats.files_reused !== dataset.files.length) {
    log(`note: bendsave's no-change backup reused ${bsIncrStats.files_reused} of ${dataset.files.length} files`)
  }

  log(`full restore${tag}`)
  let bsTargetToml = ""
  const bsRestore = await timed(
    () => {
      fs.rmSync(bsTarget, { recursive: true, force: true })
      bsTargetToml = writeCluster(bsTarget)
    },
    () => bendsave("restore", ["restore", "--from", fullManifest, "--to", bsTargetToml, "--confirm", "--json"]),
  )
  const bsRestoreStats = bendsaveJson(bsRestore)
  const rsRestore = requireOk(
    await timed(
      () => {
        fresh(rsTarget)
      },
      () => restic("restore", ["-r", rsRepo, "restore", "latest", "--target", rsTarget], rsCache),
    ),
  )

  log(`verifying both restores (every file: path, size, SHA-256)${tag}`)
  const verified = {
    bendsave: verifyTree(path.join(bsTarget, "data"), dataset),
    restic: verifyTree(path.join(rsTarget, dataset.dataDir), dataset),
  }
  const repoBytes = { bendsave: treeSize(bsRepo).bytes, restic: treeSize(rsRepo).bytes }
  if (!config.keep) fs.rmSync(dir, { recursive: true, force: true })
  return {
    copy,
    full: { bendsave: bsFull, restic: rsFull },
    incremental: { bendsave: bsIncr, restic: rsIncr },
    restore: { bendsave: bsRestore, restic: rsRestore },
    bendsaveStats: { full: bsFullStats, incremental: bsIncrStats, restore: bsRestoreStats },
    resticStats: { full: rsFullStats, incremental: rsIncrStats },
    repoBytes,
    verified,
  }
}

// ---------------------------------------------------------------------------------------------
// Peak memory versus file size: single-file data sets of growing size
// ---------------------------------------------------------------------------------------------

/** Single-file data sets for the memory check; the verdict compares the last two. */
const MEMORY_SIZES_MIB = [64, 256, 1024] as const
const MEMORY_VERDICT_MIB = [256, 1024] as const
/** Allowed growth of bendsave's peak RSS from the 256 MiB file to the 4x larger one. */
const MEMORY_GROWTH_LIMIT = 0.2

interface MemoryRow {
  readonly dataset: string
  readonly bytes: number
  /** BENCH_MEMORY_RUNS runs each: peak RSS depends on when V8 collects garbage, so one run is not enough. */
  readonly bendsaveBackup: ReadonlyArray<Measured>
  readonly bendsaveRestore: ReadonlyArray<Measured>
  readonly resticBackup: Measured
  readonly resticRestore: Measured
  readonly verified: boolean
}

const runsOf = (runs: ReadonlyArray<Measured>): string => runs.map((m) => m.peakRssMiB.toFixed(0)).join(", ")

/** The worst (highest) peak RSS of several runs. */
const worstPeak = (runs: ReadonlyArray<Measured>): number => Math.max(...runs.map((m) => m.peakRssMiB))

const runMemory = async (dataset: Dataset): Promise<MemoryRow> => {
  const dir = fresh(path.join(runDir, dataset.spec.name))
  const bsRepo = path.join(dir, "bendsave-repo")
  const rsRepo = path.join(dir, "restic-repo")
  const rsCache = path.join(dir, "restic-cache")
  const bsTarget = path.join(dir, "bendsave-restore")
  const rsTarget = path.join(dir, "restic-restore")
  const name = dataset.spec.name
  log(`memory check: ${dataset.spec.description} (bendsave ${config.memoryRuns} times, restic once)`)
  const once = { retries: 0 }
  const bsBackups: Array<Measured> = []
  const bsRestores: Array<Measured> = []
  let verified = true
  for (let run = 0; run < config.memoryRuns; run++) {
    const bsBackup = await timed(
      () => fs.rmSync(bsRepo, { recursive: true, force: true }),
      () => bendsave(`backup-${name}`, ["backup", "--from", dataset.clusterToml, "--to", bsRepo, "--json"]),
      once,
    )
    const stats = bendsaveJson(bsBackup)
    bsBackups.push(bsBackup)
    let bsTargetToml = ""
    const bsRestore = await timed(
      () => {
        fs.rmSync(bsTarget, { recursive: true, force: true })
        bsTargetToml = writeCluster(bsTarget)
      },
      () => bendsave(`restore-${name}`, ["restore", "--from", String(stats.manifest), "--to", bsTargetToml, "--confirm", "--json"]),
      once,
    )
    bendsaveJson(bsRestore)
    bsRestores.push(bsRestore)
    verified &&= verifyTree(path.join(bsTarget, "data"), dataset).ok
  }
  const rsBackup = requireOk(
    await timed(
      async () => {
        fs.rmSync(rsRepo, { recursive: true, force: true })
        fs.rmSync(rsCache, { recursive: true, force: true })
        requireOk(await restic("init", ["-r", rsRepo, "init"], rsCache))
      },
      () => restic(`backup-${name}`, ["-r", rsRepo, "backup", "--json", dataset.dataDir], rsCache),
      once,
    ),
  )
  const rsRestore = requireOk(
    await timed(
      () => fresh(rsTarget),
      () => restic(`restore-${name}`, ["-r", rsRepo, "restore", "latest", "--target", rsTarget], rsCache),
      once,
    ),
  )
  verified &&= verifyTree(path.join(rsTarget, dataset.dataDir), dataset).ok
  if (!config.keep) fs.rmSync(dir, { recursive: true, force: true })
  return {
    dataset: dataset.spec.description,
    bytes: dataset.totalBytes,
    bendsaveBackup: bsBackups,
    bendsaveRestore: bsRestores,
    resticBackup: rsBackup,
    resticRestore: rsRestore,
    verified,
  }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : "n/a")
const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : "n/a")
const f3 = (n: number): string => (Number.isFinite(n) ? n.toFixed(3) : "n/a")

/** Newest mtime of any file under `dir` (0 when it does not exist). */
const newestMtime = (dir: string): number => {
  if (!fs.existsSync(dir)) return 0
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs)
  }
  return newest
}

/** What the CLI entry runs: its install-time bundle when that is newer than every source file, else the sources (same rule as bin/bendsave.js). */
const bendsaveEntry = (): string => {
  const bundle = path.join(repoRoot, "packages/cli/dist/bendsave.mjs")
  if (!fs.existsSync(bundle)) return "TypeScript sources (no bundle)"
  const fresh =
    fs.statSync(bundle).mtimeMs >=
    Math.max(newestMtime(path.join(repoRoot, "packages/cli/src")), newestMtime(path.join(repoRoot, "packages/core/src")))
  return fresh ? "bundle dist/bendsave.mjs" : "TypeScript sources (bundle older than the sources)"
}

const environment = (restic: string, bendsaveVersion: string) => {
  const cpuModel = /model name\s*:\s*(.*)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? os.cpus()[0]?.model ?? "unknown"
  const git = (args: ReadonlyArray<string>) => spawnSync("git", ["-C", repoRoot, ...args], { encoding: "utf8" }).stdout?.trim() ?? ""
  const fsType =
    spawnSync("findmnt", ["-no", "FSTYPE", "-T", config.workDir], { encoding: "utf8" }).stdout?.trim() ||
    spawnSync("stat", ["-f", "-c", "%T", config.workDir], { encoding: "utf8" }).stdout?.trim() ||
    "unknown"
  return {
    date: new Date().toISOString(),
    cpu: `${cpuModel} (${os.cpus().length} cores)`,
    memory_gib: Number((os.totalmem() / GiB).toFixed(1)),
    kernel: `${os.type()} ${os.release()}`,
    work_dir: config.workDir,
    work_dir_fs: fsType,
    node: process.version,
    restic: restic.split("\n")[0],
    bendsave: bendsaveVersion,
    bendsave_entry: bendsaveEntry(),
    git_commit: git(["rev-parse", "--short", "HEAD"]),
    uncommitted_changes_under_packages: git(["status", "--porcelain", "packages"])
      .split("\n")
      .filter((l) => l !== "").length,
  }
}

const main = async (): Promise<void> => {
  const started = performance.now()
  log(`work dir ${config.workDir}; data set ${config.gib} GiB; ${config.repeat} repetition(s)`)
  if (!process.version.startsWith("v22."))
    log(`warning: running on Node ${process.version}; the project targets Node 22 (run via npm run bench / npx)`)

  // 1. Tools.
  const resticVersion = ensureTool("restic", "restic", ["version"], "restic", log)
  ensureTool("GNU time (peak RSS)", GNU_TIME, ["-f", "%M", "true"], "time", log)
  log(`using ${resticVersion.split("\n")[0]}; peak RSS from ${GNU_TIME} -f %M`)
  fs.mkdirSync(config.workDir, { recursive: true })
  if (config.profile) fresh(profileDir)
  const canDrop = dropCaches()
  cachesDropped = canDrop
  log(
    canDrop
      ? "page cache: dropped before every timed command"
      : "page cache: cannot drop it here (needs root and a writable /proc/sys/vm/drop_caches); runs see a warm cache",
  )

  // 2. Data sets.
  const dataset = ensureDataset(path.join(config.workDir, "datasets", "main"), mainSpec(config.gib, config.seed), log)
  const memorySets = config.memoryCheck
    ? MEMORY_SIZES_MIB.map((mib) =>
        ensureDataset(path.join(config.workDir, "datasets", `single-${mib}mib`), singleFileSpec(mib, config.seed + mib), log),
      )
    : []

  // Startup cost of each CLI (cold cache, then warm), for context.
  const noop = () => {}
  const bsStartCold = requireOk(await timed(noop, () => bendsave("version-cold", ["--version"], false)))
  const bsStartWarm = requireOk(await timed(noop, () => bendsave("version-warm", ["--version"], false), { cold: false }))
  const rsStartCold = requireOk(await timed(noop, () => restic("version-cold", ["version"], os.tmpdir())))
  const rsStartWarm = requireOk(await timed(noop, () => restic("version-warm", ["version"], os.tmpdir()), { cold: false }))
  const env = environment(resticVersion, bsStartWarm.stdout.trim())
  const entryAtStart = env.bendsave_entry

  // 3. Phases.
  const reps: Array<Repetition> = []
  for (let rep = 0; rep < config.repeat; rep++) reps.push(await runMain(dataset, rep))
  const memory: Array<MemoryRow> = []
  for (const set of memorySets) memory.push(await runMemory(set))
  if (!config.keep) fs.rmSync(runDir, { recursive: true, force: true })
  // The CLI runs its bundle only while the bundle is newer than every source file: an edit under
  // packages/ during the run switches it to the (slower starting) sources.
  const entryAtEnd = bendsaveEntry()
  if (entryAtEnd !== entryAtStart) log(`warning: bendsave ran the ${entryAtStart} at the start but the ${entryAtEnd} at the end`)
  const fromSources = entryAtStart.startsWith("TypeScript") || entryAtEnd.startsWith("TypeScript")

  // 4. Figures.
  const bytes = dataset.totalBytes
  const pick = (get: (r: Repetition) => Measured) => ({
    seconds: median(reps.map((r) => get(r).seconds)),
    peakRssMiB: median(reps.map((r) => get(r).peakRssMiB)),
    syncSeconds: median(reps.map((r) => get(r).syncSeconds)),
    cpuSeconds: median(reps.map((r) => get(r).cpuSeconds)),
    otherCpuSeconds: median(reps.map((r) => get(r).otherCpuSeconds)),
    all_seconds: reps.map((r) => get(r).seconds),
    all_peak_rss_mib: reps.map((r) => get(r).peakRssMiB),
    attempts: reps.map((r) => get(r).attempts ?? 1),
  })
  const phaseNames = { full: "full backup", incremental: "no-change incremental backup", restore: "full restore" } as const
  const phases = (Object.keys(phaseNames) as Array<keyof typeof phaseNames>).map((key) => {
    const b = pick((r) => r[key].bendsave)
    const r = pick((x) => x[key].restic)
    return {
      key,
      phase: phaseNames[key],
      bendsave: { ...b, mib_per_s: bytes / MiB / b.seconds },
      restic: { ...r, mib_per_s: bytes / MiB / r.seconds },
      ratio: b.seconds / r.seconds,
    }
  })
  const copy = pick((r) => r.copy)
  const byKey = Object.fromEntries(phases.map((p) => [p.key, p]))

  // The verdict compares one 256 MiB file with one 1 GiB file (4x larger). Smaller files may not fill
  // bendsave's in-flight window (several 8 MiB blocks at once), which would lower their peak for
  // that reason alone; the 64 MiB row is printed for context only.
  const memSmall = memory.find((m) => m.bytes === MEMORY_VERDICT_MIB[0] * MiB)
  const memLarge = memory.find((m) => m.bytes === MEMORY_VERDICT_MIB[1] * MiB)
  const growth = (get: (m: MemoryRow) => ReadonlyArray<Measured>) =>
    memSmall !== undefined && memLarge !== undefined ? worstPeak(get(memLarge)) / worstPeak(get(memSmall)) - 1 : Number.NaN
  const backupGrowth = growth((m) => m.bendsaveBackup)
  const restoreGrowth = growth((m) => m.bendsaveRestore)
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(0)}%`

  const goals = [
    {
      goal: "full backup at least as fast as restic",
      pass: byKey.full.bendsave.seconds <= byKey.full.restic.seconds,
      detail: `bendsave ${f2(byKey.full.bendsave.seconds)} s vs restic ${f2(byKey.full.restic.seconds)} s (ratio ${f3(byKey.full.ratio)})`,
    },
    {
      goal: "restore at least as fast as restic",
      pass: byKey.restore.bendsave.seconds <= byKey.restore.restic.seconds,
      detail: `bendsave ${f2(byKey.restore.bendsave.seconds)} s vs restic ${f2(byKey.restore.restic.seconds)} s (ratio ${f3(byKey.restore.ratio)})`,
    },
    {
      goal: "no-change incremental at most half of restic's time",
      pass: byKey.incremental.bendsave.seconds <= 0.5 * byKey.incremental.restic.seconds,
      detail: `bendsave ${f2(byKey.incremental.bendsave.seconds)} s vs restic ${f2(byKey.incremental.restic.seconds)} s (ratio ${f3(byKey.incremental.ratio)}, needs <= 0.500)`,
    },
    {
      goal: "peak memory does not grow with file size",
      pass:
        memSmall !== undefined && memLarge !== undefined
          ? backupGrowth <= MEMORY_GROWTH_LIMIT && restoreGrowth <= MEMORY_GROWTH_LIMIT
          : null,
      detail:
        memSmall !== undefined && memLarge !== undefined
          ? `bendsave peak RSS (worst of ${config.memoryRuns} runs), one ${MEMORY_VERDICT_MIB[0]} MiB file -> one ${MEMORY_VERDICT_MIB[1]} MiB file: backup ${f1(worstPeak(memSmall.bendsaveBackup))} -> ${f1(worstPeak(memLarge.bendsaveBackup))} MiB (${pct(backupGrowth)}), restore ${f1(worstPeak(memSmall.bendsaveRestore))} -> ${f1(worstPeak(memLarge.bendsaveRestore))} MiB (${pct(restoreGrowth)}); pass if neither grows by more than ${(100 * MEMORY_GROWTH_LIMIT).toFixed(0)}% for the 4x larger file`
          : "not measured (BENCH_MEMORY=0)",
    },
  ]

  const verifiedOk = reps.every((r) => r.verified.bendsave.ok && r.verified.restic.ok) && memory.every((m) => m.verified)
  const last = reps[reps.length - 1]
  const results = {
    environment: { ...env, bendsave_entry_at_end: entryAtEnd },
    config: { ...config, page_cache_dropped: cachesDropped, busiest_other_load_at_start_cores: worstStartLoad },
    dataset: {
      description: dataset.spec.description,
      files: dataset.files.length,
      bytes,
      generated_this_run: dataset.generated,
      generate_seconds: dataset.generateSeconds,
    },
    startup: {
      bendsave_cold: { seconds: bsStartCold.seconds, peakRssMiB: bsStartCold.peakRssMiB },
      bendsave_warm: { seconds: bsStartWarm.seconds, peakRssMiB: bsStartWarm.peakRssMiB },
      restic_cold: { seconds: rsStartCold.seconds, peakRssMiB: rsStartCold.peakRssMiB },
      restic_warm: { seconds: rsStartWarm.seconds, peakRssMiB: rsStartWarm.peakRssMiB },
    },
    phases,
    copy_reference: { ...copy, mib_per_s: bytes / MiB / copy.seconds },
    repository_bytes: last.repoBytes,
    bendsave_reported: last.bendsaveStats,
    restic_reported: last.resticStats,
    restore_verification: reps.map((r) => r.verified),
    memory: memory.map((m) => ({
      dataset: m.dataset,
      bytes: m.bytes,
      bendsave_backup: m.bendsaveBackup.map((x) => ({ seconds: x.seconds, peakRssMiB: x.peakRssMiB })),
      bendsave_restore: m.bendsaveRestore.map((x) => ({ seconds: x.seconds, peakRssMiB: x.peakRssMiB })),
      restic_backup: { seconds: m.resticBackup.seconds, peakRssMiB: m.resticBackup.peakRssMiB },
      restic_restore: { seconds: m.resticRestore.seconds, peakRssMiB: m.resticRestore.peakRssMiB },
      restores_verified: m.verified,
    })),
    goals,
    restores_verified: verifiedOk,
    total_seconds: (performance.now() - started) / 1000,
  }
  const resultsPath = path.join(config.workDir, "results.json")
  fs.writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`)

  // 5. Markdown summary.
  const out: Array<string> = []
  const line = (s = "") => out.push(s)
  line("## bendsave vs restic")
  line()
  line(`- machine: ${env.cpu}, ${env.memory_gib} GiB RAM, ${env.kernel}, work dir on ${env.work_dir_fs}`)
  line(
    `- tools: ${env.bendsave} (commit ${env.git_commit}${env.uncommitted_changes_under_packages > 0 ? `, ${env.uncommitted_changes_under_packages} uncommitted paths under packages/` : ""}) on Node ${env.node}, running the ${env.bendsave_entry}${entryAtEnd !== entryAtStart ? ` at the start but the ${entryAtEnd} by the end (sources edited during the run: figures mix both)` : ""}; ${env.restic}`,
  )
  if (fromSources) {
    line(
      "- note: bendsave ran from its TypeScript sources, not its bundle, for at least part of the run: it starts about 1 s slower and uses more memory than an installed bendsave; run `npm run build` (or `npm install`) and benchmark again",
    )
  }
  line(
    `- data set: ${(bytes / GiB).toFixed(2)} GiB, ${dataset.files.length} files: ${dataset.spec.description}; random (incompressible) bytes`,
  )
  line(
    `- page cache dropped before every timed command: ${cachesDropped ? "yes" : "no"}; ${config.repeat > 1 ? `median of ${config.repeat} repetitions` : "single run"}; each tool starts from a fresh repository on the same disk`,
  )
  line()
  line(
    "| phase | bendsave s | restic s | ratio (bendsave/restic) | bendsave MiB/s | restic MiB/s | bendsave peak RSS MiB | restic peak RSS MiB |",
  )
  line("|---|---:|---:|---:|---:|---:|---:|---:|")
  for (const p of phases) {
    line(
      `| ${p.phase} | ${f2(p.bendsave.seconds)} | ${f2(p.restic.seconds)} | ${f2(p.ratio)} | ${f1(p.bendsave.mib_per_s)} | ${f1(p.restic.mib_per_s)} | ${f1(p.bendsave.peakRssMiB)} | ${f1(p.restic.peakRssMiB)} |`,
    )
  }
  line(
    `| reference: \`cp -r\` of the data set | ${f2(copy.seconds)} (cp) | | | ${f1(bytes / MiB / copy.seconds)} (cp) | | ${f1(copy.peakRssMiB)} (cp) | |`,
  )
  line()
  line("MiB/s is data-set size / wall time (for the no-change backup: the rate at which unchanged data is confirmed).")
  if (reps.length > 1) {
    const spread = (xs: ReadonlyArray<number>) => `${f2(Math.min(...xs))}–${f2(Math.max(...xs))}`
    line(
      `Spread over the ${reps.length} repetitions (min–max s): ${phases.map((p) => `${p.phase}: bendsave ${spread(p.bendsave.all_seconds)}, restic ${spread(p.restic.all_seconds)}`).join("; ")}; \`cp -r\` ${spread(copy.all_seconds)}.`,
    )
  }
  line(
    `Wall time includes process start-up: \`bendsave --version\` takes ${f2(bsStartCold.seconds)} s with a cold cache, ${f2(bsStartWarm.seconds)} s warm (peak RSS ${f1(bsStartWarm.peakRssMiB)} MiB); \`restic version\` ${f2(rsStartCold.seconds)} s cold, ${f2(rsStartWarm.seconds)} s warm.`,
  )
  line()
  line(
    "CPU time (user + system) of each command, and the time until its data is durable (the command, then a `sync` of what it left in the page cache; bendsave fsyncs every file it writes, restic fsyncs its pack files but not restored files, cp fsyncs nothing):",
  )
  line()
  line("| phase | bendsave CPU s | restic CPU s | bendsave s + sync | restic s + sync |")
  line("|---|---:|---:|---:|---:|")
  for (const p of phases) {
    line(
      `| ${p.phase} | ${f2(p.bendsave.cpuSeconds)} | ${f2(p.restic.cpuSeconds)} | ${f2(p.bendsave.seconds + p.bendsave.syncSeconds)} (+${f2(p.bendsave.syncSeconds)}) | ${f2(p.restic.seconds + p.restic.syncSeconds)} (+${f2(p.restic.syncSeconds)}) |`,
    )
  }
  line(`| \`cp -r\` | ${f2(copy.cpuSeconds)} (cp) | | ${f2(copy.seconds + copy.syncSeconds)} (+${f2(copy.syncSeconds)}) (cp) | |`)
  const allTimed = reps.flatMap((r) => [
    r.copy,
    r.full.bendsave,
    r.full.restic,
    r.incremental.bendsave,
    r.incremental.restic,
    r.restore.bendsave,
    r.restore.restic,
  ])
  const noisy = allTimed.filter(disturbed)
  line()
  line(
    noisy.length === 0
      ? `Other processes were quiet during every timed command (at most ${f2(Math.max(...allTimed.map((m) => m.otherCpuSeconds)))} CPU-s of other programs' user time per command).`
      : `Warning: other programs still competed for the CPU (after up to ${config.retries + 1} attempts) during ${noisy.map((m) => `${m.label} (${f2(m.otherCpuSeconds)} CPU-s over ${f2(m.seconds)} s)`).join(", ")}; those figures are less reliable.`,
  )
  line()
  line(
    `Repository size after both backups: bendsave ${f1(last.repoBytes.bendsave / MiB)} MiB, restic ${f1(last.repoBytes.restic / MiB)} MiB (restic compresses with zstd, bendsave stores blocks uncompressed; on random data neither can save anything).`,
  )
  const bsIncr = last.bendsaveStats.incremental
  const rsIncr = last.resticStats.incremental
  line(
    `No-change backup: bendsave reused ${bsIncr.files_reused}/${bsIncr.files_total} files and read ${bsIncr.bytes_read} bytes; restic reported ${rsIncr.files_unmodified} unmodified files, ${rsIncr.data_added} bytes added.`,
  )
  line(
    `Restores verified byte-identical (every file's path, size and SHA-256, no extra files)${reps.length > 1 ? ` in all ${reps.length} repetitions` : ""}: bendsave ${reps.every((r) => r.verified.bendsave.ok) ? "yes" : "NO"}, restic ${reps.every((r) => r.verified.restic.ok) ? "yes" : "NO"}.`,
  )
  if (memory.length > 0) {
    line()
    line(`Peak RSS (MiB) against file size; for bendsave the worst of ${config.memoryRuns} runs (all runs in brackets), restic once:`)
    line()
    line("| data set | bendsave backup | bendsave restore | restic backup | restic restore |")
    line("|---|---:|---:|---:|---:|")
    for (const m of memory) {
      line(
        `| ${m.dataset} | ${f1(worstPeak(m.bendsaveBackup))} (${runsOf(m.bendsaveBackup)}) | ${f1(worstPeak(m.bendsaveRestore))} (${runsOf(m.bendsaveRestore)}) | ${f1(m.resticBackup.peakRssMiB)} | ${f1(m.resticRestore.peakRssMiB)} |`,
      )
    }
    line()
    line(
      `The verdict compares the ${MEMORY_VERDICT_MIB[0]} MiB and ${MEMORY_VERDICT_MIB[1]} MiB files: a file of only a few 8 MiB blocks may not fill bendsave's in-flight window, so the ${MEMORY_SIZES_MIB[0]} MiB row is context only. Peak RSS does not depend on CPU contention much, so these runs are not repeated when the machine is busy.`,
    )
  }
  line()
  line("Goals:")
  line()
  for (const g of goals) line(`- ${g.pass === null ? "SKIPPED" : g.pass ? "PASS" : "FAIL"}: ${g.goal} — ${g.detail}`)
  line()
  line(
    `Results written to ${path.relative(process.cwd(), resultsPath).startsWith("..") ? resultsPath : path.relative(process.cwd(), resultsPath)}; benchmark took ${f1(results.total_seconds)} s.`,
  )
  process.stdout.write(`${out.join("\n")}\n`)

  if (!verifiedOk) {
    for (const r of reps) {
      for (const [tool, v] of Object.entries(r.verified)) if (!v.ok) log(`RESTORE BROKEN (${tool}): ${v.problems.join("; ")}`)
    }
    for (const m of memory) if (!m.verified) log(`RESTORE BROKEN in the memory check (${m.dataset})`)
    log("error: a restore is not byte-identical to the data set; its timing is meaningless")
    process.exitCode = 1
  }
}

main().catch((error: unknown) => {
  log(
    error instanceof BenchFailure
      ? `error: ${error.message}`
      : `error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  )
  process.exitCode = 1
})
