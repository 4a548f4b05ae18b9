/**
 * ReplicationApi: the replication workflows REPLICATE and SHOW REPLICATION
 * STATUS call, as an interface. `@bendsave/replicate` implements it and is
 * the default (the very round the `bendsave replicate` verb runs); tests may
 * pass their own. The workflow's messages name the verb's flags
 * (`--max-delete`, `--delete keep`); here they are told in the statement's
 * words (`MAX_DELETE`, `DELETE = 'KEEP'`).
 */
import type { Cluster } from "@bendsave/core"
import {
  MaxDeleteExceededError,
  type ReplicateOptions,
  ReplicationError,
  type ReplicationRoundResult,
  type ReplicationStatusResult,
  readReplicationStatus,
  replicate,
  reservedArea,
} from "@bendsave/replicate"
import * as Effect from "effect/Effect"

export type { ReplicateOptions, ReplicationRoundResult, ReplicationStatusResult }

export interface ReplicationApi {
  /** One round from `source` to `target` (a plan only with `dryRun`). */
  readonly round: (source: Cluster, target: Cluster, options: ReplicateOptions) => Effect.Effect<ReplicationRoundResult, unknown>
  /** The status of the replication streams kept on `target` (all, or the one named). */
  readonly status: (target: Cluster, stream?: string) => Effect.Effect<ReplicationStatusResult, unknown>
}

const WORDS: ReadonlyArray<readonly [RegExp, string]> = [
  [/a larger --max-delete \(MAX_DELETE = (\d+)\)/g, "WITH (MAX_DELETE = $1) or more"],
  [/with --delete keep/g, "WITH (DELETE = 'KEEP')"],
  [/--delete keep/g, "DELETE = 'KEEP'"],
  [/give --to the cluster file of another cluster \(the standby\)/g, "attach another cluster (the standby) and name it after TO"],
  [/\(--database (\w+)\)/g, "(REPLICATE DATABASE $1 ...)"],
  [/--max-delete/g, "MAX_DELETE"],
  [/--parallelism/g, "PARALLELISM"],
  [/--bandwidth-limit/g, "BANDWIDTH_LIMIT"],
  [/--via/g, "VIA"],
  [/--dry-run/g, "DRY RUN"],
]

/** A workflow message in the statement's words. */
export const inStatementWords = (text: string): string => WORDS.reduce((t, [flag, words]) => t.replace(flag, words), text)

/** The workflow's own errors, their messages in the statement's words; other errors as they are. */
const inStatementError = (e: unknown): unknown => {
  if (e instanceof MaxDeleteExceededError) {
    return new MaxDeleteExceededError({ limit: e.limit, files: e.files, keys: e.keys, sample: e.sample, fix: inStatementWords(e.fix) })
  }
  if (e instanceof ReplicationError) {
    return new ReplicationError({ reason: e.reason, detail: inStatementWords(e.detail), fix: inStatementWords(e.fix) })
  }
  return e
}

/** `@bendsave/replicate`: the round of the `replicate` verb, and the status of `replicate status`. */
export const replicationWorkflows: ReplicationApi = {
  round: (source, target, options) => replicate(source, target, options).pipe(Effect.mapError(inStatementError)),
  status: (target, stream) =>
    readReplicationStatus(reservedArea(target), {
      targetLocation: `${target.name} (${target.storage.location})`,
      ...(stream !== undefined ? { stream } : {}),
    }),
}
