/**
 * Measuring commands: wall time (monotonic clock around the child process)
 * and peak resident set size from GNU time (`/usr/bin/time -f %M`, the
 * child's ru_maxrss in KiB, so the benchmark's own process is never
 * counted). Also: dropping the page cache and making sure the external tools
 * are installed.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export const GNU_TIME = "/usr/bin/time"

export interface Measured {
  readonly label: string
  readonly argv: ReadonlyArray<string>
  readonly exitCode: number
  /** Wall time of the command, seconds. */
  readonly seconds: number
  /** Peak RSS of the command (and any children it waited for), MiB. */
  readonly peakRssMiB: number
  /** CPU time (user + system) of the command, seconds. */
  readonly cpuSeconds: number
  /**
   * User-mode CPU time the rest of the machine used while the command ran
   * (user + nice time from /proc/stat minus the command's own user time):
   * other programs competing for the cores. Near 0 on a quiet machine.
   * (System time is left out: kernel threads writing back the command's own
   * dirty pages would count as "other".)
   */
  readonly otherCpuSeconds: number
  /** Time of a `sync` right after the command: data it left in the page cache, written out. */
  readonly syncSeconds: number
  readonly stdout: string
  readonly stderr: string
  /** How many times the command was run to get this measurement (see bench.ts `timed`). */
  readonly attempts?: number
}

export interface RunOptions {
  readonly cwd?: string
  readonly env?: NodeJS.ProcessEnv
}

/** Runs `cmd args` under GNU time; then times a `sync`. Never throws on a non-zero exit. */
export const measure = (label: string, cmd: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<Measured> =>
  new Promise((resolve, reject) => {
    const timeFile = path.join(os.tmpdir(), `bendsave-bench-time-${process.pid}-${Date.now()}.txt`)
    const userBefore = userCpuSeconds()
    const started = process.hrtime.bigint()
    const child = spawn(GNU_TIME, ["-f", "%M %U %S", "-o", timeFile, cmd, ...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk))
    child.on("error", reject)
    child.on("close", (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      const machineUser = userCpuSeconds() - userBefore
      let peakKiB = Number.NaN
      let cpuSeconds = Number.NaN
      let userSeconds = Number.NaN
      try {
        const lines = fs.readFileSync(timeFile, "utf8").trim().split("\n")
        const [maxRss, user, system] = lines[lines.length - 1].split(" ").map(Number)
        peakKiB = maxRss
        cpuSeconds = user + system
        userSeconds = user
        fs.rmSync(timeFile, { force: true })
      } catch {
        // no time file: reported as NaN
      }
      const syncStarted = process.hrtime.bigint()
      spawnSync("sync")
      const syncSeconds = Number(process.hrtime.bigint() - syncStarted) / 1e9
      resolve({
        label,
        argv: [cmd, ...args],
        exitCode: code ?? -1,
        seconds,
        peakRssMiB: peakKiB / 1024,
        cpuSeconds,
        otherCpuSeconds: Math.max(0, machineUser - userSeconds),
        syncSeconds,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      })
    })
  })

/** User-mode CPU time of the whole machine since boot (all cores; user + nice), seconds. */
export const userCpuSeconds = (): number => {
  const [user, nice] = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 3).map(Number)
  return (user + nice) / 100
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Waits until the machine is quiet: programs use less than `maxBusyCores`
 * cores (user-mode time) over a 1 s window, for at most `timeoutSeconds`.
 * Returns the load (in cores) of the last window.
 */
export const waitForQuiet = async (maxBusyCores: number, timeoutSeconds: number): Promise<number> => {
  const deadline = Date.now() + timeoutSeconds * 1000
  for (;;) {
    const before = userCpuSeconds()
    await sleep(1000)
    const busy = userCpuSeconds() - before
    if (busy <= maxBusyCores || Date.now() >= deadline) return busy
  }
}

/** `sync`, then drop the page cache, dentries and inodes. Returns whether the drop worked (needs root, not in every container). */
export const dropCaches = (): boolean => {
  spawnSync("sync")
  try {
    fs.writeFileSync("/proc/sys/vm/drop_caches", "3")
    return true
  } catch {
    return false
  }
}

const works = (cmd: string, args: ReadonlyArray<string>): string | undefined => {
  const r = spawnSync(cmd, args, { encoding: "utf8" })
  return r.status === 0 ? `${r.stdout}${r.stderr}`.trim() : undefined
}

/**
 * Makes sure `cmd` runs. When it does not: as root, installs the Debian
 * package with `apt-get install -y` (after an `apt-get update` if the first
 * try fails); otherwise prints what to run and exits non-zero.
 */
export const ensureTool = (
  what: string,
  cmd: string,
  args: ReadonlyArray<string>,
  aptPackage: string,
  log: (line: string) => void,
): string => {
  const found = works(cmd, args)
  if (found !== undefined) return found
  const isRoot = process.getuid?.() === 0
  if (!isRoot) {
    log(`error: ${what} is needed but \`${[cmd, ...args].join(" ")}\` does not run.`)
    log(`  install it with:  sudo apt-get install -y ${aptPackage}   (then run the benchmark again)`)
    process.exit(2)
  }
  log(`${what} is missing; running as root, so installing it: apt-get install -y ${aptPackage}`)
  const install = () =>
    spawnSync("apt-get", ["install", "-y", aptPackage], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } })
  if (install().status !== 0) {
    spawnSync("apt-get", ["update"], { stdio: "inherit" })
    install()
  }
  const after = works(cmd, args)
  if (after === undefined) {
    log(`error: could not install ${what}; run \`apt-get install -y ${aptPackage}\` yourself and try again`)
    process.exit(2)
  }
  return after
}

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
