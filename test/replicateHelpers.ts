/**
 * Helpers of the replication end-to-end tests: write a sample data cluster
 * (docs/table-layout.md) into a cluster, dump any cluster's storage and meta
 * through @bendsave/core (reserved prefixes excluded), read the replicated
 * tables with a real Parquet reader (DuckDB), and run the CLI as a child
 * process that a test can kill at a chosen moment.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { join } from "node:path"
import { type BlobStore, compareBytes, loadClusterConfig, type MetaEntry, openCluster } from "@bendsave/core"
import { DuckDBInstance } from "@duckdb/node-api"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { SampleCluster, Snapshot, TableEntry } from "../packages/cli/src/SampleCluster.ts"
import { BENDSAVE } from "./helpers.ts"

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

/** Storage (path -> sha256) and meta (key -> value, hex for binary) of a cluster, reserved prefixes excluded. */
export interface ClusterDump {
  readonly files: Record<string, string>
  readonly meta: Record<string, string>
}

const text = (bytes: Uint8Array) => {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes)
  } catch {
    return `hex:${Buffer.from(bytes).toString("hex")}`
  }
}

/** Opens the cluster file and dumps it (the storage byte for byte, as hashes; the meta exactly). */
export const dumpCluster = (toml: string): Promise<ClusterDump> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const config = yield* loadClusterConfig(toml)
        const cluster = yield* openCluster(config)
        const files: Record<string, string> = {}
        const infos = yield* Stream.runCollect(cluster.storage.list(""))
        for (const info of infos) {
          if (info.key.startsWith(".bendsave/")) continue
          files[info.key] = sha(yield* cluster.storage.get(info.key))
        }
        const snapshot = yield* cluster.meta.snapshot()
        const meta: Record<string, string> = {}
        for (const e of yield* Stream.runCollect(snapshot.entries)) {
          const k = text(e.key)
          if (!k.startsWith("bendsave/")) meta[k] = text(e.value)
        }
        return { files, meta }
      }),
    ),
  )

/** Runs `f` with the opened cluster (for seeding cloud clusters through the drivers). */
export const withCluster = <A>(
  toml: string,
  f: (c: { storage: BlobStore; meta: import("@bendsave/core").MetaStore }) => Effect.Effect<A, unknown>,
) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const config = yield* loadClusterConfig(toml)
        const cluster = yield* openCluster(config, { create: true })
        return yield* f(cluster)
      }),
    ) as Effect.Effect<A, never>,
  )

const enc = new TextEncoder()

/** Makes a cluster's storage and meta exactly `state` plus `extraMeta` (files not in `state` are deleted). */
export const writeState = (
  toml: string,
  state: SampleCluster,
  extra: { readonly meta?: Record<string, string>; readonly files?: Record<string, Uint8Array> } = {},
) =>
  withCluster(toml, (c) =>
    Effect.gen(function* () {
      const wanted = new Map<string, Uint8Array>(state.files.map((f) => [f.path, f.bytes]))
      for (const [p, b] of Object.entries(extra.files ?? {})) wanted.set(p, b)
      const present = new Map((yield* Stream.runCollect(c.storage.list(""))).map((i) => [i.key, i]))
      for (const [path, bytes] of wanted) {
        const there = present.get(path)
        if (there === undefined || there.size !== bytes.length || sha(yield* c.storage.get(path)) !== sha(bytes))
          yield* c.storage.put(path, bytes)
      }
      const extraPaths = [...present.keys()].filter((p) => !wanted.has(p) && !p.startsWith(".bendsave/"))
      if (extraPaths.length > 0) yield* c.storage.deleteMany(extraPaths)
      const entries: Array<MetaEntry> = [...state.meta.map((m) => [m.key, m.value] as const), ...Object.entries(extra.meta ?? {})]
        .map(([k, v]) => ({ key: enc.encode(k), value: enc.encode(v) }))
        .sort((a, b) => compareBytes(a.key, b.key))
      yield* c.meta.replace(Stream.fromIterable(entries))
    }),
  )

/**
 * Reads every table of `state` from the TARGET's files with DuckDB
 * (read_parquet over the files its snapshot lists, fetched from the target
 * storage) and returns table -> row count; the count must equal the rows the
 * snapshot records.
 */
export const readTablesWithDuckDB = async (
  targetToml: string,
  dataDir: string | undefined,
  scratch: string,
): Promise<Record<string, number>> => {
  const counts: Record<string, number> = {}
  const instance = await DuckDBInstance.create(":memory:")
  const connection = await instance.connect()
  try {
    const tables = await withCluster(targetToml, (c) =>
      Effect.gen(function* () {
        const snapshot = yield* c.meta.snapshot()
        const out: Array<{ name: string; snapshot: Snapshot; files: Array<string> }> = []
        for (const e of yield* Stream.runCollect(snapshot.entries)) {
          const key = new TextDecoder().decode(e.key)
          if (!key.startsWith("catalog/tables/")) continue
          const entry = JSON.parse(new TextDecoder().decode(e.value)) as TableEntry
          const ss = JSON.parse(new TextDecoder().decode(yield* c.storage.get(entry.snapshot))) as Snapshot
          const files: Array<string> = []
          for (const f of ss.files) {
            if (dataDir !== undefined) files.push(join(dataDir, f.path))
            else {
              // Cloud storage: copy the file out of the target for the reader.
              const local = join(scratch, f.path.replaceAll("/", "_"))
              const { writeFile } = yield* Effect.promise(() => import("node:fs/promises"))
              const bytes = yield* c.storage.get(f.path)
              yield* Effect.promise(() => writeFile(local, bytes))
              files.push(local)
            }
          }
          out.push({ name: key.slice("catalog/tables/".length), snapshot: ss, files })
        }
        return out
      }),
    )
    for (const t of tables) {
      const expected = t.snapshot.files.reduce((n, f) => n + (f.rows ?? 0), 0)
      if (t.files.length === 0) {
        counts[t.name] = 0
        continue
      }
      const list = t.files.map((f) => `'${f.replaceAll("'", "''")}'`).join(", ")
      const reader = await connection.runAndReadAll(`SELECT count(*) AS n FROM read_parquet([${list}])`)
      const n = Number(reader.getRowObjects()[0].n)
      if (n !== expected) throw new Error(`DuckDB read ${n} rows of ${t.name} on the target, its snapshot records ${expected}`)
      counts[t.name] = n
    }
  } finally {
    connection.closeSync()
    instance.closeSync()
  }
  return counts
}

/** The CLI as a child process the test controls (kill it, read what it printed so far). */
export interface RunningCli {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export const startCli = (args: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}): RunningCli => {
  const child = spawn(BENDSAVE, args, {
    cwd,
    env: { ...process.env, PATH: `${join(BENDSAVE, "..")}:${process.env.PATH ?? ""}`, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  })
  let out = ""
  let err = ""
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString("utf8")
  })
  child.stderr?.on("data", (c: Buffer) => {
    err += c.toString("utf8")
  })
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  )
  return { child, stdout: () => out, stderr: () => err, exit }
}

/** Polls `check` every 50 ms until it is true (or fails after `timeoutMs`). */
export const waitFor = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> => {
  const start = Date.now()
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
