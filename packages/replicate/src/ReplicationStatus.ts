/**
 * ReplicationStatus: how a replication stream is doing, stored with the
 * target (`.bendsave/replication/<stream>/status.json` in the target's
 * storage), so any machine that can open the target cluster can read it.
 *
 * Each round rewrites it: `last_round` is the round that ran last, whatever
 * its outcome; `last_success` the last round that completed. Lag is not
 * stored: it is computed when the status is read, as now minus the time of
 * the last replicated source point (`last_success.source_time`), so it keeps
 * growing while no round completes.
 */
import { type BlobStore, BlobStoreError, liveExclusiveLease } from "@bendsave/core"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { REPLICATION_PREFIX, ReplicationScopeJson, ReplicationStateError, statusKey } from "./ReplicationState.ts"

/** The exclusive lease of a replicator on its target (under the target's `.bendsave/leases/`). */
export const REPLICATION_LEASE = "replicate"

export const RoundOutcome = Schema.Literals(["completed", "failed", "stopped", "interrupted"])
export type RoundOutcome = typeof RoundOutcome.Type

export const ClusterIdentity = Schema.Struct({ name: Schema.String, meta: Schema.String, storage: Schema.String })
export type ClusterIdentity = typeof ClusterIdentity.Type

/** One round, as the status records it. */
export const RoundReport = Schema.Struct({
  round: Schema.Number,
  outcome: RoundOutcome,
  started_at: Schema.String,
  finished_at: Schema.String,
  duration_ms: Schema.Number,
  /** The source's meta revision the round replicated (null when it failed before reading it). */
  source_revision: Schema.NullOr(Schema.Number),
  /** When that source point was taken (the meta snapshot, or the backup's start with --via). */
  source_time: Schema.NullOr(Schema.String),
  /** The backup the round made and applied (with --via). */
  backup_id: Schema.NullOr(Schema.String),
  files_total: Schema.Number,
  bytes_total: Schema.Number,
  files_unchanged: Schema.Number,
  files_copied: Schema.Number,
  bytes_copied: Schema.Number,
  /** Files a previous, interrupted attempt had copied already (not copied again). */
  files_resumed: Schema.Number,
  files_deleted: Schema.Number,
  keys_total: Schema.Number,
  keys_added: Schema.Number,
  keys_changed: Schema.Number,
  keys_removed: Schema.Number,
  errors: Schema.Array(Schema.String),
  source_manifest_hash: Schema.NullOr(Schema.String),
  target_manifest_hash: Schema.NullOr(Schema.String),
})
export type RoundReport = typeof RoundReport.Type

export const StatusRecord = Schema.Struct({
  format: Schema.Literal("bendsave-replication-status"),
  version: Schema.Literal(1),
  stream: Schema.String,
  scope: ReplicationScopeJson,
  source: ClusterIdentity,
  target: ClusterIdentity,
  via: Schema.NullOr(Schema.String),
  updated_at: Schema.String,
  last_round: RoundReport,
  last_success: Schema.NullOr(RoundReport),
})
export type StatusRecord = typeof StatusRecord.Type
const decodeStatus = Schema.decodeUnknownExit(Schema.fromJsonString(StatusRecord))

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export const writeStatus = (store: BlobStore, status: StatusRecord) =>
  store.put(statusKey(status.stream), encoder.encode(`${JSON.stringify(status, null, 2)}\n`))

export const readStatusRecord = (
  store: BlobStore,
  stream: string,
): Effect.Effect<StatusRecord | undefined, BlobStoreError | ReplicationStateError> =>
  store.get(statusKey(stream)).pipe(
    Effect.flatMap((bytes) => {
      const exit = decodeStatus(decoder.decode(bytes))
      return exit._tag === "Success"
        ? Effect.succeed<StatusRecord | undefined>(exit.value)
        : Effect.fail(
            new ReplicationStateError({
              location: `${store.location}/${statusKey(stream)}`,
              detail: "status.json is not a bendsave replication status (version 1)",
              fix: "the next completed round rewrites it; or delete it",
            }),
          )
    }),
    Effect.catchIf(
      (e): e is BlobStoreError => e._tag === "BlobStoreError" && e.reason === "NotFound",
      () => Effect.succeed(undefined),
    ),
  )

/** A stream's status as shown to users: the stored record plus lag and whether a round is running now. */
export interface StreamStatus extends StatusRecord {
  /** Now minus `last_success.source_time`, in ms (null before the first completed round). */
  readonly lag_ms: number | null
  /** The same, for humans (`3m 12s`). */
  readonly lag: string | null
  /** A replicator holding the target's lease right now, if any. */
  readonly running: { readonly holder: string; readonly operation: string; readonly since: string } | null
}

export interface ReplicationStatusResult {
  readonly target: string
  readonly streams: ReadonlyArray<StreamStatus>
}

/** `3m 12s`, `2h 5m`, `850ms`. */
export const formatDuration = (ms: number): string => {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  if (d > 0) return `${d}d ${h}h`
  if (h > 0) return `${h}h ${m}m`
  return `${m}m ${sec}s`
}

/**
 * Every replication stream's status on a target (its `.bendsave/` view),
 * with lag computed now. `stream` narrows it to one.
 */
export const readReplicationStatus = (reserved: BlobStore, options: { readonly stream?: string; readonly targetLocation?: string } = {}) =>
  Effect.gen(function* () {
    const keys = yield* reserved.list(REPLICATION_PREFIX).pipe(
      Stream.map((i) => i.key),
      Stream.filter((k) => /^replication\/[^/]+\/status\.json$/.test(k)),
      Stream.runCollect,
    )
    const now = yield* Clock.currentTimeMillis
    const lease = yield* liveExclusiveLease(reserved, REPLICATION_LEASE)
    const running =
      lease === undefined
        ? null
        : {
            holder: `pid ${lease.record.holder.pid} on ${lease.record.holder.host}`,
            operation: lease.record.operation,
            since: lease.record.acquired_at,
          }
    const streams: Array<StreamStatus> = []
    for (const key of keys) {
      const stream = key.slice(REPLICATION_PREFIX.length, -"/status.json".length)
      if (options.stream !== undefined && stream !== options.stream) continue
      const record = yield* readStatusRecord(reserved, stream)
      if (record === undefined) continue
      const time = record.last_success?.source_time
      const lag = time === undefined || time === null ? null : Math.max(0, now - Date.parse(time))
      streams.push({
        ...record,
        lag_ms: lag,
        lag: lag === null ? null : formatDuration(lag),
        running: running !== null && lease?.record.details.stream === stream ? running : null,
      })
    }
    return { target: options.targetLocation ?? reserved.location, streams } satisfies ReplicationStatusResult
  })

export { BlobStoreError }
