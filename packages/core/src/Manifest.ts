/**
 * Manifest: encoding, decoding and version checks of `BackupManifest`, and the
 * paged file list / meta snapshot that a manifest points to.
 *
 * The protobuf schema lives in `proto/bendsave/manifest/v1/manifest.proto`
 * (managed by buf; generated code in `src/gen`). Unknown fields survive a
 * decode/encode round trip (protobuf-es keeps them), so an older bendsave that
 * rewrites a newer manifest does not drop what it does not understand.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf"
import * as Schema from "effect/Schema"
import {
  type BackupFile,
  BackupFileSchema,
  type BackupManifest,
  BackupManifestSchema,
  type FilePage,
  FilePageSchema,
  type MetaPage,
  MetaPageSchema,
} from "./gen/bendsave/manifest/v1/manifest_pb.ts"

export {
  type BackupFile,
  BackupFileSchema,
  type BackupManifest,
  BackupManifestSchema,
  BackupType,
  type FilePage,
  type PageRef,
  PageRefSchema,
} from "./gen/bendsave/manifest/v1/manifest_pb.ts"

/** The manifest format version this bendsave writes. */
export const FORMAT_VERSION = 1
/** The highest `min_reader_version` this bendsave can read. */
export const READER_VERSION = 1
/** Features this reader understands (none beyond the v1 base format yet). */
export const KNOWN_FEATURES: ReadonlySet<string> = new Set()

export const ManifestErrorReason = Schema.Literals(["NotFound", "Corrupt", "TooNew", "UnsafePath"])
export type ManifestErrorReason = typeof ManifestErrorReason.Type

/** A manifest (or one of its pages) that cannot be used. */
export class ManifestError extends Schema.TaggedError<ManifestError>()("ManifestError", {
  reason: ManifestErrorReason,
  /** Where the manifest is (URL or key). */
  source: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `manifest ${this.source}: ${this.detail}`
  }
}

/** Decodes a manifest and checks that this reader may read it. */
export const decodeManifest = (bytes: Uint8Array, source: string): BackupManifest | ManifestError => {
  let manifest: BackupManifest
  try {
    manifest = fromBinary(BackupManifestSchema, bytes)
  } catch (cause) {
    return new ManifestError({
      reason: "Corrupt",
      source,
      detail: `it is not a valid BackupManifest protobuf (${String(cause)})`,
      fix: "the file is damaged or is not a bendsave manifest; restore from another backup (`bendsave list`) and run `bendsave verify`",
    })
  }
  if (manifest.formatVersion === 0 || manifest.backupMeta === undefined || manifest.storage === undefined) {
    return new ManifestError({
      reason: "Corrupt",
      source,
      detail: "it lacks the format version, backup meta or storage section",
      fix: "the file is damaged or is not a bendsave manifest; use another backup (`bendsave list`)",
    })
  }
  if (manifest.minReaderVersion > READER_VERSION) {
    return new ManifestError({
      reason: "TooNew",
      source,
      detail: `it needs reader version ${manifest.minReaderVersion}; this bendsave reads up to version ${READER_VERSION}`,
      fix: "upgrade bendsave to a version that supports this repository format",
    })
  }
  const unknown = manifest.requiredFeatures.filter((f) => !KNOWN_FEATURES.has(f))
  if (unknown.length > 0) {
    return new ManifestError({
      reason: "TooNew",
      source,
      detail: `it needs features this bendsave does not have: ${unknown.join(", ")}`,
      fix: "upgrade bendsave to a version that supports these features",
    })
  }
  return manifest
}

export const encodeManifest = (manifest: BackupManifest): Uint8Array => toBinary(BackupManifestSchema, manifest)

export const decodeFilePage = (bytes: Uint8Array, source: string): FilePage | ManifestError => {
  try {
    return fromBinary(FilePageSchema, bytes)
  } catch (cause) {
    return new ManifestError({
      reason: "Corrupt",
      source,
      detail: `file page is not a valid FilePage protobuf (${String(cause)})`,
      fix: "run `bendsave verify --read-data` on the repository; restore from another backup",
    })
  }
}

export const decodeMetaPage = (bytes: Uint8Array, source: string): MetaPage | ManifestError => {
  try {
    return fromBinary(MetaPageSchema, bytes)
  } catch (cause) {
    return new ManifestError({
      reason: "Corrupt",
      source,
      detail: `meta page is not a valid MetaPage protobuf (${String(cause)})`,
      fix: "run `bendsave verify --read-data` on the repository; restore from another backup",
    })
  }
}

export const encodeFilePage = (files: ReadonlyArray<BackupFile>): Uint8Array =>
  toBinary(FilePageSchema, create(FilePageSchema, { files: [...files] }))

export const encodeMetaPage = (entries: ReadonlyArray<{ key: Uint8Array; value: Uint8Array }>): Uint8Array =>
  toBinary(MetaPageSchema, create(MetaPageSchema, { entries: entries.map((e) => ({ key: e.key, value: e.value })) }))

/**
 * Checks a manifest path before it is used to write into a target: it must be
 * relative, '/'-separated, without empty, '.' or '..' segments, backslashes or
 * NUL. Returns the problem, or undefined when the path is safe.
 */
export const unsafePathProblem = (path: string): string | undefined => {
  if (path.length === 0) return "the path is empty"
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) return "the path is absolute"
  if (path.includes("\\")) return "the path contains a backslash"
  if (path.includes("\0")) return "the path contains a NUL character"
  for (const segment of path.split("/")) {
    if (segment === "..") return "the path contains '..' and would escape the target root"
    if (segment === "" || segment === ".") return "the path has an empty or '.' segment"
  }
  return undefined
}

export const makeBackupFile = (init: {
  path: string
  size: number
  etag: string
  lastModified: number
  blocks: ReadonlyArray<{ id: string; size: number }>
}): BackupFile =>
  create(BackupFileSchema, {
    path: init.path,
    size: BigInt(init.size),
    etag: init.etag,
    lastModified: {
      seconds: BigInt(Math.floor(init.lastModified / 1000)),
      nanos: Math.round((init.lastModified % 1000) * 1e6),
    },
    blocks: init.blocks.map((b) => ({ blockId: b.id, blockSize: BigInt(b.size) })),
  })

/** Milliseconds since the epoch of a file record's last_modified. */
export const lastModifiedMillis = (file: BackupFile): number =>
  file.lastModified === undefined ? 0 : Number(file.lastModified.seconds) * 1000 + Math.round(file.lastModified.nanos / 1e6)

/** Backup ids are the UTC time of the backup as `YYYYMMDD_HHMMSS`. */
export const backupIdOf = (millis: number): string => {
  const d = new Date(millis)
  const p = (n: number, w = 2) => String(n).padStart(w, "0")
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}_${p(d.getUTCHours())}${p(
    d.getUTCMinutes(),
  )}${p(d.getUTCSeconds())}`
}

export const BACKUP_ID_PATTERN = /^\d{8}_\d{6}$/

/** The UTC time (ms) a backup id names, or undefined if it is not a backup id. */
export const backupIdTime = (id: string): number | undefined => {
  if (!BACKUP_ID_PATTERN.test(id)) return undefined
  const t = Date.UTC(
    Number(id.slice(0, 4)),
    Number(id.slice(4, 6)) - 1,
    Number(id.slice(6, 8)),
    Number(id.slice(9, 11)),
    Number(id.slice(11, 13)),
    Number(id.slice(13, 15)),
  )
  return Number.isNaN(t) ? undefined : t
}
