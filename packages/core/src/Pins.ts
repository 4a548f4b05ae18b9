/**
 * Pins: objects that keep a backup from being vacuumed whatever the
 * retention policy says (docs/repository-format.md, "Pins").
 *
 * `pins/<backup-id>/<uuid>.json`, written create-only, JSON
 * `{backup_id, reason, created_at, ...}`. A clone made from a backup pins it
 * (reason `clone`); `bendsave tag <repo> <id> --keep` pins one by hand
 * (reason `user`), `--unkeep` removes the user pins. A backup is pinned while
 * any object exists under its prefix, readable or not.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { BlobStore, BlobStoreError } from "./BlobStore.ts"
import { liveExclusiveLease } from "./Lease.ts"
import { ManifestError } from "./Manifest.ts"
import { listBackupIds, type Repository } from "./Repository.ts"
import { TOOL_VERSION } from "./Version.ts"

export const PIN_PREFIX = "pins/"
/** `details.phase` of a vacuum lease while it deletes manifests (after it listed the pins). */
export const EXPIRING_PHASE = "expiring"

/**
 * A pin writer's (or a restore's / clone's) side of docs §11: call AFTER
 * writing the pin (or taking the shared lease) and before trusting that the
 * manifest exists; waits while a live vacuum is deleting manifests.
 */
export const waitWhileExpiring = (store: BlobStore, options: { readonly pollMs?: number } = {}): Effect.Effect<void, BlobStoreError> =>
  Effect.gen(function* () {
    for (;;) {
      const vacuum = yield* liveExclusiveLease(store, "vacuum")
      if (vacuum === undefined || vacuum.record.details.phase !== EXPIRING_PHASE) return
      yield* Effect.sleep(options.pollMs ?? 500)
    }
  })

/** The reason of a pin written by `bendsave tag --keep`. */
export const USER_PIN_REASON = "user"

export interface PinInfo {
  readonly key: string
  readonly backup_id: string
  /** `user`, `clone`, ... ("unreadable" when the object is not a pin record: it still pins). */
  readonly reason: string
  readonly created_at: string
  /** The whole record as stored. */
  readonly record: Record<string, unknown>
}

const PinRecord = Schema.Struct({ backup_id: Schema.String, reason: Schema.String, created_at: Schema.String })
const decodePin = Schema.decodeUnknownExit(Schema.fromJsonString(PinRecord))

/** Every pin of the repository (or of one backup), read now. */
export const listPins = Effect.fn("Pins.list")(function* (repo: Repository, backupId?: string) {
  const objects = yield* Stream.runCollect(repo.store.list(backupId === undefined ? PIN_PREFIX : `${PIN_PREFIX}${backupId}/`))
  const pins = yield* Effect.forEach(
    objects.filter((o) => o.key.split("/").length === 3),
    (o) =>
      repo.store.get(o.key).pipe(
        Effect.map((bytes): PinInfo | undefined => {
          const id = o.key.split("/")[1]
          const text = new TextDecoder().decode(bytes)
          const exit = decodePin(text)
          if (exit._tag === "Success") {
            return { key: o.key, backup_id: id, reason: exit.value.reason, created_at: exit.value.created_at, record: JSON.parse(text) }
          }
          return { key: o.key, backup_id: id, reason: "unreadable", created_at: new Date(o.lastModified).toISOString(), record: {} }
        }),
        // Removed between the LIST and the GET.
        Effect.catchIf(
          (e: BlobStoreError) => e.reason === "NotFound",
          () => Effect.succeed(undefined),
        ),
      ),
    { concurrency: 8 },
  )
  return pins.filter((p): p is PinInfo => p !== undefined)
})

/**
 * Pins `backupId` (create-only under a fresh id), waits while a vacuum is
 * deleting manifests, then checks the manifest still exists: a vacuum that
 * listed the pins before this one existed may have deleted it (then the pin
 * is removed again and this fails NotFound). docs §11.
 */
export const pinBackup = Effect.fn("Pins.pin")(function* (
  repo: Repository,
  backupId: string,
  reason: string,
  extra: Record<string, string> = {},
) {
  const key = `${PIN_PREFIX}${backupId}/${crypto.randomUUID()}.json`
  const record = { ...extra, backup_id: backupId, reason, created_at: new Date().toISOString(), created_by: `bendsave ${TOOL_VERSION}` }
  const exists = (ids: ReadonlyArray<string>) => ids.includes(backupId)
  const notFound = () =>
    new ManifestError({
      reason: "NotFound",
      source: `${repo.location}/manifests/${backupId}.manifest`,
      detail: `backup ${backupId} does not exist`,
      fix: `run \`bendsave list ${repo.location}\` to see the backups in this repository`,
    })
  if (!exists(yield* listBackupIds(repo))) return yield* notFound()
  yield* repo.store.put(key, new TextEncoder().encode(`${JSON.stringify(record, null, 2)}\n`), { ifNotExists: true, control: true })
  yield* waitWhileExpiring(repo.store)
  if (!exists(yield* listBackupIds(repo))) {
    yield* repo.store.delete(key)
    return yield* notFound()
  }
  return { key, backup_id: backupId, reason, created_at: record.created_at, record } satisfies PinInfo
})

/** Removes the pins of `backupId` with `reason` (other reasons, such as clones, stay). Returns the keys removed. */
export const unpinBackup = Effect.fn("Pins.unpin")(function* (repo: Repository, backupId: string, reason: string) {
  const pins = (yield* listPins(repo, backupId)).filter((p) => p.reason === reason)
  if (pins.length > 0) yield* repo.store.deleteMany(pins.map((p) => p.key))
  return pins.map((p) => p.key)
})
