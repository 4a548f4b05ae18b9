/**
 * List: the backups in a repository, newest last, with their sizes and counts
 * (read from the manifests only; no block is read).
 */
import { timestampMs } from "@bufbuild/protobuf/wkt"
import * as Effect from "effect/Effect"
import { type BackupManifest, BackupType, backupIdTime } from "./Manifest.ts"
import { listBackupIds, type Repository, readManifest } from "./Repository.ts"

export interface BackupSummary {
  readonly backup_id: string
  /** "committed": a manifest; "incomplete": the checkpoint of an unfinished backup (Checkpoint.ts). */
  readonly state: "committed" | "incomplete"
  readonly backup_type: "full" | "incremental"
  readonly parent_backup_id: string | null
  readonly cluster: string
  readonly started_at: string
  readonly completed_at: string
  readonly files: number
  readonly bytes: number
  readonly meta_keys: number
  readonly meta_revision: number
  readonly files_reused: number
  readonly bytes_uploaded: number
  readonly tool_version: string
  /** Set when the manifest cannot be read: why (the other fields are then empty). */
  readonly damaged?: string
}

export const summarize = (m: BackupManifest): BackupSummary => {
  const meta = m.backupMeta
  const totals = meta?.totals
  return {
    backup_id: meta?.backupId ?? "",
    state: m.checkpoint === undefined ? "committed" : "incomplete",
    backup_type: meta?.backupType === BackupType.INCREMENTAL ? "incremental" : "full",
    parent_backup_id: meta?.parentBackupId ? meta.parentBackupId : null,
    cluster: meta?.clusterName ?? "",
    started_at: meta?.startedAt ? new Date(timestampMs(meta.startedAt)).toISOString() : "",
    completed_at: meta?.completedAt ? new Date(timestampMs(meta.completedAt)).toISOString() : "",
    files: Number(m.storage?.fileCount ?? 0n),
    bytes: Number(m.storage?.totalBytes ?? 0n),
    meta_keys: Number(m.metasrv?.keyCount ?? 0n),
    meta_revision: Number(m.metasrv?.revision ?? 0n),
    files_reused: Number(totals?.filesReused ?? 0n),
    bytes_uploaded: Number(totals?.bytesUploaded ?? 0n),
    tool_version: meta?.toolVersion ?? "",
  }
}

const damagedSummary = (backupId: string, problem: string): BackupSummary => ({
  backup_id: backupId,
  state: "committed",
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
})

/** Every committed backup, oldest first; a manifest that cannot be read is listed as damaged, not fatal. */
export const listBackups = Effect.fn("List.run")(function* (repo: Repository) {
  const ids = yield* listBackupIds(repo)
  return yield* Effect.forEach(
    ids,
    (id) =>
      readManifest(repo, id).pipe(
        Effect.map(summarize),
        Effect.catchTag("ManifestError", (e) => Effect.succeed(damagedSummary(id, `${e.detail} (${e.fix})`))),
      ),
    { concurrency: 8 },
  )
})

/**
 * The newest readable backup of `cluster` (by backup id), or undefined when
 * there is none. Damaged manifests are passed over (the next backup then
 * reuses an older parent, or is full): one bad file must not stop backups.
 */
export const findLatestBackup = Effect.fn("List.findLatest")(function* (repo: Repository, cluster: string) {
  const ids = yield* listBackupIds(repo)
  for (let i = ids.length - 1; i >= 0; i--) {
    const manifest = yield* readManifest(repo, ids[i]).pipe(
      Effect.map((m): BackupManifest | undefined => m),
      Effect.catchTag("ManifestError", () => Effect.succeed(undefined)),
    )
    if (manifest?.backupMeta?.clusterName === cluster) {
      return { backupId: ids[i], time: backupIdTime(ids[i]), manifest }
    }
  }
  return undefined
})

/** The newest backup at or before `time` (ms), or undefined. */
export const findBackupAt = Effect.fn("List.findAt")(function* (repo: Repository, time: number) {
  const ids = yield* listBackupIds(repo)
  const candidates = ids.filter((id) => (backupIdTime(id) ?? Number.POSITIVE_INFINITY) <= time)
  return candidates.length === 0 ? undefined : candidates[candidates.length - 1]
})
