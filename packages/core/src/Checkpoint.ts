/**
 * Checkpoint: the resume state of an unfinished backup, kept in the
 * repository at `checkpoints/<backup-id>.checkpoint` while the backup runs
 * (docs/repository-format.md, "Checkpoints").
 *
 * A checkpoint is a `BackupManifest` with its `checkpoint` field set: the same
 * message and page encoding as a manifest, so every reader of manifests
 * (vacuum's mark phase, `list`) reads it the same way. `metasrv.pages` is the
 * meta snapshot taken when the backup first started, `storage.pages` the files
 * finished so far. It is rewritten with plain puts as the backup proceeds,
 * always after every block it references is stored, and deleted once the
 * manifest is committed. A killed backup leaves it behind; running the same
 * backup again resumes from it, and `bendsave abandon` deletes it.
 *
 * Whether a checkpoint is being worked on right now is told by the `backup`
 * leases (Lease.ts): a running backup's lease names it in `details.backup_id`.
 * A lease written on this host by a process that no longer exists is dead
 * whatever its expiry says (a killed process is resumed at once on the same
 * machine); any other live lease means another process is running it.
 */
import { hostname } from "node:os"
import { timestampMs } from "@bufbuild/protobuf/wkt"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { BlobStore } from "./BlobStore.ts"
import { BlobStoreError } from "./BlobStore.ts"
import { BACKUP_LEASE, type LeaseInfo, listLeases } from "./Lease.ts"
import { type BackupSummary, summarize } from "./List.ts"
import { BACKUP_ID_PATTERN, type BackupManifest, decodeManifest, encodeManifest, ManifestError } from "./Manifest.ts"
import { manifestKey, type Repository } from "./Repository.ts"

export const CHECKPOINT_PREFIX = "checkpoints/"
export const CHECKPOINT_SUFFIX = ".checkpoint"

export const checkpointKey = (backupId: string): string => `${CHECKPOINT_PREFIX}${backupId}${CHECKPOINT_SUFFIX}`

/** An incomplete backup that cannot be resumed or abandoned as asked. */
export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  reason: Schema.Literals(["NotFound", "Running", "Corrupt"]),
  backupId: Schema.String,
  location: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `${this.location}: incomplete backup ${this.backupId}: ${this.detail}`
  }
}

/** Encodes a checkpoint (a BackupManifest with `checkpoint` set). */
export const encodeCheckpoint = (checkpoint: BackupManifest): Uint8Array => encodeManifest(checkpoint)

/** Decodes and checks a checkpoint read from `source`. */
export const decodeCheckpoint = (bytes: Uint8Array, source: string, backupId: string): BackupManifest | ManifestError => {
  const decoded = decodeManifest(bytes, source)
  if (decoded instanceof ManifestError) return decoded
  if (decoded.checkpoint === undefined || decoded.backupMeta?.backupId !== backupId) {
    return new ManifestError({
      reason: "Corrupt",
      source,
      detail:
        decoded.checkpoint === undefined
          ? "it is a manifest, not a checkpoint (no checkpoint state)"
          : `it names backup '${decoded.backupMeta?.backupId}', not '${backupId}' as its file name says`,
      fix: `the checkpoint is damaged or was renamed; abandon it (\`bendsave abandon <repository> ${backupId}\`) and run the backup again`,
    })
  }
  return decoded
}

/** The checkpoint of `backupId`, or undefined when there is none. */
export const readCheckpoint = (
  repo: Repository,
  backupId: string,
): Effect.Effect<BackupManifest | undefined, BlobStoreError | ManifestError> =>
  Effect.gen(function* () {
    const key = checkpointKey(backupId)
    const bytes = yield* repo.store.get(key).pipe(
      Effect.map((b): Uint8Array | undefined => b),
      // A backup id that makes no valid key (`../x`) names no checkpoint either.
      Effect.catchIf(
        (e) => e.reason === "NotFound" || e.reason === "InvalidKey",
        () => Effect.succeed(undefined),
      ),
    )
    if (bytes === undefined) return undefined
    const decoded = decodeCheckpoint(bytes, `${repo.location}/${key}`, backupId)
    if (decoded instanceof ManifestError) return yield* decoded
    return decoded
  })

/** Backup ids of every checkpoint in the repository, oldest first. */
export const listCheckpointIds = (store: BlobStore): Effect.Effect<ReadonlyArray<string>, BlobStoreError> =>
  store.list(CHECKPOINT_PREFIX).pipe(
    Stream.map((info) => info.key.slice(CHECKPOINT_PREFIX.length)),
    Stream.filter((name) => name.endsWith(CHECKPOINT_SUFFIX)),
    Stream.map((name) => name.slice(0, -CHECKPOINT_SUFFIX.length)),
    Stream.filter((id) => BACKUP_ID_PATTERN.test(id)),
    Stream.runCollect,
    Effect.map((ids) => [...ids].sort()),
  )

/** Backup leases whose work ended in this process (their deletion may have failed, e.g. in an outage). */
const endedHere = new Set<string>()

/** Records that the work under the lease `key` ended in this process, whether or not the lease could be deleted. */
export const markLeaseEnded = (key: string): void => {
  endedHere.add(key)
}

/**
 * Whether the process holding a live lease may still be running: a lease
 * written on this host by a process that no longer exists is dead even before
 * it expires (pids are checked with signal 0), and so is one whose work
 * ended in this very process.
 */
export const holderAlive = (lease: LeaseInfo): boolean => {
  if (!lease.live || endedHere.has(lease.key)) return false
  const { host, pid } = lease.record.holder
  if (host !== hostname() || !Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return (cause as { code?: unknown }).code !== "ESRCH"
  }
}

/** `<pid> on <host>` of a lease, for messages. */
export const holderText = (lease: LeaseInfo): string => `pid ${lease.record.holder.pid} on ${lease.record.holder.host}`

/** The backup leases (live or not) that name `backupId`, other than `exceptKey`. */
export const leasesOf = (leases: ReadonlyArray<LeaseInfo>, backupId: string, exceptKey?: string): ReadonlyArray<LeaseInfo> =>
  leases.filter((l) => l.key !== exceptKey && l.record.details.backup_id === backupId)

/** The backup leases of a repository (all of them, live or not). */
export const backupLeases = (store: BlobStore): Effect.Effect<ReadonlyArray<LeaseInfo>, BlobStoreError> =>
  listLeases(store, { mode: "shared", kind: BACKUP_LEASE })

/** An incomplete backup as `bendsave list` shows it. */
export interface IncompleteBackup extends BackupSummary {
  readonly state: "incomplete"
  /** A live process is working on it now (its lease names it). */
  readonly running: boolean
  /** Who: `pid <pid> on <host>` of the live lease, when running. */
  readonly running_by: string | null
  /** When the checkpoint was last written. */
  readonly checkpointed_at: string
  /** Files finished so far (the rest of the summary counts finished files only). */
  readonly files_done: number
  readonly resumes: number
}

const damagedIncomplete = (backupId: string, problem: string): IncompleteBackup => ({
  backup_id: backupId,
  state: "incomplete",
  backup_type: "full",
  parent_backup_id: null,
  cluster: "",
  started_at: "",
  completed_at: "",
  files: 0,
  bytes: 0,
  meta_keys: 0,
  meta_revision: 0,
  files_reused: 0,
  bytes_uploaded: 0,
  tool_version: "",
  damaged: problem,
  running: false,
  running_by: null,
  checkpointed_at: "",
  files_done: 0,
  resumes: 0,
})

/**
 * Whether the backup of `checkpoint` is committed already: a manifest with its
 * id, cluster and start time exists (the process was killed between the commit
 * and the deletion of the checkpoint, which is then a leftover).
 */
export const isCommitted = (repo: Repository, checkpoint: BackupManifest): Effect.Effect<boolean, BlobStoreError> =>
  Effect.gen(function* () {
    const meta = checkpoint.backupMeta
    const bytes = yield* repo.store.get(manifestKey(meta?.backupId ?? "")).pipe(
      Effect.map((b): Uint8Array | undefined => b),
      Effect.catchIf(
        (e) => e.reason === "NotFound",
        () => Effect.succeed(undefined),
      ),
    )
    if (bytes === undefined) return false
    const manifest = decodeManifest(bytes, manifestKey(meta?.backupId ?? ""))
    if (manifest instanceof ManifestError) return false
    const startedAt = (m: BackupManifest) => (m.backupMeta?.startedAt ? timestampMs(m.backupMeta.startedAt) : -1)
    return manifest.backupMeta?.clusterName === meta?.clusterName && startedAt(manifest) === startedAt(checkpoint)
  })

/**
 * Every incomplete backup (checkpoint) of the repository, oldest first.
 * Checkpoints left over by a backup that committed (killed between its
 * commit and the checkpoint's deletion) are not incomplete and are skipped.
 */
export const listIncompleteBackups = Effect.fn("Checkpoint.listIncomplete")(function* (repo: Repository) {
  const ids = yield* listCheckpointIds(repo.store)
  if (ids.length === 0) return [] as ReadonlyArray<IncompleteBackup>
  const leases = yield* backupLeases(repo.store)
  const entries = yield* Effect.forEach(
    ids,
    (id) =>
      Effect.gen(function* () {
        const read = yield* readCheckpoint(repo, id).pipe(
          Effect.map((manifest) => (manifest === undefined ? undefined : { manifest })),
          Effect.catchTag("ManifestError", (e) => Effect.succeed({ damaged: damagedIncomplete(id, `${e.detail} (${e.fix})`) })),
        )
        if (read === undefined) return undefined
        if ("damaged" in read) return read.damaged
        const manifest = read.manifest
        if (yield* isCommitted(repo, manifest)) return undefined
        const holder = leasesOf(leases, id).find(holderAlive)
        const state = manifest.checkpoint
        const summary = summarize(manifest)
        return {
          ...summary,
          state: "incomplete",
          running: holder !== undefined,
          running_by: holder === undefined ? null : holderText(holder),
          checkpointed_at: state?.writtenAt ? new Date(timestampMs(state.writtenAt)).toISOString() : "",
          files_done: summary.files,
          resumes: state?.resumes ?? 0,
        } satisfies IncompleteBackup
      }),
    { concurrency: 8 },
  )
  return entries.filter((e): e is IncompleteBackup => e !== undefined)
})

/** What `abandonBackup` removed. */
export interface AbandonResult {
  readonly backup_id: string
  readonly cluster: string
  readonly files_done: number
  readonly abandoned: true
}

/**
 * Abandons an incomplete backup: deletes its checkpoint, so it is no longer
 * resumed. The blocks it stored stay until a vacuum finds them unreferenced.
 * Refuses a backup that a live process is running.
 */
export const abandonBackup = Effect.fn("Checkpoint.abandon")(function* (repo: Repository, backupId: string) {
  const checkpoint = yield* readCheckpoint(repo, backupId).pipe(
    Effect.map((c): BackupManifest | "damaged" | undefined => c),
    // A damaged checkpoint can still be abandoned (that is the way to get rid of it).
    Effect.catchTag("ManifestError", () => Effect.succeed("damaged" as const)),
  )
  if (checkpoint === undefined) {
    return yield* new CheckpointError({
      reason: "NotFound",
      backupId,
      location: repo.location,
      detail: "there is no such incomplete backup (no checkpoint)",
      fix: `run \`bendsave list ${repo.location}\`: incomplete backups are listed with state "incomplete"`,
    })
  }
  const leases = yield* backupLeases(repo.store)
  const holder = leasesOf(leases, backupId).find(holderAlive)
  if (holder !== undefined) {
    return yield* new CheckpointError({
      reason: "Running",
      backupId,
      location: repo.location,
      detail: `it is running now (${holderText(holder)}, lease valid until ${holder.record.expires_at})`,
      fix: "stop that backup first, or wait for it to finish; a dead process's lease expires on its own",
    })
  }
  yield* repo.store.delete(checkpointKey(backupId))
  return {
    backup_id: backupId,
    cluster: checkpoint === "damaged" ? "" : (checkpoint.backupMeta?.clusterName ?? ""),
    files_done: checkpoint === "damaged" ? 0 : Number(checkpoint.storage?.fileCount ?? 0n),
    abandoned: true,
  } satisfies AbandonResult
})

export { BlobStoreError }
