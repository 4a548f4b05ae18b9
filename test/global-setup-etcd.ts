/**
 * vitest global setup: starts the two etcd servers of the integration tests
 * with scripts/etcd-up.sh (on 127.0.0.1:18400 and :18410, or free ports when
 * those are taken) and stops them afterwards with scripts/etcd-down.sh.
 *
 * With BENDSAVE_ETCD_ENDPOINTS and BENDSAVE_ETCD2_ENDPOINTS set, those servers
 * are used and nothing is started. When etcd cannot be started (not
 * installed, ...), the reason is handed to the tests: every etcd test then
 * fails with it, and the other tests still run.
 */
import { spawnSync } from "node:child_process"
import { mkdtemp } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import type { TestProject } from "vitest/node"
import "../packages/meta-etcd/test/etcdServers.ts"

const ROOT = resolve(import.meta.dirname, "..")

const portIsFree = (port: number): Promise<boolean> =>
  new Promise((done) => {
    const server = createServer()
    server.once("error", () => done(false))
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)))
  })

/** A client port whose peer port (client + 1) is free too: the default, else a random one. */
const pickPort = async (preferred: number, taken: ReadonlyArray<number>): Promise<number> => {
  const ok = async (p: number) => !taken.includes(p) && !taken.includes(p + 1) && (await portIsFree(p)) && (await portIsFree(p + 1))
  if (await ok(preferred)) return preferred
  for (let i = 0; i < 50; i++) {
    const candidate = 20_000 + Math.floor(Math.random() * 20_000)
    if (await ok(candidate)) return candidate
  }
  throw new Error("no free ports for etcd")
}

export default async function setup(project: TestProject) {
  const given = process.env.BENDSAVE_ETCD_ENDPOINTS
  const given2 = process.env.BENDSAVE_ETCD2_ENDPOINTS
  if (given && given2) {
    project.provide("etcd", { endpoints: given, endpoints2: given2 })
    return
  }
  for (const bin of ["etcd", "etcdctl"]) {
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0) {
      project.provide("etcd", {
        error:
          `the etcd integration tests need a real etcd, and '${bin}' is not installed: ` +
          "install it with `apt-get install etcd-server etcd-client` (the tests start it on loopback), " +
          "or point BENDSAVE_ETCD_ENDPOINTS and BENDSAVE_ETCD2_ENDPOINTS at two etcd servers",
      })
      return
    }
  }
  const port1 = await pickPort(18400, [])
  const port2 = await pickPort(18410, [port1])
  const dir = await mkdtemp(join(tmpdir(), "bendsave-etcd-"))
  const up = spawnSync("bash", [join(ROOT, "scripts/etcd-up.sh"), dir], {
    env: { ...process.env, BENDSAVE_ETCD_PORT: String(port1), BENDSAVE_ETCD2_PORT: String(port2) },
    encoding: "utf8",
  })
  if (up.status !== 0) {
    project.provide("etcd", { error: `scripts/etcd-up.sh could not start etcd: ${up.stderr.trim() || up.stdout.trim()}` })
    return
  }
  project.provide("etcd", { endpoints: `http://127.0.0.1:${port1}`, endpoints2: `http://127.0.0.1:${port2}` })
  return () => {
    spawnSync("bash", [join(ROOT, "scripts/etcd-down.sh"), dir])
  }
}
