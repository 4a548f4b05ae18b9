/**
 * The bendsave command line: parse the verbs, call the workflows of
 * @bendsave/core, render the result (text, or one JSON object with --json).
 * Commands hold no logic of their own.
 */
import {
  abandonBackup,
  backup,
  checkBackup,
  listIncompleteBackups,
  formatMetaLine,
  listBackups,
  loadClusterConfig,
  MetaLinesError,
  compareBytes,
  openCluster,
  openRepositoryAt,
  openRestoreTarget,
  openStorage,
  type Cluster,
  parseBackupReference,
  parseMetaLines,
  readManifest,
  registerEtcdMetaDriver,
  loadStorageDriver,
  makeRateLimiter,
  parseByteRate,
  registerStorageDriverLoader,
  StorageLimits,
  restore,
  TOOL_VERSION,
  verify,
  vacuum,
  validatePolicy,
  VacuumError,
  type RetentionPolicy,
  type VacuumResult,
  pinBackup,
  unpinBackup,
  listPins,
  USER_PIN_REASON,
  findBackupAt,
  listBackupIds,
  LocationError,
  type MetaEntry,
  DEFAULT_REQUEST_TIMEOUT_MS,
  formatDurationShort,
  readDuration,
  type DurationRule,
} from "@bendsave/core"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import type * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Argument, CliOutput, Command, Flag, GlobalFlag } from "effect/cli"
import * as Runtime from "effect/Runtime"
import {
  type ContinuousResult,
  formatDuration as formatLag,
  parseInterval,
  parseScope,
  readReplicationStatus,
  replicate,
  replicateEvery,
  type ReplicationRoundResult,
  reservedArea,
  streamOf,
} from "@bendsave/replicate"
import { quickstart } from "./Quickstart.ts"
import { describeError, formatBytes, makeProgressBar, table } from "./Render.ts"
import { normalizeArgs } from "./Argv.ts"
import { type FileError, type OutputClosed, openOutput, readInput, writeStdout } from "./Files.ts"
import { sqlVerb } from "./Sql.ts"

// The etcd meta driver: a chunk of the bundle of its own, loaded only when a cluster file names etcd.
registerEtcdMetaDriver(() => import("@bendsave/meta-etcd").then((m) => m.etcdMetaDriver))
// The cloud storage drivers: chunks of their own too (their SDKs stay in node_modules), loaded only when
// a cluster file or repository URL names S3, GCS or Azure.
registerStorageDriverLoader("s3", () => import("@bendsave/drivers-s3"))
registerStorageDriverLoader("gcs", () => import("@bendsave/drivers-gcs"))
registerStorageDriverLoader("azblob", () => import("@bendsave/drivers-azure"))

const rateFlag = (name: string, what: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(`Limit the bytes ${what} per second, over all stores (e.g. 10MiB, 500k, 2MB)`),
    Flag.filterMap(
      (text) => Option.fromUndefinedOr(parseByteRate(text)),
      (text) => `'${text}' is not a rate: write bytes per second, e.g. 10MiB, 500k or 1048576`,
    ),
    Flag.optional,
  )

/** Global flags: plugin storage drivers for repository URL schemes, and bandwidth limits. */
const driverSetting = GlobalFlag.Setting("driver")({
  flag: Flag.String("driver").pipe(
    Flag.withDescription("Load a storage driver plugin (module path or package) for its URL schemes; repeatable (also BENDSAVE_DRIVERS)"),
    Flag.atLeast(0),
  ),
})
const limitUploadSetting = GlobalFlag.Setting("limit-upload")({ flag: rateFlag("limit-upload", "written to storage (uploads)") })
const limitDownloadSetting = GlobalFlag.Setting("limit-download")({ flag: rateFlag("limit-download", "read from storage (downloads)") })
const requestTimeoutSetting = GlobalFlag.Setting("request-timeout")({
  flag: Flag.String("request-timeout").pipe(
    Flag.withDescription(
      `Abandon (and retry) a single storage request with no answer within this long (default ${formatDurationShort(DEFAULT_REQUEST_TIMEOUT_MS)}; e.g. 30s, 5m; 0 = no deadline)`,
    ),
    Flag.optional,
  ),
})
/** The least --request-timeout other than 0 (a shorter deadline fails healthy requests). */
const MIN_REQUEST_TIMEOUT_MS = 100

/** A duration flag's value (undefined when not given), or the DurationError that names the flag and a value that works. */
const durationValue = (flag: string, value: Option.Option<string>, rule: DurationRule) =>
  Effect.suspend(() => {
    if (Option.isNone(value)) return Effect.succeed(undefined)
    const ms = readDuration(`--${flag}`, value.value, rule)
    return typeof ms === "number" ? Effect.succeed(ms) : Effect.fail(ms)
  })

/** Loads the --driver plugins and applies --limit-upload / --limit-download / --request-timeout to every store the verb opens. */
const withStorageSettings = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const timeout = yield* durationValue("request-timeout", yield* requestTimeoutSetting, {
      example: "30s",
      min: MIN_REQUEST_TIMEOUT_MS,
      zero: "no deadline",
    })
    for (const specifier of yield* driverSetting) yield* loadStorageDriver(specifier, process.cwd())
    const upload = yield* limitUploadSetting
    const download = yield* limitDownloadSetting
    if (Option.isNone(upload) && Option.isNone(download) && timeout === undefined) return yield* effect
    const limits = yield* StorageLimits
    return yield* Effect.provideService(effect, StorageLimits, {
      ...limits,
      upload: Option.isSome(upload) ? makeRateLimiter(upload.value) : undefined,
      download: Option.isSome(download) ? makeRateLimiter(download.value) : undefined,
      ...(timeout !== undefined ? { requestTimeoutMs: timeout === 0 ? undefined : timeout } : {}),
    })
  })

/** Raised after an error was printed, so the process exits non-zero. */
class Reported extends Schema.TaggedError<Reported>()("Reported", {}) {}

const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDescription("Print one machine-readable JSON result on stdout (no progress bar)"),
  Flag.withDefault(false),
)

/**
 * Runs a verb: on success prints `text(result)` or the JSON result; on
 * failure prints the error with its fix (as JSON with --json) and exits 1.
 * Resources the verb opened (meta service connections) close before printing.
 */
const runVerb = <A, E>(json: boolean, effect: Effect.Effect<A, E, Scope.Scope>, text: (a: A) => string, ok: (a: A) => boolean = () => true) =>
  Effect.scoped(withStorageSettings(effect)).pipe(
    Effect.matchCauseEffect({
      onSuccess: (result) =>
        Effect.gen(function* () {
          const out = json ? JSON.stringify(result) : text(result)
          if (out !== "") yield* Console.log(out)
          if (!ok(result)) return yield* new Reported()
        }),
      onFailure: (cause) => reportFailure(json, cause),
    }),
  )

/** Prints a verb's failure with its fix (as JSON with --json) and fails with Reported (exit 1). */
const reportFailure = (json: boolean, cause: Cause.Cause<unknown>) =>
        Effect.gen(function* () {
          const failure = cause.reasons.find((r) => r._tag === "Fail")
          const error = failure?._tag === "Fail" ? failure.error : cause.reasons.find((r) => r._tag === "Die")
          const described =
            failure?._tag === "Fail"
              ? describeError(error)
              : { tag: "InternalError", message: `bendsave hit an internal error: ${String((error as { defect?: unknown })?.defect ?? cause)}`, fix: "please report this with the command you ran" }
          if (json) {
            yield* Console.log(JSON.stringify({ error: described }))
          } else {
            yield* Console.error(`bendsave: error: ${described.message}`)
            if (described.fix !== undefined) yield* Console.error(`  fix: ${described.fix}`)
          }
          return yield* new Reported()
        })

const loadCluster = (file: string, create: boolean) =>
  Effect.flatMap(loadClusterConfig(file), (config) => Effect.map(openCluster(config, { create }), (cluster) => ({ config, cluster })))

// backup -----------------------------------------------------------------------------------------

const backupCommand = Command.make(
  "backup",
  {
    from: Flag.String("from").pipe(Flag.withDescription("Cluster file (TOML) of the cluster to back up")),
    to: Flag.String("to").pipe(Flag.withDescription("Repository: a path or URL (created on first use)")),
    checkpointInterval: Flag.String("checkpoint-interval").pipe(
      Flag.withDescription("Save resumable progress into the repository at least this often (default 5s; at least 10ms; e.g. 500ms, 30s, 2m)"),
      Flag.optional,
    ),
    json: jsonFlag,
  },
  ({ from, to, checkpointInterval, json }) => {
    const bar = makeProgressBar(!json)
    const say = (text: string) => {
      bar.clear()
      process.stderr.write(`${text}\n`)
    }
    return runVerb(
      json,
      Effect.gen(function* () {
        const checkpointMs = yield* durationValue("checkpoint-interval", checkpointInterval, { example: "5s", min: 10 })
        const { cluster } = yield* loadCluster(from, false)
        const repo = yield* openRepositoryAt(to, { create: true })
        return yield* backup(cluster, repo, {
          onProgress: bar.active ? (p) => bar.draw({ label: p.phase === "files" ? "backup" : p.phase, ...p }) : undefined,
          ...(checkpointMs !== undefined ? { checkpointIntervalMs: checkpointMs } : {}),
          onResume: (r) =>
            say(
              `resuming backup ${r.backup_id} of cluster ${r.cluster} (started ${r.started_at}, last checkpoint ${r.checkpointed_at}): ` +
                `${r.files_done} files (${formatBytes(r.bytes_done)}) already done${r.files_partial > 0 ? `, ${r.files_partial} partly read` : ""}, meta snapshot at revision ${r.meta_revision}`,
            ),
          onNotice: (text) => say(`note: ${text}`),
          onVacuumWait: (v) =>
            say(`waiting for a vacuum that is deleting blocks (${v.operation}, pid ${v.holder.pid} on ${v.holder.host})...`),
        })
      }).pipe(Effect.ensuring(Effect.sync(bar.clear))),
      (r) =>
        [
          `backup ${r.backup_id} committed (${r.backup_type}${r.parent_backup_id ? `, parent ${r.parent_backup_id}` : ""}${r.resumed ? ", resumed" : ""})`,
          `  manifest: ${r.manifest}`,
          `  files:    ${r.files_total} (${r.files_reused} reused unchanged, ${r.resumed ? `${r.files_resumed} done before the interruption, ` : ""}${r.files_read} read), ${formatBytes(r.bytes_total)}`,
          `  read:     ${formatBytes(r.bytes_read)}`,
          `  uploaded: ${r.blocks_uploaded} blocks, ${formatBytes(r.bytes_uploaded)} (${r.blocks_deduplicated} blocks already stored)`,
          `  meta:     ${r.meta_keys} keys at revision ${r.meta_revision}`,
          ...(r.temp_files_removed > 0 ? [`  cleaned:  ${r.temp_files_removed} temp files that interrupted runs had left in the repository`] : []),
          `  took:     ${(r.duration_ms / 1000).toFixed(1)}s`,
        ].join("\n"),
    )
  },
).pipe(
  Command.withDescription(
    "Back up a cluster (meta snapshot + storage) into a repository; incremental after the first; an interrupted backup is resumed by running the same command again",
  ),
  Command.withExamples([{ command: "bendsave backup --from cluster.toml --to ./backups", description: "Back up into a local repository" }]),
)

// abandon ----------------------------------------------------------------------------------------

const abandonCommand = Command.make(
  "abandon",
  {
    repository: Argument.String("repository").pipe(Argument.withDescription("Repository path or URL")),
    backupId: Argument.String("backup-id").pipe(Argument.withDescription("Id of the incomplete backup (see `bendsave list`)")),
    json: jsonFlag,
  },
  ({ repository, backupId, json }) =>
    runVerb(
      json,
      Effect.gen(function* () {
        const repo = yield* openRepositoryAt(repository)
        return yield* abandonBackup(repo, backupId)
      }),
      (r) =>
        `abandoned incomplete backup ${r.backup_id}${r.cluster ? ` of cluster ${r.cluster}` : ""} (${r.files_done} files were done); ` +
        "the next backup starts afresh, and `bendsave vacuum` removes the blocks only it referenced",
    ),
).pipe(
  Command.withDescription("Abandon an incomplete (interrupted) backup so that the next backup does not resume it"),
  Command.withExamples([{ command: "bendsave abandon ./backups 20250114_201500", description: "Drop an interrupted backup's checkpoint" }]),
)

// list -------------------------------------------------------------------------------------------

const listCommand = Command.make(
  "list",
  {
    repository: Argument.String("repository").pipe(Argument.withDescription("Repository path or URL")),
    json: jsonFlag,
  },
  ({ repository, json }) =>
    runVerb(
      json,
      Effect.gen(function* () {
        const repo = yield* openRepositoryAt(repository)
        return { repository: repo.location, backups: yield* listBackups(repo), incomplete: yield* listIncompleteBackups(repo) }
      }),
      (r) => {
        if (r.backups.length === 0 && r.incomplete.length === 0) return `no backups in ${r.repository}`
        const rows = [
          ...r.backups.map((b) => ({
            id: b.backup_id,
            cells:
              b.damaged !== undefined
                ? [b.backup_id, "DAMAGED (see below)"]
                : [
                    b.backup_id,
                    b.state,
                    b.backup_type,
                    b.cluster,
                    b.started_at.replace("T", " ").replace(/\.\d+Z$/, ""),
                    String(b.files),
                    formatBytes(b.bytes),
                    formatBytes(b.bytes_uploaded),
                    String(b.meta_keys),
                    String(b.meta_revision),
                  ],
          })),
          ...r.incomplete.map((b) => ({
            id: b.backup_id,
            cells:
              b.damaged !== undefined
                ? [b.backup_id, "INCOMPLETE, DAMAGED (see below)"]
                : [
                    b.backup_id,
                    b.running ? `RUNNING (${b.running_by})` : "INCOMPLETE",
                    b.backup_type,
                    b.cluster,
                    b.started_at.replace("T", " ").replace(/\.\d+Z$/, ""),
                    `${b.files} so far`,
                    formatBytes(b.bytes),
                    formatBytes(b.bytes_uploaded),
                    String(b.meta_keys),
                    String(b.meta_revision),
                  ],
          })),
        ].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        const text = table(
          ["BACKUP", "STATE", "TYPE", "CLUSTER", "STARTED (UTC)", "FILES", "SIZE", "UPLOADED", "META KEYS", "REVISION"],
          rows.map((row) => row.cells),
        )
        // A damaged entry's problem is long: it goes under the table, which stays aligned.
        const damaged = [...r.backups, ...r.incomplete].filter((b) => b.damaged !== undefined).map((b) => `${b.backup_id} DAMAGED: ${b.damaged}`)
        const notes = damaged.length === 0 ? text : `${text}\n\n${damaged.join("\n")}`
        const resumable = r.incomplete.filter((b) => !b.running)
        return resumable.length === 0
          ? notes
          : `${notes}\n\nincomplete backups resume when the same backup command runs again; \`bendsave abandon ${r.repository} <backup-id>\` drops one`
      },
    ),
).pipe(Command.withDescription("List the backups in a repository (committed, and incomplete ones that can be resumed or abandoned)"))

// restore ----------------------------------------------------------------------------------------

const restoreCommand = Command.make(
  "restore",
  {
    from: Flag.String("from").pipe(
      Flag.withDescription("Manifest path/URL (<repo>/manifests/<id>.manifest), or a repository (then the newest backup, or --backup/--at)"),
    ),
    to: Flag.String("to").pipe(Flag.withDescription("Cluster file (TOML) of the target cluster; may be a new, empty cluster")),
    backup: Flag.String("backup").pipe(Flag.withDescription("Backup id (YYYYMMDD_HHMMSS) when --from is a repository"), Flag.optional),
    at: Flag.String("at").pipe(Flag.withDescription("Restore the newest backup at or before this time (ISO 8601) when --from is a repository"), Flag.optional),
    confirm: Flag.Boolean("confirm").pipe(Flag.withDescription("Apply the plan; without it restore is a dry run that changes nothing"), Flag.withDefault(false)),
    json: jsonFlag,
  },
  ({ from, to, backup: backupFlag, at, confirm, json }) => {
    const bar = makeProgressBar(!json)
    return runVerb(
      json,
      Effect.gen(function* () {
        const ref = parseBackupReference(from)
        // `--backup 20250114_201500.manifest` (the file's name) means the backup 20250114_201500.
        const backupGiven = Option.getOrUndefined(Option.map(backupFlag, (id) => id.replace(/\.manifest$/, "")))
        if (ref.backupId !== undefined && (backupGiven !== undefined || Option.isSome(at))) {
          return yield* new LocationError({
            input: from,
            detail: `--from names one backup's manifest (${ref.backupId}), so ${backupGiven !== undefined ? "--backup" : "--at"} cannot choose another`,
            fix: `give --from the repository (${ref.repository}) with --backup or --at, or the manifest alone`,
          })
        }
        if (backupGiven !== undefined && Option.isSome(at)) {
          return yield* new LocationError({
            input: `--backup ${backupGiven} --at ${at.value}`,
            detail: "--backup and --at both choose the backup",
            fix: "give one of them",
          })
        }
        const repo = yield* openRepositoryAt(ref.repository)
        let backupId = ref.backupId ?? backupGiven
        if (backupId === undefined && Option.isSome(at)) {
          const time = Date.parse(at.value)
          if (Number.isNaN(time)) {
            return yield* new LocationError({ input: at.value, detail: "--at is not a valid time", fix: "use ISO 8601, e.g. 2025-01-14T20:15:00Z" })
          }
          backupId = yield* findBackupAt(repo, time)
          if (backupId === undefined) {
            return yield* new LocationError({ input: at.value, detail: "there is no backup at or before this time", fix: `run \`bendsave list ${ref.repository}\`` })
          }
        }
        if (backupId === undefined) {
          const ids = yield* listBackupIds(repo)
          backupId = ids[ids.length - 1]
          if (backupId === undefined) {
            return yield* new LocationError({ input: from, detail: "the repository has no backups", fix: "run `bendsave backup` first" })
          }
        }
        const manifest = yield* readManifest(repo, backupId)
        const config = yield* loadClusterConfig(to)
        // Check the backup before the target's directories are created.
        const checked = yield* checkBackup(repo, manifest)
        const target = yield* openRestoreTarget(config, { create: confirm })
        return yield* restore(repo, manifest, target, {
          checked,
          confirm,
          onProgress: bar.active ? (p) => bar.draw({ label: confirm ? "restore" : "plan", ...p }) : undefined,
        })
      }).pipe(Effect.scoped, Effect.ensuring(Effect.sync(bar.clear))),
      (r) => {
        const lines = [
          r.dry_run
            ? `DRY RUN: restore plan for backup ${r.backup_id} (nothing was changed; add --confirm to apply)`
            : `restored backup ${r.backup_id}`,
          `  files in backup:   ${r.files_total} (${formatBytes(r.bytes_total)})`,
          `  files to write:    ${r.files_to_write} (${formatBytes(r.bytes_to_write)})${r.sample_write.length > 0 ? `  e.g. ${r.sample_write.join(", ")}` : ""}`,
          `  already identical: ${r.files_identical} (skipped${r.dry_run ? "" : ", e.g. written by an interrupted run"})`,
          `  files to delete:   ${r.files_to_delete}${r.sample_delete.length > 0 ? `  e.g. ${r.sample_delete.join(", ")}` : ""} (in the target but not in the backup)`,
          `  meta keys:         ${r.meta.added} to add, ${r.meta.changed} to change, ${r.meta.removed} to remove, ${r.meta.unchanged} unchanged`,
        ]
        for (const kind of ["added", "changed", "removed"] as const) {
          if (r.meta.sample[kind].length > 0) lines.push(`    ${kind}: ${r.meta.sample[kind].join(", ")}`)
        }
        if (!r.dry_run) lines.push(`  written: ${r.files_written} files (${formatBytes(r.bytes_written)}), deleted: ${r.files_deleted}, took ${(r.duration_ms / 1000).toFixed(1)}s`)
        return lines.join("\n")
      },
    )
  },
).pipe(
  Command.withDescription("Restore a backup into a cluster (dry run unless --confirm)"),
  Command.withExamples([
    { command: "bendsave restore --from ./backups/manifests/20250114_201500.manifest --to new.toml", description: "Print the plan" },
    { command: "bendsave restore --from ./backups/manifests/20250114_201500.manifest --to new.toml --confirm", description: "Restore" },
  ]),
)

// verify -----------------------------------------------------------------------------------------

const verifyCommand = Command.make(
  "verify",
  {
    target: Argument.String("repository-or-manifest").pipe(Argument.withDescription("Repository (all backups) or one manifest path/URL")),
    readData: Flag.Int("read-data").pipe(
      Flag.withOptionalValue("100"),
      Flag.withDescription("Also download and re-hash PERCENT of the blocks (bare --read-data = 100)"),
      Flag.optional,
    ),
    json: jsonFlag,
  },
  ({ target, readData, json }) => {
    const bar = makeProgressBar(!json)
    return runVerb(
      json,
      Effect.gen(function* () {
        const percent = Option.getOrElse(readData, () => 0)
        if (percent < 0 || percent > 100) {
          return yield* new LocationError({ input: String(percent), detail: "--read-data must be a percentage from 0 to 100", fix: "use --read-data (all blocks) or --read-data=10" })
        }
        const ref = parseBackupReference(target)
        const repo = yield* openRepositoryAt(ref.repository)
        if (ref.backupId !== undefined) yield* readManifest(repo, ref.backupId)
        return yield* verify(repo, {
          backupIds: ref.backupId === undefined ? undefined : [ref.backupId],
          readDataPercent: percent,
          onProgress: bar.active ? (p) => bar.draw({ label: `verify ${p.phase}`, filesDone: p.done, bytesDone: 0, filesTotal: p.total }) : undefined,
        })
      }).pipe(Effect.ensuring(Effect.sync(bar.clear))),
      (r) =>
        [
          r.ok ? "verify: OK" : `verify: ${r.problems.length} PROBLEM(S) FOUND`,
          `  backups: ${r.backups_checked}, files: ${r.files_checked}, blocks checked: ${r.blocks_checked}, blocks re-hashed: ${r.blocks_read} (${formatBytes(r.bytes_read)})`,
          ...r.problems.map((p) => `  - backup ${p.backup_id}${p.path ? ` file ${p.path}` : ""}${p.block_id ? ` block ${p.block_id}` : ""}: ${p.problem}`),
        ].join("\n"),
      (r) => r.ok,
    )
  },
).pipe(Command.withDescription("Check that backups are complete (and with --read-data, that their bytes are intact)"))

// vacuum -----------------------------------------------------------------------------------------

const policyFlag = (name: string, description: string) => Flag.String(name).pipe(Flag.withDescription(description), Flag.optional)

/** A policy number: a whole number, 0 or more (negative, fractional or non-numbers are refused with the flag named). */
const policyNumber = (flag: string, value: Option.Option<string>) =>
  Effect.gen(function* () {
    if (Option.isNone(value)) return undefined
    const text = value.value.trim()
    if (!/^\d+$/.test(text)) {
      return yield* new VacuumError({
        reason: "InvalidPolicy",
        detail: `--${flag} must be a whole number, 0 or more (got '${value.value}')`,
        fix: `pass --${flag} N with N = 0, 1, 2, ...`,
      })
    }
    return Number(text)
  })

const decisionRow = (action: string, d: VacuumResult["kept"][number]) => [
  action,
  d.backup_id,
  d.cluster,
  d.time.replace("T", " ").replace(/\.\d+Z$/, ""),
  `${d.age_days}d`,
  [...d.reasons, ...(d.expired_by ?? []).map((r) => `(expired by ${r})`)].join("; "),
]

const renderVacuum = (r: VacuumResult): string => {
  const s = r.sweep
  const lines = [
    r.dry_run
      ? `DRY RUN: vacuum plan for ${r.repository} (nothing was changed; run without --dry-run to apply it)`
      : `vacuumed ${r.repository}`,
    `backups: ${r.backups_total} (${r.kept.length} kept, ${r.deleted.length} ${r.dry_run ? "to delete" : "deleted"}${r.damaged.length > 0 ? `, ${r.damaged.length} DAMAGED` : ""})`,
  ]
  const rows = [...r.deleted.map((d) => decisionRow(r.dry_run ? "DELETE" : "DELETED", d)), ...r.kept.map((d) => decisionRow("keep", d))]
  if (rows.length > 0) lines.push(table(["ACTION", "BACKUP", "CLUSTER", "STARTED (UTC)", "AGE", "WHY"], rows).replace(/^/gm, "  "))
  for (const d of r.damaged) lines.push(`  DAMAGED ${d.backup_id}: ${d.problem} (never deleted by vacuum)`)
  lines.push(
    `blocks: ${s.blocks_total} in the repository (${formatBytes(s.bytes_total)}), ${s.blocks_referenced} referenced, ${s.blocks_unreferenced} unreferenced`,
  )
  if (s.status === "planned" || s.status === "done" || s.status === "stopped") {
    lines.push(
      r.dry_run
        ? `  to delete: ${s.blocks_to_delete} blocks, ${formatBytes(s.bytes_to_reclaim)} to reclaim`
        : `  deleted:   ${s.blocks_deleted} blocks, ${formatBytes(s.bytes_reclaimed)} reclaimed`,
    )
  }
  if (s.reason !== undefined) lines.push(`  ${s.status === "planned" ? "note" : s.status.toUpperCase()}: ${s.reason}`)
  for (const d of s.deferred) lines.push(`  kept for now: ${d.blocks} blocks (${formatBytes(d.bytes)}): ${d.reason}`)
  if (r.temp_files_removed > 0) lines.push(`  removed ${r.temp_files_removed} temp files that interrupted runs had left in the repository`)
  lines.push(
    `  read: ${s.manifests_read} manifests, ${s.checkpoints_read} checkpoints, ${s.pages_read} file pages (no file data); grace ${formatDurationShort(r.grace_ms)}; took ${(r.duration_ms / 1000).toFixed(1)}s`,
  )
  return lines.join("\n")
}

const vacuumCommand = Command.make(
  "vacuum",
  {
    repository: Argument.String("repository").pipe(Argument.withDescription("Repository path or URL")),
    retentionDays: policyFlag("retention-days", "Delete backups older than N days"),
    minRetentionDays: policyFlag("min-retention-days", "Never delete a backup younger than N days"),
    maxBackups: policyFlag("max-backups", "Delete backups beyond the newest N (per cluster)"),
    minBackups: policyFlag("min-backups", "Always keep the newest N backups (per cluster)"),
    keepDaily: policyFlag("keep-daily", "Keep the newest backup of each of the last N days that have one (UTC)"),
    keepWeekly: policyFlag("keep-weekly", "Keep the newest backup of each of the last N ISO weeks that have one"),
    keepMonthly: policyFlag("keep-monthly", "Keep the newest backup of each of the last N months that have one"),
    grace: Flag.String("grace").pipe(
      Flag.withDescription("Never delete blocks younger than this (default 1h; 0 when nothing else writes to the repository)"),
      Flag.optional,
    ),
    dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Print the plan (backups and blocks to delete) and change nothing"), Flag.withDefault(false)),
    wait: Flag.String("wait").pipe(Flag.withDescription("Wait up to this long for another vacuum to finish (e.g. 10m; default: fail at once)"), Flag.optional),
    json: jsonFlag,
  },
  (flags) => {
    const bar = makeProgressBar(!flags.json)
    return runVerb(
      flags.json,
      Effect.gen(function* () {
        const policy: RetentionPolicy = {
          retentionDays: yield* policyNumber("retention-days", flags.retentionDays),
          minRetentionDays: yield* policyNumber("min-retention-days", flags.minRetentionDays),
          maxBackups: yield* policyNumber("max-backups", flags.maxBackups),
          minBackups: yield* policyNumber("min-backups", flags.minBackups),
          keepDaily: yield* policyNumber("keep-daily", flags.keepDaily),
          keepWeekly: yield* policyNumber("keep-weekly", flags.keepWeekly),
          keepMonthly: yield* policyNumber("keep-monthly", flags.keepMonthly),
        }
        const problem = validatePolicy(policy)
        if (problem !== undefined) return yield* problem
        const graceMs = yield* durationValue("grace", flags.grace, { example: "1h", zero: "no grace period" })
        const waitMs = yield* durationValue("wait", flags.wait, { example: "10m", zero: "failing at once" })
        const repo = yield* openRepositoryAt(flags.repository)
        return yield* vacuum(repo, Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)), {
          dryRun: flags.dryRun,
          ...(graceMs !== undefined ? { graceMs } : {}),
          ...(waitMs !== undefined ? { waitMs } : {}),
          onProgress: bar.active ? (p) => bar.draw({ label: `vacuum ${p.phase}`, filesDone: p.done, bytesDone: 0, filesTotal: p.total }) : undefined,
        })
      }).pipe(Effect.ensuring(Effect.sync(bar.clear))),
      renderVacuum,
    )
  },
).pipe(
  Command.withDescription("Delete backups by retention policy and the blocks no backup needs any more (--dry-run prints the plan)"),
  Command.withExamples([
    { command: "bendsave vacuum ./backups --retention-days 30 --min-backups 3 --dry-run", description: "Show what a 30-day policy deletes" },
    { command: "bendsave vacuum ./backups --max-backups 10 --keep-monthly 12", description: "Keep the newest 10 and one a month for a year" },
  ]),
)

// tag --------------------------------------------------------------------------------------------

const tagCommand = Command.make(
  "tag",
  {
    repository: Argument.String("repository").pipe(Argument.withDescription("Repository path or URL")),
    backupId: Argument.String("backup-id").pipe(Argument.withDescription("Backup id (YYYYMMDD_HHMMSS), as `bendsave list` shows it")),
    keep: Flag.Boolean("keep").pipe(Flag.withDescription("Protect the backup from vacuum (a user pin)"), Flag.withDefault(false)),
    unkeep: Flag.Boolean("unkeep").pipe(Flag.withDescription("Remove the user pins of the backup (clone pins stay)"), Flag.withDefault(false)),
    json: jsonFlag,
  },
  ({ repository, backupId, keep, unkeep, json }) =>
    runVerb(
      json,
      Effect.gen(function* () {
        if (keep && unkeep) {
          return yield* new LocationError({ input: "--keep --unkeep", detail: "--keep and --unkeep contradict each other", fix: "pass one of them" })
        }
        const repo = yield* openRepositoryAt(repository)
        if (keep) {
          const existing = (yield* listPins(repo, backupId)).filter((p) => p.reason === USER_PIN_REASON)
          if (existing.length === 0) yield* pinBackup(repo, backupId, USER_PIN_REASON)
        } else if (unkeep) {
          // Pins of a backup that is gone can still be removed; otherwise the backup must exist.
          if ((yield* listPins(repo, backupId)).length === 0) yield* readManifest(repo, backupId)
          yield* unpinBackup(repo, backupId, USER_PIN_REASON)
        } else {
          yield* readManifest(repo, backupId)
        }
        const pins = yield* listPins(repo, backupId)
        return {
          backup_id: backupId,
          kept: pins.some((p) => p.reason === USER_PIN_REASON),
          pins: pins.map((p) => ({ key: p.key, reason: p.reason, created_at: p.created_at })),
        }
      }),
      (r) =>
        [
          `backup ${r.backup_id}: ${r.kept ? "kept (vacuum never deletes it)" : "not kept by a user pin"}`,
          ...r.pins.map((p) => `  pin ${p.key}: ${p.reason}, since ${p.created_at}`),
        ].join("\n"),
    ),
).pipe(Command.withDescription("Protect a backup from vacuum (--keep) or remove that protection (--unkeep); without either, show its pins"))

// meta export / import ---------------------------------------------------------------------------

const clusterFlag = Flag.String("cluster").pipe(Flag.withDescription("Cluster file (TOML)"))

const metaExport = Command.make(
  "export",
  {
    cluster: clusterFlag,
    output: Flag.String("output").pipe(Flag.withDescription("Write to this file instead of stdout"), Flag.optional),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription('Print one JSON object {"revision","key_count","entries":[...]} instead of JSON lines'),
      Flag.withDefault(false),
    ),
  },
  ({ cluster, output, json }) =>
    runVerb(
      false,
      Effect.gen(function* () {
        const { cluster: c } = yield* loadCluster(cluster, false)
        // A file is written atomically (temp, fsync, rename): a failed export leaves no half-written file.
        const file = Option.isSome(output) ? yield* openOutput(output.value, "--output") : undefined
        const write: (text: string) => Effect.Effect<void, FileError | OutputClosed> = file?.write ?? writeStdout
        const snapshot = yield* c.meta.snapshot()
        let count = 0
        if (json) yield* write(`{"revision":${snapshot.revision},"entries":[`)
        yield* snapshot.entries.pipe(
          Stream.runForEach((e) => {
            const text = json ? `${count === 0 ? "" : ","}${formatMetaLine(e)}` : `${formatMetaLine(e)}\n`
            count++
            return write(text)
          }),
        )
        if (json) yield* write(`],"key_count":${count}}\n`)
        if (file !== undefined && Option.isSome(output)) {
          yield* file.commit
          return { key_count: count, revision: snapshot.revision, output: output.value }
        }
        return { key_count: count, revision: snapshot.revision, output: null }
      }).pipe(
        // The reader of stdout went away (`| head`): the export ends there, as `cat` would.
        Effect.catchTag("OutputClosed", () => Effect.succeed({ key_count: 0, revision: 0, output: null })),
      ),
      (r) => (r.output === null ? "" : `exported ${r.key_count} keys at revision ${r.revision} to ${r.output}`),
    ).pipe(Effect.asVoid),
).pipe(
  Command.withDescription(
    "Print the cluster's meta keys as JSON lines ({\"key\",\"value\"}; value_b64 for binary), streamed in key order",
  ),
)

const metaImport = Command.make(
  "import",
  {
    cluster: clusterFlag,
    input: Flag.String("input").pipe(Flag.withDescription("Read from this file instead of stdin"), Flag.optional),
    replace: Flag.Boolean("replace").pipe(
      Flag.withDescription("Make the keyspace exactly the imported keys (removes others); default adds/overwrites only"),
      Flag.withDefault(false),
    ),
    json: jsonFlag,
  },
  ({ cluster, input, replace, json }) =>
    runVerb(
      json,
      Effect.gen(function* () {
        const source = Option.getOrElse(input, () => "<stdin>")
        const text = yield* readInput(Option.getOrUndefined(input), "--input")
        const parsed = parseMetaLines(text, source)
        if (parsed instanceof MetaLinesError) return yield* parsed
        const { cluster: c } = yield* loadCluster(cluster, true)
        const incoming = new Map<string, MetaEntry>()
        for (const e of parsed) incoming.set(Buffer.from(e.key).toString("hex"), e)
        let entries = [...incoming.values()]
        if (!replace) {
          const snapshot = yield* c.meta.snapshot()
          yield* snapshot.entries.pipe(
            Stream.runForEach((e) =>
              Effect.sync(() => {
                const k = Buffer.from(e.key).toString("hex")
                if (!incoming.has(k)) entries.push(e)
              }),
            ),
          )
        }
        entries = entries.sort((a, b) => compareBytes(a.key, b.key))
        const diff = yield* c.meta.replace(Stream.fromIterable(entries))
        return { imported: parsed.length, ...diff }
      }),
      (r) => `imported ${r.imported} keys: ${r.added} added, ${r.changed} changed, ${r.removed} removed, ${r.unchanged} unchanged`,
    ),
).pipe(Command.withDescription("Load meta keys from JSON lines (the format of `meta export`)"))

const metaCommand = Command.make("meta").pipe(
  Command.withDescription("Inspect and seed a cluster's meta keyspace"),
  Command.withSubcommands([metaExport, metaImport]),
)

// replicate --------------------------------------------------------------------------------------

/** Set when a continuous replication was stopped by a signal after checkpointing: the process exits 0. */
let stoppedCleanly = false

const replicateRoundText = (r: ReplicationRoundResult): string => {
  const hashes =
    r.source_manifest_hash === null
      ? []
      : [
          `  hashes:  source ${r.source_manifest_hash.slice(0, 16)}…, target ${(r.target_manifest_hash ?? "").slice(0, 16)}…${r.source_manifest_hash === r.target_manifest_hash ? " (identical)" : r.delete_mode === "keep" ? " (differ: --delete keep kept files or keys the source no longer has)" : " (DIFFER)"}`,
        ]
  if (r.dry_run) {
    return [
      `DRY RUN: replication plan of the ${r.scope} of ${r.source.name} to ${r.target.name} (nothing was changed)`,
      `  source:          revision ${r.source_revision}, ${r.files_total} files (${formatBytes(r.bytes_total)}) in scope`,
      `  files to copy:   ${r.files_to_copy} (${formatBytes(r.bytes_to_copy)})${r.sample_copy.length > 0 ? `  e.g. ${r.sample_copy.join(", ")}` : ""}`,
      `  files to delete: ${r.files_to_delete}${r.sample_delete.length > 0 ? `  e.g. ${r.sample_delete.join(", ")}` : ""}${r.delete_mode === "keep" ? " (kept: --delete keep)" : ""}`,
      `  meta keys:       ${r.keys_added} to add, ${r.keys_changed} to change, ${r.keys_removed} to remove${r.delete_mode === "keep" ? " (kept)" : ""}`,
      ...r.errors.map((e) => `  STOP: ${e}`),
    ].join("\n")
  }
  return [
    `replicated the ${r.scope} of ${r.source.name} to ${r.target.name}: round ${r.round}, source revision ${r.source_revision} (${r.source_time})`,
    `  files:   ${r.files_total} in scope (${formatBytes(r.bytes_total)}); ${r.files_copied} copied (${formatBytes(r.bytes_copied)}), ${r.files_unchanged} unchanged${r.files_resumed > 0 ? ` (${r.files_resumed} copied by an interrupted attempt)` : ""}, ${r.files_deleted} deleted`,
    `  meta:    ${r.keys_total} keys in scope; ${r.keys_added} added, ${r.keys_changed} changed, ${r.keys_removed} removed`,
    ...(r.backup_id !== null ? [`  backup:  ${r.backup_id} in ${r.via}`] : []),
    ...hashes,
    ...r.errors.map((e) => `  warning: ${e}`),
    `  took:    ${(r.duration_ms / 1000).toFixed(1)}s`,
  ].join("\n")
}

const replicationStatusCommand = Command.make(
  "status",
  {
    to: Flag.String("to").pipe(Flag.withDescription("Cluster file (TOML) of the replication target")),
    database: Flag.String("database").pipe(Flag.withDescription("Only the replication of this database"), Flag.optional),
    table: Flag.String("table").pipe(Flag.withDescription("Only the replication of this table (db.table)"), Flag.optional),
    json: jsonFlag,
  },
  ({ to, database, table: tableFlag, json }) =>
    runVerb(
      json,
      Effect.gen(function* () {
        let stream: string | undefined
        if (Option.isSome(database) || Option.isSome(tableFlag)) {
          const scope = parseScope({ database: Option.getOrUndefined(database), table: Option.getOrUndefined(tableFlag) })
          if (!("kind" in scope)) return yield* scope
          stream = streamOf(scope)
        }
        const config = yield* loadClusterConfig(to)
        const storage = yield* openStorage(config)
        const target = { name: config.name, storage } as Cluster
        return yield* readReplicationStatus(reservedArea(target), { targetLocation: `${config.name} (${storage.location})`, ...(stream !== undefined ? { stream } : {}) })
      }),
      (r) => {
        if (r.streams.length === 0) return `no replication has run into ${r.target}`
        const rows = r.streams.map((s) => {
          const ok = s.last_success
          return [
            s.scope.kind === "cluster" ? "cluster" : s.stream,
            s.source.name,
            `${s.last_round.round} ${s.last_round.outcome}${s.running !== null ? " (running)" : ""}`,
            ok === null ? "-" : String(ok.source_revision),
            ok === null || ok.source_time === null ? "-" : ok.source_time.replace("T", " ").replace(/\.\d+Z$/, ""),
            s.lag ?? "-",
            ok === null ? "-" : `${ok.files_copied}/${ok.files_total}`,
            ok === null ? "-" : formatBytes(ok.bytes_copied),
            ok === null ? "-" : `+${ok.keys_added} ~${ok.keys_changed} -${ok.keys_removed}`,
            ok === null ? "-" : formatLag(ok.duration_ms),
          ]
        })
        const lines = [
          `replication into ${r.target}`,
          table(["STREAM", "SOURCE", "LAST ROUND", "REVISION", "REPLICATED (UTC)", "LAG", "COPIED/FILES", "BYTES", "KEYS", "TOOK"], rows),
        ]
        for (const s of r.streams) {
          if (s.last_round.errors.length > 0) lines.push(`${s.stream}: round ${s.last_round.round} ${s.last_round.outcome}: ${s.last_round.errors.join("; ")}`)
          if (s.last_success?.source_manifest_hash) {
            lines.push(`${s.stream}: manifest hashes of round ${s.last_success.round}: source ${s.last_success.source_manifest_hash}, target ${s.last_success.target_manifest_hash}`)
          }
          if (s.running !== null) lines.push(`${s.stream}: running now: ${s.running.operation} (${s.running.holder}, since ${s.running.since})`)
        }
        return lines.join("\n")
      },
    ),
).pipe(Command.withDescription("Show the replication status kept on a target: last round, source revision, lag, what moved, errors, manifest hashes"))

const replicateCommand = Command.make(
  "replicate",
  {
    from: Flag.String("from").pipe(Flag.withDescription("Cluster file (TOML) of the source cluster")),
    to: Flag.String("to").pipe(Flag.withDescription("Cluster file (TOML) of the target (standby) cluster; its directories are created on first use")),
    database: Flag.String("database").pipe(Flag.withDescription("Replicate only this database (its catalog keys and its tables' files)"), Flag.optional),
    table: Flag.String("table").pipe(Flag.withDescription("Replicate only this table, db.table (its key, its database key, its files)"), Flag.optional),
    every: Flag.String("every").pipe(Flag.withDescription("Run rounds on this schedule until stopped (e.g. 30s, 5m, 1h); rounds never overlap"), Flag.optional),
    rounds: Flag.Int("rounds").pipe(Flag.withDescription("With --every: stop after this many rounds"), Flag.optional),
    via: Flag.String("via").pipe(Flag.withDescription("Repository path or URL: each round is also an incremental backup there, and the target is fed from it"), Flag.optional),
    maxDelete: Flag.Int("max-delete").pipe(Flag.withDescription("Stop a round, before changing anything, that would delete more than N files or N meta keys"), Flag.optional),
    deleteMode: Flag.Literals("delete", ["mirror", "keep"]).pipe(
      Flag.withDescription("mirror (default): delete on the target what the source deleted; keep: never delete"),
      Flag.withDefault("mirror" as const),
    ),
    bandwidthLimit: Flag.String("bandwidth-limit").pipe(
      Flag.withDescription("Limit the bytes copied per second (e.g. 100MiB, 500k)"),
      Flag.filterMap(
        (text) => Option.fromUndefinedOr(parseByteRate(text.replace(/\/s$/i, ""))),
        (text) => `'${text}' is not a rate: write bytes per second, e.g. 100MiB, 500k or 1048576`,
      ),
      Flag.optional,
    ),
    parallelism: Flag.Int("parallelism").pipe(Flag.withDescription("Files copied at once (default 8)"), Flag.optional),
    wait: Flag.String("wait").pipe(Flag.withDescription("Wait up to this long (e.g. 10m) for another replicator holding the target to finish"), Flag.optional),
    dryRun: Flag.Boolean("dry-run").pipe(Flag.withDescription("Print the plan of a round (copies, deletions, meta changes); change nothing"), Flag.withDefault(false)),
    json: jsonFlag,
  },
  (flags) => {
    const bar = makeProgressBar(!flags.json && Option.isNone(flags.every))
    const fail = (input: string, detail: string, fix: string) => Effect.fail(new LocationError({ input, detail, fix }))
    const setup = Effect.gen(function* () {
      const scope = parseScope({ database: Option.getOrUndefined(flags.database), table: Option.getOrUndefined(flags.table) })
      if (!("kind" in scope)) return yield* scope
      for (const [name, value, min] of [
        ["--max-delete", flags.maxDelete, 0],
        ["--parallelism", flags.parallelism, 1],
        ["--rounds", flags.rounds, 1],
      ] as const) {
        if (Option.isSome(value) && value.value < min) return yield* fail(String(value.value), `${name} must be at least ${min}`, `give ${name} a whole number >= ${min}`)
      }
      let everyMs: number | undefined
      if (Option.isSome(flags.every)) {
        const parsed = parseInterval(flags.every.value, "--every")
        if (typeof parsed !== "number") return yield* parsed
        everyMs = parsed
        if (flags.dryRun) return yield* fail("--dry-run --every", "a dry run is one plan; it does not repeat", "drop --every (or --dry-run)")
      } else if (Option.isSome(flags.rounds)) {
        return yield* fail("--rounds", "--rounds counts the rounds of --every", "add --every <interval>, or drop --rounds")
      }
      const waitMs = (yield* durationValue("wait", flags.wait, { example: "10m", zero: "failing at once" })) ?? 0
      const sourceConfig = yield* loadClusterConfig(flags.from)
      const targetConfig = yield* loadClusterConfig(flags.to)
      const source = yield* openCluster(sourceConfig, { create: false })
      // The target may be a new, empty cluster: a real round creates its directories, a dry run looks at it as it is.
      const target = flags.dryRun ? yield* openRestoreTarget(targetConfig, { create: false }) : yield* openCluster(targetConfig, { create: true })
      const via = Option.isSome(flags.via) && !flags.dryRun ? yield* openRepositoryAt(flags.via.value, { create: true }) : undefined
      const options = {
        scope,
        ...(via !== undefined ? { via } : {}),
        ...(Option.isSome(flags.maxDelete) ? { maxDelete: flags.maxDelete.value } : {}),
        deleteMode: flags.deleteMode,
        dryRun: flags.dryRun,
        ...(Option.isSome(flags.parallelism) ? { parallelism: flags.parallelism.value } : {}),
        ...(Option.isSome(flags.bandwidthLimit) ? { bandwidthLimit: flags.bandwidthLimit.value } : {}),
        leaseWaitMs: waitMs,
        onProgress: bar.active
          ? (p: { phase: string; filesDone: number; bytesDone: number; filesTotal?: number; bytesTotal?: number }) => bar.draw({ label: p.phase, ...p })
          : undefined,
      }
      return { source, target, options, everyMs }
    })
    const interrupted = Console.error(
      "bendsave: replication stopped by a signal; the files that landed are journaled on the target, and the next run continues without copying them again",
    )
    if (Option.isNone(flags.every)) {
      return runVerb(
        flags.json,
        setup.pipe(
          Effect.flatMap(({ source, target, options }) => replicate(source, target, options)),
          Effect.onInterrupt(() => Effect.andThen(Effect.sync(bar.clear), interrupted)),
          Effect.ensuring(Effect.sync(bar.clear)),
        ),
        replicateRoundText,
      )
    }
    // Continuous: one line (or JSON line) per round; a failed round is reported and the schedule goes on.
    return runVerb(
      flags.json,
      setup.pipe(
        Effect.flatMap(({ source, target, options, everyMs }) =>
          replicateEvery(source, target, {
            ...options,
            everyMs: everyMs ?? 0,
            ...(Option.isSome(flags.rounds) ? { rounds: flags.rounds.value } : {}),
            onRound: (exit) => {
              if (exit._tag === "Success") {
                console.log(flags.json ? JSON.stringify(exit.value) : replicateRoundText(exit.value))
              } else {
                const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
                const described = describeError(failure?._tag === "Fail" ? failure.error : exit.cause)
                if (flags.json) console.log(JSON.stringify({ error: described }))
                else console.error(`bendsave: round failed: ${described.message}${described.fix !== undefined ? `\n  fix: ${described.fix}` : ""}`)
              }
            },
          }),
        ),
        Effect.onInterrupt(() =>
          Effect.andThen(
            interrupted,
            Effect.sync(() => {
              stoppedCleanly = true
            }),
          ),
        ),
      ),
      (r: ContinuousResult) => (flags.json ? "" : `replication stopped after ${r.rounds} round(s): ${r.completed} completed, ${r.failed} failed`),
      (r: ContinuousResult) => r.failed === 0,
    )
  },
).pipe(
  Command.withDescription(
    "Replicate a cluster, database or table to another cluster: incremental rounds from one source revision, data first and meta last, deletions mirrored (with a limit), resumable, with status and lag kept on the target",
  ),
  Command.withSubcommands([replicationStatusCommand]),
  Command.withExamples([
    { command: "bendsave replicate --from prod.toml --to standby.toml", description: "One round" },
    { command: "bendsave replicate --from prod.toml --to standby.toml --every 5m --max-delete 1000", description: "Every 5 minutes until stopped" },
    { command: "bendsave replicate status --to standby.toml", description: "Last round, lag, errors" },
  ]),
)

// quickstart -------------------------------------------------------------------------------------

const quickstartCommand = Command.make(
  "quickstart",
  {
    dir: Flag.String("dir").pipe(Flag.withDescription("Working directory for the sample clusters and repository"), Flag.withDefault("./bendsave-quickstart")),
    json: jsonFlag,
  },
  ({ dir, json }) => runVerb(json, quickstart(dir, { narrate: !json }), (r) => r.summary, (r) => r.identical),
).pipe(
  Command.withDescription(
    "Create a sample local cluster, back it up, change it, back up again, list, restore into a fresh cluster and check it is identical",
  ),
)

// sql --------------------------------------------------------------------------------------------

const sqlCommand = Command.make(
  "sql",
  {
    execute: Flag.String("execute").pipe(Flag.withAlias("e"), Flag.withDescription("Run these statements (separated by ;)"), Flag.optional),
    file: Flag.String("file").pipe(
      Flag.withAlias("f"),
      Flag.withDescription("Run the statements of this script file (relative paths in it resolve against its directory)"),
      Flag.optional,
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription("Print one JSON array of {statement, line, ok, result | error} at the end instead of tables"),
      Flag.withDefault(false),
    ),
    continueOnError: Flag.Boolean("continue-on-error").pipe(
      Flag.withDescription("Run the remaining statements after a failing one (the exit code is still 1)"),
      Flag.withDefault(false),
    ),
  },
  ({ execute, file, json, continueOnError }) =>
    withStorageSettings(
      sqlVerb({
        execute: Option.getOrUndefined(execute),
        file: Option.getOrUndefined(file),
        json,
        continueOnError,
      }),
    ).pipe(
      Effect.matchCauseEffect({
        onSuccess: (ok) => (ok ? Effect.void : Effect.fail(new Reported())),
        onFailure: (cause) => reportFailure(json, cause),
      }),
    ),
).pipe(
  Command.withDescription("Run SQL-like statements (ATTACH, BACKUP, RESTORE, CREATE ... CLONE, SHOW, ...) from -e, -f or stdin"),
  Command.withExamples([
    { command: "bendsave sql -e \"ATTACH CLUSTER 'prod.toml' AS prod; BACKUP CLUSTER prod TO './backups'\"", description: "Back up a cluster" },
    { command: "bendsave sql -f nightly.sql --json", description: "Run a script, one JSON result" },
  ]),
)

// ------------------------------------------------------------------------------------------------

/**
 * Usage errors (a missing flag, an unknown option) look like every other
 * error: one `bendsave: error:` line with a fix on stderr, or a JSON error
 * object with --json; the full help stays behind --help.
 */
const presenter = CliOutput.layerPresenter({
  present: (event) => {
    if (event._tag !== "InvalidInvocation") return CliOutput.defaultPresenter.present(event)
    const message = event.errors.map((e) => e.message).join("; ")
    const fix = message.includes("Missing value for flag --execute")
      ? "give the statements after -e in quotes; statements that begin with '-' (a -- comment) are written -e='-- ...', or put them in a script (-f script.sql, or -f - for stdin)"
      : `run \`${event.commandPath.join(" ")} --help\` to see the flags and arguments`
    return process.argv.includes("--json")
      ? Console.log(JSON.stringify({ error: { tag: "UsageError", message, fix } }))
      : Effect.andThen(Console.error(`bendsave: error: ${message}`), Console.error(`  fix: ${fix}`))
  },
})

const commands = [
  backupCommand,
  listCommand,
  abandonCommand,
  restoreCommand,
  verifyCommand,
  vacuumCommand,
  tagCommand,
  replicateCommand,
  metaCommand,
  quickstartCommand,
  sqlCommand,
] as const

const root = Command.make("bendsave").pipe(
  Command.withDescription("Disaster recovery for data clusters: backup, list, verify, restore, vacuum, replicate and SQL statements"),
  Command.withSubcommands(commands),
  Command.withGlobalFlags([driverSetting, limitUploadSetting, limitDownloadSetting, requestTimeoutSetting]),
)

Command.runWith(root, { version: TOOL_VERSION })(normalizeArgs(process.argv.slice(2), new Set(commands.map((c) => c.name)))).pipe(
  Effect.catchTag("Reported", () => Effect.sync(() => { process.exitCode = 1 })),
  Effect.provide(presenter),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({
    disableErrorReporting: false,
    // A continuous replication stopped by SIGTERM/SIGINT after checkpointing its round ends normally.
    teardown: (exit, onExit) => Runtime.defaultTeardown(exit, (code) => onExit(code === 130 && stoppedCleanly ? 0 : code)),
  }),
)
