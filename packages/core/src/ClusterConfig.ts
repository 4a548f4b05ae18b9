/**
 * ClusterConfig: the cluster file (TOML) that names a cluster's meta service
 * and storage root, validated with Schema.
 *
 * ```toml
 * name = "prod"            # optional; defaults to the file name
 * [meta]
 * type = "local"
 * path = "./meta"          # directory of the crash-safe meta file
 * [storage]
 * type = "fs"
 * [storage.fs]
 * data_path = "./data"
 * ```
 *
 * Every problem is reported as a ClusterConfigError that names the file, the
 * key, what was expected and how to fix it. Relative paths resolve against the
 * directory of the cluster file.
 */
import { readFile } from "node:fs/promises"
import { basename, dirname, extname, isAbsolute, resolve } from "node:path"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { parse as parseToml, TomlError } from "smol-toml"

export class ClusterConfigError extends Schema.TaggedError<ClusterConfigError>()("ClusterConfigError", {
  file: Schema.String,
  /** Dotted TOML key, e.g. "storage.fs.data_path"; empty for file-level problems. */
  key: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return this.key === "" ? `${this.file}: ${this.detail}` : `${this.file}: key '${this.key}': ${this.detail}`
  }
}

export interface LocalMetaConfig {
  readonly type: "local"
  /** Absolute directory of the meta file. */
  readonly path: string
  /** Only keys under this prefix belong to the cluster ("" = all). */
  readonly prefix: string
}

export interface FsStorageConfig {
  readonly type: "fs"
  /** Absolute storage root. */
  readonly dataPath: string
}

export interface ClusterConfig {
  /** Absolute path of the cluster file. */
  readonly file: string
  readonly name: string
  readonly meta: LocalMetaConfig
  readonly storage: FsStorageConfig
}

const Top = Schema.Struct({
  name: Schema.optional(Schema.NonEmptyString),
  meta: Schema.Struct({ type: Schema.NonEmptyString }),
  storage: Schema.Struct({ type: Schema.NonEmptyString }),
})

const LocalMeta = Schema.Struct({
  type: Schema.Literal("local"),
  path: Schema.NonEmptyString,
  prefix: Schema.optional(Schema.String),
})

const FsStorage = Schema.Struct({
  type: Schema.Literal("fs"),
  fs: Schema.Struct({ data_path: Schema.NonEmptyString }),
})

const fixes: Record<string, string> = {
  name: 'set `name = "<cluster name>"` or remove the key to use the file name',
  meta: 'add a [meta] table, e.g.\n  [meta]\n  type = "local"\n  path = "./meta"',
  "meta.type": 'set `type = "local"` in [meta] (the embedded meta store)',
  "meta.path": 'set `path = "./meta"` in [meta]: the directory holding the meta file (relative to the cluster file)',
  "meta.prefix": 'set `prefix = "<key prefix>"` in [meta], or remove it to back up every key',
  storage: 'add a [storage] table, e.g.\n  [storage]\n  type = "fs"\n  [storage.fs]\n  data_path = "./data"',
  "storage.type": 'set `type = "fs"` in [storage]',
  "storage.fs": 'add a [storage.fs] table with `data_path = "./data"`',
  "storage.fs.data_path": 'set `data_path = "./data"` in [storage.fs]: the storage root directory (relative to the cluster file)',
}

const knownKeys: Record<string, ReadonlyArray<string>> = {
  "": ["name", "meta", "storage"],
  meta: ["type", "path", "prefix"],
  storage: ["type", "fs"],
  "storage.fs": ["data_path"],
}

/** The closest known key, for "did you mean" hints. */
const suggest = (parent: string, key: string): string | undefined => {
  const candidates = knownKeys[parent] ?? []
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const candidate of candidates) {
    const d = editDistance(key.toLowerCase(), candidate)
    if (d < bestDistance) {
      bestDistance = d
      best = candidate
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined
}

const editDistance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length]
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Decodes `input` with `schema`; the first issue becomes a ClusterConfigError for `file`. */
const decodeSection = <S extends Schema.Top & { readonly DecodingServices: never }>(
  schema: S,
  input: unknown,
  file: string,
  base: ReadonlyArray<string>,
  onExcessProperty: "error" | "ignore" = "error",
): S["Type"] | ClusterConfigError => {
  const exit = Schema.decodeUnknownExit(schema)(input, { errors: "all", onExcessProperty })
  if (exit._tag === "Success") return exit.value
  const reason = exit.cause.reasons[0]
  const error = reason?._tag === "Fail" ? (reason.error as Schema.SchemaError) : undefined
  const issue = error === undefined ? undefined : formatter(error.issue).issues[0]
  const path = [...base, ...(issue?.path ?? []).map((p) => String(typeof p === "object" ? p.key : p))]
  const key = path.join(".")
  const message = issue?.message ?? "invalid value"
  if (message.includes("excess property")) {
    const parent = path.slice(0, -1).join(".")
    const near = suggest(parent, path[path.length - 1] ?? "")
    return new ClusterConfigError({
      file,
      key,
      detail: `unknown key${parent === "" ? "" : ` in [${parent}]`}`,
      fix: near !== undefined ? `did you mean '${near}'? rename the key` : `remove it; known keys here: ${(knownKeys[parent] ?? []).join(", ")}`,
    })
  }
  const missing = message.includes("Missing key")
  return new ClusterConfigError({
    file,
    key,
    detail: missing ? "missing required key" : `${message.replace(/^Expected/, "expected")}`,
    fix: fixes[key] ?? "see the cluster file section of the README",
  })
}

const resolvePath = (dir: string, p: string) => (isAbsolute(p) ? p : resolve(dir, p))

const unsupported = (file: string, key: string, value: string, available: string) =>
  new ClusterConfigError({
    file,
    key,
    detail: `type '${value}' is not available in this version of bendsave (available: ${available})`,
    fix: `set \`type = "${available.split(",")[0]}"\`, or upgrade bendsave to a version with the ${value} driver`,
  })

/** Parses and validates cluster file text; `file` is used for paths and messages. */
export const parseClusterConfig = (text: string, file: string): ClusterConfig | ClusterConfigError => {
  const absFile = resolve(file)
  let raw: unknown
  try {
    raw = parseToml(text)
  } catch (cause) {
    const where = cause instanceof TomlError ? ` at line ${cause.line}, column ${cause.column}` : ""
    const first = String((cause as Error).message ?? cause).split("\n")[0]
    return new ClusterConfigError({
      file: absFile,
      key: "",
      detail: `not valid TOML${where}: ${first}`,
      fix: "fix the TOML syntax (https://toml.io); see the cluster file example in the README",
    })
  }
  const top = decodeSection(Top, raw, absFile, [], "ignore")
  if (top instanceof ClusterConfigError) return top
  const record = raw as Record<string, Record<string, unknown>>
  const unknownTop = Object.keys(record).find((k) => !knownKeys[""].includes(k))
  if (unknownTop !== undefined) {
    const near = suggest("", unknownTop)
    return new ClusterConfigError({
      file: absFile,
      key: unknownTop,
      detail: "unknown key at the top level",
      fix: near !== undefined ? `did you mean '${near}'? rename the key` : "remove it; known keys: name, [meta], [storage]",
    })
  }
  const dir = dirname(absFile)
  if (top.meta.type !== "local") return unsupported(absFile, "meta.type", top.meta.type, "local")
  const meta = decodeSection(LocalMeta, record.meta, absFile, ["meta"])
  if (meta instanceof ClusterConfigError) return meta
  if (top.storage.type !== "fs") return unsupported(absFile, "storage.type", top.storage.type, "fs")
  const storage = decodeSection(FsStorage, record.storage, absFile, ["storage"])
  if (storage instanceof ClusterConfigError) return storage
  return {
    file: absFile,
    name: top.name ?? basename(absFile, extname(absFile)),
    meta: { type: "local", path: resolvePath(dir, meta.path), prefix: meta.prefix ?? "" },
    storage: { type: "fs", dataPath: resolvePath(dir, storage.fs.data_path) },
  }
}

/** Reads, parses and validates a cluster file. */
export const loadClusterConfig = Effect.fn("ClusterConfig.load")(function* (file: string) {
  const absFile = resolve(file)
  const text = yield* Effect.tryPromise({
    try: () => readFile(absFile, "utf8"),
    catch: (cause) =>
      new ClusterConfigError({
        file: absFile,
        key: "",
        detail: (cause as NodeJS.ErrnoException).code === "ENOENT" ? "the cluster file does not exist" : `cannot read the cluster file (${String(cause)})`,
        fix: "check the path given to --from/--to/--cluster; `bendsave quickstart` writes an example cluster file",
      }),
  })
  const parsed = parseClusterConfig(text, absFile)
  if (parsed instanceof ClusterConfigError) return yield* parsed
  return parsed
})
