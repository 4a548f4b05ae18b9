/**
 * Vacuum: keeps a repository within its retention policy and deletes the
 * blocks nothing needs any more, without ever breaking a backup it keeps.
 *
 * 1. Plan (`planRetention`, pure): per cluster, which backups the policy
 *    keeps and which it deletes, with the reasons. Pinned backups and backups
 *    a running restore or clone uses are always kept; damaged manifests are
 *    never deleted; a policy that would delete every backup of a cluster is
 *    refused.
 * 2. Expire: under the exclusive `vacuum` lease, delete the expired
 *    manifests (first: a vacuum killed after this leaves only unreferenced
 *    blocks behind, and the repository still verifies).
 * 3. Sweep (the GC protocol of docs/repository-format.md §10): announce
 *    `phase = sweeping`, then look for running backups (and defer if there is
 *    one); mark every block a manifest or a checkpoint references (reading
 *    manifests, checkpoints and file pages only, never file data) into an
 *    on-disk sorted set; walk the sorted listing of `data/` beside it and
 *    delete, in batches, the blocks that are unreferenced and older than the
 *    grace period, checking the lease (and for new backups) before each batch.
 *
 * `dryRun` does all the reading and changes nothing (it takes no lease).
 */

import { fromBinary } from "@bufbuild/protobuf"
import { timestampMs } from "@bufbuild/protobuf/wkt"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { BlobStoreError } from "./BlobStore.ts"
import { CHECKPOINT_PREFIX, CHECKPOINT_SUFFIX } from "./Checkpoint.ts"
import { DEFAULT_CHUNK_IDS, type IdSorterOptions, makeIdSorter } from "./IdSorter.ts"
import {
  acquireExclusiveLease,
  BACKUP_LEASE,
  type Lease,
  type LeaseHeldError,
  type LeaseInfo,
  type LeaseLostError,
  liveSharedLeases,
  SWEEPING_PHASE,
  VACUUM_LEASE,
} from "./Lease.ts"
import { type BackupManifest, BackupManifestSchema, backupIdTime, KNOWN_FEATURES, type PageRef, READER_VERSION } from "./Manifest.ts"
import { readFilePage } from "./Pages.ts"
import { EXPIRING_PHASE, listPins } from "./Pins.ts"
import { DATA_PREFIX, listBackupIds, manifestKey, type Repository, readManifest, sweepRepositoryLeftovers } from "./Repository.ts"

// ---------------------------------------------------------------------------
// Policy

/**
 * A retention policy. Every field is optional; at least one of
 * `retentionDays`, `maxBackups` or a `keep*` rule must be set.
 *
 * - protected = the newest `minBackups` + every backup younger than
 *   `minRetentionDays` + the calendar keeps + pinned backups + backups a
 *   running restore or clone uses;
 * - candidates = backups older than `retentionDays` + backups beyond the
 *   newest `maxBackups` (when neither is set, but a `keep*` rule is: every
 *   backup, as restic's `forget --keep-*`);
 * - deleted = candidates − protected.
 *
 * All of it per cluster (`backup_meta.cluster_name`). Calendar keeps follow
 * restic: `keepDaily: N` keeps the newest backup of each of the last N UTC
 * days that have a backup (weeks: ISO 8601 weeks; months: calendar months);
 * the rules are independent and a backup kept by several counts once.
 */
export interface RetentionPolicy {
  readonly retentionDays?: number | undefined
  readonly minRetentionDays?: number | undefined
  readonly maxBackups?: number | undefined
  readonly minBackups?: number | undefined
  readonly keepDaily?: number | undefined
  readonly keepWeekly?: number | undefined
  readonly keepMonthly?: number | undefined
}

const POLICY_FLAGS: Record<keyof RetentionPolicy, string> = {
  retentionDays: "--retention-days",
  minRetentionDays: "--min-retention-days",
  maxBackups: "--max-backups",
  minBackups: "--min-backups",
  keepDaily: "--keep-daily",
  keepWeekly: "--keep-weekly",
  keepMonthly: "--keep-monthly",
}

export const VacuumErrorReason = Schema.Literals(["InvalidPolicy", "WouldDeleteEverything", "InvalidOption"])

/** A vacuum that must not run as asked. */
export class VacuumError extends Schema.TaggedError<VacuumError>()("VacuumError", {
  reason: VacuumErrorReason,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `vacuum: ${this.detail}`
  }
}

const invalid = (detail: string, fix: string) => new VacuumError({ reason: "InvalidPolicy", detail, fix })

/** Checks a policy; returns the problem (with what to pass instead) or undefined. */
export const validatePolicy = (policy: RetentionPolicy): VacuumError | undefined => {
  for (const [field, flag] of Object.entries(POLICY_FLAGS) as Array<[keyof RetentionPolicy, string]>) {
    const value = policy[field]
    if (value === undefined) continue
    if (!Number.isInteger(value) || value < 0) {
      return invalid(`${flag} must be a whole number, 0 or more (got ${value})`, `pass ${flag} N with N = 0, 1, 2, ...`)
    }
  }
  const { retentionDays, minRetentionDays, maxBackups, minBackups } = policy
  if (retentionDays !== undefined && minRetentionDays !== undefined && minRetentionDays > retentionDays) {
    return invalid(
      `--min-retention-days ${minRetentionDays} is more than --retention-days ${retentionDays}`,
      "the minimum cannot exceed the maximum: lower --min-retention-days or raise --retention-days",
    )
  }
  if (maxBackups !== undefined && minBackups !== undefined && minBackups > maxBackups) {
    return invalid(
      `--min-backups ${minBackups} is more than --max-backups ${maxBackups}`,
      "the minimum cannot exceed the maximum: lower --min-backups or raise --max-backups",
    )
  }
  if (!hasCandidateRule(policy) && !hasKeepRule(policy)) {
    const given = (Object.keys(POLICY_FLAGS) as Array<keyof RetentionPolicy>).filter((k) => policy[k] !== undefined)
    return invalid(
      given.length === 0
        ? "no retention policy was given: vacuum would not know which backups to delete"
        : `${given.map((k) => POLICY_FLAGS[k]).join(" and ")} only ${given.length === 1 ? "protects" : "protect"} backups; nothing says which to delete`,
      "pass --retention-days N (delete backups older than N days), --max-backups N (keep the newest N) " +
        "or --keep-daily/--keep-weekly/--keep-monthly N (keep only those); add --min-backups N or " +
        "--min-retention-days N as a safety floor; try --dry-run first",
    )
  }
  return undefined
}

const hasCandidateRule = (p: RetentionPolicy) => p.retentionDays !== undefined || p.maxBackups !== undefined
const hasKeepRule = (p: RetentionPolicy) => p.keepDaily !== undefined || p.keepWeekly !== undefined || p.keepMonthly !== undefined

/** One backup as the policy sees it. */
export interface RetentionInput {
  readonly backup_id: string
  readonly cluster: string
  /** Backup time, ms since the epoch (its start). */
  readonly time: number
  /** Why it must be kept whatever the policy says (pins, running restores/clones). */
  readonly protections?: ReadonlyArray<string>
}

/** What the policy decided for one backup. */
export interface RetentionDecision {
  readonly backup_id: string
  readonly cluster: string
  /** ISO 8601, UTC. */
  readonly time: string
  readonly age_days: number
  /** Why it is kept (its protections, or why it is not a candidate) or why it is deleted. */
  readonly reasons: ReadonlyArray<string>
  /** Kept backups only: the rules that made it a candidate, overridden by its protections. */
  readonly expired_by?: ReadonlyArray<string>
}

export interface RetentionPlan {
  readonly kept: ReadonlyArray<RetentionDecision>
  readonly deleted: ReadonlyArray<RetentionDecision>
}

const DAY_MS = 86_400_000
const pad = (n: number, w = 2) => String(n).padStart(w, "0")

/** Calendar buckets, UTC. */
export const dayOf = (ms: number): string => new Date(ms).toISOString().slice(0, 10)
export const monthOf = (ms: number): string => new Date(ms).toISOString().slice(0, 7)
/** ISO 8601 week (`2025-W03`): weeks start on Monday; week 1 holds the year's first Thursday. */
export const isoWeekOf = (ms: number): string => {
  const d = new Date(ms)
  const weekday = (d.getUTCDay() + 6) % 7
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - weekday + 3)
  const year = new Date(thursday).getUTCFullYear()
  const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY_MS))
  return `${year}-W${pad(week)}`
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`

/**
 * Applies `policy` at time `now` to `backups` (any order, several clusters).
 * Pure: the same inputs give the same plan. Fails (returns a VacuumError)
 * when the policy is invalid or would delete every backup of a cluster.
 */
export const planRetention = (
  backups: ReadonlyArray<RetentionInput>,
  policy: RetentionPolicy,
  now: number,
): RetentionPlan | VacuumError => {
  const problem = validatePolicy(policy)
  if (problem !== undefined) return problem
  const clusters = new Map<string, Array<RetentionInput>>()
  for (const b of backups) {
    const group = clusters.get(b.cluster) ?? []
    group.push(b)
    clusters.set(b.cluster, group)
  }
  const kept: Array<RetentionDecision> = []
  const deleted: Array<RetentionDecision> = []
  const refused: Array<string> = []
  for (const [cluster, group] of [...clusters.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    // Newest first (ties: the later id).
    group.sort((a, b) => b.time - a.time || (a.backup_id < b.backup_id ? 1 : -1))
    const protections = group.map((b) => [...(b.protections ?? [])])
    const calendar = (count: number | undefined, rule: string, bucket: (ms: number) => string) => {
      if (count === undefined) return
      let left = count
      let last: string | undefined
      for (let i = 0; i < group.length && left > 0; i++) {
        const key = bucket(group[i].time)
        if (key === last) continue
        last = key
        left--
        protections[i].push(`${rule} ${count}: newest backup of ${key}`)
      }
    }
    group.forEach((b, i) => {
      if (policy.minBackups !== undefined && i < policy.minBackups) {
        protections[i].push(`min-backups ${policy.minBackups}: one of the newest ${plural(policy.minBackups, "backup")}`)
      }
      if (policy.minRetentionDays !== undefined && now - b.time < policy.minRetentionDays * DAY_MS) {
        protections[i].push(`min-retention-days ${policy.minRetentionDays}: younger than ${plural(policy.minRetentionDays, "day")}`)
      }
    })
    calendar(policy.keepDaily, "keep-daily", dayOf)
    calendar(policy.keepWeekly, "keep-weekly", isoWeekOf)
    calendar(policy.keepMonthly, "keep-monthly", monthOf)
    let deletedHere = 0
    const decisions: Array<{ decision: RetentionDecision; deleted: boolean }> = group.map((b, i) => {
      const age = now - b.time
      const candidate: Array<string> = []
      if (policy.retentionDays !== undefined && age > policy.retentionDays * DAY_MS) {
        candidate.push(`retention-days ${policy.retentionDays}: older than ${plural(policy.retentionDays, "day")}`)
      }
      if (policy.maxBackups !== undefined && i >= policy.maxBackups) {
        candidate.push(`max-backups ${policy.maxBackups}: number ${i + 1} counting from the newest`)
      }
      if (!hasCandidateRule(policy)) candidate.push("not kept by any --keep-* rule")
      const base = { backup_id: b.backup_id, cluster, time: new Date(b.time).toISOString(), age_days: Math.round((age / DAY_MS) * 10) / 10 }
      if (candidate.length > 0 && protections[i].length === 0) {
        deletedHere++
        return { decision: { ...base, reasons: candidate }, deleted: true }
      }
      if (protections[i].length > 0) {
        return {
          decision: { ...base, reasons: protections[i], ...(candidate.length > 0 ? { expired_by: candidate } : {}) },
          deleted: false,
        }
      }
      const within: Array<string> = []
      if (policy.retentionDays !== undefined) within.push(`not older than ${plural(policy.retentionDays, "day")}`)
      if (policy.maxBackups !== undefined) within.push(`among the newest ${policy.maxBackups}`)
      return { decision: { ...base, reasons: [`within retention: ${within.join(" and ")}`] }, deleted: false }
    })
    if (group.length > 0 && deletedHere === group.length) refused.push(`${cluster || "(unnamed)"} (${plural(group.length, "backup")})`)
    // Oldest first in the plan.
    for (const d of decisions.reverse()) (d.deleted ? deleted : kept).push(d.decision)
  }
  if (refused.length > 0) {
    return new VacuumError({
      reason: "WouldDeleteEverything",
      detail: `the policy would delete every backup of cluster ${refused.join(", ")}; nothing was changed`,
      fix: "add --min-backups 1 (always keep the newest backup of each cluster) or loosen --retention-days/--max-backups; check with --dry-run",
    })
  }
  return { kept, deleted }
}

// ---------------------------------------------------------------------------
// The workflow

/** Where unfinished backups record what they have stored (one BackupManifest each). */
/** Default grace period: blocks younger than this are never deleted. */
export const DEFAULT_GRACE_MS = 3_600_000
/** Keys per delete batch (the S3 DeleteObjects maximum). */
export const DEFAULT_DELETE_BATCH = 1000
/** Distinct page ids remembered to avoid reading a shared page twice (an optimization; memory-bounded). */
const SEEN_PAGES_MAX = 262_144
const BLOCK_ID = /^[0-9a-f]{64}$/

export interface VacuumProgress {
  readonly phase: "plan" | "expire" | "mark" | "sweep"
  readonly done: number
  readonly total?: number | undefined
}

export interface VacuumOptions {
  /** Compute and report everything, change nothing (no lease is written either). */
  readonly dryRun?: boolean
  /** Blocks younger than this are kept (default 1 h; 0 when nothing else writes to the repository). */
  readonly graceMs?: number
  /** The clock of the policy and the grace period (default Date.now). */
  readonly now?: () => number
  readonly onProgress?: (progress: VacuumProgress) => void
  /** Wait this long for another vacuum to finish (default 0: fail at once naming it). */
  readonly waitMs?: number
  /** The vacuum lease's time-to-live (default DEFAULT_LEASE_TTL_MS). */
  readonly leaseTtlMs?: number
  /** How long past its expiry another vacuum's lease still counts as live (default DEFAULT_CLOCK_SKEW_MS). */
  readonly leaseSkewMs?: number
  /** Keys per delete batch (default 1000). */
  readonly batchSize?: number
  /** Where and how the referenced ids are sorted. */
  readonly sorter?: IdSorterOptions
}

export interface DeferredBlocks {
  readonly reason: string
  readonly blocks: number
  readonly bytes: number
}

export interface SweepResult {
  /**
   * done: unreferenced blocks older than the grace period were deleted;
   * planned: dry run (the counts say what a vacuum would delete);
   * deferred: a backup (or a restore of a deleted backup) is running: nothing swept;
   * stopped: a backup started mid-sweep: the sweep stopped between batches;
   * skipped: a manifest or checkpoint could not be read, so references are unknown.
   */
  readonly status: "done" | "planned" | "deferred" | "stopped" | "skipped"
  readonly reason?: string
  readonly manifests_read: number
  readonly checkpoints_read: number
  readonly pages_read: number
  readonly references: number
  readonly blocks_total: number
  readonly bytes_total: number
  readonly blocks_referenced: number
  readonly blocks_unreferenced: number
  /** Unreferenced, older than the grace period: what this vacuum deletes (or would). */
  readonly blocks_to_delete: number
  readonly bytes_to_reclaim: number
  readonly blocks_deleted: number
  readonly bytes_reclaimed: number
  readonly blocks_deferred: number
  readonly bytes_deferred: number
  readonly deferred: ReadonlyArray<DeferredBlocks>
  readonly batches: number
}

export interface VacuumResult {
  readonly repository: string
  readonly dry_run: boolean
  readonly policy: RetentionPolicy
  readonly now: string
  readonly grace_ms: number
  readonly backups_total: number
  readonly kept: ReadonlyArray<RetentionDecision>
  /** Deleted (or, in a dry run, to delete). */
  readonly deleted: ReadonlyArray<RetentionDecision>
  /** Manifests that cannot be read: never deleted, reported. */
  readonly damaged: ReadonlyArray<{ readonly backup_id: string; readonly problem: string }>
  readonly manifests_deleted: number
  readonly sweep: SweepResult
  /** Temp files that killed writers had left in the repository (fs), removed by this run (0 in a dry run). */
  readonly temp_files_removed: number
  readonly duration_ms: number
}

type VacuumFailure = VacuumError | BlobStoreError | LeaseHeldError | LeaseLostError

const leaseHolder = (l: LeaseInfo) => `pid ${l.record.holder.pid} on ${l.record.holder.host}`

/** Backups that running restores and clones use (their leases' `details.backup_id`). */
const inUse = Effect.fnUntraced(function* (repo: Repository) {
  const uses = new Map<string, Array<string>>()
  for (const kind of ["restore", "clone"]) {
    for (const l of yield* liveSharedLeases(repo.store, kind)) {
      const id = l.record.details.backup_id
      if (id === undefined) continue
      uses.set(id, [...(uses.get(id) ?? []), `in use by a running ${kind} (${leaseHolder(l)})`])
    }
  }
  return uses
})

/** Pins and running restores/clones, as protections per backup id. */
const protectionsOf = Effect.fnUntraced(function* (repo: Repository) {
  const protections = yield* inUse(repo)
  for (const pin of yield* listPins(repo)) {
    const detail = typeof pin.record.table === "string" ? `: ${pin.record.table}` : ""
    protections.set(pin.backup_id, [...(protections.get(pin.backup_id) ?? []), `pinned (${pin.reason}${detail})`])
  }
  return protections
})

/** The backups of the repository as the policy sees them; unreadable manifests apart. */
const readBackups = Effect.fnUntraced(function* (repo: Repository, report: (p: VacuumProgress) => void) {
  const ids = yield* listBackupIds(repo)
  let done = 0
  const read = yield* Effect.forEach(
    ids,
    (id) =>
      readManifest(repo, id).pipe(
        Effect.map((m) => {
          const started = m.backupMeta?.startedAt
          const time = started !== undefined ? timestampMs(started) : (backupIdTime(id) ?? 0)
          return { backup_id: id, cluster: m.backupMeta?.clusterName ?? "", time } as RetentionInput
        }),
        Effect.catchTag("ManifestError", (e) => Effect.succeed({ backup_id: id, problem: `${e.detail} (${e.fix})` })),
        Effect.tap(() => Effect.sync(() => report({ phase: "plan", done: ++done, total: ids.length }))),
      ),
    { concurrency: 8 },
  )
  const backups: Array<RetentionInput> = []
  const damaged: Array<{ backup_id: string; problem: string }> = []
  for (const r of read) {
    if ("problem" in r) damaged.push(r)
    else backups.push(r)
  }
  return { backups, damaged }
})

/** A checkpoint: a BackupManifest, possibly without the sections a committed one must have. */
const decodeCheckpoint = (bytes: Uint8Array): BackupManifest | string => {
  let m: BackupManifest
  try {
    m = fromBinary(BackupManifestSchema, bytes)
  } catch (cause) {
    return `it is not a BackupManifest protobuf (${String(cause)})`
  }
  if (m.minReaderVersion > READER_VERSION)
    return `it needs reader version ${m.minReaderVersion}; this bendsave reads up to ${READER_VERSION}`
  const unknown = m.requiredFeatures.filter((f) => !KNOWN_FEATURES.has(f))
  if (unknown.length > 0) return `it needs features this bendsave does not have: ${unknown.join(", ")}`
  return m
}

/**
 * Runs the vacuum: plan, expire manifests, sweep blocks. In a dry run
 * nothing is written (not even a lease).
 */
export const vacuum = (
  repo: Repository,
  policy: RetentionPolicy,
  options: VacuumOptions = {},
): Effect.Effect<VacuumResult, VacuumFailure> =>
  Effect.scoped(
    Effect.gen(function* () {
      const problem = validatePolicy(policy)
      if (problem !== undefined) return yield* problem
      const graceMs = options.graceMs ?? DEFAULT_GRACE_MS
      const batchSize = options.batchSize ?? DEFAULT_DELETE_BATCH
      if (!(Number.isFinite(graceMs) && graceMs >= 0)) {
        return yield* new VacuumError({
          reason: "InvalidOption",
          detail: `the grace period must be 0 or more (got ${graceMs} ms)`,
          fix: "pass --grace 1h, 30m or 0",
        })
      }
      if (!(Number.isInteger(batchSize) && batchSize > 0)) {
        return yield* new VacuumError({
          reason: "InvalidOption",
          detail: `the delete batch size must be a positive whole number (got ${batchSize})`,
          fix: "omit it (default 1000)",
        })
      }
      // A refusal (the policy would delete every backup) comes before anything is written, even a lease.
      if (!options.dryRun) {
        const { backups } = yield* readBackups(repo, () => {})
        const protections = yield* protectionsOf(repo)
        const preview = planRetention(
          backups.map((b) => ({ ...b, protections: protections.get(b.backup_id) ?? [] })),
          policy,
          (options.now ?? Date.now)(),
        )
        if (preview instanceof VacuumError) return yield* preview
      }
      const lease = options.dryRun
        ? undefined
        : yield* acquireExclusiveLease(repo.store, VACUUM_LEASE, {
            operation: "vacuum",
            details: { phase: "planning" },
            ...(options.waitMs !== undefined ? { waitMs: options.waitMs } : {}),
            ...(options.leaseTtlMs !== undefined ? { ttlMs: options.leaseTtlMs } : {}),
            ...(options.leaseSkewMs !== undefined ? { skewMs: options.leaseSkewMs } : {}),
          })
      return yield* runVacuum(repo, policy, options, lease, graceMs, batchSize)
    }),
  )

const runVacuum = Effect.fnUntraced(function* (
  repo: Repository,
  policy: RetentionPolicy,
  options: VacuumOptions,
  lease: Lease | undefined,
  graceMs: number,
  batchSize: number,
) {
  const clock = options.now ?? Date.now
  const startedAt = Date.now()
  const now = clock()
  const report = options.onProgress ?? (() => {})
  // Temp files of killed writers (fs) are never referenced: they go beside the rest, outside the GC protocol.
  const leftovers = lease === undefined ? undefined : yield* Effect.forkScoped(sweepRepositoryLeftovers(repo))

  // 1. Plan.
  const { backups, damaged } = yield* readBackups(repo, report)
  let protections = yield* protectionsOf(repo)
  const withProtections = (list: ReadonlyArray<RetentionInput>) =>
    list.map((b) => ({ ...b, protections: protections.get(b.backup_id) ?? [] }))
  let plan = planRetention(withProtections(backups), policy, now)
  if (plan instanceof VacuumError) return yield* plan

  // 2. Expire: announce the phase, then look at pins and restores/clones once more (a pin written
  //    before this point is seen; one written after it sees our phase: docs §11), then delete.
  let manifestsDeleted = 0
  if (lease !== undefined) {
    yield* lease.update({ phase: EXPIRING_PHASE })
    protections = yield* protectionsOf(repo)
    plan = planRetention(withProtections(backups), policy, now)
    if (plan instanceof VacuumError) return yield* plan
    const toDelete = plan.deleted
    const spared: Array<RetentionDecision> = []
    const done: Array<RetentionDecision> = []
    for (let i = 0; i < toDelete.length; i += batchSize) {
      yield* lease.check
      // Right before each batch: a backup that gained a pin (or a restore/clone) since is kept.
      const latest = i === 0 ? protections : yield* protectionsOf(repo)
      const batch: Array<RetentionDecision> = []
      for (const d of toDelete.slice(i, i + batchSize)) {
        const late = latest.get(d.backup_id)
        if (late !== undefined && late.length > 0) spared.push({ ...d, reasons: late, expired_by: d.reasons })
        else batch.push(d)
      }
      if (batch.length > 0) yield* repo.store.deleteMany(batch.map((d) => manifestKey(d.backup_id)))
      done.push(...batch)
      manifestsDeleted += batch.length
      report({ phase: "expire", done: manifestsDeleted, total: toDelete.length })
    }
    if (spared.length > 0) plan = { kept: [...plan.kept, ...spared].sort((a, b) => (a.time < b.time ? -1 : 1)), deleted: done }
  }
  const deletedIds = new Set(plan.deleted.map((d) => d.backup_id))

  // 3. Sweep.
  const sweep = yield* sweepBlocks(repo, options, lease, graceMs, batchSize, now, deletedIds, report)
  return {
    repository: repo.location,
    dry_run: lease === undefined,
    policy,
    now: new Date(now).toISOString(),
    grace_ms: graceMs,
    backups_total: backups.length + damaged.length,
    kept: plan.kept,
    deleted: plan.deleted,
    damaged,
    manifests_deleted: manifestsDeleted,
    sweep,
    temp_files_removed: leftovers === undefined ? 0 : yield* Fiber.join(leftovers),
    duration_ms: Date.now() - startedAt,
  } satisfies VacuumResult
})

interface SweepCounters {
  manifests_read: number
  checkpoints_read: number
  pages_read: number
  blocks_total: number
  bytes_total: number
  blocks_referenced: number
  blocks_unreferenced: number
  blocks_to_delete: number
  bytes_to_reclaim: number
  blocks_deleted: number
  bytes_reclaimed: number
  batches: number
}

const sweepBlocks = Effect.fnUntraced(function* (
  repo: Repository,
  options: VacuumOptions,
  lease: Lease | undefined,
  graceMs: number,
  batchSize: number,
  now: number,
  deletedIds: ReadonlySet<string>,
  report: (p: VacuumProgress) => void,
) {
  const c: SweepCounters = {
    manifests_read: 0,
    checkpoints_read: 0,
    pages_read: 0,
    blocks_total: 0,
    bytes_total: 0,
    blocks_referenced: 0,
    blocks_unreferenced: 0,
    blocks_to_delete: 0,
    bytes_to_reclaim: 0,
    blocks_deleted: 0,
    bytes_reclaimed: 0,
    batches: 0,
  }
  const deferred = new Map<string, { blocks: number; bytes: number }>()
  const defer = (reason: string, bytes: number) => {
    const d = deferred.get(reason) ?? { blocks: 0, bytes: 0 }
    d.blocks++
    d.bytes += bytes
    deferred.set(reason, d)
  }
  const result = (status: SweepResult["status"], reason: string | undefined, references: number): SweepResult => {
    const list = [...deferred.entries()].map(([r, d]) => ({ reason: r, ...d }))
    return {
      status,
      ...(reason !== undefined ? { reason } : {}),
      ...c,
      references,
      blocks_deferred: list.reduce((n, d) => n + d.blocks, 0),
      bytes_deferred: list.reduce((n, d) => n + d.bytes, 0),
      deferred: list,
    }
  }

  // The protocol: our phase first, then the others' leases (docs §10).
  if (lease !== undefined) yield* lease.update({ phase: SWEEPING_PHASE })
  const running = yield* liveSharedLeases(repo.store, BACKUP_LEASE)
  let deferReason: string | undefined
  if (running.length > 0) {
    deferReason = `${plural(running.length, "backup is", "backups are")} running (${running
      .map((l) => `${l.record.details.cluster ?? "?"}: ${leaseHolder(l)}`)
      .join(", ")}); their blocks may not be in any manifest yet, so no block was deleted; run vacuum again after they finish`
  }
  const ids = yield* listBackupIds(repo)
  const existing = new Set(ids)
  if (deferReason === undefined) {
    // A restore or clone that read a manifest this vacuum (or another) deleted may still need its blocks.
    for (const [id, uses] of yield* inUse(repo)) {
      if (!existing.has(id) || deletedIds.has(id)) {
        deferReason = `backup ${id} was deleted but is still ${uses.join(", ")}; run vacuum again after it finishes`
        break
      }
    }
  }
  if (deferReason !== undefined && lease !== undefined) {
    yield* lease.update({ phase: "done" })
    return result("deferred", deferReason, 0)
  }

  // Mark.
  const sorter = yield* makeIdSorter(options.sorter ?? { chunkIds: DEFAULT_CHUNK_IDS })
  const seenPages = new Set<string>()
  const markPages = (source: string, storagePages: ReadonlyArray<PageRef>, metaPages: ReadonlyArray<PageRef>) =>
    Effect.gen(function* () {
      for (const p of metaPages) yield* sorter.add(p.blockId)
      const fresh: Array<PageRef> = []
      for (const p of storagePages) {
        yield* sorter.add(p.blockId)
        if (seenPages.has(p.blockId)) continue
        if (seenPages.size < SEEN_PAGES_MAX) seenPages.add(p.blockId)
        fresh.push(p)
      }
      return yield* Effect.forEach(
        fresh,
        (ref) =>
          readFilePage(repo, ref).pipe(
            Effect.flatMap((files) =>
              Effect.gen(function* () {
                c.pages_read++
                const ids: Array<string> = []
                for (const file of files) for (const block of file.blocks) ids.push(block.blockId)
                yield* sorter.addAll(ids)
              }),
            ),
            Effect.as(undefined as string | undefined),
            Effect.catchTags({
              IntegrityError: (e) => Effect.succeed(`${source}: file page ${ref.blockId}: ${e.detail}`),
              ManifestError: (e) => Effect.succeed(`${source}: file page ${ref.blockId}: ${e.detail}`),
            }),
          ),
        { concurrency: 8 },
      ).pipe(Effect.map((problems) => problems.find((p) => p !== undefined)))
    })
  const unreadable: Array<string> = []
  const markManifest = (id: string) =>
    Effect.gen(function* () {
      const manifest = yield* readManifest(repo, id).pipe(
        Effect.map((m): BackupManifest | undefined => m),
        Effect.catchTag("ManifestError", (e) =>
          Effect.sync(() => {
            // NotFound: deleted since the listing (by this vacuum's dry-run plan, or by hand).
            if (e.reason !== "NotFound") unreadable.push(`manifest ${id}: ${e.detail}`)
            return undefined
          }),
        ),
      )
      if (manifest === undefined) return
      c.manifests_read++
      report({ phase: "mark", done: c.manifests_read, total: ids.length })
      const bad = yield* markPages(`backup ${id}`, manifest.storage?.pages ?? [], manifest.metasrv?.pages ?? [])
      if (bad !== undefined) unreadable.push(bad)
    })
  for (const id of ids) if (!deletedIds.has(id)) yield* markManifest(id)
  const checkpoints = yield* Stream.runCollect(repo.store.list(CHECKPOINT_PREFIX))
  for (const info of checkpoints) {
    if (!info.key.endsWith(CHECKPOINT_SUFFIX)) continue
    const bytes = yield* repo.store.get(info.key).pipe(
      Effect.map((b): Uint8Array | undefined => b),
      Effect.catchIf(
        (e) => e.reason === "NotFound",
        () => Effect.succeed(undefined),
      ),
    )
    // Gone since the listing: its backup committed (its manifest was not listed) or gave up.
    if (bytes === undefined) continue
    const checkpoint = decodeCheckpoint(bytes)
    if (typeof checkpoint === "string") {
      unreadable.push(`checkpoint ${info.key}: ${checkpoint}`)
      continue
    }
    c.checkpoints_read++
    const bad = yield* markPages(`checkpoint ${info.key}`, checkpoint.storage?.pages ?? [], checkpoint.metasrv?.pages ?? [])
    if (bad !== undefined) unreadable.push(bad)
    // Files the unfinished backup was reading: their stored blocks (repository format §13).
    for (const file of checkpoint.checkpoint?.partialFiles ?? []) yield* sorter.addAll(file.blocks.map((b) => b.blockId))
  }
  // A manifest committed after the listing above (by a backup that ended just before our phase)
  // is read too: the listing is repeated until it has nothing new.
  for (;;) {
    const again = (yield* listBackupIds(repo)).filter((id) => !existing.has(id))
    if (again.length === 0) break
    for (const id of again) {
      existing.add(id)
      yield* markManifest(id)
    }
  }
  const references = sorter.added()
  if (unreadable.length > 0) {
    if (lease !== undefined) yield* lease.update({ phase: "done" })
    return result(
      "skipped",
      `the blocks ${unreadable.length === 1 ? "this references" : "these reference"} cannot be known, so no block was deleted: ${unreadable.slice(0, 5).join("; ")}${unreadable.length > 5 ? ` (and ${unreadable.length - 5} more)` : ""}. Run \`bendsave verify\`; a damaged manifest that cannot be repaired can be removed by hand`,
      references,
    )
  }
  const cursor = yield* sorter.finish

  // Sweep: walk data/ (sorted) beside the sorted references.
  const cutoff = now - graceMs
  const graceText =
    graceMs % 3_600_000 === 0 ? `${graceMs / 3_600_000} h` : graceMs % 60_000 === 0 ? `${graceMs / 60_000} min` : `${graceMs / 1000} s`
  const young = `younger than the grace period (${graceText}): may belong to a backup that has not written a checkpoint yet`
  let stopped: string | undefined
  let batch: Array<{ key: string; size: number }> = []
  const flush = Effect.gen(function* () {
    if (batch.length === 0) return
    const keys = batch
    batch = []
    if (lease === undefined) return
    if (stopped === undefined) {
      yield* lease.check
      const waiting = yield* liveSharedLeases(repo.store, BACKUP_LEASE)
      if (waiting.length > 0) {
        stopped = `a backup started while blocks were being deleted (${waiting.map(leaseHolder).join(", ")}); the sweep stopped so it can run; the next vacuum deletes the rest`
        yield* lease.update({ phase: "done" })
      }
    }
    if (stopped !== undefined) {
      for (const k of keys) defer(stopped, k.size)
      return
    }
    yield* repo.store.deleteMany(keys.map((k) => k.key))
    c.batches++
    c.blocks_deleted += keys.length
    for (const k of keys) c.bytes_reclaimed += k.size
    report({ phase: "sweep", done: c.blocks_deleted })
  })
  yield* repo.store.list(DATA_PREFIX).pipe(
    Stream.runForEach((info) =>
      Effect.gen(function* () {
        const id = info.key.slice(DATA_PREFIX.length)
        if (!BLOCK_ID.test(id)) return
        c.blocks_total++
        c.bytes_total += info.size
        if (yield* cursor.seek(id)) {
          c.blocks_referenced++
          return
        }
        c.blocks_unreferenced++
        if (info.lastModified > cutoff) return defer(young, info.size)
        c.blocks_to_delete++
        c.bytes_to_reclaim += info.size
        batch.push({ key: info.key, size: info.size })
        if (batch.length >= batchSize) yield* flush
      }),
    ),
  )
  yield* flush
  if (lease !== undefined) yield* lease.update({ phase: "done" })
  if (lease === undefined) {
    return result("planned", deferReason, references)
  }
  return stopped !== undefined ? result("stopped", stopped, references) : result("done", undefined, references)
})
