/**
 * MetaStore: the meta service driver contract.
 *
 * A cluster's metadata is a key-value space under a prefix (etcd keys under
 * `/prod/`, or the whole file of the `local` driver). Keys and values are
 * arbitrary bytes; every key a MetaStore hands out or takes is RELATIVE to the
 * cluster's prefix.
 *
 * # Behaviour (checked by the conformance suite in `@bendsave/core/testing`)
 * - `snapshot` reads every key under the prefix at ONE revision and streams
 *   them in ascending bytewise key order; writes that land after the snapshot
 *   started are not in it.
 * - `replace` makes the keyspace equal to the given entries exactly: keys that
 *   are not given are removed, changed values are reset, missing ones created.
 *   With `dryRun` it only computes the diff. Entries must come in ascending
 *   bytewise key order without duplicates.
 * - `compareAndSwap` writes (or deletes, with `next` undefined) one key only if
 *   its current value equals `expected` (undefined: the key must be absent).
 * - A failed write leaves the keyspace as it was before the call, with one
 *   exception: a driver that cannot commit a whole `replace` at once (etcd
 *   writes it in bounded transactions) may leave part of a `replace` that
 *   failed WHILE WRITING (a lost connection, a concurrent writer: reason
 *   `Conflict`); running the same `replace` again completes it. Such a driver
 *   still reads the whole input before its first write, so unsorted input or
 *   a failing input stream never changes anything; the input stream may
 *   therefore be run more than once and must give the same entries each time.
 * - `snapshot` and `replace` use memory bounded by a page or batch, not by
 *   the number of keys (the local driver excepted: it holds its one file).
 */
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"

export const MetaStoreErrorReason = Schema.Literals([
  "NotFound",
  "PermissionDenied",
  "Unavailable",
  "InvalidConfig",
  "Corrupt",
  "Conflict",
  "InvalidInput",
  "Unknown",
])
export type MetaStoreErrorReason = typeof MetaStoreErrorReason.Type

/** The one error type of every MetaStore operation. */
export class MetaStoreError extends Schema.TaggedError<MetaStoreError>()("MetaStoreError", {
  reason: MetaStoreErrorReason,
  driver: Schema.String,
  operation: Schema.String,
  detail: Schema.String,
  /** What the user can do about it, when the driver knows better than the reason's generic advice. */
  fix: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect()),
}) {
  get isRetryable(): boolean {
    return this.reason === "Unavailable"
  }
  override get message(): string {
    return `${this.driver} meta ${this.operation}: ${this.reason}: ${this.detail}`
  }
}

export interface MetaEntry {
  readonly key: Uint8Array
  readonly value: Uint8Array
}

export interface MetaSnapshot {
  /** The consistency point: every entry was read at this revision. */
  readonly revision: number
  readonly entries: Stream.Stream<MetaEntry, MetaStoreError>
}

/** How a `replace` changes (or, in a dry run, would change) the keyspace. */
export interface MetaDiff {
  readonly added: number
  readonly changed: number
  readonly removed: number
  readonly unchanged: number
  /** The first few keys of each kind, as display strings. */
  readonly sample: {
    readonly added: ReadonlyArray<string>
    readonly changed: ReadonlyArray<string>
    readonly removed: ReadonlyArray<string>
  }
}

export interface MetaStore {
  readonly driver: string
  /** Human-readable location without secrets. */
  readonly location: string
  readonly prefix: string
  snapshot(): Effect.Effect<MetaSnapshot, MetaStoreError>
  /**
   * Errors of the `entries` stream abort the replace (nothing is written) and
   * pass through. `entries` may be run more than once (see the contract above).
   */
  replace<E>(entries: Stream.Stream<MetaEntry, E>, options?: { readonly dryRun?: boolean }): Effect.Effect<MetaDiff, MetaStoreError | E>
  get(key: Uint8Array): Effect.Effect<Uint8Array | undefined, MetaStoreError>
  compareAndSwap(key: Uint8Array, expected: Uint8Array | undefined, next: Uint8Array | undefined): Effect.Effect<boolean, MetaStoreError>
}

/** Bytewise comparison of two keys (the order of snapshots and pages). */
export const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return a.length - b.length
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** A key for display: its UTF-8 text, or `base64:<...>` when it is not valid UTF-8. */
export const displayKey = (key: Uint8Array): string => {
  try {
    return utf8.decode(key)
  } catch {
    return `base64:${Buffer.from(key).toString("base64")}`
  }
}
