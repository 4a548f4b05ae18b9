/**
 * Repository: the on-store layout of repository format v1 (see
 * docs/repository-format.md) on top of any BlobStore.
 *
 * ```
 * config.json                      format version, minimum reader version, features
 * bendsave.md                      guide for humans
 * manifests/<YYYYMMDD_HHMMSS>.manifest
 * data/<sha256>                    blocks (file data, file pages, meta pages)
 * ```
 *
 * Blocks are content-addressed: the key is the lowercase hex SHA-256 of the
 * bytes, so a block that exists is never uploaded again, and every read is
 * re-hashed before its bytes are trusted.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { BlobStore } from "./BlobStore.ts"
import { BlobStoreError } from "./BlobStore.ts"
import { hashBlock } from "./Hash.ts"
import { BACKUP_ID_PATTERN, type BackupManifest, decodeManifest, encodeManifest, ManifestError } from "./Manifest.ts"
import { REPOSITORY_GUIDE } from "./RepositoryGuide.ts"
import { TOOL_VERSION } from "./Version.ts"

export const CONFIG_KEY = "config.json"
export const GUIDE_KEY = "bendsave.md"
export const MANIFEST_PREFIX = "manifests/"
export const MANIFEST_SUFFIX = ".manifest"
export const DATA_PREFIX = "data/"
/** Files are cut into blocks of this size (the last one shorter). */
export const BLOCK_SIZE = 8 * 1024 * 1024
export const REPOSITORY_FORMAT_VERSION = 1
export const REPOSITORY_READER_VERSION = 1
const KNOWN_REPOSITORY_FEATURES: ReadonlySet<string> = new Set()

export const manifestKey = (backupId: string): string => `${MANIFEST_PREFIX}${backupId}${MANIFEST_SUFFIX}`
export const blockKey = (blockId: string): string => `${DATA_PREFIX}${blockId}`
const BLOCK_ID_PATTERN = /^[0-9a-f]{64}$/

export const RepositoryErrorReason = Schema.Literals(["NotARepository", "TooNew", "Corrupt"])

/** A repository that cannot be opened or used. */
export class RepositoryError extends Schema.TaggedError<RepositoryError>()("RepositoryError", {
  reason: RepositoryErrorReason,
  location: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `repository ${this.location}: ${this.detail}`
  }
}

/** A block whose bytes do not hash to its id, or that is missing or the wrong size. */
export class IntegrityError extends Schema.TaggedError<IntegrityError>()("IntegrityError", {
  reason: Schema.Literals(["HashMismatch", "SizeMismatch", "Missing"]),
  blockId: Schema.String,
  location: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `block ${this.blockId} in ${this.location}: ${this.detail}`
  }
}

/** The repository config object (`config.json`). */
export const RepositoryConfig = Schema.Struct({
  format: Schema.Literal("bendsave-repository"),
  version: Schema.Int,
  min_reader_version: Schema.Int,
  features: Schema.Array(Schema.String),
  block_size: Schema.Int,
  hash: Schema.Literal("sha256"),
  created_at: Schema.String,
  created_by: Schema.String,
})
export type RepositoryConfig = typeof RepositoryConfig.Type

export interface Repository {
  readonly store: BlobStore
  readonly location: string
  readonly config: RepositoryConfig
}

const decodeConfig = Schema.decodeUnknownExit(RepositoryConfig)

/**
 * Opens the repository in `store`. With `create`, an empty location becomes a
 * new repository (config written create-only, so two first backups racing
 * agree on one config).
 */
export const openRepository = Effect.fn("Repository.open")(function* (store: BlobStore, options: { readonly create?: boolean } = {}) {
  const location = store.location
  const existing = yield* readConfig(store)
  if (existing !== undefined) return { store, location, config: existing } satisfies Repository
  if (!options.create) {
    return yield* new RepositoryError({
      reason: "NotARepository",
      location,
      detail: `there is no bendsave repository here (no ${CONFIG_KEY})`,
      fix: "check the repository URL or path; `bendsave backup --to <repo>` creates a repository on first use",
    })
  }
  const config: RepositoryConfig = {
    format: "bendsave-repository",
    version: REPOSITORY_FORMAT_VERSION,
    min_reader_version: REPOSITORY_READER_VERSION,
    features: [],
    block_size: BLOCK_SIZE,
    hash: "sha256",
    created_at: new Date().toISOString(),
    created_by: `bendsave ${TOOL_VERSION}`,
  }
  yield* store.put(GUIDE_KEY, new TextEncoder().encode(REPOSITORY_GUIDE))
  const written = yield* store
    .put(CONFIG_KEY, new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`), { ifNotExists: true })
    .pipe(
      Effect.as(true),
      Effect.catchIf(
        (e) => e.reason === "AlreadyExists",
        () => Effect.succeed(false),
      ),
    )
  if (written) return { store, location, config } satisfies Repository
  const raced = yield* readConfig(store)
  return { store, location, config: raced ?? config } satisfies Repository
})

const readConfig = Effect.fnUntraced(function* (store: BlobStore) {
  const bytes = yield* store.get(CONFIG_KEY).pipe(
    Effect.map((b): Uint8Array | undefined => b),
    Effect.catchIf(
      (e) => e.reason === "NotFound",
      () => Effect.succeed(undefined),
    ),
  )
  if (bytes === undefined) return undefined
  const location = store.location
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    return yield* new RepositoryError({
      reason: "Corrupt",
      location,
      detail: `${CONFIG_KEY} is not valid JSON`,
      fix: `restore ${CONFIG_KEY} from a copy of the repository; see bendsave.md for its format`,
    })
  }
  const decoded = decodeConfig(json)
  if (decoded._tag === "Failure") {
    return yield* new RepositoryError({
      reason: "Corrupt",
      location,
      detail: `${CONFIG_KEY} is not a bendsave repository config`,
      fix: "check the repository URL; this location holds something that is not a bendsave repository",
    })
  }
  const config = decoded.value
  if (config.min_reader_version > REPOSITORY_READER_VERSION) {
    return yield* new RepositoryError({
      reason: "TooNew",
      location,
      detail: `the repository needs reader version ${config.min_reader_version}; this bendsave reads up to ${REPOSITORY_READER_VERSION}`,
      fix: "upgrade bendsave",
    })
  }
  const unknown = config.features.filter((f) => !KNOWN_REPOSITORY_FEATURES.has(f))
  if (unknown.length > 0) {
    return yield* new RepositoryError({
      reason: "TooNew",
      location,
      detail: `the repository uses features this bendsave does not know: ${unknown.join(", ")}`,
      fix: "upgrade bendsave",
    })
  }
  if (config.block_size !== BLOCK_SIZE) {
    return yield* new RepositoryError({
      reason: "Corrupt",
      location,
      detail: `block_size ${config.block_size} is not the v1 block size ${BLOCK_SIZE}`,
      fix: "the config was edited or damaged; restore it from a copy",
    })
  }
  return config
})

/** Backup ids of all committed manifests, oldest first. */
export const listBackupIds = (repo: Repository): Effect.Effect<ReadonlyArray<string>, BlobStoreError> =>
  repo.store.list(MANIFEST_PREFIX).pipe(
    Stream.map((info) => info.key.slice(MANIFEST_PREFIX.length)),
    Stream.filter((name) => name.endsWith(MANIFEST_SUFFIX)),
    Stream.map((name) => name.slice(0, -MANIFEST_SUFFIX.length)),
    Stream.filter((id) => BACKUP_ID_PATTERN.test(id)),
    Stream.runCollect,
    Effect.map((ids) => [...ids].sort()),
  )

export const readManifest = Effect.fn("Repository.readManifest")(function* (repo: Repository, backupId: string) {
  const key = manifestKey(backupId)
  const source = `${repo.location}/${key}`
  const bytes = yield* repo.store.get(key).pipe(
    // A backup id that makes no valid key (`../x`) names no backup either.
    Effect.catchIf(
      (e) => e.reason === "NotFound" || e.reason === "InvalidKey",
      () =>
        Effect.fail(
          new ManifestError({
            reason: "NotFound",
            source,
            detail: `backup ${backupId} does not exist`,
            fix: `run \`bendsave list ${repo.location}\` to see the backups in this repository`,
          }),
        ),
    ),
  )
  const decoded = decodeManifest(bytes, source)
  if (decoded instanceof ManifestError) return yield* decoded
  if (decoded.backupMeta?.backupId !== backupId) {
    return yield* new ManifestError({
      reason: "Corrupt",
      source,
      detail: `the manifest names backup '${decoded.backupMeta?.backupId}', not '${backupId}' as its file name says`,
      fix: "the manifest was renamed or damaged; do not rename manifest files",
    })
  }
  return decoded
})

/**
 * Commits a manifest: create-only, so a backup exists exactly when its
 * manifest does, and a committed manifest is never replaced. Fails with
 * `AlreadyExists` when another backup took the id.
 */
export const commitManifest = (repo: Repository, manifest: BackupManifest) =>
  repo.store.put(manifestKey(manifest.backupMeta?.backupId ?? ""), encodeManifest(manifest), { ifNotExists: true, control: true })

/** Whether a block is stored (with the given size when one is known). */
export const hasBlock = (repo: Repository, blockId: string): Effect.Effect<boolean, BlobStoreError> =>
  repo.store.head(blockKey(blockId)).pipe(
    Effect.as(true),
    Effect.catchIf(
      (e) => e.reason === "NotFound",
      () => Effect.succeed(false),
    ),
  )

/**
 * Stores a block whose id the caller computed from `bytes`. Returns whether
 * this call uploaded it (false: it was already there).
 */
export const putBlock = (
  repo: Repository,
  blockId: string,
  bytes: Uint8Array,
  options?: { readonly control?: boolean },
): Effect.Effect<boolean, BlobStoreError> =>
  repo.store.put(blockKey(blockId), bytes, { ifNotExists: true, contentSha256: blockId, control: options?.control }).pipe(
    Effect.as(true),
    Effect.catchIf(
      (e) => e.reason === "AlreadyExists",
      () => Effect.succeed(false),
    ),
  )

/** Reads a block and re-hashes it; fails with IntegrityError unless the bytes match the id and size. */
export const getBlock = Effect.fn("Repository.getBlock")(function* (repo: Repository, blockId: string, expectedSize: number) {
  if (!BLOCK_ID_PATTERN.test(blockId)) {
    return yield* new IntegrityError({
      reason: "HashMismatch",
      blockId,
      location: repo.location,
      detail: "the manifest names a block id that is not a SHA-256 hex digest",
      fix: "the manifest is damaged; use another backup (`bendsave list`)",
    })
  }
  const bytes = yield* repo.store.get(blockKey(blockId)).pipe(
    Effect.catchIf(
      (e: BlobStoreError) => e.reason === "NotFound",
      () =>
        Effect.fail(
          new IntegrityError({
            reason: "Missing",
            blockId,
            location: repo.location,
            detail: "the block is missing from the repository",
            fix: "run `bendsave verify` to see which backups are affected; restore from another backup",
          }),
        ),
    ),
  )
  if (bytes.length !== expectedSize) {
    return yield* new IntegrityError({
      reason: "SizeMismatch",
      blockId,
      location: repo.location,
      detail: `the block has ${bytes.length} bytes, the manifest says ${expectedSize}`,
      fix: "the block is damaged; run `bendsave verify --read-data` and restore from another backup",
    })
  }
  const { id: actual, bytes: hashed } = yield* hashBlock(bytes)
  if (actual !== blockId) {
    return yield* new IntegrityError({
      reason: "HashMismatch",
      blockId,
      location: repo.location,
      detail: `the block's bytes hash to ${actual}: the block is corrupt`,
      fix: "the block is damaged; run `bendsave verify --read-data` and restore from another backup",
    })
  }
  return hashed
})

/**
 * Removes what interrupted writes of dead processes left in the repository
 * (the fs driver's temp files; see `BlobStore.sweepLeftovers`) and returns how
 * many; 0 for stores that leave nothing. Never fails: leftovers are only
 * clutter (nothing references them), so a sweep that cannot finish is retried
 * by the next backup or vacuum.
 */
export const sweepRepositoryLeftovers = (repo: Repository): Effect.Effect<number> =>
  repo.store.sweepLeftovers === undefined ? Effect.succeed(0) : repo.store.sweepLeftovers().pipe(Effect.orElseSucceed(() => 0))

export { BlobStoreError }
