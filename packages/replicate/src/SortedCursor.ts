/**
 * SortedCursor: a forward-only cursor over a stream sorted by path.
 *
 * A replication round walks several path-sorted sequences side by side (the
 * source listing, the target listing, the previous round's file list) without
 * holding any of them in memory: each is a cursor that is advanced to the
 * path being looked at, handing back the entries it passed over (target files
 * the source no longer has, say) and the entry at that path, if any.
 */
import * as Effect from "effect/Effect"
import * as Pull from "effect/Pull"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

export interface SortedCursor<A, E> {
  /**
   * Moves to `path` (calls must come in ascending order): entries before it
   * go to `passed`, and the entry at `path` (consumed) is returned.
   */
  readonly seek: (path: string, passed?: (a: A) => void) => Effect.Effect<A | undefined, E>
  /** Consumes everything left, handing each entry to `passed`. */
  readonly drain: (passed: (a: A) => void) => Effect.Effect<void, E>
}

/** A cursor over `stream`, whose entries come in ascending `compare` order of `pathOf`. */
export const makeSortedCursor = <A, E, R>(
  stream: Stream.Stream<A, E, R>,
  pathOf: (a: A) => string,
  compare: (a: string, b: string) => number,
): Effect.Effect<SortedCursor<A, E>, never, R | Scope.Scope> =>
  Effect.gen(function* () {
    const pull = yield* Stream.toPull(stream)
    let buffer: ReadonlyArray<A> = []
    let index = 0
    let done = false
    /** Makes sure the next entry (if any) is in the buffer. */
    const fill: Effect.Effect<boolean, E> = Effect.suspend(() => {
      if (index < buffer.length) return Effect.succeed(true)
      if (done) return Effect.succeed(false)
      return pull.pipe(
        Effect.map((chunk) => {
          buffer = chunk
          index = 0
          return true
        }),
        Pull.catchDone(() =>
          Effect.sync(() => {
            done = true
            buffer = []
            index = 0
            return false
          }),
        ),
        Effect.flatMap((more) => (more ? fill : Effect.succeed(false))),
      ) as Effect.Effect<boolean, E>
    })
    const seek = (path: string, passed?: (a: A) => void): Effect.Effect<A | undefined, E> =>
      Effect.gen(function* () {
        while (yield* fill) {
          const a = buffer[index]
          const c = compare(pathOf(a), path)
          if (c > 0) return undefined
          index++
          if (c === 0) return a
          passed?.(a)
        }
        return undefined
      })
    const drain = (passed: (a: A) => void): Effect.Effect<void, E> =>
      Effect.gen(function* () {
        while (yield* fill) {
          passed(buffer[index])
          index++
        }
      })
    return { seek, drain }
  })
