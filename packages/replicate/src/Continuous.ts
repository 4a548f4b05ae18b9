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
import type { Cluster } from "@bendsave/core"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import { acquireReplicationLease, type ReplicateOptions, type ReplicationRoundResult, runRound } from "./Replicate.ts"

/** An interval the user wrote that is not one. */
export class IntervalError extends Schema.TaggedError<IntervalError>()("IntervalError", {
  input: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `'${this.input}': ${this.detail}`
  }
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `5m`, `30s`, `1h30m`, `500ms`, `2d` in milliseconds. */
export const parseInterval = (text: string): number | IntervalError => {
  const trimmed = text.trim()
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy
  let total = 0
  let at = 0
  let match: RegExpExecArray | null
  // biome-ignore lint/suspicious/noAssignInExpressions: the usual exec loop
  while ((match = re.exec(trimmed)) !== null) {
    total += Number(match[1]) * UNITS[match[2]]
    at = re.lastIndex
  }
  if (trimmed === "" || at !== trimmed.length) {
    return new IntervalError({
      input: text,
      detail: "not an interval",
      fix: "write a number with a unit: 30s, 5m, 1h, 1h30m (units ms, s, m, h, d)",
    })
  }
  if (total < 1000) {
    return new IntervalError({ input: text, detail: "the interval is shorter than one second", fix: "use at least 1s (e.g. --every 30s)" })
  }
  return total
}

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
