/**
 * Helpers of the end-to-end tests: they drive the real `bendsave` CLI as a
 * subprocess (the way a user does) and inspect what it leaves on disk.
 *
 * - temp directories, removed after the file's tests (set BENDSAVE_E2E_KEEP=1 to keep them)
 * - cluster files (TOML) and meta seeding through `bendsave meta import`
 * - running the CLI (exit code, stdout, stderr), optionally with a terminal on stderr
 * - files with random content, tree snapshots and byte-for-byte directory comparison
 * - reading manifests and file pages of a repository (through @bendsave/core's decoders)
 */
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join, relative, resolve } from "node:path"
import { type BackupFile, type BackupManifest, decodeFilePage, decodeManifest, ManifestError } from "@bendsave/core"

export const REPO_ROOT = resolve(import.meta.dirname, "..")
const BIN_DIR = join(REPO_ROOT, "node_modules", ".bin")
/** The installed CLI (its shebang runs `node` from PATH, so BIN_DIR goes first: Node 22 of the `node` dev dependency). */
export const BENDSAVE = join(BIN_DIR, "bendsave")

export const MiB = 1024 * 1024
/** Repository format v1 cuts files into blocks of this size. */
export const BLOCK_SIZE = 8 * MiB

// ---------------------------------------------------------------------------
// Temp directories
// ---------------------------------------------------------------------------

const created: Array<string> = []

/** A new empty directory under the OS temp dir; removed by `removeTempDirs`. */
export const makeTempDir = async (label = "e2e"): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), `bendsave-${label}-`))
  created.push(dir)
  return dir
}

/** Removes every directory made by `makeTempDir` in this test file (call from afterAll). */
export const removeTempDirs = async (): Promise<void> => {
  // biome-ignore lint/suspicious/noUndeclaredEnvVars: a local debugging switch of the tests
  if (process.env.BENDSAVE_E2E_KEEP === "1") {
    if (created.length > 0) console.log(`kept temp dirs:\n  ${created.join("\n  ")}`)
    return
  }
  cliTmp = undefined
  await Promise.all(created.splice(0).map((d) => rm(d, { recursive: true, force: true })))
}

// ---------------------------------------------------------------------------
// Running the CLI
// ---------------------------------------------------------------------------

export interface RunResult {
  /** Exit code (null when killed by a signal). */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly timedOut: boolean
  /** The command, for failure messages. */
  readonly command: string
}

export interface RunOptions {
  readonly cwd: string
  /** Written to the CLI's stdin (stdin is closed either way). */
  readonly input?: string
  readonly timeoutMs?: number
  readonly env?: Record<string, string>
}

/**
 * TMPDIR of the CLI runs of this test file: a temp dir removed with the
 * others, so whatever the CLI leaves in its temp directory is cleaned up.
 * Node's compile cache stays in the shared default location.
 */
let cliTmp: Promise<string> | undefined

/** The environment of a CLI run: Node 22 of node_modules/.bin first on PATH, no colors, a private TMPDIR. */
const cliEnv = async (extra: Record<string, string> = {}): Promise<NodeJS.ProcessEnv> => {
  cliTmp ??= makeTempDir("cli-tmpdir")
  return {
    ...process.env,
    PATH: `${BIN_DIR}:${process.env.PATH ?? ""}`,
    NO_COLOR: "1",
    FORCE_COLOR: "0",
    NODE_COMPILE_CACHE: join(tmpdir(), "node-compile-cache"),
    TMPDIR: await cliTmp,
    ...extra,
  }
}

const spawnCapture = async (file: string, args: ReadonlyArray<string>, options: RunOptions, command: string): Promise<RunResult> => {
  const env = await cliEnv(options.env)
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { cwd: options.cwd, env, stdio: ["pipe", "pipe", "pipe"] })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, options.timeoutMs ?? 60_000)
    child.stdout.on("data", (c: Buffer) => out.push(c))
    child.stderr.on("data", (c: Buffer) => err.push(c))
    child.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolvePromise({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        timedOut,
        command,
      })
    })
    child.stdin.on("error", () => {})
    child.stdin.end(options.input ?? "")
  })
}

/** Runs `bendsave <args>` in `options.cwd` and captures everything. */
export const bendsave = (args: ReadonlyArray<string>, options: RunOptions): Promise<RunResult> =>
  spawnCapture(BENDSAVE, args, options, `bendsave ${args.join(" ")}`)

/** A readable dump of a run, for assertion messages. */
export const describeRun = (r: RunResult): string =>
  `$ ${r.command}\nexit: ${r.code}${r.signal ? ` (signal ${r.signal})` : ""}${r.timedOut ? " TIMED OUT" : ""}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`

/** Fails with the run's output unless it exited 0. */
export const expectOk = (r: RunResult): RunResult => {
  if (r.code !== 0) throw new Error(`expected exit 0\n${describeRun(r)}`)
  return r
}

/** A JSON result of the CLI; its fields are checked by the tests' assertions. */
// biome-ignore lint/suspicious/noExplicitAny: JSON of the CLI, checked field by field by assertions
export type JsonObject = Record<string, any>

/**
 * The one JSON object a `--json` run printed: stdout must be exactly one
 * line holding one JSON object (and nothing else).
 */
export const parseSingleJson = (r: RunResult): JsonObject => {
  const lines = r.stdout.split("\n").filter((l) => l.trim() !== "")
  if (lines.length !== 1 || !r.stdout.endsWith("\n")) {
    throw new Error(`expected exactly one JSON line on stdout, got ${lines.length}\n${describeRun(r)}`)
  }
  let value: unknown
  try {
    value = JSON.parse(lines[0])
  } catch {
    throw new Error(`stdout is not JSON\n${describeRun(r)}`)
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`stdout is JSON but not an object\n${describeRun(r)}`)
  }
  return value as JsonObject
}

/** Runs a `--json` verb that must succeed and returns its JSON result. */
export const bendsaveJson = async (args: ReadonlyArray<string>, options: RunOptions): Promise<JsonObject> =>
  parseSingleJson(expectOk(await bendsave([...args, "--json"], options)))

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * Runs `bendsave <args>` with a pseudo-terminal as stderr (and stdin), stdout
 * redirected to a file: the situation where a progress bar is drawn.
 * `terminal` is everything written to the terminal (stderr).
 */
export const bendsaveWithTerminal = async (
  args: ReadonlyArray<string>,
  options: RunOptions,
): Promise<RunResult & { readonly terminal: string }> => {
  const outFile = join(options.cwd, `.stdout-${randomBytes(4).toString("hex")}`)
  const inner = `${[BENDSAVE, ...args].map(shellQuote).join(" ")} > ${shellQuote(outFile)}`
  // util-linux script: -q quiet, -e return the child's exit code, -c command; typescript file /dev/null.
  const r = await spawnCapture("script", ["-qec", inner, "/dev/null"], options, `bendsave ${args.join(" ")} (stderr on a terminal)`)
  const stdout = await readFile(outFile, "utf8").catch(() => "")
  await rm(outFile, { force: true })
  return { ...r, stdout, stderr: r.stdout + r.stderr, terminal: r.stdout }
}

// ---------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------

export interface ClusterFiles {
  /** The cluster file (TOML). */
  readonly toml: string
  readonly metaDir: string
  readonly dataDir: string
}

/**
 * Writes a cluster file at `dir/<file>` naming `<dir>/<meta>` and `<dir>/<data>`
 * (relative paths in the TOML, as in the embedded default).
 */
export const writeCluster = async (
  dir: string,
  options: { readonly name?: string; readonly file?: string; readonly meta?: string; readonly data?: string } = {},
): Promise<ClusterFiles> => {
  const meta = options.meta ?? "meta"
  const data = options.data ?? "data"
  const toml = join(dir, options.file ?? "cluster.toml")
  await mkdir(dir, { recursive: true })
  await writeFile(
    toml,
    [
      `name = "${options.name ?? "prod"}"`,
      "[meta]",
      `type = "local"`,
      `path = "./${meta}"`,
      "[storage]",
      `type = "fs"`,
      "[storage.fs]",
      `data_path = "./${data}"`,
      "",
    ].join("\n"),
  )
  return { toml, metaDir: join(dir, meta), dataDir: join(dir, data) }
}

/** A meta entry as the tests write it: strings are UTF-8, Buffers are raw bytes. */
export interface MetaInput {
  readonly key: string | Buffer
  readonly value: string | Buffer
}

const asBytes = (v: string | Buffer): Buffer => (typeof v === "string" ? Buffer.from(v, "utf8") : v)

/** JSON lines for `meta import`: text fields for strings, `_b64` fields for Buffers. */
export const metaImportLines = (entries: ReadonlyArray<MetaInput>): string =>
  entries
    .map((e) =>
      JSON.stringify({
        ...(typeof e.key === "string" ? { key: e.key } : { key_b64: e.key.toString("base64") }),
        ...(typeof e.value === "string" ? { value: e.value } : { value_b64: e.value.toString("base64") }),
      }),
    )
    .join("\n")
    .concat("\n")

/** Seeds (or with `replace`, sets exactly) a cluster's meta keyspace via `bendsave meta import --input`. */
export const importMeta = async (
  cluster: ClusterFiles,
  entries: ReadonlyArray<MetaInput>,
  options: { readonly replace?: boolean } = {},
): Promise<JsonObject> => {
  const cwd = dirname(cluster.toml)
  const input = join(cwd, `.meta-import-${randomBytes(4).toString("hex")}.jsonl`)
  await writeFile(input, metaImportLines(entries))
  try {
    return await bendsaveJson(["meta", "import", "--cluster", cluster.toml, "--input", input, ...(options.replace ? ["--replace"] : [])], {
      cwd,
    })
  } finally {
    await rm(input, { force: true })
  }
}

/** A meta entry as bytes, hex-encoded (comparable with toEqual). */
export interface MetaPair {
  readonly key: string
  readonly value: string
}

/** Parses `meta export` output (JSON lines, `_b64` for non-UTF-8) into hex pairs, in output order. */
export const parseMetaExport = (text: string): Array<MetaPair> =>
  text
    .split("\n")
    .filter((l) => l !== "")
    .map((line) => {
      const o = JSON.parse(line) as Record<string, string>
      const key = o.key !== undefined ? Buffer.from(o.key, "utf8") : Buffer.from(o.key_b64, "base64")
      const value = o.value !== undefined ? Buffer.from(o.value, "utf8") : Buffer.from(o.value_b64, "base64")
      return { key: key.toString("hex"), value: value.toString("hex") }
    })

/** The expected keyspace of `entries` as hex pairs, in bytewise key order (last write of a key wins). */
export const expectedMeta = (entries: ReadonlyArray<MetaInput>): Array<MetaPair> => {
  const map = new Map<string, string>()
  for (const e of entries) map.set(asBytes(e.key).toString("hex"), asBytes(e.value).toString("hex"))
  return [...map.entries()]
    .sort(([a], [b]) => Buffer.compare(Buffer.from(a, "hex"), Buffer.from(b, "hex")))
    .map(([key, value]) => ({ key, value }))
}

/** `bendsave meta export --cluster <toml>`: the raw text (must exit 0). */
export const exportMetaText = async (cluster: Pick<ClusterFiles, "toml">): Promise<string> =>
  expectOk(await bendsave(["meta", "export", "--cluster", cluster.toml], { cwd: dirname(cluster.toml) })).stdout

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/** Writes `size` random bytes at `path` (parents created); returns the bytes. */
export const writeRandomFile = async (path: string, size: number): Promise<Buffer> => {
  const bytes = randomBytes(size)
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, bytes)
  return bytes
}

/** Writes `bytes` at `path` (parents created). */
export const writeBytes = async (path: string, bytes: Uint8Array | string): Promise<void> => {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, bytes)
}

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

export interface TreeEntry {
  readonly path: string
  readonly type: "file" | "dir" | "other"
  readonly size: number
  readonly mtimeNs: string
  readonly sha256?: string
}

/** Every entry under `root` (files, directories, others), sorted by path; [] when root does not exist. */
export const walk = async (root: string): Promise<Array<string>> => {
  const out: Array<string> = []
  const visit = async (dir: string) => {
    let names: Array<string>
    try {
      names = await readdir(dir)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return
      throw e
    }
    for (const name of names) {
      const full = join(dir, name)
      out.push(relative(root, full))
      const s = await lstat(full)
      if (s.isDirectory()) await visit(full)
    }
  }
  await visit(root)
  return out.sort()
}

/** Paths (relative to root) of regular files under `root`, sorted. */
export const listFiles = async (root: string): Promise<Array<string>> => {
  const all = await walk(root)
  const files: Array<string> = []
  for (const p of all) if ((await lstat(join(root, p))).isFile()) files.push(p)
  return files
}

/** Everything under `root` with types, sizes, mtimes (ns) and file hashes: equal snapshots mean nothing changed. */
export const snapshotTree = async (root: string): Promise<Array<TreeEntry>> => {
  const entries: Array<TreeEntry> = []
  for (const p of await walk(root)) {
    const full = join(root, p)
    const s = await lstat(full, { bigint: true })
    const type = s.isFile() ? "file" : s.isDirectory() ? "dir" : "other"
    entries.push({
      path: p,
      type,
      size: Number(s.size),
      mtimeNs: s.mtimeNs.toString(),
      ...(type === "file" ? { sha256: sha256(await readFile(full)) } : {}),
    })
  }
  return entries
}

/**
 * Compares the regular files of two trees byte for byte. Returns the
 * differences (empty when identical): missing/extra paths and differing files.
 */
export const compareDirs = async (expected: string, actual: string): Promise<Array<string>> => {
  const a = await listFiles(expected)
  const b = await listFiles(actual)
  const diffs: Array<string> = []
  const bSet = new Set(b)
  const aSet = new Set(a)
  for (const p of a) if (!bSet.has(p)) diffs.push(`missing: ${p}`)
  for (const p of b) if (!aSet.has(p)) diffs.push(`extra: ${p}`)
  for (const p of a) {
    if (!bSet.has(p)) continue
    const [x, y] = await Promise.all([readFile(join(expected, p)), readFile(join(actual, p))])
    if (!x.equals(y)) diffs.push(`differs: ${p} (${x.length} vs ${y.length} bytes)`)
  }
  return diffs
}

/**
 * Compares the regular files under `actual` with an expected content map
 * (path -> bytes). Returns the differences (empty when identical).
 */
export const compareDirWithFiles = async (actual: string, expected: ReadonlyMap<string, Uint8Array>): Promise<Array<string>> => {
  const present = await listFiles(actual)
  const diffs: Array<string> = []
  for (const p of [...expected.keys()].sort()) if (!present.includes(p)) diffs.push(`missing: ${p}`)
  for (const p of present) {
    const want = expected.get(p)
    if (want === undefined) {
      diffs.push(`extra: ${p}`)
      continue
    }
    const got = await readFile(join(actual, p))
    if (!got.equals(Buffer.from(want))) diffs.push(`differs: ${p} (expected ${want.length} bytes, got ${got.length})`)
  }
  return diffs
}

/** Every path (files and their parent directories) a tree holding exactly `files` has, sorted like `walk`. */
export const treePathsOf = (files: Iterable<string>): Array<string> => {
  const all = new Set<string>()
  for (const f of files) {
    const parts = f.split("/")
    for (let i = 1; i <= parts.length; i++) all.add(parts.slice(0, i).join("/"))
  }
  return [...all].sort()
}

/** SHA-256 ids of the 8 MiB blocks of `bytes`, as bendsave cuts files (an empty file has none). */
export const blockIdsOf = (bytes: Uint8Array): Array<string> => {
  const ids: Array<string> = []
  for (let off = 0; off < bytes.length; off += BLOCK_SIZE) ids.push(sha256(bytes.subarray(off, Math.min(bytes.length, off + BLOCK_SIZE))))
  return ids
}

/** Copies the regular files of `from` into `to` (a plain copy, for "expected state" snapshots). */
export const copyFiles = async (from: string, to: string): Promise<void> => {
  for (const p of await listFiles(from)) await writeBytes(join(to, p), await readFile(join(from, p)))
}

export const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  )

/** Paths under `root` whose name contains `.tmp-` (temp files of the fs driver or the meta store). */
export const tempFilesUnder = async (root: string): Promise<Array<string>> =>
  (await walk(root)).filter((p) => p.split("/").some((seg) => seg.includes(".tmp-")))

// ---------------------------------------------------------------------------
// Repository internals (for tests that inspect or tamper with a repository)
// ---------------------------------------------------------------------------

export const manifestPath = (repo: string, backupId: string): string => join(repo, "manifests", `${backupId}.manifest`)

/** Decodes `repo/manifests/<id>.manifest` with @bendsave/core's decoder. */
export const readManifest = async (repo: string, backupId: string): Promise<BackupManifest> => {
  const path = manifestPath(repo, backupId)
  const decoded = decodeManifest(new Uint8Array(await readFile(path)), path)
  if (decoded instanceof ManifestError) throw new Error(decoded.message)
  return decoded
}

/** Every file record of a backup, page by page (pages read from `repo/data/<block id>`). */
export const readManifestFiles = async (repo: string, manifest: BackupManifest): Promise<Array<BackupFile>> => {
  const files: Array<BackupFile> = []
  for (const ref of manifest.storage?.pages ?? []) {
    const path = join(repo, "data", ref.blockId)
    const page = decodeFilePage(new Uint8Array(await readFile(path)), path)
    if (page instanceof ManifestError) throw new Error(page.message)
    files.push(...page.files)
  }
  return files
}
