/**
 * Replicate: one round of replication of a cluster, a database or a table
 * from a source cluster to a target cluster (docs/replication.md).
 *
 * 1. Take the target's exclusive `replicate` lease (under the target's
 *    `.bendsave/leases/`): two replicators never work on one target.
 * 2. Fix the source point: the source meta at ONE revision (stored with the
 *    target as the round's meta pages), or, with a repository in between
 *    (`via`), an incremental backup of the source whose manifest is the point.
 * 3. Plan: walk the source files in path order beside the previous round's
 *    file list, the journal of an interrupted attempt and the target's
 *    listing. A file whose source identity (size, etag, last-modified) equals
 *    the recorded one, and whose target copy still has the recorded target
 *    etag, is unchanged and not read. Extra target files (mirror mode) are
 *    to be deleted. If more files or keys would be deleted than `maxDelete`
 *    allows, the round stops here, before changing anything.
 * 4. Copy the changed files (bounded parallelism, optional bandwidth limit),
 *    hashing their bytes on the way; each file that lands goes into the
 *    journal, so a killed round resumes without copying it again.
 * 5. Switch the target meta with one `replace` (keys under `bendsave/` and,
 *    for a database or table, the keys outside the scope are kept).
 * 6. Delete the extra files (mirror mode), now that no meta points at them.
 * 7. Commit the round's file list, drop the journal, write the status.
 *
 * Files land before the meta switches and are deleted only after it, so a
 * reader of the target sees the previous round's tables or the new ones,
 * never a table whose files are missing. Nothing is deleted in a round that
 * had an error: errors stop the round before step 5.
 */
import { createHash } from "node:crypto"
import { hostname } from "node:os"
import {
  acquireExclusiveLease,
  type BackupFile,
  type BlobStore,
  BlobStoreError,
  backup,
  type Cluster,
  compareBytes,
  compareKeysBytewise,
  displayKey,
  getBlock,
  type IntegrityError,
  type Lease,
  type LeaseHeldError,
  lastModifiedMillis,
  liveExclusiveLease,
  type ManifestError,
  type MetaDiff,
  type MetaEntry,
  makeRateLimiter,
  RESERVED_STORAGE_PREFIX,
  type Repository,
  readManifest,
  SourceChangedError,
  streamFiles,
  streamMetaEntries,
  summarize,
} from "@bendsave/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { prefixedStore } from "./PrefixedStore.ts"
import {
  DATABASE_KEY_PREFIX,
  describeScope,
  isReservedPath,
  metaKeyInScope,
  type ReplicationScope,
  streamOf,
  TABLE_KEY_PREFIX,
  type TableLocation,
  tableLocationOf,
} from "./ReplicationScope.ts"
import {
  type CommittedState,
  deleteOtherRounds,
  deletePrefix,
  type FileRecord,
  journalPrefix,
  makeFileListWriter,
  makeJournal,
  makeMetaPageWriter,
  type ReplicationStateError,
  readCommittedState,
  readJournal,
  streamFileRecords,
  streamMetaPages,
  writeCommittedState,
} from "./ReplicationState.ts"
import {
  type ClusterIdentity,
  REPLICATION_LEASE,
  type RoundOutcome,
  type RoundReport,
  readStatusRecord,
  writeStatus,
} from "./ReplicationStatus.ts"
import { makeSortedCursor } from "./SortedCursor.ts"

export interface ReplicateProgress {
  readonly phase: "lease" | "snapshot" | "backup" | "plan" | "copy" | "meta" | "delete" | "commit"
  readonly filesDone: number
  readonly bytesDone: number
  readonly filesTotal?: number
  readonly bytesTotal?: number
}

export interface ReplicateOptions {
  /** What to replicate (default: the whole cluster). */
  readonly scope?: ReplicationScope
  /** Feed the target through this repository: each round is also an incremental backup into it. */
  readonly via?: Repository
  /** Stop a round (before changing anything) that would delete more files, or more keys, than this. */
  readonly maxDelete?: number
  /** `mirror` (default) deletes on the target what the source no longer has; `keep` never deletes. */
  readonly deleteMode?: "mirror" | "keep"
  /** Plan only: report what a round would copy, delete and change; change nothing. */
  readonly dryRun?: boolean
  /** Files copied at once (default 8). */
  readonly parallelism?: number
  /** Bytes per second copied, over all files of the round. */
  readonly bandwidthLimit?: number
  readonly onProgress?: (progress: ReplicateProgress) => void
  /** With `via`: called once if the backup waits for a vacuum. */
  readonly onVacuumWait?: () => void
  /** How long to wait for another replicator's lease on the target (default 0: fail at once). */
  readonly leaseWaitMs?: number
  /** Walk items the plan keeps in memory for the copy (default 250 000); a bigger round lists both sides again. */
  readonly keepPlanItems?: number
  /** The clock, for tests (default Date.now). */
  readonly now?: () => number
}

/** The result of a round (the CLI's JSON output). */
export interface ReplicationRoundResult extends RoundReport {
  readonly stream: string
  readonly scope: string
  readonly dry_run: boolean
  readonly source: ClusterIdentity
  readonly target: ClusterIdentity
  readonly via: string | null
  readonly delete_mode: "mirror" | "keep"
  readonly max_delete: number | null
  readonly files_to_copy: number
  readonly bytes_to_copy: number
  readonly files_to_delete: number
  readonly sample_copy: ReadonlyArray<string>
  readonly sample_delete: ReadonlyArray<string>
  readonly meta_sample: MetaDiff["sample"]
}

/** A round would delete more than the limit allows; it stopped before changing anything. */
export class MaxDeleteExceededError extends Schema.TaggedError<MaxDeleteExceededError>()("MaxDeleteExceededError", {
  limit: Schema.Number,
  files: Schema.Number,
  keys: Schema.Number,
  sample: Schema.Array(Schema.String),
  fix: Schema.String,
}) {
  override get message(): string {
    return `the round would delete ${this.files} file(s) and ${this.keys} meta key(s) on the target, more than MAX_DELETE = ${this.limit}; it stopped before copying or deleting anything${this.sample.length > 0 ? ` (e.g. ${this.sample.join(", ")})` : ""}`
  }
}

/** The round cannot go ahead as asked (nothing was changed). */
export class ReplicationError extends Schema.TaggedError<ReplicationError>()("ReplicationError", {
  reason: Schema.Literals(["SourceMissing", "SourceDamaged", "TargetConflict", "SameCluster"]),
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return this.detail
  }
}

const SAMPLE = 5
/** Walk items the plan keeps for the copy (about 200 bytes each); a bigger round walks again. */
const KEEP_PLAN_ITEMS = 250_000
/** Files copied as one batch: its changed files at once (bounded), then its records in order. */
const COPY_BATCH = 2048
/** Files up to this size are read whole and written in one put; larger ones are streamed. */
const WHOLE_FILE_BYTES = 8 * 1024 * 1024

export const identityOf = (cluster: Cluster): ClusterIdentity => ({
  name: cluster.name,
  meta: cluster.meta.location,
  storage: cluster.storage.location,
})

/** The `.bendsave/` view of a cluster's storage: replication's lease, state and status live there. */
export const reservedArea = (target: Cluster): BlobStore => prefixedStore(target.storage, RESERVED_STORAGE_PREFIX)

// ---------------------------------------------------------------------------
// The lease

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Takes the target's replication lease for the scope. A holder on THIS
 * machine whose process is gone (killed) is released at once, so a killed
 * replicator can be restarted without waiting for its lease to expire.
 */
export const acquireReplicationLease = (
  source: Cluster,
  target: Cluster,
  scope: ReplicationScope,
  options: { readonly waitMs?: number } = {},
): Effect.Effect<Lease, BlobStoreError | LeaseHeldError, Scope.Scope> =>
  Effect.gen(function* () {
    const reserved = reservedArea(target)
    const live = yield* liveExclusiveLease(reserved, REPLICATION_LEASE)
    if (
      live !== undefined &&
      live.record.holder.host === hostname() &&
      live.record.holder.pid !== process.pid &&
      !processAlive(live.record.holder.pid)
    ) {
      yield* reserved.put(live.key, new TextEncoder().encode(`${JSON.stringify({ ...live.record, released: true }, null, 2)}\n`))
    }
    return yield* acquireExclusiveLease(reserved, REPLICATION_LEASE, {
      operation: `replication of the ${describeScope(scope)} of ${source.name} to ${target.name}`,
      details: { stream: streamOf(scope), source: source.name, source_storage: source.storage.location },
      ttlMs: 60_000,
      waitMs: options.waitMs ?? 0,
    })
  })

// ---------------------------------------------------------------------------
// The source point of a round

/** A source file as a round sees it: its identity, and with a repository in between its record. */
interface SourceFile {
  readonly path: string
  readonly size: number
  readonly etag: string
  readonly lastModified: number
  readonly record?: BackupFile
}

type ReadError = BlobStoreError | IntegrityError | ManifestError | SourceChangedError

/** Which files of the source a scoped round covers. */
interface Selection {
  /** Table locations, sorted, none inside another. */
  readonly locations: ReadonlyArray<string>
  /** Paths the current snapshots list (and the snapshots themselves). */
  readonly referenced: ReadonlySet<string>
}

interface SourcePoint {
  readonly revision: number
  readonly time: number
  readonly backupId: string | null
  readonly metaKeys: number
  readonly tables: ReadonlyArray<TableLocation>
  /** Meta entries in scope, key order; may be run more than once. */
  readonly meta: () => Stream.Stream<MetaEntry, ReadError | ReplicationStateError>
  /** Files in scope (all, or the selection's), path order. */
  readonly files: (selection: Selection | undefined) => Stream.Stream<SourceFile, ReadError | ReplicationError>
  readonly read: (file: SourceFile) => Stream.Stream<Uint8Array, ReadError>
  /** The whole file in one read, where the source can (direct mode). */
  readonly readWhole?: (file: SourceFile) => Effect.Effect<Uint8Array, ReadError>
  /** Whole objects (snapshot objects); a missing one is absent from the map. */
  readonly readObjects: (paths: ReadonlyArray<string>) => Effect.Effect<Map<string, Uint8Array>, ReadError>
}

const vanished = (path: string) =>
  new SourceChangedError({
    path,
    detail: "vanished from the source while the round was copying it (deleted by the cluster?)",
    fix: "run replicate again; the next round works from a new source point",
  })

/** `stream` (path order) with the sorted `extra` items merged in. */
const mergeSorted = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  extra: ReadonlyArray<A>,
  compare: (a: A, b: A) => number,
): Stream.Stream<A, E, R> => {
  if (extra.length === 0) return stream
  return stream.pipe(
    Stream.mapAccum(
      () => 0,
      (i, a: A) => {
        const out: Array<A> = []
        while (i < extra.length && compare(extra[i], a) < 0) out.push(extra[i++])
        out.push(a)
        return [i, out] as const
      },
      { onHalt: (i) => extra.slice(i) },
    ),
  )
}

const underAny = (locations: ReadonlyArray<string>, path: string) => locations.some((l) => path.startsWith(l))

/** Lists a store as a selection: each location's listing in order, with the foreign referenced files merged in. */
const listSelection = (store: BlobStore, selection: Selection, missingForeign: "skip" | "fail") =>
  Effect.gen(function* () {
    const foreign = [...selection.referenced].filter((p) => !underAny(selection.locations, p)).sort(compareKeysBytewise)
    const infos = yield* Effect.forEach(
      foreign,
      (path) =>
        store.head(path).pipe(
          Effect.map((i) => i as typeof i | undefined),
          Effect.catchIf(
            (e) => e.reason === "NotFound" && missingForeign === "skip",
            () => Effect.succeed(undefined),
          ),
        ),
      { concurrency: 8 },
    )
    const listed = Stream.fromIterable(selection.locations).pipe(Stream.flatMap((location) => store.list(location)))
    return mergeSorted(
      listed,
      infos.filter((i) => i !== undefined),
      (a, b) => compareKeysBytewise(a.key, b.key),
    )
  })

const directPoint = (
  source: Cluster,
  reserved: BlobStore,
  stream: string,
  round: number,
  scope: ReplicationScope,
  dryRun: boolean,
  now: () => number,
) =>
  Effect.gen(function* () {
    const snapshot = yield* source.meta.snapshot()
    const time = now()
    const tables: Array<TableLocation> = []
    const memory: Array<MetaEntry> = []
    const writer = dryRun ? undefined : makeMetaPageWriter(reserved, stream, round)
    let metaKeys = 0
    yield* snapshot.entries.pipe(
      Stream.runForEach((entry) => {
        if (!metaKeyInScope(scope, entry.key)) return Effect.void
        metaKeys++
        if (scope.kind !== "cluster") {
          const table = tableLocationOf(entry.key, entry.value)
          if (table !== undefined) tables.push(table)
        }
        return writer === undefined ? Effect.sync(() => memory.push(entry)) : writer.add(entry)
      }),
    )
    const pages = writer === undefined ? [] : yield* writer.finish
    const toSource = (i: { key: string; size: number; etag: string; lastModified: number }): SourceFile => ({
      path: i.key,
      size: i.size,
      etag: i.etag,
      lastModified: i.lastModified,
    })
    const point: SourcePoint & { readonly metaPages: ReadonlyArray<string> } = {
      revision: snapshot.revision,
      time,
      backupId: null,
      metaKeys,
      tables,
      metaPages: pages,
      meta: () => (writer === undefined ? Stream.fromIterable(memory) : streamMetaPages(reserved, stream, pages)),
      files: (selection) =>
        selection === undefined
          ? source.storage.list("").pipe(
              Stream.filter((i) => !isReservedPath(i.key)),
              Stream.map(toSource),
            )
          : Stream.unwrap(
              listSelection(source.storage, selection, "fail").pipe(
                Effect.map((s) => s.pipe(Stream.map(toSource))),
                Effect.catchIf(
                  (e): e is BlobStoreError => e.reason === "NotFound",
                  (e) =>
                    Effect.fail(
                      new ReplicationError({
                        reason: "SourceDamaged",
                        detail: `a table snapshot of the source lists '${e.key ?? "?"}', which the source storage does not have`,
                        fix: "check the source cluster's tables (its garbage collection may have removed a file still in use); run replicate again once it is consistent",
                      }),
                    ),
                ),
              ),
            ),
      read: (file) =>
        source.storage.getStream(file.path).pipe(
          Stream.catchIf(
            (e: BlobStoreError) => e.reason === "NotFound",
            () => Stream.fail(vanished(file.path)),
          ),
        ),
      readWhole: (file) =>
        source.storage.get(file.path).pipe(
          Effect.catchIf(
            (e: BlobStoreError) => e.reason === "NotFound",
            () => Effect.fail(vanished(file.path)),
          ),
        ),
      readObjects: (paths) =>
        Effect.forEach(
          paths,
          (path) =>
            source.storage.get(path).pipe(
              Effect.map((bytes) => [path, bytes] as const),
              Effect.catchIf(
                (e) => e.reason === "NotFound",
                () => Effect.succeed(undefined),
              ),
            ),
          { concurrency: 8 },
        ).pipe(Effect.map((pairs) => new Map(pairs.filter((p) => p !== undefined)))),
    }
    return point
  })

const viaPoint = (source: Cluster, repo: Repository, scope: ReplicationScope, options: ReplicateOptions) =>
  Effect.gen(function* () {
    const report = options.onProgress ?? (() => {})
    const made = yield* backup(source, repo, {
      onProgress: options.onProgress === undefined ? undefined : (p) => report({ ...p, phase: "backup" }),
      labels: { replication: streamOf(scope) },
      ...(options.onVacuumWait !== undefined ? { onVacuumWait: options.onVacuumWait } : {}),
    })
    const manifest = yield* readManifest(repo, made.backup_id)
    const filePages = manifest.storage?.pages ?? []
    const metaPages = manifest.metasrv?.pages ?? []
    const meta = () => streamMetaEntries(repo, metaPages).pipe(Stream.filter((e) => metaKeyInScope(scope, e.key)))
    const tables: Array<TableLocation> = []
    let metaKeys = 0
    yield* meta().pipe(
      Stream.runForEach((e) =>
        Effect.sync(() => {
          metaKeys++
          const table = tableLocationOf(e.key, e.value)
          if (table !== undefined) tables.push(table)
        }),
      ),
    )
    const toSource = (f: BackupFile): SourceFile => ({
      path: f.path,
      size: Number(f.size),
      etag: f.etag,
      lastModified: lastModifiedMillis(f),
      record: f,
    })
    const read = (f: BackupFile) =>
      Stream.fromIterable(f.blocks).pipe(Stream.mapEffect((b) => getBlock(repo, b.blockId, Number(b.blockSize)), { concurrency: 2 }))
    const point: SourcePoint = {
      revision: Number(manifest.metasrv?.revision ?? 0n),
      time: Date.parse(summarize(manifest).started_at),
      backupId: made.backup_id,
      metaKeys,
      tables,
      meta,
      files: (selection) => {
        const all = streamFiles(repo, filePages)
        if (selection === undefined) return all.pipe(Stream.map(toSource))
        const seen = new Set<string>()
        return all.pipe(
          Stream.filter((f) => underAny(selection.locations, f.path) || selection.referenced.has(f.path)),
          Stream.tap((f) => Effect.sync(() => seen.add(f.path))),
          Stream.map(toSource),
          Stream.concat(
            Stream.suspend(() => {
              const missing = [...selection.referenced].find((p) => !seen.has(p))
              return missing === undefined
                ? Stream.empty
                : Stream.fail(
                    new ReplicationError({
                      reason: "SourceDamaged",
                      detail: `a table snapshot of the source lists '${missing}', which backup ${made.backup_id} does not hold (the source storage does not have it)`,
                      fix: "check the source cluster's tables (its garbage collection may have removed a file still in use); run replicate again once it is consistent",
                    }),
                  )
            }),
          ),
        )
      },
      read: (file) => (file.record === undefined ? Stream.fail(vanished(file.path)) : read(file.record)),
      readObjects: (paths) =>
        Effect.gen(function* () {
          const wanted = new Set(paths)
          const records: Array<BackupFile> = []
          yield* streamFiles(repo, filePages).pipe(Stream.runForEach((f) => Effect.sync(() => wanted.has(f.path) && records.push(f))))
          const out = new Map<string, Uint8Array>()
          for (const r of records) {
            const chunks = yield* Stream.runCollect(read(r))
            out.set(r.path, Buffer.concat(chunks))
          }
          return out
        }),
    }
    return point
  })

// ---------------------------------------------------------------------------
// The round

/** Walk item: an unchanged file (its record kept), a file to copy, or a record carried over (keep mode). */
type WalkItem =
  | { readonly kind: "same"; readonly record: FileRecord; readonly resumed: boolean }
  | { readonly kind: "copy"; readonly file: SourceFile }
  | { readonly kind: "carry"; readonly record: FileRecord }

const manifestHasher = () => {
  const hash = createHash("sha256").update("bendsave-replication-manifest v1\n")
  return {
    file: (path: string, size: number, sha256: string) => hash.update(`F\t${JSON.stringify(path)}\t${size}\t${sha256}\n`),
    meta: (e: MetaEntry) => hash.update(`M\t${Buffer.from(e.key).toString("hex")}\t${Buffer.from(e.value).toString("hex")}\n`),
    digest: () => hash.digest("hex"),
  }
}

const emptyReport = (round: number, startedAt: number): RoundReport => ({
  round,
  outcome: "failed",
  started_at: new Date(startedAt).toISOString(),
  finished_at: new Date(startedAt).toISOString(),
  duration_ms: 0,
  source_revision: null,
  source_time: null,
  backup_id: null,
  files_total: 0,
  bytes_total: 0,
  files_unchanged: 0,
  files_copied: 0,
  bytes_copied: 0,
  files_resumed: 0,
  files_deleted: 0,
  keys_total: 0,
  keys_added: 0,
  keys_changed: 0,
  keys_removed: 0,
  errors: [],
  source_manifest_hash: null,
  target_manifest_hash: null,
})

const errorMessages = (cause: Cause.Cause<unknown>): Array<string> => {
  const out: Array<string> = []
  for (const reason of cause.reasons) {
    if (reason._tag === "Fail") {
      const e = reason.error as { message?: unknown; fix?: unknown }
      out.push(typeof e?.message === "string" ? e.message : String(reason.error))
    } else if (reason._tag === "Die") {
      out.push(`internal error: ${String(reason.defect)}`)
    }
  }
  return out
}

/**
 * Runs one round (the caller holds the target's replication lease, or passes
 * undefined for a dry run).
 */
export const runRound = (source: Cluster, target: Cluster, options: ReplicateOptions, lease: Lease | undefined) =>
  Effect.gen(function* () {
    const now = options.now ?? Date.now
    const startedAt = now()
    const scope = options.scope ?? { kind: "cluster" }
    const stream = streamOf(scope)
    const dryRun = options.dryRun === true
    const mirror = (options.deleteMode ?? "mirror") === "mirror"
    const progress = options.onProgress ?? (() => {})
    const reserved = reservedArea(target)
    const sourceId = identityOf(source)
    const targetId = identityOf(target)
    const via = options.via !== undefined && !dryRun ? options.via : undefined

    if (sourceId.storage === targetId.storage || (sourceId.meta === targetId.meta && source.meta.prefix === target.meta.prefix)) {
      return yield* new ReplicationError({
        reason: "SameCluster",
        detail: `the source and the target are the same cluster (${sourceId.storage === targetId.storage ? `storage ${sourceId.storage}` : `meta ${sourceId.meta}`})`,
        fix: "give --to the cluster file of another cluster (the standby)",
      })
    }

    const committed = yield* readCommittedState(reserved, stream)
    const sameSource = committed !== undefined && committed.source.meta === sourceId.meta && committed.source.storage === sourceId.storage
    const previous: CommittedState | undefined = sameSource ? committed : undefined
    const round = (committed?.round ?? 0) + 1
    const journaled =
      sameSource || committed === undefined ? yield* readJournal(reserved, stream) : { records: new Map<string, FileRecord>(), objects: 0 }
    const r = { ...emptyReport(round, startedAt) } as { -readonly [K in keyof RoundReport]: RoundReport[K] }

    const body = Effect.gen(function* () {
      // 2. The source point.
      progress({ phase: via !== undefined ? "backup" : "snapshot", filesDone: 0, bytesDone: 0 })
      const point =
        via !== undefined
          ? yield* viaPoint(source, via, scope, options)
          : yield* directPoint(source, reserved, stream, round, scope, dryRun, now)
      r.source_revision = point.revision
      r.source_time = new Date(point.time).toISOString()
      r.backup_id = point.backupId
      r.keys_total = point.metaKeys

      // Scoped rounds: the tables and their files.
      let selection: Selection | undefined
      if (scope.kind !== "cluster") {
        const wantedKey =
          scope.kind === "table" ? `${TABLE_KEY_PREFIX}${scope.database}/${scope.table}` : `${DATABASE_KEY_PREFIX}${scope.database}`
        const present = scope.kind === "table" ? point.tables.some((t) => t.key === wantedKey) : point.metaKeys > 0
        if (!present && previous === undefined) {
          return yield* new ReplicationError({
            reason: "SourceMissing",
            detail: `the source cluster ${source.name} has no ${describeScope(scope)} (no key ${wantedKey} at revision ${point.revision})`,
            fix:
              scope.kind === "table"
                ? "check the name (`bendsave meta export --cluster <source>` lists catalog/tables/<db>/<table>)"
                : "check the name (`bendsave meta export --cluster <source>` lists catalog/databases/<db>)",
          })
        }
        const objects = yield* point.readObjects(point.tables.map((t) => t.snapshot))
        const referenced = new Set<string>()
        for (const table of point.tables) {
          const bytes = objects.get(table.snapshot)
          if (bytes === undefined) {
            return yield* new ReplicationError({
              reason: "SourceDamaged",
              detail: `the source's ${table.key} points at the snapshot '${table.snapshot}', which its storage does not have`,
              fix: "check the source cluster (docs/table-layout.md §10); run replicate again once it is consistent",
            })
          }
          referenced.add(table.snapshot)
          let files: unknown
          try {
            files = (JSON.parse(new TextDecoder().decode(bytes)) as { files?: unknown }).files
          } catch {
            files = undefined
          }
          if (!Array.isArray(files)) {
            return yield* new ReplicationError({
              reason: "SourceDamaged",
              detail: `the snapshot '${table.snapshot}' of ${table.key} is not a snapshot object (JSON with a "files" array)`,
              fix: "check the source cluster (docs/table-layout.md §4)",
            })
          }
          for (const f of files) {
            const path = (f as { path?: unknown })?.path
            if (typeof path !== "string" || path.includes("..") || path.startsWith("/") || isReservedPath(path)) {
              return yield* new ReplicationError({
                reason: "SourceDamaged",
                detail: `the snapshot '${table.snapshot}' lists a file path that is not a relative storage path: ${JSON.stringify(path)}`,
                fix: "check the source cluster (docs/table-layout.md §3)",
              })
            }
            referenced.add(path)
          }
        }
        const locations = [...new Set(point.tables.map((t) => t.location))].sort(compareKeysBytewise)
        selection = { locations: locations.filter((l) => !locations.some((o) => o !== l && l.startsWith(o))), referenced }
      }

      // Meta: what the target keeps besides the source's keys.
      const targetSnapshot = yield* target.meta.snapshot()
      const targetKept: Array<MetaEntry> = []
      let targetDbValue: Uint8Array | undefined
      const otherTablesInDb: Array<string> = []
      yield* targetSnapshot.entries.pipe(
        Stream.runForEach((e) =>
          Effect.sync(() => {
            const inScope = metaKeyInScope(scope, e.key)
            if (!inScope || !mirror) targetKept.push(e)
            if (scope.kind === "table") {
              const k = displayKey(e.key)
              if (k === `${DATABASE_KEY_PREFIX}${scope.database}`) targetDbValue = e.value
              else if (k.startsWith(`${TABLE_KEY_PREFIX}${scope.database}/`) && k !== `${TABLE_KEY_PREFIX}${scope.database}/${scope.table}`)
                otherTablesInDb.push(k)
            }
          }),
        ),
      )
      if (scope.kind === "table" && targetDbValue !== undefined && otherTablesInDb.length > 0) {
        const dbKey = new TextEncoder().encode(`${DATABASE_KEY_PREFIX}${scope.database}`)
        const sourceDb = yield* point.meta().pipe(
          Stream.filter((e) => compareBytes(e.key, dbKey) === 0),
          Stream.runHead,
        )
        if (sourceDb._tag === "Some" && compareBytes(sourceDb.value.value, targetDbValue) !== 0) {
          return yield* new ReplicationError({
            reason: "TargetConflict",
            detail: `the target already has a database ${scope.database} that differs from the source's (another id) and holds other tables (${otherTablesInDb.slice(0, 3).join(", ")}); replicating the table would change their database entry`,
            fix: `replicate the whole database (--database ${scope.database}) or into a target without its own ${scope.database}`,
          })
        }
      }
      /** The target keyspace after the switch: the source's keys in scope plus the kept ones (the source wins on a tie). */
      const targetEntries = () =>
        mergeSorted(
          point.meta().pipe(Stream.map((e) => ({ e, source: true }))),
          targetKept.map((e) => ({ e, source: false })),
          (a, b) => compareBytes(a.e.key, b.e.key),
        ).pipe(
          // mergeSorted puts a kept entry before a source entry with the same key: drop it.
          Stream.mapAccum(
            () => undefined as { e: MetaEntry; source: boolean } | undefined,
            (held, x) => {
              if (held === undefined) return [x, []] as const
              if (compareBytes(held.e.key, x.e.key) === 0) return [x.source ? x : held, []] as const
              return [x, [held.e]] as const
            },
            { onHalt: (held) => (held === undefined ? [] : [held.e]) },
          ),
        )

      // 3. Plan.
      const listTarget = () =>
        selection === undefined
          ? Effect.succeed(target.storage.list("").pipe(Stream.filter((i) => !isReservedPath(i.key))))
          : listSelection(target.storage, selection, "skip")
      const previousRecords = () => (previous === undefined ? Stream.empty : streamFileRecords(reserved, stream, previous.file_pages))

      /**
       * The walk, a batch of source files at a time (a listing chunk): the
       * other cursors are filled through the batch's last path (one effect
       * per chunk), then every file of the batch is classified synchronously.
       */
      const walk = (deletions: Set<string>) =>
        Effect.gen(function* () {
          // Each sequence is read ahead in a fiber of its own, so the listings of both sides (and the
          // previous file list) go on at the same time rather than in turn.
          const ahead = <A, E, R>(stream: Stream.Stream<A, E, R>) => stream
          const prevCursor = yield* makeSortedCursor(ahead(previousRecords()), (x) => x.path, compareKeysBytewise)
          const targetCursor = yield* makeSortedCursor(ahead(yield* listTarget()), (x) => x.key, compareKeysBytewise)
          const seenJournal = new Set<string>()
          const onPassedTarget = (i: { key: string }) => {
            if (selection === undefined && mirror) deletions.add(i.key)
          }
          const onPassedPrevious = (out: Array<WalkItem>) => (x: FileRecord) => {
            if (!mirror) out.push({ kind: "carry", record: x })
            else if (selection !== undefined) deletions.add(x.path)
          }
          const matches = (c: FileRecord | undefined, file: SourceFile, there: { size: number; etag: string } | undefined) =>
            c !== undefined &&
            c.size === file.size &&
            c.etag === file.etag &&
            c.lastModified === file.lastModified &&
            there !== undefined &&
            there.size === c.size &&
            there.etag === c.targetEtag
          const classify = (files: ReadonlyArray<SourceFile>) =>
            Effect.gen(function* () {
              const last = files[files.length - 1].path
              yield* prevCursor.fillThrough(last)
              yield* targetCursor.fillThrough(last)
              const out: Array<WalkItem> = []
              const passedPrevious = onPassedPrevious(out)
              for (const file of files) {
                const prev = prevCursor.seek(file.path, passedPrevious)
                const there = targetCursor.seek(file.path, onPassedTarget)
                const journal = journaled.records.get(file.path)
                if (journal !== undefined) seenJournal.add(file.path)
                const hit = matches(journal, file, there) ? journal : matches(prev, file, there) ? prev : undefined
                out.push(
                  hit !== undefined ? { kind: "same", record: hit, resumed: hit === journal && hit !== prev } : { kind: "copy", file },
                )
              }
              return out as ReadonlyArray<WalkItem>
            })
          const rest = Effect.gen(function* () {
            const out: Array<WalkItem> = []
            yield* prevCursor.drain(onPassedPrevious(out))
            yield* targetCursor.drain(onPassedTarget)
            // Files an interrupted attempt copied that are no longer in scope.
            if (selection !== undefined && mirror)
              for (const path of journaled.records.keys()) if (!seenJournal.has(path)) deletions.add(path)
            return out as ReadonlyArray<WalkItem>
          })
          return Stream.chunks(ahead(point.files(selection))).pipe(
            Stream.mapEffect(classify),
            Stream.concat(Stream.fromEffect(rest)),
            Stream.filter((items) => items.length > 0),
          )
        })

      progress({ phase: "plan", filesDone: 0, bytesDone: 0 })
      const planned = new Set<string>()
      const plan = { files: 0, bytes: 0, copy: 0, copyBytes: 0, sample: [] as Array<string> }
      // The plan's walk is kept for the copy (one listing of each side per round), unless it is too big to hold.
      const keepPlanItems = options.keepPlanItems ?? KEEP_PLAN_ITEMS
      let kept: Array<WalkItem> | undefined = []
      yield* Effect.scoped(
        Effect.gen(function* () {
          const batches = yield* walk(planned)
          yield* batches.pipe(
            Stream.runForEach((items) =>
              Effect.sync(() => {
                if (kept !== undefined) {
                  if (kept.length + items.length <= keepPlanItems) for (const item of items) kept.push(item)
                  else kept = undefined
                }
                for (const item of items) {
                  if (item.kind === "carry") continue
                  plan.files++
                  if (item.kind === "copy") {
                    plan.bytes += item.file.size
                    plan.copy++
                    plan.copyBytes += item.file.size
                    if (plan.sample.length < SAMPLE) plan.sample.push(item.file.path)
                  } else plan.bytes += item.record.size
                }
              }),
            ),
          )
        }),
      )
      const metaPlan = yield* target.meta.replace(targetEntries(), { dryRun: true })
      const deletePlan = [...planned].sort(compareKeysBytewise)
      r.files_total = plan.files
      r.bytes_total = plan.bytes
      r.keys_added = metaPlan.added
      r.keys_changed = metaPlan.changed
      r.keys_removed = metaPlan.removed
      const maxDelete = options.maxDelete
      const overLimit = maxDelete !== undefined && (deletePlan.length > maxDelete || metaPlan.removed > maxDelete)
      const planResult = {
        files_to_copy: plan.copy,
        bytes_to_copy: plan.copyBytes,
        files_to_delete: deletePlan.length,
        sample_copy: plan.sample,
        sample_delete: deletePlan.slice(0, SAMPLE),
        meta_sample: metaPlan.sample,
      }
      if (dryRun) {
        r.files_unchanged = plan.files - plan.copy
        return { planResult, overLimit }
      }
      if (overLimit) {
        return yield* new MaxDeleteExceededError({
          limit: maxDelete,
          files: deletePlan.length,
          keys: metaPlan.removed,
          sample: [...deletePlan.slice(0, SAMPLE), ...metaPlan.sample.removed.slice(0, SAMPLE)],
          fix: `check the source (were its files or keys deleted by mistake?); if the deletions are intended, run again with a larger --max-delete (MAX_DELETE = ${Math.max(deletePlan.length, metaPlan.removed)}), or with --delete keep to keep them on the target`,
        })
      }

      // 4. Copy.
      const journal = yield* makeJournal(reserved, stream, round)
      yield* Effect.forkScoped(Effect.forever(Effect.sleep(500).pipe(Effect.andThen(Effect.ignore(journal.flush)))))
      const limiter = options.bandwidthLimit === undefined ? undefined : makeRateLimiter(options.bandwidthLimit)
      const sourceHash = manifestHasher()
      const targetHash = manifestHasher()
      const writer = makeFileListWriter(reserved, stream, round)
      // With the plan's walk kept, its deletions stand; a second walk finds them again (and any new ones).
      const deletions = kept !== undefined ? planned : new Set<string>()
      const counters = { done: 0, bytesDone: 0 }
      const landed = (file: SourceFile, n: number, sha256: string, targetEtag: string) =>
        Effect.gen(function* () {
          if (n !== file.size) {
            return yield* new SourceChangedError({
              path: file.path,
              detail: `changed while it was being copied (listed with ${file.size} bytes, read ${n})`,
              fix: "run replicate again; the next round copies it again from a new source point",
            })
          }
          const record: FileRecord = {
            path: file.path,
            size: file.size,
            etag: file.etag,
            lastModified: file.lastModified,
            sha256,
            targetEtag,
          }
          yield* journal.add(record)
          r.files_copied++
          r.bytes_copied += file.size
          return record
        })
      /** A small file in one read and one write: fewer steps per file than a stream. */
      const copyWhole = (file: SourceFile, readWhole: (file: SourceFile) => Effect.Effect<Uint8Array, ReadError>) =>
        Effect.gen(function* () {
          const bytes = yield* readWhole(file)
          if (bytes.length !== file.size) return yield* landed(file, bytes.length, "", "")
          // WebCrypto hashes in libuv's thread pool while the bytes are written, not on the main thread.
          const digest = crypto.subtle.digest("SHA-256", bytes)
          digest.catch(() => {}) // awaited below; a failed put must not leave it unhandled
          if (limiter !== undefined) yield* limiter.take(bytes.length)
          const info = yield* target.storage.put(file.path, bytes)
          const sha256 = Buffer.from(yield* Effect.promise(() => digest)).toString("hex")
          return yield* landed(file, bytes.length, sha256, info.etag)
        })
      const copyStream = (file: SourceFile) =>
        Effect.gen(function* () {
          const hash = createHash("sha256")
          let n = 0
          let body = point.read(file).pipe(
            Stream.tap((chunk) =>
              Effect.sync(() => {
                hash.update(chunk)
                n += chunk.length
              }),
            ),
          )
          if (limiter !== undefined) body = body.pipe(Stream.tap((chunk) => limiter.take(chunk.length)))
          const info = yield* target.storage
            .put(
              file.path,
              body.pipe(
                Stream.mapError((e) =>
                  e instanceof BlobStoreError
                    ? e
                    : new BlobStoreError({
                        reason: "Unknown",
                        driver: "replicate",
                        operation: "read source",
                        key: file.path,
                        detail: e.message,
                        cause: e,
                      }),
                ),
              ),
            )
            .pipe(
              Effect.catchIf(
                (e: BlobStoreError) => e.driver === "replicate" && e.cause !== undefined,
                (e) => Effect.fail(e.cause as ReadError),
              ),
            )
          return yield* landed(file, n, n === file.size ? hash.digest("hex") : "", info.etag)
        })
      const readWhole = point.readWhole
      const copy = (file: SourceFile) =>
        readWhole !== undefined && file.size <= WHOLE_FILE_BYTES ? copyWhole(file, readWhole) : copyStream(file)
      const copyParallelism = options.parallelism ?? 8
      /** One batch: its changed files copied at once (bounded), then every record in path order. */
      const copyBatch = (items: ReadonlyArray<WalkItem>) =>
        Effect.gen(function* () {
          const toCopy: Array<SourceFile> = []
          for (const item of items) if (item.kind === "copy") toCopy.push(item.file)
          const copied = toCopy.length === 0 ? [] : yield* Effect.forEach(toCopy, copy, { concurrency: copyParallelism })
          const records: Array<FileRecord> = []
          let k = 0
          for (const item of items) {
            let record: FileRecord
            if (item.kind === "copy") record = copied[k++]
            else {
              record = item.record
              if (item.kind === "same") {
                r.files_unchanged++
                if (item.resumed) r.files_resumed++
              }
            }
            if (item.kind !== "carry") {
              sourceHash.file(record.path, record.size, record.sha256)
              counters.done++
              counters.bytesDone += record.size
            }
            targetHash.file(record.path, record.size, record.sha256)
            records.push(record)
          }
          progress({
            phase: "copy",
            filesDone: counters.done,
            bytesDone: counters.bytesDone,
            filesTotal: plan.files,
            bytesTotal: plan.bytes,
          })
          yield* writer.addAll(records)
        })
      progress({ phase: "copy", filesDone: 0, bytesDone: 0, filesTotal: plan.files, bytesTotal: plan.bytes })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const keptItems = kept
          const batches =
            keptItems !== undefined
              ? Stream.fromIterable(Array.from({ length: Math.ceil(keptItems.length / COPY_BATCH) }, (_, i) => i)).pipe(
                  Stream.map((i) => keptItems.slice(i * COPY_BATCH, (i + 1) * COPY_BATCH)),
                )
              : yield* walk(deletions)
          yield* batches.pipe(Stream.runForEach(copyBatch))
        }),
      ).pipe(Effect.ensuring(Effect.ignore(journal.flush)))
      kept = undefined
      const filePages = yield* writer.finish
      r.files_total = counters.done
      r.bytes_total = counters.bytesDone

      const deleteList = [...deletions].sort(compareKeysBytewise)
      if (maxDelete !== undefined && deleteList.length > maxDelete) {
        return yield* new MaxDeleteExceededError({
          limit: maxDelete,
          files: deleteList.length,
          keys: 0,
          sample: deleteList.slice(0, SAMPLE),
          fix: `more files disappeared from the source while the round ran; check the source, then run again with a larger --max-delete or --delete keep`,
        })
      }

      // 5. Meta switch.
      progress({ phase: "meta", filesDone: counters.done, bytesDone: counters.bytesDone })
      if (lease !== undefined) yield* lease.check
      const diff = yield* target.meta.replace(targetEntries())
      r.keys_added = diff.added
      r.keys_changed = diff.changed
      r.keys_removed = diff.removed
      if (maxDelete !== undefined && diff.removed > maxDelete) {
        // Cannot happen unless the target's meta changed during the round; say so rather than hide it.
        r.errors = [
          ...r.errors,
          `the meta switch removed ${diff.removed} keys, more than MAX_DELETE = ${maxDelete} (the target meta changed during the round)`,
        ]
      }

      // 6. Deletions (mirror).
      if (deleteList.length > 0) {
        progress({ phase: "delete", filesDone: 0, bytesDone: 0, filesTotal: deleteList.length })
        for (let i = 0; i < deleteList.length; i += 1000) {
          if (lease !== undefined) yield* lease.check
          const batch = deleteList.slice(i, i + 1000)
          yield* target.storage.deleteMany(batch)
          r.files_deleted += batch.length
          progress({ phase: "delete", filesDone: r.files_deleted, bytesDone: 0, filesTotal: deleteList.length })
        }
      }

      // 7. Commit.
      progress({ phase: "commit", filesDone: counters.done, bytesDone: counters.bytesDone })
      yield* point.meta().pipe(Stream.runForEach((e) => Effect.sync(() => sourceHash.meta(e))))
      const after = yield* target.meta.snapshot()
      yield* after.entries.pipe(
        Stream.runForEach((e) => Effect.sync(() => (metaKeyInScope(scope, e.key) ? targetHash.meta(e) : undefined))),
      )
      r.source_manifest_hash = sourceHash.digest()
      r.target_manifest_hash = targetHash.digest()
      if (lease !== undefined) yield* lease.check
      yield* writeCommittedState(reserved, {
        format: "bendsave-replication-state",
        version: 1,
        stream,
        scope,
        round,
        source: sourceId,
        source_revision: point.revision,
        source_time: new Date(point.time).toISOString(),
        committed_at: new Date(now()).toISOString(),
        file_pages: filePages,
        meta_pages: "metaPages" in point ? (point.metaPages as ReadonlyArray<string>) : [],
        files: counters.done,
        bytes: counters.bytesDone,
        source_manifest_hash: r.source_manifest_hash,
        target_manifest_hash: r.target_manifest_hash,
      })
      // Housekeeping: the journal and older rounds' pages are no longer needed.
      yield* Effect.ignore(deletePrefix(reserved, journalPrefix(stream)))
      yield* Effect.ignore(deleteOtherRounds(reserved, stream, round))
      return { planResult, overLimit: false }
    })

    const finish = (outcome: RoundOutcome) => {
      const finishedAt = now()
      r.outcome = outcome
      r.finished_at = new Date(finishedAt).toISOString()
      r.duration_ms = finishedAt - startedAt
    }
    const saveStatus = (report: RoundReport) =>
      Effect.gen(function* () {
        const before = yield* readStatusRecord(reserved, stream).pipe(Effect.orElseSucceed(() => undefined))
        yield* writeStatus(reserved, {
          format: "bendsave-replication-status",
          version: 1,
          stream,
          scope,
          source: sourceId,
          target: targetId,
          via: options.via?.location ?? null,
          updated_at: new Date(now()).toISOString(),
          last_round: report,
          last_success: report.outcome === "completed" ? report : (before?.last_success ?? null),
        })
      })

    const outcome = yield* Effect.scoped(body).pipe(
      Effect.onExit((exit) => {
        if (dryRun || Exit.isSuccess(exit)) return Effect.void
        const cause = exit.cause
        const interrupted = Cause.hasInterruptsOnly(cause)
        const stopped = cause.reasons.some((x) => x._tag === "Fail" && (x.error as { _tag?: string })?._tag === "MaxDeleteExceededError")
        finish(interrupted ? "interrupted" : stopped ? "stopped" : "failed")
        r.errors = interrupted
          ? ["the round was interrupted (files that landed are journaled; the next run continues)"]
          : errorMessages(cause)
        return Effect.ignore(saveStatus({ ...r }))
      }),
    )
    finish("completed")
    if (!dryRun) yield* saveStatus({ ...r })
    const result: ReplicationRoundResult = {
      ...r,
      stream,
      scope: describeScope(scope),
      dry_run: dryRun,
      source: sourceId,
      target: targetId,
      via: options.via?.location ?? null,
      delete_mode: mirror ? "mirror" : "keep",
      max_delete: options.maxDelete ?? null,
      ...outcome.planResult,
      ...(dryRun && outcome.overLimit
        ? {
            errors: [
              `the round would delete more than MAX_DELETE = ${options.maxDelete}; a real round would stop before changing anything`,
            ],
          }
        : {}),
    }
    return result
  })

/** One replication round under the target's lease (a dry run takes no lease and writes nothing). */
export const replicate = (source: Cluster, target: Cluster, options: ReplicateOptions = {}) =>
  Effect.scoped(
    Effect.gen(function* () {
      if (options.dryRun === true) return yield* runRound(source, target, options, undefined)
      options.onProgress?.({ phase: "lease", filesDone: 0, bytesDone: 0 })
      const lease = yield* acquireReplicationLease(source, target, options.scope ?? { kind: "cluster" }, {
        waitMs: options.leaseWaitMs ?? 0,
      })
      return yield* runRound(source, target, options, lease)
    }),
  )
