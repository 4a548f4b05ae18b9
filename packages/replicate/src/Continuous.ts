/**
 * Continuous replication: rounds on a schedule (`--every 5m`).
 *
 * The replicator takes the target's lease once and holds it between rounds,
 * so no other replicator can start on the target while it runs. Rounds never
 * overlap: the next round starts one interval after the previous round
 * started, or as soon as it ends when it took longer than the interval. A failed round is recorded in the status and the schedule goes
 * on; a lost lease (another process took the target over) ends the run.
 * Interrupting (SIGTERM, SIGINT) stops the current round the way any round
 * stops: what landed is journaled, the status says "interrupted", the lease
 * is released, and the next run continues without copying it again.
 */
import { type Cluster, type DurationError, readDuration } from "@bendsave/core"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import { acquireReplicationLease, type ReplicateOptions, type ReplicationRoundResult, runRound } from "./Replicate.ts"

/** The least time between the starts of two rounds. */
export const MIN_INTERVAL_MS = 1000

/**
 * The interval of `--every`: a duration (core's `readDuration`: the syntax and
 * errors of every duration bendsave reads) of at least a second.
 */
export const parseInterval = (text: string, option = "--every"): number | DurationError =>
  readDuration(option, text, { min: MIN_INTERVAL_MS, example: "5m" })

export interface ContinuousOptions extends ReplicateOptions {
  /** Time between round starts, ms. */
  readonly everyMs: number
  /** Stop after this many rounds (default: run until interrupted). */
  readonly rounds?: number
  /** Called after each round with its exit (success or the round's failure). */
  readonly onRound?: (exit: Exit.Exit<ReplicationRoundResult, unknown>, round: number) => void
}

export interface ContinuousResult {
  readonly rounds: number
  readonly completed: number
  readonly failed: number
  readonly last: ReplicationRoundResult | null
}

/** Rounds every `everyMs` under one lease, until interrupted (or `rounds` ran). */
export const replicateEvery = (source: Cluster, target: Cluster, options: ContinuousOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const lease = yield* acquireReplicationLease(source, target, options.scope ?? { kind: "cluster" }, {
        waitMs: options.leaseWaitMs ?? 0,
      })
      const now = options.now ?? Date.now
      const counts = { rounds: 0, completed: 0, failed: 0 }
      let last: ReplicationRoundResult | null = null
      for (;;) {
        const start = now()
        const exit = yield* Effect.exit(runRound(source, target, { ...options, dryRun: false }, lease))
        counts.rounds++
        options.onRound?.(exit, counts.rounds)
        if (exit._tag === "Success") {
          counts.completed++
          last = exit.value
        } else {
          counts.failed++
          // A lost lease means another replicator owns the target now: stop.
          yield* lease.check
        }
        if (options.rounds !== undefined && counts.rounds >= options.rounds) break
        const elapsed = now() - start
        const wait = elapsed >= options.everyMs ? 0 : options.everyMs - elapsed
        if (wait > 0) yield* Effect.sleep(wait)
      }
      return { ...counts, last } satisfies ContinuousResult
    }),
  )
