/**
 * Quickstart: the guided tour that needs no server and no config. It creates a
 * sample local cluster (databases and tables in the table layout, with real
 * Parquet files), backs it up, changes it, backs up again (incrementally),
 * lists and verifies the backups, restores the latest into a fresh cluster and
 * checks that it is identical, narrating each step.
 */
import { readdir, rm, stat, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import {
  makeDirectoryTree,
  backup,
  compareBytes,
  displayKey,
  listBackups,
  loadClusterConfig,
  openCluster,
  openRepositoryAt,
  readManifest,
  restore,
  verify,
  type Cluster,
  type MetaEntry,
} from "@bendsave/core"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { formatBytes, table } from "./Render.ts"
import { describeMutation, describeSample, generateSampleCluster, mutateSampleCluster } from "./SampleCluster.ts"

const MARKER = ".bendsave-quickstart"

export class QuickstartError extends Schema.TaggedError<QuickstartError>()("QuickstartError", {
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return this.detail
  }
}

const clusterToml = (name: string) => `# A bendsave cluster file: local meta + fs storage (the embedded default).
name = "${name}"

[meta]
type = "local"
path = "./${name}/meta"

[storage]
type = "fs"
[storage.fs]
data_path = "./${name}/data"
`

const encoder = new TextEncoder()

/** Every file and meta key of a cluster, for comparison. */
const contents = (cluster: Cluster) =>
  Effect.gen(function* () {
    const files = new Map<string, Uint8Array>()
    yield* cluster.storage.list("").pipe(
      Stream.mapEffect((info) => Effect.map(cluster.storage.get(info.key), (bytes) => [info.key, bytes] as const), { concurrency: 8 }),
      Stream.runForEach(([key, bytes]) => Effect.sync(() => files.set(key, bytes))),
    )
    const snapshot = yield* cluster.meta.snapshot()
    const meta: Array<MetaEntry> = []
    yield* snapshot.entries.pipe(Stream.runForEach((e) => Effect.sync(() => meta.push(e))))
    return { files, meta }
  })

const sameBytes = (a: Uint8Array, b: Uint8Array) => compareBytes(a, b) === 0

export const quickstart = (dirArg: string, options: { readonly narrate: boolean }) =>
  Effect.gen(function* () {
    const say = (text: string) => (options.narrate ? Console.log(text) : Effect.void)
    const dir = resolve(dirArg)

    /** A step on the working directory; a failure names the directory and what went wrong. */
    const inDir = <A>(what: string, run: () => Promise<A>) =>
      Effect.tryPromise({
        try: run,
        catch: (cause) => {
          const e = cause as NodeJS.ErrnoException
          const why =
            e.code === "ENOTDIR" || e.code === "EEXIST"
              ? `${(e as { path?: string }).path ?? dir} is a file, not a directory`
              : e.code === "EACCES" || e.code === "EPERM" || e.code === "EROFS"
                ? "permission denied"
                : e.code === "ENOENT"
                  ? "a directory cannot be created there"
                  : e.code === "ENOSPC"
                    ? "no space left on the device"
                    : (e.message ?? String(cause))
          return new QuickstartError({ detail: `cannot ${what} ${dir}: ${why}`, fix: "pass --dir <a new directory in a place you may write to>" })
        },
      })

    // A fresh working directory (only ever wiping one that quickstart made).
    const existing = yield* inDir("use", () =>
      readdir(dir).catch((cause: NodeJS.ErrnoException) => {
        // Missing, or a file in the way (which creating the directory names).
        if (cause.code === "ENOENT" || cause.code === "ENOTDIR") return [] as Array<string>
        throw cause
      }),
    )
    if (existing.length > 0) {
      const ours = yield* Effect.promise(() => stat(join(dir, MARKER)).then(() => true, () => false))
      if (!ours) {
        return yield* new QuickstartError({
          detail: `${dir} exists and was not made by quickstart; refusing to touch it`,
          fix: "pass --dir <new directory>",
        })
      }
      yield* inDir("clear", () => rm(dir, { recursive: true, force: true }))
    }
    yield* inDir("create", () => makeDirectoryTree(dir))
    yield* inDir("write into", async () => {
      await writeFile(join(dir, MARKER), "made by `bendsave quickstart`; safe to delete\n")
      await writeFile(join(dir, "prod.toml"), clusterToml("prod"))
      await writeFile(join(dir, "restored.toml"), clusterToml("restored"))
    })
    const repoPath = join(dir, "repo")

    // 1. The sample cluster.
    yield* say(`\n== 1. Create a sample cluster in ${dir}`)
    const sample = generateSampleCluster()
    const prodConfig = yield* loadClusterConfig(join(dir, "prod.toml"))
    const prod = yield* openCluster(prodConfig, { create: true })
    yield* Effect.forEach(sample.files, (f) => prod.storage.put(f.path, f.bytes), { concurrency: 8, discard: true })
    const sortedMeta = sample.meta
      .map((m) => ({ key: encoder.encode(m.key), value: encoder.encode(m.value) }))
      .sort((a, b) => compareBytes(a.key, b.key))
    yield* prod.meta.replace(Stream.fromIterable(sortedMeta))
    yield* say(`   prod.toml: local meta (${prodConfig.meta.type === "local" ? prodConfig.meta.path : prod.meta.location}) + fs storage (${"dataPath" in prodConfig.storage ? prodConfig.storage.dataPath : prodConfig.storage.type})`)
    yield* say(`   ${describeSample(sample)}`)

    // 2. Full backup.
    yield* say(`\n== 2. Back it up: bendsave backup --from ${join(dirArg, "prod.toml")} --to ${join(dirArg, "repo")}`)
    const repo = yield* openRepositoryAt(repoPath, { create: true })
    const first = yield* backup(prod, repo)
    yield* say(
      `   backup ${first.backup_id} (full): ${first.files_total} files, read ${formatBytes(first.bytes_read)}, uploaded ${first.blocks_uploaded} blocks (${formatBytes(first.bytes_uploaded)}), ${first.meta_keys} meta keys`,
    )

    // 3. A day of work.
    yield* say("\n== 3. Change the cluster (a day of work)")
    const mutation = mutateSampleCluster(sample)
    yield* Effect.forEach(mutation.added, (f) => prod.storage.put(f.path, f.bytes), { concurrency: 8, discard: true })
    for (const change of mutation.changedMeta) {
      yield* prod.meta.compareAndSwap(
        encoder.encode(change.key),
        change.previous === null ? undefined : encoder.encode(change.previous),
        encoder.encode(change.value),
      )
    }
    for (const key of mutation.removedMeta) {
      const current = yield* prod.meta.get(encoder.encode(key))
      yield* prod.meta.compareAndSwap(encoder.encode(key), current, undefined)
    }
    yield* prod.storage.deleteMany(mutation.removedPaths)
    yield* say(`   ${describeMutation(mutation)}`)

    // 4. Incremental backup. Wait for the next second so the two backups get distinct ids.
    yield* Effect.sleep(Math.max(0, 1000 - (Date.now() % 1000)))
    yield* say("\n== 4. Back up again (incremental: unchanged files are reused without reading them)")
    const second = yield* backup(prod, repo)
    yield* say(
      `   backup ${second.backup_id} (${second.backup_type}, parent ${second.parent_backup_id}): ${second.files_total} files, ${second.files_reused} reused unchanged, ${second.files_read} read (${formatBytes(second.bytes_read)}), ${second.blocks_uploaded} new blocks uploaded, ${second.blocks_deduplicated} already stored`,
    )

    // 5. List and verify.
    yield* say(`\n== 5. List and verify: bendsave list ${join(dirArg, "repo")}; bendsave verify ${join(dirArg, "repo")} --read-data`)
    const backups = yield* listBackups(repo)
    yield* say(
      table(
        ["BACKUP", "TYPE", "FILES", "SIZE", "UPLOADED", "META KEYS"],
        backups.map((b) => [b.backup_id, b.backup_type, String(b.files), formatBytes(b.bytes), formatBytes(b.bytes_uploaded), String(b.meta_keys)]),
      )
        .split("\n")
        .map((l) => `   ${l}`)
        .join("\n"),
    )
    const verified = yield* verify(repo, { readDataPercent: 100 })
    yield* say(`   verify: ${verified.ok ? "OK" : "PROBLEMS"}: ${verified.blocks_checked} blocks present, ${verified.blocks_read} re-hashed`)

    // 6. Restore into a fresh cluster: plan, then confirm.
    yield* say(`\n== 6. Restore the latest backup into a fresh cluster (restored.toml)`)
    const restoredConfig = yield* loadClusterConfig(join(dir, "restored.toml"))
    const manifest = yield* readManifest(repo, second.backup_id)
    const target = yield* openCluster(restoredConfig, { create: true })
    const plan = yield* restore(repo, manifest, target)
    yield* say(`   dry run: ${plan.files_to_write} files to write (${formatBytes(plan.bytes_to_write)}), ${plan.meta.added} meta keys to add; nothing changed`)
    const restored = yield* restore(repo, manifest, target, { confirm: true })
    yield* say(`   --confirm: wrote ${restored.files_written} files (${formatBytes(restored.bytes_written)}), ${restored.meta.added} meta keys`)

    // 7. Compare.
    yield* say("\n== 7. Compare the restored cluster with the source")
    const a = yield* contents(prod)
    const b = yield* contents(target)
    const differences: Array<string> = []
    for (const [path, bytes] of a.files) {
      const other = b.files.get(path)
      if (other === undefined) differences.push(`missing file ${path}`)
      else if (!sameBytes(bytes, other)) differences.push(`different file ${path}`)
    }
    for (const path of b.files.keys()) if (!a.files.has(path)) differences.push(`extra file ${path}`)
    if (a.meta.length !== b.meta.length) differences.push(`meta: ${a.meta.length} keys vs ${b.meta.length}`)
    for (let i = 0; i < Math.min(a.meta.length, b.meta.length); i++) {
      if (!sameBytes(a.meta[i].key, b.meta[i].key) || !sameBytes(a.meta[i].value, b.meta[i].value)) {
        differences.push(`meta key ${displayKey(a.meta[i].key)} differs`)
        break
      }
    }
    const identical = differences.length === 0
    yield* say(
      identical
        ? `   identical: ${a.files.size} files byte for byte and ${a.meta.length} meta keys`
        : `   DIFFERENT:\n${differences.slice(0, 10).map((d) => `   - ${d}`).join("\n")}`,
    )
    const summary = identical
      ? `\nquickstart OK. Try it yourself:\n  npx bendsave list ${join(dirArg, "repo")}\n  npx bendsave restore --from ${join(dirArg, "repo")} --to ${join(dirArg, "restored.toml")}`
      : "\nquickstart FAILED: the restored cluster differs from the source"
    return {
      summary,
      identical,
      directory: dir,
      repository: repoPath,
      first_backup: first,
      second_backup: second,
      verify: verified,
      restore: restored,
      differences,
    }
  })
