/**
 * Kill-and-resume, end to end: the real CLI is SIGKILLed at many points of a
 * backup and of a restore, run again with the same command, and the result
 * must restore byte for byte; two clusters back up into one repository at
 * once; and a backup into a real S3 server (the shared Ceph, through a TCP
 * proxy of this test that it cuts and restores) survives a network cut.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdir, readdir, readFile, stat } from "node:fs/promises"
import { connect, createServer, type Server, type Socket } from "node:net"
import { join, resolve } from "node:path"
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3"
import { type BackupManifest, decodeFilePage, decodeManifest, decodeMetaPage, ManifestError } from "@bendsave/core"
import { afterAll, describe, expect, it } from "vitest"
import { randomName, s3Server } from "./cloudServers.ts"
import {
  BENDSAVE,
  bendsaveJson,
  compareDirs,
  describeRun,
  exportMetaText,
  importMeta,
  type JsonObject,
  listFiles,
  MiB,
  makeTempDir,
  parseSingleJson,
  readManifest,
  removeTempDirs,
  tempFilesUnder,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

const BIN_DIR = resolve(import.meta.dirname, "..", "node_modules", ".bin")

interface Running {
  readonly child: ChildProcess
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>
}

/** Starts `bendsave <args>` (not waiting), so the test can kill it. */
const start = (args: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}): Running => {
  const child = spawn(BENDSAVE, args, {
    cwd,
    env: { ...process.env, PATH: `${BIN_DIR}:${process.env.PATH ?? ""}`, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  })
  let stdout = ""
  let stderr = ""
  child.stdout?.on("data", (d) => {
    stdout += d
  })
  child.stderr?.on("data", (d) => {
    stderr += d
  })
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((ok) =>
    child.on("close", (code, signal) => ok({ code, signal, stdout, stderr })),
  )
  return { child, done }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Runs until `killWhen()` says so (then SIGKILL) or the process exits; returns how it ended. */
const runUntil = async (run: Running, killWhen: () => Promise<boolean>, timeoutMs = 90_000) => {
  let exited = false
  void run.done.then(() => {
    exited = true
  })
  const started = Date.now()
  while (!exited) {
    if ((await killWhen()) || Date.now() - started > timeoutMs) {
      run.child.kill("SIGKILL")
      break
    }
    await sleep(15)
  }
  return run.done
}

/**
 * A source cluster: large multi-block files and many small ones, and meta keys. `scale` scales both;
 * `smallFiles` sets the count of small files (default 500 x scale).
 */
const makeSourceCluster = async (root: string, name: string, scale = 1, smallFiles = Math.round(500 * scale)) => {
  const src = await writeCluster(join(root, name), { name })
  await mkdir(src.metaDir, { recursive: true })
  const sizes = [9, 14, 20, 17, 25].map((m) => Math.round(m * scale * MiB) + 1234)
  for (const [i, size] of sizes.entries()) await writeRandomFile(join(src.dataDir, `db${i % 2}`, `big${i}.parquet`), size)
  for (let i = 0; i < smallFiles; i++) {
    await writeRandomFile(
      join(src.dataDir, `db${i % 3}`, `t${i % 7}`, `part-${String(i).padStart(5, "0")}.parquet`),
      1000 + ((i * 7919) % 80_000),
    )
  }
  await importMeta(
    src,
    Array.from({ length: 200 }, (_, i) => ({
      key: `catalog/tables/db${i % 3}/t${i}`,
      value: JSON.stringify({ id: i, pad: "x".repeat(i) }),
    })),
  )
  return src
}

/** Bytes of the files under `dir` (with `inFlight`, also of temp files being written). */
const totalBytes = async (dir: string, inFlight = false) => {
  let n = 0
  for (const p of await listFiles(dir)) {
    if (inFlight || !p.split("/").some((s) => s.includes(".tmp-"))) n += (await stat(join(dir, p)).catch(() => ({ size: 0 }))).size
  }
  return n
}

/** The checkpoint in an fs repository (at most one is expected), decoded; undefined when there is none. */
const readCheckpointFile = async (repo: string): Promise<BackupManifest | undefined> => {
  const names = await readdir(join(repo, "checkpoints")).catch(() => [] as Array<string>)
  const name = names.find((n) => n.endsWith(".checkpoint"))
  if (name === undefined) return undefined
  const bytes = await readFile(join(repo, "checkpoints", name)).catch(() => undefined)
  if (bytes === undefined) return undefined
  const decoded = decodeManifest(new Uint8Array(bytes), name)
  if (decoded instanceof ManifestError) throw new Error(decoded.message)
  return decoded
}

/** Finished files of a checkpoint (its pages, and partly read files with every block stored) and its bytes done. */
const checkpointProgress = async (repo: string, checkpoint: BackupManifest) => {
  const finished: Array<string> = []
  for (const ref of checkpoint.storage?.pages ?? []) {
    const page = decodeFilePage(new Uint8Array(await readFile(join(repo, "data", ref.blockId))), ref.blockId)
    if (page instanceof ManifestError) throw new Error(page.message)
    finished.push(...page.files.map((f) => f.path))
  }
  let bytes = Number(checkpoint.storage?.totalBytes ?? 0n)
  for (const f of checkpoint.checkpoint?.partialFiles ?? []) {
    const stored = f.blocks.reduce((n, b) => n + Number(b.blockSize), 0)
    bytes += stored
    if (stored === Number(f.size)) finished.push(f.path)
  }
  return { finished, bytes }
}

/** Every block a manifest or checkpoint references exists in the repository with its size; returns the problems. */
const missingBlocks = async (repo: string, m: BackupManifest): Promise<Array<string>> => {
  const problems: Array<string> = []
  const check = async (id: string, size: bigint) => {
    const s = await stat(join(repo, "data", id)).catch(() => undefined)
    if (s === undefined || s.size !== Number(size))
      problems.push(`${id} (${size} bytes): ${s === undefined ? "missing" : `${s.size} bytes`}`)
  }
  for (const ref of m.metasrv?.pages ?? []) {
    await check(ref.blockId, ref.blockSize)
    const page = decodeMetaPage(new Uint8Array(await readFile(join(repo, "data", ref.blockId))), ref.blockId)
    if (page instanceof ManifestError) problems.push(page.message)
  }
  for (const ref of m.storage?.pages ?? []) {
    await check(ref.blockId, ref.blockSize)
    const page = decodeFilePage(new Uint8Array(await readFile(join(repo, "data", ref.blockId))), ref.blockId)
    if (page instanceof ManifestError) problems.push(page.message)
    else for (const f of page.files) for (const b of f.blocks) await check(b.blockId, b.blockSize)
  }
  for (const f of m.checkpoint?.partialFiles ?? []) for (const b of f.blocks) await check(b.blockId, b.blockSize)
  return problems
}

const manifestsIn = async (repo: string) =>
  (await readdir(join(repo, "manifests")).catch(() => [] as Array<string>)).filter((n) => n.endsWith(".manifest"))

describe("kill and resume (SIGKILL of the CLI)", () => {
  it("a backup SIGKILLed at 22 points spread over its run resumes each time, never re-reads finished files, and commits the backup an uninterrupted run makes", async () => {
    const root = await makeTempDir("resume-backup")
    // Mostly small files, so that progress is smooth enough for 22 kill points (a multi-block file
    // advances 8 MiB at a time), and some multi-block files, so that kills land inside them too.
    const src = await makeSourceCluster(root, "prod", 0.4, 2000)
    const total = await totalBytes(src.dataDir)
    const fileCount = (await listFiles(src.dataDir)).length
    expect(total).toBeGreaterThan(100 * MiB)

    // The reference: the same source backed up without interruption.
    const reference = join(root, "reference")
    const clean = await bendsaveJson(["backup", "--from", src.toml, "--to", reference], { cwd: root })
    const cleanManifest = await readManifest(reference, clean.backup_id)

    const repo = join(root, "repo")
    const args = ["backup", "--from", src.toml, "--to", repo, "--checkpoint-interval", "100ms", "--limit-upload", "20MiB"]
    // Kill points: one before the first checkpoint (a fixed delay), then 21 spread over the bytes. Each
    // is set from where the previous kill left the backup: an equal share of what remains up to 85% of
    // the bytes (progress comes in blocks of up to 8 MiB, so fixed fractions of the total would let a
    // run overshoot several points at once), and always at a checkpoint this run wrote with more bytes
    // than the last one (every run does some work). Past 85%, a run is killed at its first checkpoint
    // with progress, up to 97% of the bytes.
    const POINTS = 22
    const spreadTo = 0.85 * total
    const lastKillAt = 0.97 * total
    let lastBytes = 0
    const points: Array<{ label: string; when: (checkpoint: BackupManifest | undefined, bytes: number, ms: number) => boolean }> = [
      { label: "right after start (no checkpoint yet)", when: (_c, _b, ms) => ms > 150 },
      ...Array.from({ length: POINTS - 1 }, (_, i) => {
        let target: number | undefined
        return {
          label: `point ${i + 2} of ${POINTS}`,
          when: (c: BackupManifest | undefined, bytes: number) => {
            target ??= lastBytes + Math.max(0, spreadTo - lastBytes) / (POINTS - 1 - i)
            return c !== undefined && bytes > lastBytes && bytes >= target && bytes <= lastKillAt
          },
        }
      }),
    ]
    let backupId: string | undefined
    let previous: ReadonlyArray<string> = []
    let survived = 0
    /** The result of a run that finished before its kill point (the last ones may: it is a resume too). */
    let completed: JsonObject | undefined
    /** Set when a kill landed after the commit (between it and the process's exit): the backup is done. */
    let committedBeforeKill = false
    for (const [n, point] of points.entries()) {
      const startedAt = Date.now()
      const run = start([...args, "--json"], root)
      const result = await runUntil(run, async () => {
        const found = await readCheckpointFile(repo)
        const c = found?.checkpoint?.writer.endsWith(` pid ${run.child.pid}`) ? found : undefined
        const bytes = c === undefined ? 0 : (await checkpointProgress(repo, c)).bytes
        return point.when(c, bytes, Date.now() - startedAt)
      })
      const context = `kill ${n + 1} (${point.label})\n--- stderr\n${result.stderr}`
      if (result.code === 0) {
        // Finished before its kill point (the last runs may): it resumed, so it stands for the final run.
        expect(result.stderr, context).toContain(`resuming backup ${backupId}`)
        completed = JSON.parse(result.stdout)
        break
      }
      expect(result.signal, context).toBe("SIGKILL")
      survived++
      if (n > 0 && backupId !== undefined) expect(result.stderr, context).toContain(`resuming backup ${backupId}`)
      // Crash consistency: nothing committed (unless the kill came after the commit: then that backup
      // is complete, with at most its checkpoint left over), and the checkpoint references only stored blocks.
      const committed = await manifestsIn(repo)
      if (committed.length > 0) {
        expect(committed, context).toEqual([`${backupId}.manifest`])
        committedBeforeKill = true
        break
      }
      const checkpoint = await readCheckpointFile(repo)
      if (checkpoint === undefined) continue // killed before its first checkpoint
      backupId ??= checkpoint.backupMeta?.backupId
      expect(checkpoint.backupMeta?.backupId, context).toBe(backupId)
      expect(await missingBlocks(repo, checkpoint), context).toEqual([])
      // Progress is kept: what was finished stays finished.
      const { finished, bytes } = await checkpointProgress(repo, checkpoint)
      for (const path of previous) expect(finished, context).toContain(path)
      previous = finished
      lastBytes = bytes
      if (n === 5) {
        const list = await bendsaveJson(["list", repo], { cwd: root })
        expect(list.backups).toEqual([])
        expect(list.incomplete).toMatchObject([{ backup_id: backupId, state: "incomplete", running: false, cluster: "prod" }])
      }
    }
    expect(survived).toBeGreaterThanOrEqual(20)

    // The same command once more, to the end (unless a last run already got there).
    let final: JsonObject | undefined
    if (committedBeforeKill) {
      // A leftover checkpoint of a committed backup is not an incomplete backup.
      expect((await bendsaveJson(["list", repo], { cwd: root })).incomplete).toEqual([])
    } else {
      final = completed ?? (await bendsaveJson(args, { cwd: root }))
      expect(final).toMatchObject({
        resumed: true,
        resumed_from: backupId,
        backup_id: backupId,
        files_total: fileCount,
        bytes_total: total,
      })
      // Counters: the files the last checkpoint held as finished were not read again.
      expect(final.files_resumed).toBeGreaterThanOrEqual(previous.length)
      expect(final.files_read).toBeLessThanOrEqual(fileCount - previous.length)
      expect(await readdir(join(repo, "checkpoints")).catch(() => [])).toEqual([])
    }
    // Identical to the uninterrupted backup: same file list pages, same meta pages (content-addressed).
    const manifest = await readManifest(repo, backupId ?? "")
    expect(manifest.storage?.pages.map((p) => p.blockId)).toEqual(cleanManifest.storage?.pages.map((p) => p.blockId))
    expect(manifest.metasrv?.pages.map((p) => p.blockId)).toEqual(cleanManifest.metasrv?.pages.map((p) => p.blockId))
    expect(await missingBlocks(repo, manifest)).toEqual([])
    expect(await bendsaveJson(["verify", repo, "--read-data"], { cwd: root })).toMatchObject({ ok: true })

    // Restores byte for byte.
    const dst = await writeCluster(join(root, "restored"), { name: "restored" })
    await bendsaveJson(["restore", "--from", repo, "--to", dst.toml, "--confirm"], { cwd: root })
    expect(await compareDirs(src.dataDir, dst.dataDir)).toEqual([])
    expect(await exportMetaText(dst)).toBe(await exportMetaText(src))
    console.log(
      `backup kill points survived: ${survived}; ` +
        (final === undefined
          ? "the last kill came after the commit"
          : `final run read ${final.files_read} of ${fileCount} files (${final.files_resumed} from the checkpoint)`),
    )
  }, 600_000)

  it("a restore SIGKILLed at 24 points never leaves a half-written file or a replaced meta, and the rerun skips what was written", async () => {
    const root = await makeTempDir("resume-restore")
    const src = await makeSourceCluster(root, "prod", 0.8)
    const total = await totalBytes(src.dataDir)
    const repo = join(root, "repo")
    await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root })
    const dst = await writeCluster(join(root, "dst"), { name: "dst" })
    const args = ["restore", "--from", repo, "--to", dst.toml, "--confirm", "--limit-download", "30MiB"]
    let survived = 0
    for (let i = 1; i <= 24; i++) {
      const run = start(args, root)
      // Kill when the bytes written (temp files being written included) pass i/26 of the total.
      const result = await runUntil(run, async () => (await totalBytes(dst.dataDir, true).catch(() => 0)) >= (i / 26) * total)
      if (result.code === 0) break
      expect(result.signal).toBe("SIGKILL")
      survived++
      // Every visible file is complete (equal to the source), and the meta is not replaced yet.
      for (const path of await listFiles(dst.dataDir)) {
        if (path.split("/").some((s) => s.includes(".tmp-"))) continue
        const [a, b] = await Promise.all([readFile(join(src.dataDir, path)), readFile(join(dst.dataDir, path))])
        expect(b.equals(a), `${path} after kill ${i}`).toBe(true)
      }
      expect(await readFile(join(dst.metaDir, "meta.json"), "utf8").catch(() => "")).not.toContain("catalog/")
    }
    expect(survived).toBeGreaterThanOrEqual(20)
    const present = (await listFiles(dst.dataDir)).filter((p) => !p.split("/").some((s) => s.includes(".tmp-"))).length
    const final = await bendsaveJson(args, { cwd: root })
    expect(final.files_skipped).toBe(present)
    expect(final.files_written).toBe(final.files_total - present)
    expect(await compareDirs(src.dataDir, dst.dataDir)).toEqual([])
    expect(await tempFilesUnder(dst.dataDir)).toEqual([])
    expect(await exportMetaText(dst)).toBe(await exportMetaText(src))
    console.log(`restore kill points survived: ${survived}; the rerun skipped ${present} files already written`)
  }, 600_000)

  it("two backups of different clusters into one repository at once both commit and restore", async () => {
    const root = await makeTempDir("two-clusters")
    const [a, b] = await Promise.all([makeSourceCluster(root, "alpha", 0.25), makeSourceCluster(root, "beta", 0.25)])
    const repo = join(root, "repo")
    const [ra, rb] = await Promise.all(
      [a, b].map((c) => start(["backup", "--from", c.toml, "--to", repo, "--json", "--checkpoint-interval", "100ms"], root).done),
    )
    const [ja, jb] = [ra, rb].map((r) => parseSingleJson({ ...r, timedOut: false, command: "backup" }))
    expect(ra.code, ra.stderr).toBe(0)
    expect(rb.code, rb.stderr).toBe(0)
    expect(ja.backup_id).not.toBe(jb.backup_id)
    const list = await bendsaveJson(["list", repo], { cwd: root })
    expect(list.backups.map((x: { cluster: string }) => x.cluster).sort()).toEqual(["alpha", "beta"])
    expect(list.incomplete).toEqual([])
    expect(await bendsaveJson(["verify", repo, "--read-data"], { cwd: root })).toMatchObject({ ok: true, backups_checked: 2 })
    for (const [c, j] of [
      [a, ja],
      [b, jb],
    ] as const) {
      const dst = await writeCluster(join(root, `restored-${j.backup_id}-${c.toml.length}`), { name: "x" })
      await bendsaveJson(["restore", "--from", repo, "--backup", j.backup_id, "--to", dst.toml, "--confirm"], { cwd: root })
      expect(await compareDirs(c.dataDir, dst.dataDir)).toEqual([])
    }
  }, 180_000)

  it("abandon drops an incomplete backup; the next backup starts afresh", async () => {
    const root = await makeTempDir("abandon")
    const src = await makeSourceCluster(root, "prod", 0.3)
    const repo = join(root, "repo")
    const run = start(["backup", "--from", src.toml, "--to", repo, "--checkpoint-interval", "100ms", "--limit-upload", "20MiB"], root)
    await runUntil(run, async () => {
      const c = await readCheckpointFile(repo)
      return c !== undefined && (await checkpointProgress(repo, c)).bytes > 5 * MiB
    })
    const id = (await readCheckpointFile(repo))?.backupMeta?.backupId
    expect(id).toBeDefined()
    const text = await start(["list", repo], root).done
    expect(text.stdout).toMatch(new RegExp(`${id}\\s+INCOMPLETE`))
    expect(await bendsaveJson(["abandon", repo, id as string], { cwd: root })).toMatchObject({ backup_id: id, abandoned: true })
    const again = await start(["abandon", repo, id as string, "--json"], root).done
    expect(again.code).toBe(1)
    expect(JSON.parse(again.stdout).error).toMatchObject({ tag: "CheckpointError" })
    const fresh = await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root })
    expect(fresh.resumed).toBe(false)
  }, 120_000)
})

/** A TCP proxy to `target` that the test can cut (drop every connection, refuse new ones) and restore. */
const makeProxy = async (target: URL) => {
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let port = 0
  const listen = () =>
    new Promise<void>((ok, fail) => {
      const listening = createServer((client) => {
        if (server !== listening) {
          client.destroy()
          return
        }
        const upstream = connect(Number(target.port), target.hostname)
        sockets.add(client)
        sockets.add(upstream)
        const drop = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on("error", drop).on("close", drop)
        upstream.on("error", drop).on("close", drop)
        client.pipe(upstream)
        upstream.pipe(client)
      })
      listening.on("error", fail)
      listening.listen(port, "127.0.0.1", () => {
        port = (listening.address() as { port: number }).port
        ok()
      })
      server = listening
    })
  await listen()
  return {
    get endpoint() {
      return `http://127.0.0.1:${port}`
    },
    /** Stops accepting first, then drops every open connection (without waiting for them to close). */
    cut: async () => {
      const closing = server
      server = undefined
      closing?.close()
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    restore: listen,
    close: async () => {
      server?.close()
      server = undefined
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
  }
}

describe("a real server cut mid-backup (S3: the shared Ceph behind a TCP proxy of this test)", () => {
  it("a backup whose network is cut for longer than its retries fails clearly, commits nothing, and resumes after the cut", async () => {
    const server = s3Server()
    const root = await makeTempDir("s3-cut")
    const src = await makeSourceCluster(root, "prod", 0.3)
    const bucket = randomName("resume-cut")
    const s3 = new S3Client({
      endpoint: server.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    })
    await s3.send(new CreateBucketCommand({ Bucket: bucket }))
    const proxy = await makeProxy(new URL(server.endpoint))
    try {
      const env = { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey }
      const repo = `s3://${bucket}/backups?endpoint=${proxy.endpoint}&region=us-east-1`
      const args = ["backup", "--from", src.toml, "--to", repo, "--checkpoint-interval", "100ms", "--limit-upload", "20MiB", "--json"]
      const first = start(args, root, env)
      // Cut the network once a third of the data is checkpointed, and keep it cut until the backup gives up.
      const total = await totalBytes(src.dataDir)
      let cutAt = 0
      const list = async () => (await start(["list", repo, "--json"], root, env).done).stdout
      /** Bytes the checkpoint in the bucket holds as stored (read directly, not through the proxy). */
      const checkpointed = async () => {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "backups/checkpoints/" }))
        const key = listed.Contents?.[0]?.Key
        if (key === undefined) return 0
        const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined)
        const bytes = await object?.Body?.transformToByteArray()
        if (bytes === undefined) return 0
        const c = decodeManifest(bytes, key)
        if (c instanceof ManifestError) return 0
        let n = Number(c.storage?.totalBytes ?? 0n)
        for (const f of c.checkpoint?.partialFiles ?? []) n += f.blocks.reduce((m, b) => m + Number(b.blockSize), 0)
        return n
      }
      const ended = await runUntil(
        first,
        async () => {
          if (cutAt === 0 && (await checkpointed()) >= total / 3) {
            await proxy.cut()
            cutAt = Date.now()
          }
          return false
        },
        240_000,
      )
      const failedAfter = Date.now() - cutAt
      expect(cutAt, "the cut happened").toBeGreaterThan(0)
      expect(ended.code, ended.stderr).toBe(1)
      const error = JSON.parse(ended.stdout).error
      expect(error.tag).toBe("BlobStoreError")
      expect(error.message).toMatch(/Unavailable|connect|ECONNREFUSED|timed out/i)
      // The server comes back: nothing was committed, the backup is incomplete, and the same command resumes it.
      await proxy.restore()
      const listed = JSON.parse(await list())
      expect(listed.backups).toEqual([])
      expect(listed.incomplete).toHaveLength(1)
      const resumed = start(args, root, env)
      const done = await resumed.done
      expect(done.code, describeRun({ ...done, timedOut: false, command: "backup (after the cut)" })).toBe(0)
      const result = JSON.parse(done.stdout)
      expect(result).toMatchObject({ resumed: true, resumed_from: listed.incomplete[0].backup_id })
      expect(result.files_resumed).toBeGreaterThan(0)
      expect(done.stderr).toContain(`resuming backup ${listed.incomplete[0].backup_id}`)
      expect(await bendsaveJson(["verify", repo, "--read-data"], { cwd: root, env })).toMatchObject({ ok: true })
      const dst = await writeCluster(join(root, "restored"), { name: "restored" })
      await bendsaveJson(["restore", "--from", repo, "--to", dst.toml, "--confirm"], { cwd: root, env })
      expect(await compareDirs(src.dataDir, dst.dataDir)).toEqual([])
      console.log(
        `S3 cut: the backup failed ${(failedAfter / 1000).toFixed(1)} s into the outage, and the rerun resumed with ${result.files_resumed} files done`,
      )
    } finally {
      await proxy.close()
      s3.destroy()
    }
  }, 600_000)
})
