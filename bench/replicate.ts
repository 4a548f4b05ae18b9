/**
 * Benchmark of `bendsave replicate` on a local cluster of 1 GiB in 20 000
 * files (plus 1 000 meta keys), into an empty local cluster:
 *
 *   1. first round (everything moves);
 *   2. 1 % of the files rewritten (new bytes, same sizes) and 1 % of the keys
 *      changed; second round: time, bytes moved versus bytes changed;
 *   3. a no-change round;
 *   4. for comparison, in the same run: `rclone sync` of the same directory
 *      into a directory of its own, before the change (full) and after it.
 *
 * After the second round the target's files must equal the source's
 * (`diff -r`), else the benchmark fails. A benchmark, not a test: missed
 * goals do not change the exit code.
 *
 *   npm run bench:replicate
 *
 * Environment: BENCH_DIR (default bench/.work), BENCH_REPL_FILES (20000),
 * BENCH_REPL_MIB (1024), BENCH_REPL_CHANGED_PERCENT (1), BENCH_SEED (42).
 * Results: markdown on stdout, JSON in <work>/replicate-results.json.
 */
import { spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { type DatasetSpec, ensureDataset } from "./dataset.ts"
import { ensureTool, type Measured, measure } from "./measure.ts"

const MiB = 1024 * 1024
const repoRoot = path.resolve(import.meta.dirname, "..")
const cli = path.join(repoRoot, "node_modules/.bin/bendsave")
const env = (name: string, fallback: number) => {
  const raw = process.env[name]
  const n = raw === undefined || raw === "" ? fallback : Number(raw)
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`error: ${name}=${raw} is not a positive number`)
    process.exit(2)
  }
  return n
}
const workDir = path.resolve(process.env.BENCH_DIR ?? path.join(repoRoot, "bench/.work"))
const fileCount = Math.floor(env("BENCH_REPL_FILES", 20_000))
const totalMiB = env("BENCH_REPL_MIB", 1024)
const changedPercent = env("BENCH_REPL_CHANGED_PERCENT", 1)
const seed = Math.floor(env("BENCH_SEED", 42))
const log = (line: string) => console.error(`[bench:replicate] ${line}`)
const fail = (message: string): never => {
  console.error(`[bench:replicate] FAILED: ${message}`)
  process.exit(1)
}

ensureTool("rclone", "rclone", ["version"], "rclone", log)
ensureTool("GNU time", "/usr/bin/time", ["-f", "%M", "true"], "time", log)

// A data set shaped like a data cluster: 20 databases x 50 tables x 20 files of about 52 KiB.
const spec: DatasetSpec = (() => {
  const average = Math.floor((totalMiB * MiB) / fileCount)
  const files = Array.from({ length: fileCount }, (_, i) => ({
    path: `db${String(i % 20).padStart(2, "0")}/t${String(Math.floor(i / 20) % 50).padStart(2, "0")}/_d/part-${String(i).padStart(6, "0")}.parquet`,
    // Sizes vary by +-25 % around the average and still add up to about the total.
    size: average + Math.round((((i * 7919) % 1000) / 1000) * average * 0.5 - average * 0.25),
  }))
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  return { name: `replicate-${fileCount}`, seed, description: `${fileCount} files, about ${totalMiB} MiB`, files }
})()

const main = async () => {
  fs.mkdirSync(workDir, { recursive: true })
  const dataset = ensureDataset(path.join(workDir, spec.name), spec, log)
  const run = path.join(workDir, "replicate-run")
  fs.rmSync(run, { recursive: true, force: true })
  const src = path.join(run, "src")
  const dst = path.join(run, "dst")
  const rcloneDst = path.join(run, "rclone-dst")
  fs.mkdirSync(src, { recursive: true })
  log("copying the data set into a working source cluster ...")
  const cp = spawnSync("cp", ["-r", "--reflink=auto", dataset.dataDir, path.join(src, "data")])
  if (cp.status !== 0) fail(`cp: ${cp.stderr}`)
  const toml = (name: string) =>
    `name = "${name}"\n[meta]\ntype = "local"\npath = "./meta"\n[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./data"\n`
  fs.writeFileSync(path.join(src, "cluster.toml"), toml("bench"))
  fs.mkdirSync(dst, { recursive: true })
  fs.writeFileSync(path.join(dst, "cluster.toml"), toml("standby"))
  const keys = 1000
  const metaLines = (version: (i: number) => number) =>
    Array.from({ length: keys }, (_, i) =>
      JSON.stringify({
        key: `catalog/tables/db${i % 20}/t${i}`,
        value: JSON.stringify({ id: i, location: `db${i % 20}/t${i}/`, v: version(i) }),
      }),
    ).join("\n")
  fs.writeFileSync(
    path.join(run, "meta1.jsonl"),
    metaLines(() => 1),
  )
  const imported = spawnSync(
    cli,
    ["meta", "import", "--cluster", path.join(src, "cluster.toml"), "--input", path.join(run, "meta1.jsonl")],
    {
      env: { ...process.env, PATH: `${path.dirname(cli)}:${process.env.PATH}` },
    },
  )
  if (imported.status !== 0) fail(`meta import: ${imported.stderr}`)

  const cliEnv = { ...process.env, PATH: `${path.dirname(cli)}:${process.env.PATH}` }
  const replicate = async (label: string) => {
    const m = await measure(
      label,
      cli,
      ["replicate", "--from", path.join(src, "cluster.toml"), "--to", path.join(dst, "cluster.toml"), "--json"],
      {
        env: cliEnv,
        cwd: run,
      },
    )
    if (m.exitCode !== 0) fail(`${label}: exit ${m.exitCode}\n${m.stdout}\n${m.stderr}`)
    return { m, result: JSON.parse(m.stdout) as Record<string, number> }
  }
  const rclone = async (label: string) => {
    const m = await measure(label, "rclone", ["sync", path.join(src, "data"), rcloneDst, "-v"], { cwd: run })
    if (m.exitCode !== 0) fail(`${label}: exit ${m.exitCode}\n${m.stderr}`)
    // rclone's final stats: "Transferred:   <bytes> / <total>, 100%, ..." then "Transferred:   <files> / <files>, 100%".
    const bytes = /Transferred:\s+([\d.]+ ?[KMGT]?i?B) \//.exec(m.stderr)
    const files = /Transferred:\s+(\d+) \/ \d+, 100%\s*$/m.exec(m.stderr)
    return { m, transferred: `${bytes?.[1] ?? "?"}${files !== null ? ` (${files[1]} files)` : ""}` }
  }

  log("round 1 (everything) ...")
  const r1 = await replicate("bendsave replicate, first round")
  log("rclone sync (full) ...")
  const rc1 = await rclone("rclone sync, full")

  // The change: 1 % of the files get new bytes (same sizes), 1 % of the keys new values.
  const changedFiles = Math.max(1, Math.round((fileCount * changedPercent) / 100))
  let changedBytes = 0
  for (let i = 0; i < changedFiles; i++) {
    const f = spec.files[Math.floor((i * spec.files.length) / changedFiles)]
    fs.writeFileSync(path.join(src, "data", f.path), randomBytes(f.size))
    changedBytes += f.size
  }
  fs.writeFileSync(
    path.join(run, "meta2.jsonl"),
    metaLines((i) => (i % 100 === 0 ? 2 : 1)),
  )
  const imported2 = spawnSync(
    cli,
    ["meta", "import", "--cluster", path.join(src, "cluster.toml"), "--input", path.join(run, "meta2.jsonl")],
    { env: cliEnv },
  )
  if (imported2.status !== 0) fail(`meta import: ${imported2.stderr}`)

  log(`round 2 (${changedFiles} files, ${(changedBytes / MiB).toFixed(1)} MiB changed) ...`)
  const r2 = await replicate("bendsave replicate, 1% changed")
  log("rclone sync (1% changed) ...")
  const rc2 = await rclone("rclone sync, 1% changed")
  log("round 3 (no change) ...")
  const r3 = await replicate("bendsave replicate, no change")

  const diff = spawnSync("diff", ["-rq", "--exclude=.bendsave", path.join(src, "data"), path.join(dst, "data")], { encoding: "utf8" })
  if (diff.status !== 0) fail(`the target differs from the source:\n${diff.stdout}${diff.stderr}`)
  const rdiff = spawnSync("diff", ["-rq", path.join(src, "data"), rcloneDst], { encoding: "utf8" })
  if (rdiff.status !== 0) fail(`rclone's copy differs from the source:\n${rdiff.stdout}`)

  const row = (m: Measured, moved: string, note = "") =>
    `| ${m.label} | ${m.seconds.toFixed(2)} s | ${m.cpuSeconds.toFixed(2)} s | ${m.peakRssMiB.toFixed(0)} MiB | ${moved} | ${note} |`
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`
  const summary = [
    `## bendsave replicate: ${fileCount} files, ${mib(dataset.totalBytes)}, ${keys} meta keys; ${changedFiles} files (${mib(changedBytes)}) and ${keys / 100} keys changed`,
    "",
    "| run | wall | CPU | peak RSS | moved | notes |",
    "| --- | ---: | ---: | ---: | ---: | --- |",
    row(r1.m, mib(r1.result.bytes_copied), `${r1.result.files_copied} files`),
    row(
      r2.m,
      mib(r2.result.bytes_copied),
      `${r2.result.files_copied} files, ${r2.result.keys_changed} keys; moved/changed = ${(r2.result.bytes_copied / changedBytes).toFixed(3)}; ${((100 * r2.m.seconds) / r1.m.seconds).toFixed(1)} % of the first round`,
    ),
    row(r3.m, mib(r3.result.bytes_copied), `${r3.result.files_copied} files`),
    row(rc1.m, rc1.transferred, "no fsync"),
    row(rc2.m, rc2.transferred, "files only (rclone does not move meta keys); no fsync"),
    "",
    "bendsave fsyncs every file it writes and its directory (a standby must survive a crash); rclone does not.",
    "A bendsave round lists each side once (the plan, checked against MAX_DELETE before anything changes, is kept for the copy) and hashes every copied file (SHA-256).",
    "",
  ].join("\n")
  console.log(summary)
  fs.writeFileSync(
    path.join(workDir, "replicate-results.json"),
    JSON.stringify(
      {
        files: fileCount,
        bytes: dataset.totalBytes,
        changed_files: changedFiles,
        changed_bytes: changedBytes,
        rounds: [r1, r2, r3].map(({ m, result }) => ({
          label: m.label,
          seconds: m.seconds,
          cpu_seconds: m.cpuSeconds,
          peak_rss_mib: m.peakRssMiB,
          result,
        })),
        rclone: [rc1, rc2].map(({ m, transferred }) => ({
          label: m.label,
          seconds: m.seconds,
          cpu_seconds: m.cpuSeconds,
          peak_rss_mib: m.peakRssMiB,
          transferred,
        })),
        hash: createHash("sha256").update(summary).digest("hex").slice(0, 8),
      },
      null,
      2,
    ),
  )
  fs.rmSync(run, { recursive: true, force: true })
}

await main()
