/**
 * vitest global setup: starts the cloud storage servers of the
 * `*.integration.test.ts` files, in parallel, and stops them afterwards:
 *
 * - S3: single-node Ceph with radosgw (scripts/s3-up.sh), ~7 s
 * - Azure Blob: Azurite (scripts/azurite-up.sh)
 * - GCS: the firebase-tools Cloud Storage emulator (scripts/gcs-up.sh)
 *
 * A server already running can be used instead: BENDSAVE_S3_ENDPOINT (keys
 * TESTAK / TESTSECRETKEY unless BENDSAVE_S3_ACCESS_KEY / _SECRET_KEY say
 * otherwise), BENDSAVE_AZURITE_CONNECTION_STRING, BENDSAVE_GCS_EMULATOR_HOST.
 *
 * A server that cannot be started (not installed, port taken, ...) is not a
 * reason to skip: its reason is handed to the tests (test/cloudServers.ts),
 * and every test that needs that server fails with it.
 */
import { spawn } from "node:child_process"
import { mkdtemp } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import type { TestProject } from "vitest/node"
import "./cloudServers.ts"

const ROOT = resolve(import.meta.dirname, "..")

interface Started {
  readonly ok: boolean
  readonly output: string
  readonly dir: string
}

const run = (script: string, dir: string): Promise<Started> =>
  new Promise((done) => {
    const child = spawn("bash", [join(ROOT, "scripts", script), dir], { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (d) => (output += d))
    child.stderr.on("data", (d) => (output += d))
    child.on("close", (code) => done({ ok: code === 0, output: output.trim(), dir }))
    child.on("error", (error) => done({ ok: false, output: String(error), dir }))
  })

const down = (script: string, dir: string) =>
  new Promise<void>((done) => {
    const child = spawn("bash", [join(ROOT, "scripts", script), dir], { stdio: "ignore" })
    child.on("close", () => done())
    child.on("error", () => done())
  })

export default async function setup(project: TestProject) {
  const env = process.env
  const stops: Array<() => Promise<void>> = []
  const start = async (name: string, up: string, downScript: string, fix: string) => {
    const dir = await mkdtemp(join(tmpdir(), `bendsave-${name}-`))
    const started = await run(up, dir)
    if (started.ok) stops.push(() => down(downScript, dir))
    else await down(downScript, dir)
    return started.ok ? undefined : `scripts/${up} could not start the ${name} server: ${started.output.split("\n").slice(-6).join("\n")}\n${fix}`
  }

  const s3 = env.BENDSAVE_S3_ENDPOINT
    ? Promise.resolve(undefined)
    : start("s3", "s3-up.sh", "s3-down.sh", "install Ceph (apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common uuid-runtime), or point BENDSAVE_S3_ENDPOINT at an S3 server")
  const azure = env.BENDSAVE_AZURITE_CONNECTION_STRING
    ? Promise.resolve(undefined)
    : start("azurite", "azurite-up.sh", "azurite-down.sh", "run scripts/test-servers-install.sh, or set BENDSAVE_AZURITE_CONNECTION_STRING")
  const gcs = env.BENDSAVE_GCS_EMULATOR_HOST
    ? Promise.resolve(undefined)
    : start("gcs", "gcs-up.sh", "gcs-down.sh", "run scripts/test-servers-install.sh, or set BENDSAVE_GCS_EMULATOR_HOST")
  const [s3Error, azureError, gcsError] = await Promise.all([s3, azure, gcs])

  const port = (name: string, fallback: number) => Number(env[name] ?? fallback)
  project.provide(
    "s3",
    s3Error !== undefined
      ? { error: s3Error }
      : {
          endpoint: env.BENDSAVE_S3_ENDPOINT ?? `http://127.0.0.1:${port("BENDSAVE_S3_PORT", 18090)}`,
          accessKeyId: env.BENDSAVE_S3_ACCESS_KEY ?? "TESTAK",
          secretAccessKey: env.BENDSAVE_S3_SECRET_KEY ?? "TESTSECRETKEY",
        },
  )
  const azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
  project.provide(
    "azurite",
    azureError !== undefined
      ? { error: azureError }
      : {
          connectionString:
            env.BENDSAVE_AZURITE_CONNECTION_STRING ??
            `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${azuriteKey};BlobEndpoint=http://127.0.0.1:${port("BENDSAVE_AZURITE_PORT", 18300)}/devstoreaccount1;`,
        },
  )
  project.provide("gcs", gcsError !== undefined ? { error: gcsError } : { emulatorHost: env.BENDSAVE_GCS_EMULATOR_HOST ?? `http://127.0.0.1:${port("BENDSAVE_GCS_PORT", 18200)}` })

  return async () => {
    await Promise.all(stops.map((stop) => stop()))
  }
}
