/**
 * Benchmark of the etcd meta driver: 100 000 keys (text and binary keys,
 * values from a few bytes up to 64 KiB), on two etcd servers this script
 * starts with scripts/etcd-up.sh (and stops afterwards).
 *
 * Measured, each in a process of its own (wall time, keys/s, peak RSS):
 *   - driver: replace into an empty prefix (loads the data set), snapshot
 *   - CLI: `bendsave backup` of a meta-only cluster, `restore` dry run,
 *     `restore --confirm` into the second etcd under another prefix, and again
 *     over a drifted copy (1 % of the keys changed, removed, added)
 *   - for comparison on the same server in the same run: `etcdctl snapshot
 *     save` (the whole database file) and `etcdctl get --prefix -w json`
 * The restored prefix is checked to hold exactly the source's keys and values.
 *
 * Usage: npx node bench/etcd.ts [--keys 100000] [--json out.json]
 * Peak RSS comes from GNU time (/usr/bin/time, ru_maxrss of the child) when
 * installed, else from polling /proc/<pid>/status (VmHWM).
 */
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import process from "node:process"

const ROOT = resolve(import.meta.dirname, "..")
const BENDSAVE = join(ROOT, "node_modules/.bin/bendsave")
const NODE_BIN_DIR = join(ROOT, "node_modules/.bin")
const GNU_TIME = "/usr/bin/time"

// ---------------------------------------------------------------------------------------------
// The data set: deterministic, generated lazily in key order (memory does not hold it).

interface Entry {
  readonly key: Uint8Array
  readonly value: Uint8Array
}

/** Value size of key i: mostly catalog-sized JSON, every 20th 4 KiB, every 500th 64 KiB. */
const valueSize = (i: number): number => (i % 500 === 0 ? 64 * 1024 : i % 20 === 0 ? 4096 : 120 + ((i * 37) % 400))

const valueFor = (i: number, salt = 0): Uint8Array => {
  const size = valueSize(i)
  const head = new TextEncoder().encode(`{"id":${i},"salt":${salt},"location":"${i % 97}/${i}/","schema":"`)
  const value = new Uint8Array(size)
  value.set(head.subarray(0, size))
  let x = (i * 2654435761 + salt) >>> 0
  for (let j = head.length; j < size; j++) {
    x = (x * 1103515245 + 12345) >>> 0
    value[j] = 0x61 + ((x >>> 16) % 26)
  }
  return value
}

const textKey = (i: number, suffix = "") =>
  new TextEncoder().encode(`catalog/tables/db${String(i % 50).padStart(2, "0")}/t${String(i).padStart(7, "0")}${suffix}`)

/**
 * Keys in ascending byte order: text keys `catalog/tables/dbNN/tNNNNNNN` for 9
 * in 10 (database by database), then binary keys (0xfe ...). `drift`: every
 * 100th key removed, another changed, one added next to a third.
 */
function* dataset(keys: number, drift = false): Generator<Entry> {
  for (let db = 0; db < 50; db++) {
    for (let i = db; i < keys; i += 50) {
      if (i % 10 === 0) continue
      if (drift && i % 100 === 1) continue
      yield { key: textKey(i), value: valueFor(i, drift && i % 100 === 3 ? 1 : 0) }
      if (drift && i % 100 === 5) yield { key: textKey(i, "x"), value: valueFor(i, 2) }
    }
  }
  for (let i = 0; i < keys; i += 10) {
    yield { key: Uint8Array.of(0xfe, (i >>> 24) & 0xff, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff, 0x00, 0xff), value: valueFor(i) }
  }
}

// ---------------------------------------------------------------------------------------------
// Worker mode: one driver operation in this process, result as JSON on stdout.

const worker = async (op: string, args: Record<string, string>) => {
  const Effect = await import("effect/Effect")
  const Stream = await import("effect/Stream")
  const { makeEtcdMetaStore } = await import("@bendsave/meta-etcd")
  const started = performance.now()
  const result = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const store = yield* makeEtcdMetaStore({ endpoints: [args.endpoint], prefix: args.prefix, create: true })
        if (op === "load") {
          // An iterable that restarts: a replace reads its input twice.
          const input = { [Symbol.iterator]: () => dataset(Number(args.keys), args.drift === "1") }
          const diff = yield* store.replace(Stream.fromIterable(input))
          return { keys: diff.added + diff.changed + diff.unchanged, diff: { added: diff.added, changed: diff.changed, removed: diff.removed } }
        }
        const snapshot = yield* store.snapshot()
        const hash = createHash("sha256")
        let keys = 0
        let bytes = 0
        yield* Stream.runForEach(snapshot.entries, (e) =>
          Effect.sync(() => {
            keys++
            bytes += e.key.length + e.value.length
            hash.update(`${e.key.length}:`).update(e.key).update(`${e.value.length}:`).update(e.value)
          }),
        )
        return { keys, bytes, revision: snapshot.revision, sha256: hash.digest("hex") }
      }),
    ),
  )
  const seconds = (performance.now() - started) / 1000
  process.stdout.write(`${JSON.stringify({ ...result, seconds, maxRssKiB: process.resourceUsage().maxRSS })}\n`)
}

// ---------------------------------------------------------------------------------------------
// Measuring child processes.

interface Run {
  readonly seconds: number
  readonly peakRssMiB: number
  readonly stdout: string
  readonly stderr: string
  readonly code: number
}

const hasGnuTime = existsSync(GNU_TIME)

/** Runs a command; wall time around it, peak RSS from GNU time or /proc polling. */
const measured = (cmd: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<Run> =>
  new Promise((done, fail) => {
    const timeFile = join(tmpdir(), `bendsave-etcd-bench-${process.pid}-${Date.now()}.time`)
    const argv = hasGnuTime ? ["-f", "%M", "-o", timeFile, cmd, ...args] : [...args]
    const started = process.hrtime.bigint()
    const child = spawn(hasGnuTime ? GNU_TIME : cmd, argv, { env, stdio: ["ignore", "pipe", "pipe"] })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (c: Buffer) => out.push(c))
    child.stderr.on("data", (c: Buffer) => err.push(c))
    let polledKiB = 0
    const poll = hasGnuTime
      ? undefined
      : setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))
            if (m) polledKiB = Math.max(polledKiB, Number(m[1]))
          } catch {
            // exited
          }
        }, 10)
    child.on("error", fail)
    child.on("close", (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      if (poll) clearInterval(poll)
      let kib = polledKiB
      if (hasGnuTime) {
        try {
          kib = Number(readFileSync(timeFile, "utf8").trim().split("\n").pop())
          rmSync(timeFile, { force: true })
        } catch {
          kib = Number.NaN
        }
      }
      done({ seconds, peakRssMiB: kib / 1024, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), code: code ?? -1 })
    })
  })

const must = (what: string, run: Run): Run => {
  if (run.code !== 0) throw new Error(`${what} failed (${run.code}):\n${run.stdout}\n${run.stderr}`)
  return run
}

interface WorkerResult {
  readonly keys: number
  readonly bytes?: number
  readonly sha256?: string
  readonly seconds: number
  readonly maxRssKiB: number
}

const runWorker = async (op: string, args: Record<string, string>) => {
  const run = must(`worker ${op}`, await measured(process.execPath, [import.meta.filename, "--worker", op, JSON.stringify(args)]))
  const result = JSON.parse(run.stdout.trim().split("\n").pop()!) as WorkerResult
  return { ...result, wallSeconds: run.seconds, peakRssMiB: result.maxRssKiB / 1024 }
}

const portIsFree = (port: number): Promise<boolean> =>
  new Promise((done) => {
    const server = createServer()
    server.once("error", () => done(false))
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)))
  })

const freePortPair = async (preferred: number): Promise<number> => {
  for (let port = preferred; port < preferred + 200; port += 2) if ((await portIsFree(port)) && (await portIsFree(port + 1))) return port
  throw new Error("no free ports")
}

// ---------------------------------------------------------------------------------------------

interface Row {
  readonly operation: string
  readonly keys: number
  readonly seconds: number
  readonly peakRssMiB: number
  readonly note?: string
}

const main = async () => {
  const argv = process.argv.slice(2)
  const flag = (name: string) => {
    const i = argv.indexOf(name)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const keys = Number(flag("--keys") ?? 100_000)
  const jsonOut = flag("--json")
  for (const bin of ["etcd", "etcdctl"]) {
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0) {
      throw new Error(`'${bin}' is not installed: apt-get install etcd-server etcd-client`)
    }
  }
  const work = mkdtempSync(join(tmpdir(), "bendsave-etcd-bench-"))
  const etcdDir = join(work, "etcd")
  const port1 = await freePortPair(18400)
  const port2 = await freePortPair(port1 === 18400 ? 18410 : port1 + 10)
  const up = spawnSync("bash", [join(ROOT, "scripts/etcd-up.sh"), etcdDir], {
    env: { ...process.env, BENDSAVE_ETCD_PORT: String(port1), BENDSAVE_ETCD2_PORT: String(port2) },
    encoding: "utf8",
  })
  if (up.status !== 0) throw new Error(`scripts/etcd-up.sh failed: ${up.stderr}`)
  const e1 = `http://127.0.0.1:${port1}`
  const e2 = `http://127.0.0.1:${port2}`
  const rows: Array<Row> = []
  const log = (text: string) => process.stderr.write(`${text}\n`)
  try {
    const prefix = "/bench/prod/"
    const prefix2 = "/bench/restored/"
    const cliEnv = { ...process.env, PATH: `${NODE_BIN_DIR}:${process.env.PATH ?? ""}` }
    const cluster = (file: string, endpoint: string, p: string) => {
      mkdirSync(join(work, `data-${file}`), { recursive: true })
      writeFileSync(
        join(work, `${file}.toml`),
        `name = "${file}"\n[meta]\ntype = "etcd"\nendpoints = ["${endpoint}"]\nprefix = "${p}"\n[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./data-${file}"\n`,
      )
      return join(work, `${file}.toml`)
    }
    const prod = cluster("prod", e1, prefix)
    const restored = cluster("restored", e2, prefix2)
    const repo = join(work, "repo")

    log(`etcd bench: ${keys} keys; etcd ${e1} and ${e2}; work dir ${work}`)
    const load = await runWorker("load", { endpoint: e1, prefix, keys: String(keys) })
    rows.push({ operation: "driver: replace into an empty prefix (etcd 1)", keys: load.keys, seconds: load.seconds, peakRssMiB: load.peakRssMiB })
    log(`  loaded ${load.keys} keys in ${load.seconds.toFixed(1)} s`)

    const snap = await runWorker("snapshot", { endpoint: e1, prefix })
    rows.push({
      operation: "driver: snapshot at one revision (etcd 1)",
      keys: snap.keys,
      seconds: snap.seconds,
      peakRssMiB: snap.peakRssMiB,
      note: `${((snap.bytes ?? 0) / 1024 / 1024).toFixed(1)} MiB of keys and values`,
    })

    const backup = must("bendsave backup", await measured(BENDSAVE, ["backup", "--from", prod, "--to", repo, "--json"], cliEnv))
    const backupResult = JSON.parse(backup.stdout) as { meta_keys: number; meta_revision: number }
    rows.push({ operation: "bendsave backup (meta only)", keys: backupResult.meta_keys, seconds: backup.seconds, peakRssMiB: backup.peakRssMiB, note: `revision ${backupResult.meta_revision}` })

    const plan = must("bendsave restore (dry run)", await measured(BENDSAVE, ["restore", "--from", repo, "--to", restored, "--json"], cliEnv))
    rows.push({ operation: "bendsave restore, dry run (empty target)", keys, seconds: plan.seconds, peakRssMiB: plan.peakRssMiB })

    const restore = must("bendsave restore --confirm", await measured(BENDSAVE, ["restore", "--from", repo, "--to", restored, "--confirm", "--json"], cliEnv))
    const restoreResult = JSON.parse(restore.stdout) as { meta: { added: number } }
    rows.push({ operation: "bendsave restore --confirm (empty target, etcd 2)", keys: restoreResult.meta.added, seconds: restore.seconds, peakRssMiB: restore.peakRssMiB })

    const check = await runWorker("snapshot", { endpoint: e2, prefix: prefix2 })
    if (check.sha256 !== snap.sha256 || check.keys !== snap.keys) throw new Error("the restored prefix differs from the source")
    log("  restored prefix verified identical to the source")

    await runWorker("load", { endpoint: e2, prefix: prefix2, keys: String(keys), drift: "1" })
    const redo = must("bendsave restore --confirm (drifted)", await measured(BENDSAVE, ["restore", "--from", repo, "--to", restored, "--confirm", "--json"], cliEnv))
    const redoResult = JSON.parse(redo.stdout) as { meta: { added: number; changed: number; removed: number; unchanged: number } }
    const m = redoResult.meta
    rows.push({
      operation: "bendsave restore --confirm (drifted target)",
      keys: m.added + m.changed + m.unchanged,
      seconds: redo.seconds,
      peakRssMiB: redo.peakRssMiB,
      note: `${m.added} added, ${m.changed} changed, ${m.removed} removed`,
    })
    const check2 = await runWorker("snapshot", { endpoint: e2, prefix: prefix2 })
    if (check2.sha256 !== snap.sha256) throw new Error("the restored prefix differs from the source after the drift restore")

    const snapshotFile = join(work, "etcd1.db")
    const save = must("etcdctl snapshot save", await measured("etcdctl", ["--endpoints", e1, "snapshot", "save", snapshotFile], { ...process.env, ETCDCTL_API: "3" }))
    rows.push({
      operation: "etcdctl snapshot save (whole etcd 1 database)",
      keys,
      seconds: save.seconds,
      peakRssMiB: save.peakRssMiB,
      note: `${(statSync(snapshotFile).size / 1024 / 1024).toFixed(1)} MiB file`,
    })
    const get = must(
      "etcdctl get --prefix",
      await measured("sh", ["-c", `ETCDCTL_API=3 etcdctl --endpoints ${e1} get ${prefix} --prefix -w json --limit 0 > /dev/null`]),
    )
    rows.push({ operation: "etcdctl get --prefix -w json (etcd 1)", keys, seconds: get.seconds, peakRssMiB: get.peakRssMiB })
  } finally {
    spawnSync("bash", [join(ROOT, "scripts/etcd-down.sh"), etcdDir])
    rmSync(work, { recursive: true, force: true })
  }

  const table = [
    ["operation", "keys", "seconds", "keys/s", "peak RSS MiB", "note"],
    ...rows.map((r) => [r.operation, String(r.keys), r.seconds.toFixed(2), Math.round(r.keys / r.seconds).toLocaleString("en-US"), r.peakRssMiB.toFixed(0), r.note ?? ""]),
  ]
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)))
  console.log(table.map((row) => row.map((cell, c) => (c === 0 || c === 5 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")).join("\n"))
  console.log(`(peak RSS from ${hasGnuTime ? "GNU time" : "/proc polling"}; driver rows: one process each, including Node itself)`)
  if (jsonOut !== undefined) writeFileSync(jsonOut, `${JSON.stringify({ keys, rows }, null, 2)}\n`)
}

if (process.argv[2] === "--worker") {
  await worker(process.argv[3], JSON.parse(process.argv[4]) as Record<string, string>)
} else {
  await main()
}
