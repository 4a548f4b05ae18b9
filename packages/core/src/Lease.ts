/**
 * Leases: who is working on a repository (or a replication target) right now.
 *
 * A lease is a small JSON object in a BlobStore, written by the process that
 * holds it and renewed while its work runs; when the process dies the lease
 * simply stops being renewed and EXPIRES. Only create-only puts, plain puts,
 * HEAD, LIST and DELETE are used, so leases work on every driver (fs, S3,
 * GCS, Azure) without a lock service. The protocol is specified in
 * docs/repository-format.md, section "Leases".
 *
 * - Shared leases (`leases/shared/<kind>/<id>.json`): any number at once;
 *   backups, restores and clones announce themselves with them.
 * - Exclusive leases (`leases/exclusive/<name>/<generation>.json`): at most
 *   one live holder. Generations are written create-only, so of two
 *   processes taking over an expired lease exactly one wins; a holder that
 *   sees the next generation exist has been taken over and stops.
 *
 * A holder's lease is LOST when it could not renew before its own expiry
 * (a long pause, a cut network) or was taken over; `check` then fails, and
 * the workflow stops before its next destructive or committing step.
 */
import { hostname } from "node:os"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type BlobStore, BlobStoreError } from "./BlobStore.ts"
import { TOOL_VERSION } from "./Version.ts"

export const LEASE_PREFIX = "leases/"
export const SHARED_LEASE_PREFIX = `${LEASE_PREFIX}shared/`
export const EXCLUSIVE_LEASE_PREFIX = `${LEASE_PREFIX}exclusive/`

/** Default time-to-live of a lease: a killed holder's lease is taken over this long after its last renewal. */
export const DEFAULT_LEASE_TTL_MS = 120_000
/** Others' leases count as live this long past their expiry (clocks of two machines differ). */
export const DEFAULT_CLOCK_SKEW_MS = 30_000

const NAME = /^[a-z][a-z0-9-]{0,62}$/

export const LeaseRecord = Schema.Struct({
  format: Schema.Literal("bendsave-lease"),
  version: Schema.Literal(1),
  mode: Schema.Literals(["shared", "exclusive"]),
  /** The kind (shared) or the name (exclusive), e.g. "backup", "vacuum". */
  kind: Schema.String,
  id: Schema.String,
  /** Exclusive leases only: the generation this holder wrote. */
  generation: Schema.optional(Schema.Number),
  operation: Schema.String,
  details: Schema.Record(Schema.String, Schema.String),
  holder: Schema.Struct({ host: Schema.String, pid: Schema.Number, tool: Schema.String }),
  acquired_at: Schema.String,
  renewed_at: Schema.String,
  expires_at: Schema.String,
  ttl_ms: Schema.Number,
  /** Set by a holder that finished (exclusive leases are released by marking, not deleting). */
  released: Schema.optional(Schema.Boolean),
})
export type LeaseRecord = typeof LeaseRecord.Type

/** A lease as read back from the store, with its key and whether it is live now. */
export interface LeaseInfo {
  readonly key: string
  readonly record: LeaseRecord
  readonly live: boolean
  /** The record could not be read; it is treated as live until `expires_at` (its object's age plus the default TTL). */
  readonly unreadable?: string
}

/** Someone else holds the exclusive lease. */
export class LeaseHeldError extends Schema.TaggedError<LeaseHeldError>()("LeaseHeldError", {
  name: Schema.String,
  location: Schema.String,
  holder: Schema.String,
  operation: Schema.String,
  expires_at: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `${this.location}: ${this.operation} holds the ${this.name} lease (${this.holder}) until at least ${this.expires_at}`
  }
}

/** This process's lease lapsed or was taken over: its work must stop before changing anything else. */
export class LeaseLostError extends Schema.TaggedError<LeaseLostError>()("LeaseLostError", {
  key: Schema.String,
  location: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `${this.location}: lost the lease ${this.key}: ${this.detail}`
  }
}

export interface LeaseOptions {
  /** What the holder does, for humans (`backup of cluster prod`). */
  readonly operation: string
  /** Machine-readable facts other workflows read (backup id, cluster, phase...). */
  readonly details?: Record<string, string>
  readonly ttlMs?: number
  /** Renewal period (default: a quarter of the TTL). */
  readonly renewEveryMs?: number
}

export interface ExclusiveLeaseOptions extends LeaseOptions {
  /** Wait up to this long for a live holder to finish (default 0: fail at once with LeaseHeldError). */
  readonly waitMs?: number
  /** Poll period while waiting (default 1 s). */
  readonly pollMs?: number
  /** How long past its expiry another holder still counts as live (default DEFAULT_CLOCK_SKEW_MS). */
  readonly skewMs?: number
}

export interface Lease {
  readonly key: string
  readonly store: BlobStore
  /** The record as last written. */
  readonly current: Effect.Effect<LeaseRecord>
  /** Fails with LeaseLostError when the lease lapsed or was taken over. */
  readonly check: Effect.Effect<void, LeaseLostError>
  /** Rewrites the record with new details (merged), renewing it; fails when the lease is lost. */
  readonly update: (details: Record<string, string>) => Effect.Effect<void, LeaseLostError | BlobStoreError>
}

const encoder = new TextEncoder()
const decodeRecord = Schema.decodeUnknownExit(Schema.fromJsonString(LeaseRecord))

/** Whether process `pid` runs on this machine (EPERM: it runs, as another user). */
const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as { code?: string }).code === "EPERM"
  }
}

/**
 * A lease held by a process of THIS machine that no longer runs (killed) is
 * not live: a rerun on the same machine takes over at once instead of waiting
 * for the TTL. Holders on other machines expire by time only.
 */
const deadHolderHere = (r: LeaseRecord): boolean =>
  r.holder.host === hostname() && r.holder.pid !== process.pid && r.holder.pid > 0 && !processAlive(r.holder.pid)

const holderText = (r: LeaseRecord): string => `pid ${r.holder.pid} on ${r.holder.host}, ${r.holder.tool}`

/** Generation keys sort as text: 12 digits. */
const generationKey = (name: string, generation: number): string =>
  `${EXCLUSIVE_LEASE_PREFIX}${name}/${String(generation).padStart(12, "0")}.json`

const checkName = (what: string, name: string): Effect.Effect<void, BlobStoreError> =>
  NAME.test(name)
    ? Effect.void
    : Effect.fail(
        new BlobStoreError({
          reason: "InvalidConfig",
          driver: "lease",
          operation: "lease",
          key: name,
          detail: `lease ${what} '${name}' must be lowercase letters, digits and '-'`,
        }),
      )

const serialize = (r: LeaseRecord): Uint8Array => encoder.encode(`${JSON.stringify(r, null, 2)}\n`)

/** Reads one lease object; unreadable content counts as live for a TTL after it was written. */
const readLease = (
  store: BlobStore,
  key: string,
  lastModified: number,
  now: number,
  skewMs: number,
): Effect.Effect<LeaseInfo | undefined, BlobStoreError> =>
  store.get(key).pipe(
    Effect.map((bytes): LeaseInfo => {
      const exit = decodeRecord(new TextDecoder().decode(bytes))
      if (Exit.isSuccess(exit)) {
        const record = exit.value
        const expires = Date.parse(record.expires_at)
        const live = record.released !== true && !(expires + skewMs < now) && !deadHolderHere(record)
        return { key, record, live }
      }
      const expires = lastModified + DEFAULT_LEASE_TTL_MS
      return {
        key,
        live: expires + skewMs >= now,
        unreadable: "not a bendsave lease record",
        record: {
          format: "bendsave-lease",
          version: 1,
          mode: key.startsWith(EXCLUSIVE_LEASE_PREFIX) ? "exclusive" : "shared",
          kind: key.split("/")[2] ?? "unknown",
          id: key,
          operation: "unknown (unreadable lease)",
          details: {},
          holder: { host: "unknown", pid: 0, tool: "unknown" },
          acquired_at: new Date(lastModified).toISOString(),
          renewed_at: new Date(lastModified).toISOString(),
          expires_at: new Date(expires).toISOString(),
          ttl_ms: DEFAULT_LEASE_TTL_MS,
        },
      }
    }),
    // Released and deleted between the LIST and the GET.
    Effect.catchIf(
      (e) => e.reason === "NotFound",
      () => Effect.succeed(undefined),
    ),
  )

/**
 * Every lease under `leases/` (or only those of one kind/name), read now.
 * `skewMs` widens others' expiry for clock differences.
 */
export const listLeases = (
  store: BlobStore,
  options: { readonly mode?: "shared" | "exclusive"; readonly kind?: string; readonly skewMs?: number } = {},
): Effect.Effect<ReadonlyArray<LeaseInfo>, BlobStoreError> =>
  Effect.gen(function* () {
    const prefix =
      options.mode === undefined
        ? LEASE_PREFIX
        : `${options.mode === "shared" ? SHARED_LEASE_PREFIX : EXCLUSIVE_LEASE_PREFIX}${options.kind !== undefined ? `${options.kind}/` : ""}`
    const now = yield* Clock.currentTimeMillis
    const objects = yield* Stream.runCollect(store.list(prefix))
    const infos = yield* Effect.forEach(
      objects.filter((o) => o.key.endsWith(".json")),
      (o) => readLease(store, o.key, o.lastModified, now, options.skewMs ?? DEFAULT_CLOCK_SKEW_MS),
      { concurrency: 8 },
    )
    return infos.filter((i): i is LeaseInfo => i !== undefined && (options.kind === undefined || i.record.kind === options.kind))
  })

/** The live leases of one shared kind (e.g. running backups). */
export const liveSharedLeases = (store: BlobStore, kind: string, skewMs?: number) =>
  listLeases(store, { mode: "shared", kind, ...(skewMs !== undefined ? { skewMs } : {}) }).pipe(
    Effect.map((all) => all.filter((l) => l.live)),
  )

/** The live holder of an exclusive lease, if any. */
export const liveExclusiveLease = (store: BlobStore, name: string, skewMs?: number) =>
  listLeases(store, { mode: "exclusive", kind: name, ...(skewMs !== undefined ? { skewMs } : {}) }).pipe(
    Effect.map((all) => {
      const newest = [...all].sort((a, b) => (a.key < b.key ? -1 : 1)).at(-1)
      return newest?.live ? newest : undefined
    }),
  )

interface Holder {
  record: LeaseRecord
  lost: string | undefined
}

/** Makes the Lease handle and starts renewal in the scope; `nextKey` (exclusive) is the takeover sentinel. */
const hold = (
  store: BlobStore,
  key: string,
  initial: LeaseRecord,
  renewEveryMs: number,
  nextKey: string | undefined,
): Effect.Effect<Lease, never, Scope.Scope> =>
  Effect.gen(function* () {
    const state: Holder = { record: initial, lost: undefined }
    const lostError = () =>
      new LeaseLostError({
        key,
        location: store.location,
        detail: state.lost ?? "",
        fix: "nothing was committed after the lease was lost; run the same command again (it resumes where it stopped)",
      })
    const write = (details: Record<string, string> | undefined) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        if (state.lost !== undefined) return yield* lostError()
        if (now > Date.parse(state.record.expires_at)) {
          state.lost = `it expired at ${state.record.expires_at} before it could be renewed (the process paused or could not reach the store)`
          return yield* lostError()
        }
        if (nextKey !== undefined) {
          const taken = yield* store.head(nextKey).pipe(
            Effect.as(true),
            Effect.catchIf(
              (e) => e.reason === "NotFound",
              () => Effect.succeed(false),
            ),
          )
          if (taken) {
            state.lost = "another process took it over after it expired"
            return yield* lostError()
          }
        }
        const next: LeaseRecord = {
          ...state.record,
          details: details === undefined ? state.record.details : { ...state.record.details, ...details },
          renewed_at: new Date(now).toISOString(),
          expires_at: new Date(now + state.record.ttl_ms).toISOString(),
        }
        yield* store.put(key, serialize(next), { control: true })
        state.record = next
      })
    const renewer = yield* Effect.forkScoped(
      Effect.forever(
        Effect.sleep(renewEveryMs).pipe(
          Effect.andThen(write(undefined)),
          // A failed renewal is retried at the next tick; the lease is lost only once it lapsed.
          Effect.catchTag("BlobStoreError", () => Effect.void),
        ),
      ).pipe(Effect.catchTag("LeaseLostError", () => Effect.void)),
    )
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Fiber.interrupt(renewer)
        if (state.lost !== undefined) return
        if (nextKey === undefined) {
          yield* store.delete(key).pipe(Effect.ignore)
        } else {
          // Exclusive: mark released (keeping the generation, so numbering only grows).
          const now = yield* Clock.currentTimeMillis
          yield* store
            .put(key, serialize({ ...state.record, released: true, renewed_at: new Date(now).toISOString() }), { control: true })
            .pipe(Effect.ignore)
        }
      }),
    )
    return {
      key,
      store,
      current: Effect.sync(() => state.record),
      check: Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        if (state.lost === undefined && now > Date.parse(state.record.expires_at)) {
          state.lost = `it expired at ${state.record.expires_at} before it could be renewed`
        }
        if (state.lost !== undefined) return yield* lostError()
      }),
      update: (details) => write(details),
    } satisfies Lease
  })

const newRecord = (
  mode: "shared" | "exclusive",
  kind: string,
  id: string,
  options: LeaseOptions,
  now: number,
  generation?: number,
): LeaseRecord => {
  const ttl = options.ttlMs ?? DEFAULT_LEASE_TTL_MS
  return {
    format: "bendsave-lease",
    version: 1,
    mode,
    kind,
    id,
    ...(generation !== undefined ? { generation } : {}),
    operation: options.operation,
    details: { ...(options.details ?? {}) },
    holder: { host: hostname(), pid: process.pid, tool: `bendsave ${TOOL_VERSION}` },
    acquired_at: new Date(now).toISOString(),
    renewed_at: new Date(now).toISOString(),
    expires_at: new Date(now + ttl).toISOString(),
    ttl_ms: ttl,
  }
}

/**
 * Takes a shared lease of `kind` for the scope: written create-only under a
 * fresh id, renewed every `renewEveryMs`, deleted when the scope closes.
 */
export const acquireSharedLease = (
  store: BlobStore,
  kind: string,
  options: LeaseOptions,
): Effect.Effect<Lease, BlobStoreError, Scope.Scope> =>
  Effect.gen(function* () {
    yield* checkName("kind", kind)
    const id = crypto.randomUUID()
    const key = `${SHARED_LEASE_PREFIX}${kind}/${id}.json`
    const now = yield* Clock.currentTimeMillis
    const record = newRecord("shared", kind, id, options, now)
    yield* store.put(key, serialize(record), { ifNotExists: true, control: true })
    return yield* hold(store, key, record, options.renewEveryMs ?? record.ttl_ms / 4, undefined)
  })

/**
 * Takes the exclusive lease `name` for the scope. A live holder makes it wait
 * up to `waitMs`, then fail with LeaseHeldError naming the holder. An expired
 * or released holder is taken over by writing the next generation
 * create-only (one of several racing takers wins).
 */
export const acquireExclusiveLease = (
  store: BlobStore,
  name: string,
  options: ExclusiveLeaseOptions,
): Effect.Effect<Lease, BlobStoreError | LeaseHeldError, Scope.Scope> =>
  Effect.gen(function* () {
    yield* checkName("name", name)
    const start = yield* Clock.currentTimeMillis
    const waitMs = options.waitMs ?? 0
    for (;;) {
      const all = yield* listLeases(store, {
        mode: "exclusive",
        kind: name,
        ...(options.skewMs !== undefined ? { skewMs: options.skewMs } : {}),
      })
      const generations = all
        .map((l) => ({ l, g: Number(l.key.slice(`${EXCLUSIVE_LEASE_PREFIX}${name}/`.length, -".json".length)) }))
        .filter((x) => Number.isSafeInteger(x.g))
        .sort((a, b) => a.g - b.g)
      const newest = generations.at(-1)
      const now = yield* Clock.currentTimeMillis
      if (newest?.l.live) {
        if (now - start >= waitMs) {
          const r = newest.l.record
          return yield* new LeaseHeldError({
            name,
            location: store.location,
            holder: holderText(r),
            operation: r.operation,
            expires_at: r.expires_at,
            fix:
              `wait for it to finish${waitMs === 0 ? " (or pass a wait time)" : ""}; if that process is dead, its lease ` +
              `expires ${r.ttl_ms / 1000} s after its last renewal (${r.renewed_at}) and the next run takes it over`,
          })
        }
        yield* Effect.sleep(Math.min(options.pollMs ?? 1000, Math.max(1, waitMs - (now - start))))
        continue
      }
      const generation = (newest?.g ?? 0) + 1
      const key = generationKey(name, generation)
      const record = newRecord("exclusive", name, crypto.randomUUID(), options, now, generation)
      const won = yield* store.put(key, serialize(record), { ifNotExists: true, control: true }).pipe(
        Effect.as(true),
        Effect.catchIf(
          (e) => e.reason === "AlreadyExists",
          () => Effect.succeed(false),
        ),
      )
      if (!won) continue
      // Older generations are history now; a stalled holder of one of them has lapsed already.
      const stale = generations.filter((x) => x.g < generation - 1).map((x) => x.l.key)
      if (stale.length > 0) yield* store.deleteMany(stale).pipe(Effect.ignore)
      return yield* hold(store, key, record, options.renewEveryMs ?? record.ttl_ms / 4, generationKey(name, generation + 1))
    }
  })

/** Runs `use` while holding a shared lease (convenience over acquireSharedLease + Effect.scoped). */
export const withSharedLease = <A, E, R>(
  store: BlobStore,
  kind: string,
  options: LeaseOptions,
  use: (lease: Lease) => Effect.Effect<A, E, R>,
): Effect.Effect<A, E | BlobStoreError, Exclude<R, Scope.Scope>> =>
  Effect.scoped(Effect.flatMap(acquireSharedLease(store, kind, options), use))

// ---------------------------------------------------------------------------
// The garbage-collection protocol's two sides (docs/repository-format.md §10).

/** The exclusive lease of a vacuum. */
export const VACUUM_LEASE = "vacuum"
/** The shared lease kind of a running backup. */
export const BACKUP_LEASE = "backup"
/** `details.phase` of a vacuum lease while it deletes blocks. */
export const SWEEPING_PHASE = "sweeping"

/**
 * A backup's side: call AFTER taking the backup lease and before looking at
 * any block. Waits while a live vacuum is sweeping (polling every `pollMs`),
 * calling `onWait` once with the vacuum's record.
 */
export const waitWhileSweeping = (
  store: BlobStore,
  options: { readonly pollMs?: number; readonly onWait?: (vacuum: LeaseRecord) => void } = {},
): Effect.Effect<void, BlobStoreError> =>
  Effect.gen(function* () {
    let told = false
    for (;;) {
      const vacuum = yield* liveExclusiveLease(store, VACUUM_LEASE)
      if (vacuum === undefined || vacuum.record.details.phase !== SWEEPING_PHASE) return
      if (!told) {
        told = true
        options.onWait?.(vacuum.record)
      }
      yield* Effect.sleep(options.pollMs ?? 1000)
    }
  })
