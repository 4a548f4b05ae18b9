/**
 * SortedCursor: a forward-only cursor over a stream sorted by path.
 *
 * A replication round walks several path-sorted sequences side by side (the
 * source listing, the target listing, the previous round's file list) without
 * holding any of them in memory: each is a cursor that is advanced to the
 * path being looked at, handing back the entries it passed over (target files
 * the source no longer has, say) and the entry at that path, if any.
 *
 * The walk goes a batch of paths at a time: `fillThrough(last)` pulls chunks
 * of the stream until every entry up to `last` is buffered (one effect per
 * chunk), then `seek` answers for each path of the batch synchronously.
 * Memory holds the entries up to the end of the batch, never the stream.
 */
import * as Effect from "effect/Effect"
import * as Pull from "effect/Pull"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

export interface SortedCursor<A, E> {
  /** Buffers the entries up to `path` (and at least one beyond it, unless the stream ends first). */
  readonly fillThrough: (path: string) => Effect.Effect<void, E>
  /**
   * Moves to `path` (calls must come in ascending order, each after a
   * `fillThrough` of a path at or after it): entries before it go to
   * `passed`, and the entry at `path` (consumed) is returned.
   */
  readonly seek: (path: string, passed?: (a: A) => void) => A | undefined
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
    let buffer: Array<A> = []
    let index = 0
    let done = false
    /** Pulls one chunk into the buffer (dropping the consumed entries); false at the end. */
    const more: Effect.Effect<boolean, E> = pull.pipe(
      Effect.map((chunk) => {
        buffer = index >= buffer.length ? [...chunk] : buffer.slice(index).concat(chunk)
        index = 0
        return true
      }),
      Pull.catchDone(() =>
        Effect.sync(() => {
          done = true
          return false
        }),
      ),
    ) as Effect.Effect<boolean, E>
    const fillThrough = (path: string): Effect.Effect<void, E> =>
      Effect.whileLoop({
        while: () => !done && (index >= buffer.length || compare(pathOf(buffer[buffer.length - 1]), path) <= 0),
        body: () => more,
        step: () => {},
      })
    const seek = (path: string, passed?: (a: A) => void): A | undefined => {
      while (index < buffer.length) {
        const a = buffer[index]
        const c = compare(pathOf(a), path)
        if (c > 0) return undefined
        index++
        if (c === 0) return a
        passed?.(a)
      }
      if (!done) throw new Error(`SortedCursor: seek('${path}') past the buffered entries (fillThrough first)`)
      return undefined
    }
    const drain = (passed: (a: A) => void): Effect.Effect<void, E> =>
      Effect.whileLoop({
        while: () => {
          while (index < buffer.length) passed(buffer[index++])
          return !done
        },
        body: () => more,
        step: () => {},
      })
    return { fillThrough, seek, drain }
  })
