/**
 * FaultyBlobStore: a BlobStore wrapper that injects faults, for workflow
 * tests (the test double kopia and restic keep next to their real backends).
 *
 * Rules say which calls fail and how:
 * - `transient`: a retryable `Unavailable` error (a dropped connection, a 500);
 * - `throttle`: a retryable `RateLimited` error (S3's 503 SlowDown, HTTP 429);
 * - `permanent`: a non-retryable error (`PermissionDenied` by default, or `reason`);
 * - `hang`: the call never answers (until interrupted, e.g. by the request timeout);
 * - `delay`: the call answers after `delayMs`.
 *
 * With `when: "after"` the call is performed first and its answer is then
 * lost (the write landed, the client saw an error): what a retry of a
 * create-only put must cope with. Rules match by operation, key (prefix or
 * predicate), skip the first `after` matches, fire at most `times` times and
 * with a seeded `probability`, so a run is reproducible.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { type BlobStore, BlobStoreError, type BlobStoreErrorReason } from "../BlobStore.ts"

export type FaultKind = "transient" | "throttle" | "permanent" | "hang" | "delay"
export type FaultOperation = "get" | "getRange" | "getStream" | "put" | "head" | "list" | "delete" | "deleteMany" | "copy"

export interface FaultRule {
  readonly fault: FaultKind
  /** Operations the rule applies to (default: all). */
  readonly operations?: ReadonlyArray<FaultOperation>
  /** Keys it applies to: a prefix, or a predicate (default: all). `list` matches its prefix. */
  readonly keys?: string | ((key: string) => boolean)
  /** Let this many matching calls through before the first fault (default 0). */
  readonly after?: number
  /** Inject at most this many faults (default: no limit). */
  readonly times?: number
  /** Chance that a matching call fails (default 1), from the store's seeded generator. */
  readonly probability?: number
  /** `delay`: how long; `hang` ignores it. */
  readonly delayMs?: number
  /** "before" (default): fail instead of the call; "after": perform the call, then fail. */
  readonly when?: "before" | "after"
  /** `permanent`: the reason (default PermissionDenied). */
  readonly reason?: BlobStoreErrorReason
}

export interface FaultStats {
  /** Calls per operation. */
  readonly calls: Record<string, number>
  /** Faults injected per kind. */
  readonly injected: Record<FaultKind, number>
}

export interface FaultyBlobStore {
  readonly store: BlobStore
  readonly stats: FaultStats
  /** Replaces the rules (e.g. to end an outage); counters of the new rules start at 0. */
  readonly setRules: (rules: ReadonlyArray<FaultRule>) => void
}

/** A small deterministic generator (xorshift32), so fault runs repeat. */
const makeRandom = (seed: number) => {
  let x = seed >>> 0 || 0x9e3779b9
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x / 0x1_0000_0000
  }
}

/** Wraps `inner` so that calls matching `rules` fail as the rules say. */
export const makeFaultyBlobStore = (
  inner: BlobStore,
  rules: ReadonlyArray<FaultRule>,
  options: { readonly seed?: number } = {},
): FaultyBlobStore => {
  const random = makeRandom(options.seed ?? 1)
  const stats: FaultStats = { calls: {}, injected: { transient: 0, throttle: 0, permanent: 0, hang: 0, delay: 0 } }
  let active = rules.map((rule) => ({ rule, seen: 0, fired: 0 }))

  const matches = (rule: FaultRule, operation: FaultOperation, key: string) =>
    (rule.operations === undefined || rule.operations.includes(operation)) &&
    (rule.keys === undefined || (typeof rule.keys === "string" ? key.startsWith(rule.keys) : rule.keys(key)))

  /** The rule that fires for this call, if any (each matching rule counts the call). */
  const pick = (operation: FaultOperation, key: string): FaultRule | undefined => {
    stats.calls[operation] = (stats.calls[operation] ?? 0) + 1
    let chosen: FaultRule | undefined
    for (const entry of active) {
      if (!matches(entry.rule, operation, key)) continue
      entry.seen++
      if (chosen !== undefined) continue
      if (entry.seen <= (entry.rule.after ?? 0)) continue
      if (entry.rule.times !== undefined && entry.fired >= entry.rule.times) continue
      if (entry.rule.probability !== undefined && random() >= entry.rule.probability) continue
      entry.fired++
      stats.injected[entry.rule.fault]++
      chosen = entry.rule
    }
    return chosen
  }

  const errorOf = (rule: FaultRule, operation: string, key: string): BlobStoreError => {
    const base = { driver: inner.driver, operation, key }
    switch (rule.fault) {
      case "throttle":
        return new BlobStoreError({ ...base, reason: "RateLimited", detail: "503 SlowDown: please reduce your request rate (injected)" })
      case "permanent":
        return new BlobStoreError({
          ...base,
          reason: rule.reason ?? "PermissionDenied",
          detail: "access denied (injected permanent fault)",
        })
      default:
        return new BlobStoreError({ ...base, reason: "Unavailable", detail: "connection reset by peer (injected transient fault)" })
    }
  }

  /** Applies the fault (if any) around one call. */
  const faulty = <A>(operation: FaultOperation, key: string, call: Effect.Effect<A, BlobStoreError>): Effect.Effect<A, BlobStoreError> =>
    Effect.suspend(() => {
      const rule = pick(operation, key)
      if (rule === undefined) return call
      if (rule.fault === "hang") return Effect.andThen(rule.when === "after" ? call : Effect.void, Effect.never)
      if (rule.fault === "delay") return Effect.andThen(Effect.sleep(rule.delayMs ?? 100), call)
      const error = errorOf(rule, operation, key)
      return rule.when === "after" ? Effect.andThen(call, Effect.fail(error)) : Effect.fail(error)
    })

  const faultyStream = <A>(
    operation: FaultOperation,
    key: string,
    open: () => Stream.Stream<A, BlobStoreError>,
  ): Stream.Stream<A, BlobStoreError> => Stream.unwrap(Effect.map(faulty(operation, key, Effect.void), open))

  const store: BlobStore = {
    ...inner,
    get: (key) => faulty("get", key, inner.get(key)),
    getRange: (key, offset, length) => faulty("getRange", key, inner.getRange(key, offset, length)),
    getStream: (key) => faultyStream("getStream", key, () => inner.getStream(key)),
    put: (key, body, putOptions) => faulty("put", key, inner.put(key, body, putOptions)),
    head: (key) => faulty("head", key, inner.head(key)),
    list: (prefix) => faultyStream("list", prefix, () => inner.list(prefix)),
    delete: (key) => faulty("delete", key, inner.delete(key)),
    deleteMany: (keys) => faulty("deleteMany", keys[0] ?? "", inner.deleteMany(keys)),
    copy: (from, to) => faulty("copy", to, inner.copy(from, to)),
  }
  return {
    store,
    stats,
    setRules: (next) => {
      active = next.map((rule) => ({ rule, seen: 0, fired: 0 }))
    },
  }
}
