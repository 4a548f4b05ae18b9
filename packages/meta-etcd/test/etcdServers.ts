/**
 * Real etcd servers for the integration tests (never mocked).
 *
 * - `etcdEndpoints()`: the two servers the vitest global setup started with
 *   `scripts/etcd-up.sh` (or that BENDSAVE_ETCD_ENDPOINTS /
 *   BENDSAVE_ETCD2_ENDPOINTS name). When they could not be started, it
 *   THROWS the reason, so every etcd test fails (none is skipped).
 * - `startEtcdServer()`: a dedicated server for tests that change server
 *   settings (authentication, TLS, lower limits), stopped by its PID.
 * - `etcdctl()`: the Debian etcd-client's etcdctl, to check what etcd holds
 *   independently of the driver.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { inject } from "vitest"

declare module "vitest" {
  interface ProvidedContext {
    etcd: { readonly endpoints: string; readonly endpoints2: string } | { readonly error: string }
  }
}

/** The shared test servers; throws (failing the test) when they are not available. */
export const etcdEndpoints = (): { readonly endpoints: string; readonly endpoints2: string } => {
  const provided = inject("etcd")
  if (provided === undefined) {
    throw new Error("the etcd global setup did not run: run the tests with `npx vitest run` from the repository root (vitest.config.ts)")
  }
  if ("error" in provided) throw new Error(provided.error)
  return provided
}

/** Whether the shared test servers are there (beforeAll hooks skip their setup when not; the tests then fail). */
export const etcdAvailable = (): boolean => {
  const provided = inject("etcd")
  return provided !== undefined && !("error" in provided)
}

/** A TCP port nothing listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

export interface EtcdctlResult {
  readonly status: number
  readonly stdout: Buffer
  readonly stderr: string
}

/** Runs etcdctl (API v3) against `endpoint`; `extra` adds flags such as --user or --cacert. */
export const etcdctl = (endpoint: string, args: ReadonlyArray<string>, extra: ReadonlyArray<string> = []): EtcdctlResult => {
  const result = spawnSync("etcdctl", ["--endpoints", endpoint, ...extra, ...args], {
    env: { ...process.env, ETCDCTL_API: "3" },
    maxBuffer: 4 * 1024 * 1024 * 1024,
  })
  if (result.error) throw result.error
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr.toString("utf8") }
}

/** Like `etcdctl`, but throws with etcdctl's stderr when it fails. */
export const etcdctlOk = (endpoint: string, args: ReadonlyArray<string>, extra: ReadonlyArray<string> = []): Buffer => {
  const result = etcdctl(endpoint, args, extra)
  if (result.status !== 0) throw new Error(`etcdctl ${args.join(" ")} failed (${result.status}): ${result.stderr}`)
  return result.stdout
}

export interface EtcdKv {
  readonly key: Buffer
  readonly value: Buffer
}

/** Every key-value under `prefix` as etcdctl reads it, at revision `rev` (0: the current one), in key order. */
export const etcdctlGetPrefix = (endpoint: string, prefix: string, rev = 0, extra: ReadonlyArray<string> = []): Array<EtcdKv> => {
  const args = ["get", prefix, "--prefix", "-w", "json", "--limit", "0", ...(rev > 0 ? [`--rev=${rev}`] : [])]
  const json = JSON.parse(etcdctlOk(endpoint, args, extra).toString("utf8")) as { kvs?: Array<{ key: string; value?: string }> }
  return (json.kvs ?? []).map((kv) => ({ key: Buffer.from(kv.key, "base64"), value: Buffer.from(kv.value ?? "", "base64") }))
}

export interface EtcdServer {
  readonly endpoint: string
  readonly dir: string
  readonly pid: number
  stop(): Promise<void>
}

/**
 * Starts one etcd on free loopback ports with extra flags (e.g. TLS or
 * --max-txn-ops), waits until it answers, and returns it; `stop()` kills it
 * by PID and removes its data directory. `https` makes the client URL https
 * (the flags must then include the server certificate).
 */
export const startEtcdServer = async (options: { readonly flags?: ReadonlyArray<string>; readonly https?: boolean; readonly healthArgs?: ReadonlyArray<string> } = {}): Promise<EtcdServer> => {
  const dir = await mkdtemp(join(tmpdir(), "bendsave-etcd-test-"))
  const port = await freePort()
  const peer = await freePort()
  const scheme = options.https ? "https" : "http"
  const endpoint = `${scheme}://127.0.0.1:${port}`
  const child = spawn(
    "etcd",
    [
      "--name",
      "t",
      "--data-dir",
      join(dir, "data"),
      "--listen-client-urls",
      endpoint,
      "--advertise-client-urls",
      endpoint,
      "--listen-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-cluster",
      `t=http://127.0.0.1:${peer}`,
      "--heartbeat-interval=10",
      "--election-timeout=100",
      "--logger",
      "zap",
      "--log-level",
      "error",
      ...(options.flags ?? []),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  )
  let log = ""
  child.stderr?.on("data", (chunk: Buffer) => {
    log = (log + chunk.toString("utf8")).slice(-4000)
  })
  const pid = child.pid
  if (pid === undefined) throw new Error("could not start etcd (is etcd-server installed? apt-get install etcd-server etcd-client)")
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve))
      process.kill(pid, "SIGTERM")
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))])
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGKILL")
    }
    await rm(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + 15_000
  while (true) {
    if (child.exitCode !== null) {
      await stop()
      throw new Error(`etcd exited with ${child.exitCode}: ${log}`)
    }
    if (etcdctl(endpoint, ["endpoint", "health", "--dial-timeout=300ms"], options.healthArgs ?? []).status === 0) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`etcd on ${endpoint} did not become healthy: ${log}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { endpoint, dir, pid, stop }
}
