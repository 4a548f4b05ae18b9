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
 * or, with an etcd meta service:
 *
 * ```toml
 * [meta]
 * type = "etcd"
 * endpoints = ["http://127.0.0.1:2379"]
 * prefix = "/prod/"        # required, non-empty: only keys under it belong to the cluster
 * username = "backup"      # optional; or env ETCD_USERNAME
 * password_env = "PROD_ETCD_PASSWORD"   # or `password = "..."`, or env ETCD_PASSWORD
 * dial_timeout_ms = 5000   # optional
 * request_timeout_ms = 30000
 * [meta.tls]               # optional; https endpoints
 * ca_file = "./ca.pem"
 * cert_file = "./client.pem"
 * key_file = "./client-key.pem"
 * ```
 *
 * Every problem is reported as a ClusterConfigError that names the file, the
 * key, what was expected and how to fix it; a password is never part of a
 * message. Relative paths resolve against the directory of the cluster file.
 */
import { readFile } from "node:fs/promises"
import { basename, dirname, extname, isAbsolute, resolve } from "node:path"
import process from "node:process"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
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

export interface EtcdMetaConfig {
  readonly type: "etcd"
  /** Client URLs, `http://host:port` or `https://host:port`, without credentials. */
  readonly endpoints: ReadonlyArray<string>
  /** Non-empty key prefix: only keys under it belong to the cluster (keys are relative to it). */
  readonly prefix: string
  readonly username?: string
  /** From `password`, the variable `password_env` names, or ETCD_PASSWORD. Never printed. */
  readonly password?: Redacted.Redacted<string>
  /** Where the password came from, for messages (never the password itself). */
  readonly passwordSource?: string
  /** Absolute paths of the PEM files of `[meta.tls]`. */
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string }
  readonly dialTimeoutMs: number
  readonly requestTimeoutMs: number
}

export type MetaConfig = LocalMetaConfig | EtcdMetaConfig

export interface FsStorageConfig {
  readonly type: "fs"
  /** Absolute storage root. */
  readonly dataPath: string
}

/**
 * Storage served by a driver module: the built-in cloud types ("s3", "gcs",
 * "azblob") or a plugin (a module path or package name). Its options are the
 * table `[storage.<driver name>]`, validated by the driver when it is loaded
 * (`openStorage` in Registry.ts).
 */
export interface DriverStorageConfig {
  readonly type: string
  /** Every table under [storage] except `type`, as written (paths not resolved). */
  readonly tables: Readonly<Record<string, unknown>>
}

export type StorageConfig = FsStorageConfig | DriverStorageConfig

/** Whether the storage is a local directory (`[storage] type = "fs"`). */
export const isFsStorage = (storage: StorageConfig): storage is FsStorageConfig => storage.type === "fs" && "dataPath" in storage

/** The built-in cloud storage types (their drivers are packages of their own, loaded on first use). */
export const CLOUD_STORAGE_TYPES: ReadonlyArray<string> = ["s3", "gcs", "azblob"]

export interface ClusterConfig {
  /** Absolute path of the cluster file. */
  readonly file: string
  readonly name: string
  readonly meta: MetaConfig
  readonly storage: StorageConfig
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

const TimeoutMs = Schema.Int.check(Schema.isGreaterThan(0))
const EtcdMeta = Schema.Struct({
  type: Schema.Literal("etcd"),
  endpoints: Schema.Array(Schema.NonEmptyString),
  prefix: Schema.String,
  username: Schema.optional(Schema.NonEmptyString),
  password: Schema.optional(Schema.String),
  password_env: Schema.optional(Schema.NonEmptyString),
  tls: Schema.optional(
    Schema.Struct({
      ca_file: Schema.optional(Schema.NonEmptyString),
      cert_file: Schema.optional(Schema.NonEmptyString),
      key_file: Schema.optional(Schema.NonEmptyString),
    }),
  ),
  dial_timeout_ms: Schema.optional(TimeoutMs),
  request_timeout_ms: Schema.optional(TimeoutMs),
})

/** Default etcd timeouts: connecting (and the first request), and every later request. */
export const ETCD_DIAL_TIMEOUT_MS = 5_000
export const ETCD_REQUEST_TIMEOUT_MS = 30_000

const FsStorage = Schema.Struct({
  type: Schema.Literal("fs"),
  fs: Schema.Struct({ data_path: Schema.NonEmptyString }),
})

const fixes: Record<string, string> = {
  name: 'set `name = "<cluster name>"` or remove the key to use the file name',
  meta: 'add a [meta] table, e.g.\n  [meta]\n  type = "local"\n  path = "./meta"',
  "meta.type": 'set `type = "local"` (the embedded meta store) or `type = "etcd"` in [meta]',
  "meta.path": 'set `path = "./meta"` in [meta]: the directory holding the meta file (relative to the cluster file)',
  "meta.prefix": 'set `prefix = "<key prefix>"` in [meta], or remove it to back up every key',
  "etcd:meta.prefix": 'set `prefix = "/<cluster>/"` in [meta]: the etcd key prefix under which the cluster keeps its metadata',
  "meta.endpoints": 'set `endpoints = ["http://127.0.0.1:2379"]` in [meta]: the etcd client URLs',
  "meta.username": 'set `username = "<etcd user>"` in [meta], or remove it (or set ETCD_USERNAME)',
  "meta.password": 'set `password_env = "<VARIABLE>"` in [meta] to read the password from the environment (or set ETCD_PASSWORD)',
  "meta.password_env": 'set `password_env = "<VARIABLE>"` in [meta]: the environment variable holding the etcd password',
  "meta.tls": "make [meta.tls] a table with ca_file, cert_file and key_file (PEM files, relative to the cluster file)",
  "meta.tls.ca_file": 'set `ca_file = "./ca.pem"` in [meta.tls]: the CA certificate that signed the etcd server certificate',
  "meta.tls.cert_file": 'set `cert_file = "./client.pem"` in [meta.tls]: the client certificate (with key_file)',
  "meta.tls.key_file": 'set `key_file = "./client-key.pem"` in [meta.tls]: the client private key (with cert_file)',
  "meta.dial_timeout_ms": "set `dial_timeout_ms = 5000` in [meta]: milliseconds to wait for a connection to etcd",
  "meta.request_timeout_ms": "set `request_timeout_ms = 30000` in [meta]: milliseconds to wait for one etcd request",
  storage: 'add a [storage] table, e.g.\n  [storage]\n  type = "fs"\n  [storage.fs]\n  data_path = "./data"',
  "storage.type":
    'set `type = "fs"`, "s3", "gcs" or "azblob" in [storage] (or a driver module: "./drivers/my-store.js", "bendsave-driver-foo")',
  "storage.fs": 'add a [storage.fs] table with `data_path = "./data"`',
  "storage.fs.data_path": 'set `data_path = "./data"` in [storage.fs]: the storage root directory (relative to the cluster file)',
}

const cloudStorageFixes: Record<string, string> = {
  s3: 'add\n  [storage.s3]\n  bucket = "<bucket>"\n  root = "/<prefix>"            # optional\n  endpoint_url = "http://host:port" # S3-compatible servers only\n  region = "us-east-1"',
  gcs: 'add\n  [storage.gcs]\n  bucket = "<bucket>"\n  root = "/<prefix>"            # optional',
  azblob: 'add\n  [storage.azblob]\n  container = "<container>"\n  root = "/<prefix>"            # optional\n  account_name = "<account>"',
}

const knownKeys: Record<string, ReadonlyArray<string>> = {
  "": ["name", "meta", "storage"],
  meta: ["type", "path", "prefix"],
  "etcd:meta": ["type", "endpoints", "prefix", "username", "password", "password_env", "tls", "dial_timeout_ms", "request_timeout_ms"],
  "etcd:meta.tls": ["ca_file", "cert_file", "key_file"],
  storage: ["type", "fs"],
  "storage.fs": ["data_path"],
}

/** The closest known key, for "did you mean" hints; `scope` selects a driver's keys ("etcd:"). */
const suggest = (parent: string, key: string, scope = ""): string | undefined => {
  const candidates = knownKeys[scope + parent] ?? knownKeys[parent] ?? []
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
  scope = "",
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
    const near = suggest(parent, path[path.length - 1] ?? "", scope)
    const known = knownKeys[scope + parent] ?? knownKeys[parent] ?? []
    return new ClusterConfigError({
      file,
      key,
      detail: `unknown key${parent === "" ? "" : ` in [${parent}]`}`,
      fix: near !== undefined ? `did you mean '${near}'? rename the key` : `remove it; known keys here: ${known.join(", ")}`,
    })
  }
  const missing = message.includes("Missing key")
  // A secret's value never appears in a message, not even when it has the wrong type.
  const detail = missing
    ? "missing required key"
    : SECRET_KEYS.has(key)
      ? "expected a string (the value is not shown)"
      : `${message.replace(/^Expected/, "expected")}`
  return new ClusterConfigError({
    file,
    key,
    detail,
    fix: fixes[scope + key] ?? fixes[key] ?? "see the cluster file section of the README",
  })
}

const SECRET_KEYS = new Set(["meta.password"])

const resolvePath = (dir: string, p: string) => (isAbsolute(p) ? p : resolve(dir, p))

const unsupported = (file: string, key: string, value: string, available: string) =>
  new ClusterConfigError({
    file,
    key,
    detail: `type '${value}' is not available in this version of bendsave (available: ${available})`,
    fix: `set \`type = "${available.split(",")[0]}"\`, or upgrade bendsave to a version with the ${value} driver`,
  })

const configError = (file: string, key: string, detail: string, fix: string) => new ClusterConfigError({ file, key, detail, fix })

/** Checks one etcd endpoint URL; returns what is wrong with it, or undefined. */
const endpointProblem = (endpoint: string): string | undefined => {
  if (/^[A-Za-z0-9.\-[\]:]+:\d+$/.test(endpoint) && !/^https?:/.test(endpoint)) {
    return `has no scheme: write http://${endpoint} (or https://${endpoint} for TLS)`
  }
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    return "is not a URL (write http://host:port or https://host:port)"
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `has scheme '${url.protocol.slice(0, -1)}'; use http:// or https://`
  if (url.username !== "" || url.password !== "") return "holds credentials; put them in `username` and `password_env` instead"
  if (url.hostname === "" || url.port === "") return "needs a host and a port, e.g. http://127.0.0.1:2379"
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "") return "must not have a path, query or fragment"
  return undefined
}

type EtcdMetaInput = typeof EtcdMeta.Type

/** Validates the etcd keys beyond their types, resolves credentials and paths. */
const etcdMetaConfig = (
  meta: EtcdMetaInput,
  file: string,
  dir: string,
  env: Record<string, string | undefined>,
): EtcdMetaConfig | ClusterConfigError => {
  if (meta.endpoints.length === 0) return configError(file, "meta.endpoints", "no endpoints are given", fixes["meta.endpoints"])
  for (const [index, endpoint] of meta.endpoints.entries()) {
    const problem = endpointProblem(endpoint)
    if (problem !== undefined) {
      const shown = problem.startsWith("holds credentials") ? "endpoint" : `endpoint '${endpoint}'`
      return configError(file, `meta.endpoints[${index}]`, `${shown} ${problem}`, fixes["meta.endpoints"])
    }
  }
  if (meta.prefix === "") {
    return configError(
      file,
      "meta.prefix",
      "the etcd prefix is empty: bendsave refuses to back up or replace a whole etcd keyspace",
      fixes["etcd:meta.prefix"],
    )
  }
  if (meta.password !== undefined && meta.password_env !== undefined) {
    return configError(
      file,
      "meta.password",
      "both `password` and `password_env` are set",
      "keep one of them (`password_env` keeps the secret out of the file)",
    )
  }
  const username = meta.username ?? (env.ETCD_USERNAME || undefined)
  let password: string | undefined
  let passwordSource: string | undefined
  if (meta.password !== undefined) {
    password = meta.password
    passwordSource = "`password` in the cluster file"
  } else if (meta.password_env !== undefined) {
    password = env[meta.password_env]
    passwordSource = `the environment variable ${meta.password_env} (\`password_env\`)`
    if (password === undefined || password === "") {
      return configError(
        file,
        "meta.password_env",
        `the environment variable ${meta.password_env} is not set (or empty)`,
        `export ${meta.password_env}=<etcd password> before running bendsave, or correct \`password_env\``,
      )
    }
  } else if (env.ETCD_PASSWORD) {
    password = env.ETCD_PASSWORD
    passwordSource = "the environment variable ETCD_PASSWORD"
  }
  if (password !== undefined && username === undefined) {
    return configError(file, "meta.username", `a password is given (in ${passwordSource}) but no user name`, fixes["meta.username"])
  }
  const https = meta.endpoints.filter((e) => e.startsWith("https:")).length
  if (https !== 0 && https !== meta.endpoints.length) {
    return configError(
      file,
      "meta.endpoints",
      "mixes http:// and https:// endpoints",
      "use https:// for every endpoint of a TLS cluster (or http:// for every one)",
    )
  }
  let tls: EtcdMetaConfig["tls"]
  if (meta.tls !== undefined) {
    if (https === 0) {
      return configError(
        file,
        "meta.tls",
        "[meta.tls] is set but the endpoints use http://",
        "write the endpoints as https://host:port, or remove [meta.tls]",
      )
    }
    if ((meta.tls.cert_file === undefined) !== (meta.tls.key_file === undefined)) {
      const missing = meta.tls.cert_file === undefined ? "cert_file" : "key_file"
      return configError(
        file,
        `meta.tls.${missing}`,
        "a client certificate needs both cert_file and key_file",
        fixes[`meta.tls.${missing}`],
      )
    }
    tls = {
      caFile: meta.tls.ca_file === undefined ? undefined : resolvePath(dir, meta.tls.ca_file),
      certFile: meta.tls.cert_file === undefined ? undefined : resolvePath(dir, meta.tls.cert_file),
      keyFile: meta.tls.key_file === undefined ? undefined : resolvePath(dir, meta.tls.key_file),
    }
  }
  return {
    type: "etcd",
    endpoints: meta.endpoints,
    prefix: meta.prefix,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password: Redacted.make(password, { label: "etcd password" }), passwordSource }),
    ...(tls === undefined ? {} : { tls }),
    dialTimeoutMs: meta.dial_timeout_ms ?? ETCD_DIAL_TIMEOUT_MS,
    requestTimeoutMs: meta.request_timeout_ms ?? ETCD_REQUEST_TIMEOUT_MS,
  }
}

/**
 * Parses and validates cluster file text; `file` is used for paths and
 * messages, `env` (default `process.env`) for etcd credentials.
 */
export const parseClusterConfig = (
  text: string,
  file: string,
  env: Record<string, string | undefined> = process.env,
): ClusterConfig | ClusterConfigError => {
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
  let meta: MetaConfig
  if (top.meta.type === "local") {
    const local = decodeSection(LocalMeta, record.meta, absFile, ["meta"])
    if (local instanceof ClusterConfigError) return local
    meta = { type: "local", path: resolvePath(dir, local.path), prefix: local.prefix ?? "" }
  } else if (top.meta.type === "etcd") {
    const etcd = decodeSection(EtcdMeta, record.meta, absFile, ["meta"], "error", "etcd:")
    if (etcd instanceof ClusterConfigError) return etcd
    const resolved = etcdMetaConfig(etcd, absFile, dir, env)
    if (resolved instanceof ClusterConfigError) return resolved
    meta = resolved
  } else {
    return unsupported(absFile, "meta.type", top.meta.type, "local, etcd")
  }
  if (top.storage.type !== "fs") {
    const { type, ...tables } = record.storage as Record<string, unknown>
    if (CLOUD_STORAGE_TYPES.includes(top.storage.type)) {
      const other = Object.keys(tables).find((k) => k !== top.storage.type)
      if (other !== undefined) {
        return configError(
          absFile,
          `storage.${other}`,
          `unknown key in [storage] (the storage type is '${type}')`,
          `remove it; the ${type} options go in [storage.${type}]`,
        )
      }
      if (typeof tables[top.storage.type] !== "object" || tables[top.storage.type] === null || Array.isArray(tables[top.storage.type])) {
        return configError(absFile, `storage.${type}`, "missing required table", cloudStorageFixes[top.storage.type])
      }
    }
    return { file: absFile, name: top.name ?? basename(absFile, extname(absFile)), meta, storage: { type: top.storage.type, tables } }
  }
  const storage = decodeSection(FsStorage, record.storage, absFile, ["storage"])
  if (storage instanceof ClusterConfigError) return storage
  return {
    file: absFile,
    name: top.name ?? basename(absFile, extname(absFile)),
    meta,
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
        detail:
          (cause as NodeJS.ErrnoException).code === "ENOENT"
            ? "the cluster file does not exist"
            : `cannot read the cluster file (${String(cause)})`,
        fix: "check the path given to --from/--to/--cluster; `bendsave quickstart` writes an example cluster file",
      }),
  })
  const parsed = parseClusterConfig(text, absFile)
  if (parsed instanceof ClusterConfigError) return yield* parsed
  return parsed
})
