/**
 * Runner: executes parsed statements, one after the other, with the
 * workflows of `@bendsave/core` (BACKUP, SHOW BACKUPS, RESTORE CLUSTER) and of
 * `@bendsave/clone` (CLONE, DROP, SHOW DATABASES / TABLES / CLONES, DESCRIBE,
 * RESTORE DATABASE / TABLE), passed in as a `CloneApi`, and of
 * `@bendsave/replicate` (REPLICATE, SHOW REPLICATION STATUS), passed in as a
 * `ReplicationApi`.
 *
 * A statement executes unless it says `DRY RUN` (then it only plans and
 * changes nothing). The run stops at the first failing statement unless
 * `continueOnError`; every statement that ran gives one `Outcome`.
 *
 * Names. `ATTACH CLUSTER 'file.toml' AS prod` names a cluster for the rest
 * of the script. A table is `cluster.db.table` or `db.table`, a database
 * `cluster.db` or `db`: the part count says which form it is, never a
 * guess. A name without its cluster uses the default cluster: the one
 * chosen by `USE <cluster>`, else the only attached cluster; with several
 * attached clusters and no USE, leaving the cluster out is an error. SHOW
 * DATABASES / TABLES / CLONES without IN / OF list every attached cluster.
 *
 * Paths. Relative cluster files (ATTACH) and relative repository paths
 * resolve against `baseDir` (the script file's directory, or the working
 * directory for `-e` and stdin); URLs are used as written.
 *
 * Clusters are opened when a statement first needs them (ATTACH only reads
 * and checks the cluster file) and closed when the run's scope closes. A
 * target that does not exist yet (RESTORE or CLONE into a new cluster) is
 * created when the statement executes, and looks empty in a DRY RUN.
 */
import { isAbsolute, resolve } from "node:path"
import {
  backup,
  type Cluster,
  type ClusterConfig,
  checkBackup,
  findBackupAt,
  findLatestBackup,
  listBackupIds,
  listBackups,
  loadClusterConfig,
  openCluster,
  openRepositoryAt,
  openRestoreTarget,
  RESERVED_STORAGE_PREFIX,
  type Repository,
  readManifest,
  restore,
} from "@bendsave/core"
import { parseScope, type ReplicationRoundResult } from "@bendsave/replicate"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Ast from "./Ast.ts"
import { type CloneApi, type CloneResult, cloneWorkflows, type TableRef, type VacuumWorkflow, vacuumWorkflow } from "./CloneApi.ts"
import { excerpt } from "./Parser.ts"
import { type ReplicationApi, replicationWorkflows } from "./ReplicationApi.ts"
import { closest } from "./Suggest.ts"

/** A statement that cannot run as written (names, clusters, backups); nothing was changed. */
export class SqlError extends Schema.TaggedError<SqlError>()("SqlError", {
  reason: Schema.Literals([
    "NoCluster",
    "AmbiguousCluster",
    "UnknownCluster",
    "AlreadyAttached",
    "NoClusterFile",
    "NoBackup",
    "BadName",
    "NotAvailable",
    "Internal",
  ]),
  detail: Schema.String,
  fix: Schema.String,
  /** Where in the script (the name or clause at fault), when known. */
  line: Schema.optional(Schema.Number),
  column: Schema.optional(Schema.Number),
  /** The source line and a caret under the name at fault. */
  excerpt: Schema.optional(Schema.String),
}) {
  override get message(): string {
    return this.detail
  }
}

/** What a statement returned: a message, rows for a text table, and the workflow's own result for JSON. */
export interface StatementResult {
  readonly message: string
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<Readonly<Record<string, unknown>>>
  /** One record (a backup, a plan, a clone's metrics), not a listing: text output may show it as column/value lines. */
  readonly record: boolean
  /** The workflow's result as is (what `--json` prints). */
  readonly value: unknown
}

export type Outcome =
  | { readonly index: number; readonly statement: Ast.Statement; readonly ok: true; readonly result: StatementResult }
  | { readonly index: number; readonly statement: Ast.Statement; readonly ok: false; readonly error: unknown }

/** How far a BACKUP or RESTORE CLUSTER is. */
export interface StatementProgress {
  readonly label: string
  readonly filesDone: number
  readonly bytesDone: number
  readonly filesTotal?: number
  readonly bytesTotal?: number
}

export interface RunOptions {
  /** The script's text (for the excerpts of errors about names). */
  readonly source: string
  /** Relative cluster files and repository paths resolve against it. */
  readonly baseDir: string
  /** The table-level workflows (default: `@bendsave/clone`). */
  readonly clone?: CloneApi
  /** The vacuum workflow (default: core's `vacuum`). */
  readonly vacuum?: VacuumWorkflow
  /** The replication round and status (default: `@bendsave/replicate`). */
  readonly replication?: ReplicationApi
  /** Run the remaining statements after a failure (the run still reports it). */
  readonly continueOnError?: boolean
  /** Called after each statement (the CLI prints results as they come). */
  readonly onOutcome?: (outcome: Outcome) => Effect.Effect<void>
  /** Progress of long statements (BACKUP, RESTORE CLUSTER, VACUUM BACKUPS, REPLICATE), for a progress bar. */
  readonly onProgress?: (progress: StatementProgress) => void
}

interface Attached {
  readonly alias: string
  readonly file: string
  readonly config: ClusterConfig
  /** Set once opened (normally, or with create). */
  opened?: Cluster
}

const URL_LIKE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//

/** The columns of rows: the preferred ones first (when present), then the others in first-seen order. */
const columnsOf = (rows: ReadonlyArray<object>, preferred: ReadonlyArray<string> = []): Array<string> => {
  const seen = new Set<string>()
  for (const row of rows) for (const key of Object.keys(row)) seen.add(key)
  const first = preferred.filter((c) => seen.has(c))
  return [...first, ...[...seen].filter((c) => !first.includes(c))]
}

/** The order of clone result columns: what, then Databricks' metrics. */
const CLONE_COLUMNS = [
  "target",
  "source",
  "mode",
  "status",
  "source_table_size",
  "source_num_of_files",
  "num_removed_files",
  "num_copied_files",
  "removed_files_size",
  "copied_files_size",
]

const asRows = (value: ReadonlyArray<object>): ReadonlyArray<Record<string, unknown>> => value as ReadonlyArray<Record<string, unknown>>

/** A listing: any number of rows. */
const rowsResult = (
  message: string,
  rows: ReadonlyArray<object>,
  value: unknown = rows,
  preferred: ReadonlyArray<string> = [],
): StatementResult => ({
  message,
  columns: columnsOf(rows, preferred),
  rows: asRows(rows),
  record: false,
  value,
})

/** One record. */
const recordResult = (message: string, row: object, value: unknown = row, preferred: ReadonlyArray<string> = []): StatementResult => ({
  ...rowsResult(message, [row], value, preferred),
  record: true,
})

/** A message only. */
const messageResult = (message: string, value: unknown): StatementResult => ({ message, columns: [], rows: [], record: false, value })

/** One row of a vacuum result: counts instead of its lists (the JSON result keeps them). */
const vacuumSummary = (r: object): object => {
  const v = r as {
    repository?: string
    dry_run?: boolean
    backups_total?: number
    kept?: ReadonlyArray<{ backup_id: string }>
    deleted?: ReadonlyArray<{ backup_id: string }>
    damaged?: ReadonlyArray<unknown>
    manifests_deleted?: number
    sweep?: { status: string; blocks_to_delete: number; bytes_to_reclaim: number; blocks_deleted: number; bytes_reclaimed: number }
  }
  if (!Array.isArray(v.kept) || !Array.isArray(v.deleted) || v.sweep === undefined) return r
  return {
    repository: v.repository,
    dry_run: v.dry_run,
    backups_total: v.backups_total,
    backups_kept: v.kept.length,
    backups_deleted: v.deleted.length,
    deleted: v.deleted.map((d) => d.backup_id).join(", "),
    damaged: v.damaged?.length ?? 0,
    manifests_deleted: v.manifests_deleted,
    sweep: v.sweep.status,
    blocks_to_delete: v.sweep.blocks_to_delete,
    bytes_to_reclaim: v.sweep.bytes_to_reclaim,
    blocks_deleted: v.sweep.blocks_deleted,
    bytes_reclaimed: v.sweep.bytes_reclaimed,
  }
}

/** One row of a REPLICATE round: what moved (or, in a DRY RUN, what would), the point it replicated, how long it took. */
const roundRow = (r: ReplicationRoundResult): object =>
  r.dry_run
    ? {
        stream: r.stream,
        status: "dry run",
        source_revision: r.source_revision,
        files_total: r.files_total,
        bytes_total: r.bytes_total,
        files_to_copy: r.files_to_copy,
        bytes_to_copy: r.bytes_to_copy,
        files_unchanged: r.files_unchanged,
        files_to_delete: r.files_to_delete,
        keys_to_add: r.keys_added,
        keys_to_change: r.keys_changed,
        keys_to_remove: r.keys_removed,
        delete_mode: r.delete_mode,
        errors: r.errors.join("; "),
      }
    : {
        stream: r.stream,
        round: r.round,
        status: r.outcome,
        source_revision: r.source_revision,
        source_time: r.source_time,
        files_total: r.files_total,
        files_copied: r.files_copied,
        bytes_copied: r.bytes_copied,
        files_unchanged: r.files_unchanged,
        files_resumed: r.files_resumed,
        files_deleted: r.files_deleted,
        keys_total: r.keys_total,
        keys_added: r.keys_added,
        keys_changed: r.keys_changed,
        keys_removed: r.keys_removed,
        ...(r.backup_id !== null ? { backup_id: r.backup_id, via: r.via } : {}),
        duration_ms: r.duration_ms,
        errors: r.errors.join("; "),
      }

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/** One script run: the attached clusters and the default cluster. */
class Session {
  readonly clusters = new Map<string, Attached>()
  current: string | undefined
  readonly options: RunOptions
  readonly clone: CloneApi
  readonly replication: ReplicationApi

  constructor(options: RunOptions) {
    this.options = options
    this.clone = options.clone ?? cloneWorkflows
    this.replication = options.replication ?? replicationWorkflows
  }

  // names ------------------------------------------------------------------------------------------

  private errorAt(span: Ast.Span, reason: SqlError["reason"], detail: string, fix: string): SqlError {
    return new SqlError({ reason, detail, fix, line: span.line, column: span.column, excerpt: excerpt(this.options.source, span) })
  }

  private attached(name: string, span: Ast.Span): Effect.Effect<Attached, SqlError> {
    const found = this.clusters.get(name)
    if (found !== undefined) return Effect.succeed(found)
    if (this.clusters.size === 0) {
      return Effect.fail(
        this.errorAt(
          span,
          "UnknownCluster",
          `no cluster named '${name}' is attached`,
          `attach it first: ATTACH CLUSTER '<${name}.toml>' AS ${name};`,
        ),
      )
    }
    const near = closest(name, this.clusters.keys())
    return Effect.fail(
      this.errorAt(
        span,
        "UnknownCluster",
        `no cluster named '${name}' is attached${near !== undefined ? `; did you mean ${near}?` : ""}`,
        `the attached clusters are ${[...this.clusters.keys()].join(", ")}; attach others with ATTACH CLUSTER '<file.toml>' AS <name>;`,
      ),
    )
  }

  /** The cluster of a name that leaves it out: USE's, else the only attached one. */
  private defaultCluster(span: Ast.Span, written: string): Effect.Effect<Attached, SqlError> {
    if (this.current !== undefined) return this.attached(this.current, span)
    if (this.clusters.size === 1) return Effect.succeed([...this.clusters.values()][0])
    if (this.clusters.size === 0) {
      return Effect.fail(
        this.errorAt(
          span,
          "NoCluster",
          `'${written}' needs a cluster, and none is attached`,
          "attach one first: ATTACH CLUSTER 'prod.toml' AS prod;",
        ),
      )
    }
    const names = [...this.clusters.keys()]
    return Effect.fail(
      this.errorAt(
        span,
        "AmbiguousCluster",
        `'${written}' does not say which cluster: ${names.join(", ")} are attached`,
        `name the cluster (${names[0]}.${written}) or choose a default with USE ${names[0]};`,
      ),
    )
  }

  private written(name: Ast.Name): string {
    return this.options.source.slice(name.span.offset, name.span.offset + name.span.length)
  }

  private clusterOf(name: Ast.Name): Effect.Effect<Attached, SqlError> {
    return this.attached(name.parts[0], name.span)
  }

  /** `[cluster.]db.table` */
  private tableOf(name: Ast.Name): Effect.Effect<{ readonly cluster: Attached; readonly table: TableRef }, SqlError> {
    const [a, b, c] = name.parts
    const cluster = name.parts.length === 3 ? this.attached(a, name.span) : this.defaultCluster(name.span, this.written(name))
    return Effect.map(cluster, (cl) => ({
      cluster: cl,
      table: name.parts.length === 3 ? { database: b, table: c } : { database: a, table: b },
    }))
  }

  /** `[cluster.]db` */
  private databaseOf(name: Ast.Name): Effect.Effect<{ readonly cluster: Attached; readonly database: string }, SqlError> {
    const cluster = name.parts.length === 2 ? this.attached(name.parts[0], name.span) : this.defaultCluster(name.span, this.written(name))
    return Effect.map(cluster, (cl) => ({ cluster: cl, database: name.parts[name.parts.length - 1] }))
  }

  // opening --------------------------------------------------------------------------------------

  /** Opens an attached cluster that must exist. */
  private open(cluster: Attached): Effect.Effect<Cluster, unknown, Scope.Scope> {
    if (cluster.opened !== undefined) return Effect.succeed(cluster.opened)
    return Effect.tap(openCluster(cluster.config), (c) => Effect.sync(() => (cluster.opened = c)))
  }

  /**
   * Opens a cluster that a statement writes to: created when missing unless
   * `dryRun` (then a cluster that does not exist yet looks empty).
   */
  private openTarget(cluster: Attached, dryRun: boolean): Effect.Effect<Cluster, unknown, Scope.Scope> {
    if (cluster.opened !== undefined) return Effect.succeed(cluster.opened)
    if (dryRun) return openRestoreTarget(cluster.config, { create: false })
    return Effect.tap(openCluster(cluster.config, { create: true }), (c) => Effect.sync(() => (cluster.opened = c)))
  }

  private location(repository: Ast.Str): string {
    const value = repository.value
    return URL_LIKE.test(value) || isAbsolute(value) || value.trim() === "" ? value : resolve(this.options.baseDir, value)
  }

  private openRepository(repository: Ast.Str, create = false): Effect.Effect<Repository, unknown, Scope.Scope> {
    return openRepositoryAt(this.location(repository), { create })
  }

  /** The backup a point names (id, newest at or before a time) or the newest backup. */
  private backupIdOf(repo: Repository, repository: Ast.Str, point: Ast.BackupPoint | undefined) {
    return Effect.gen({ self: this }, function* () {
      if (point?.kind === "backup") return point.id.value
      if (point?.kind === "timestamp") {
        const id = yield* findBackupAt(repo, point.at.getTime())
        if (id === undefined) {
          return yield* this.errorAt(
            point.time.span,
            "NoBackup",
            `there is no backup in '${repository.value}' at or before ${point.at.toISOString()}`,
            `see the backups with SHOW BACKUPS IN '${repository.value}';`,
          )
        }
        return id
      }
      const ids = yield* listBackupIds(repo)
      const last = ids[ids.length - 1]
      if (last === undefined) {
        return yield* this.errorAt(
          repository.span,
          "NoBackup",
          `the repository '${repository.value}' has no backups`,
          "back a cluster up into it first: BACKUP CLUSTER <cluster> TO '<repository>';",
        )
      }
      return last
    })
  }

  // statements -----------------------------------------------------------------------------------

  execute(statement: Ast.Statement): Effect.Effect<StatementResult, unknown, Scope.Scope> {
    switch (statement.kind) {
      case "Attach":
        return this.attach(statement)
      case "Detach":
        return this.detach(statement)
      case "Use":
        return Effect.map(this.clusterOf(statement.cluster), (c) => {
          this.current = c.alias
          return messageResult(`default cluster: ${c.alias}`, { cluster: c.alias })
        })
      case "Backup":
        return this.backup(statement)
      case "ShowBackups":
        return this.showBackups(statement)
      case "Restore":
        return this.restore(statement)
      case "VacuumBackups":
        return this.vacuum(statement)
      case "Replicate":
        return this.replicate(statement)
      case "ShowReplicationStatus":
        return this.showReplicationStatus(statement)
      case "CreateClone":
        return this.createClone(statement)
      case "DropTable":
        return this.dropTable(statement)
      case "ShowDatabases":
        return this.showDatabases(statement)
      case "ShowTables":
        return this.showTables(statement)
      case "DescribeTable":
        return this.describeTable(statement)
      case "ShowClones":
        return this.showClones(statement)
    }
  }

  private attach(s: Ast.Attach) {
    return Effect.gen({ self: this }, function* () {
      const alias = s.alias.parts[0]
      const existing = this.clusters.get(alias)
      if (existing !== undefined) {
        return yield* this.errorAt(
          s.alias.span,
          "AlreadyAttached",
          `a cluster named '${alias}' is already attached (${existing.file})`,
          `choose another name, or DETACH CLUSTER ${alias}; first`,
        )
      }
      const file = resolve(this.options.baseDir, s.file.value)
      const config = yield* loadClusterConfig(file).pipe(
        Effect.mapError((e) =>
          e.key === "" && e.detail === "the cluster file does not exist"
            ? this.errorAt(
                s.file.span,
                "NoClusterFile",
                `the cluster file ${file} does not exist`,
                `check the path in ATTACH CLUSTER (a relative path resolves against ${this.options.baseDir}, the script's directory or, for -e and stdin, the working directory)`,
              )
            : e,
        ),
      )
      this.clusters.set(alias, { alias, file, config })
      return messageResult(`attached cluster ${alias} (${file})`, {
        cluster: alias,
        file,
        name: config.name,
        meta: config.meta.type,
        storage: config.storage.type,
      })
    })
  }

  private detach(s: Ast.Detach) {
    return Effect.map(this.clusterOf(s.alias), (c) => {
      this.clusters.delete(c.alias)
      if (this.current === c.alias) this.current = undefined
      return messageResult(`detached cluster ${c.alias}`, { cluster: c.alias })
    })
  }

  private backup(s: Ast.Backup) {
    return Effect.gen({ self: this }, function* () {
      const attached = yield* this.clusterOf(s.cluster)
      const cluster = yield* this.open(attached)
      const location = this.location(s.repository)
      if (!s.dryRun) {
        const repo = yield* this.openRepository(s.repository, true)
        const onProgress = this.options.onProgress
        const r = yield* backup(
          cluster,
          repo,
          onProgress === undefined ? {} : { onProgress: (p) => onProgress({ ...p, label: p.phase === "files" ? "backup" : p.phase }) },
        )
        return recordResult(
          `backup ${r.backup_id} of ${attached.alias} committed (${r.backup_type}${r.parent_backup_id ? `, parent ${r.parent_backup_id}` : ""})`,
          r,
          r,
          [
            "backup_id",
            "backup_type",
            "parent_backup_id",
            "files_total",
            "bytes_total",
            "files_reused",
            "files_read",
            "bytes_uploaded",
            "meta_keys",
          ],
        )
      }
      // DRY RUN: what a backup would take; nothing is written (not even a new repository).
      const repo = yield* openRepositoryAt(location).pipe(
        Effect.map((r): Repository | undefined => r),
        Effect.catchIf(
          (e) =>
            (e as { _tag?: string; reason?: string })._tag === "RepositoryError" && (e as { reason?: string }).reason === "NotARepository",
          () => Effect.succeed(undefined),
        ),
      )
      const parent = repo === undefined ? undefined : yield* findLatestBackup(repo, cluster.name)
      let files = 0
      let bytes = 0
      yield* cluster.storage.list("").pipe(
        Stream.filter((i) => !i.key.startsWith(RESERVED_STORAGE_PREFIX)),
        Stream.runForEach((i) =>
          Effect.sync(() => {
            files++
            bytes += i.size
          }),
        ),
      )
      const snapshot = yield* cluster.meta.snapshot()
      let metaKeys = 0
      yield* snapshot.entries.pipe(Stream.runForEach(() => Effect.sync(() => void metaKeys++)))
      const plan = {
        dry_run: true,
        cluster: attached.alias,
        repository: location,
        repository_exists: repo !== undefined,
        backup_type: parent === undefined ? "full" : "incremental",
        parent_backup_id: parent?.backupId ?? null,
        files_total: files,
        bytes_total: bytes,
        meta_keys: metaKeys,
        meta_revision: snapshot.revision,
      }
      return recordResult(`DRY RUN: backup plan for ${attached.alias} (nothing was written)`, plan)
    })
  }

  private showBackups(s: Ast.ShowBackups) {
    return Effect.gen({ self: this }, function* () {
      const repo = yield* this.openRepository(s.repository)
      const backups = yield* listBackups(repo)
      const rows = backups.map((b) =>
        b.damaged !== undefined
          ? { backup_id: b.backup_id, type: "DAMAGED", damaged: b.damaged }
          : {
              backup_id: b.backup_id,
              type: b.backup_type,
              cluster: b.cluster,
              started_at: b.started_at,
              files: b.files,
              bytes: b.bytes,
              bytes_uploaded: b.bytes_uploaded,
              meta_keys: b.meta_keys,
              meta_revision: b.meta_revision,
            },
      )
      return rowsResult(`${plural(backups.length, "backup")} in ${repo.location}`, rows, { repository: repo.location, backups })
    })
  }

  private restore(s: Ast.Restore) {
    return Effect.gen({ self: this }, function* () {
      const attached = yield* this.clusterOf(s.target)
      const repo = yield* this.openRepository(s.repository)
      const scope = s.scope
      if (scope.kind !== "cluster") {
        const point = s.point
        const target = yield* this.openTarget(attached, s.dryRun)
        const r = yield* this.clone.restoreTables({
          repo,
          ...(point?.kind === "backup" ? { backupId: point.id.value } : point?.kind === "timestamp" ? { at: point.at } : {}),
          database: scope.kind === "database" ? scope.database.parts[0] : scope.table.parts[0],
          ...(scope.kind === "table" ? { table: scope.table.parts[1] } : {}),
          ...(scope.kind === "table" && scope.as !== undefined ? { as: { database: scope.as.parts[0], table: scope.as.parts[1] } } : {}),
          target,
          dryRun: s.dryRun,
        })
        const what = scope.kind === "database" ? `database ${scope.database.parts[0]}` : `table ${scope.table.parts.join(".")}`
        return recordResult(
          s.dryRun
            ? `DRY RUN: restore plan of ${what} into ${attached.alias} (nothing was changed)`
            : `restored ${what} into ${attached.alias}`,
          r,
        )
      }
      const backupId = yield* this.backupIdOf(repo, s.repository, s.point)
      const manifest = yield* readManifest(repo, backupId)
      // Check the backup before the target's directories are created.
      const checked = yield* checkBackup(repo, manifest)
      const target = yield* this.openTarget(attached, s.dryRun)
      const onProgress = this.options.onProgress
      const r = yield* restore(repo, manifest, target, {
        checked,
        confirm: !s.dryRun,
        ...(onProgress === undefined ? {} : { onProgress: (p) => onProgress({ ...p, label: s.dryRun ? "plan" : "restore" }) }),
      })
      const row = {
        backup_id: r.backup_id,
        dry_run: r.dry_run,
        files_total: r.files_total,
        bytes_total: r.bytes_total,
        files_to_write: r.files_to_write,
        bytes_to_write: r.bytes_to_write,
        files_identical: r.files_identical,
        files_to_delete: r.files_to_delete,
        meta_added: r.meta.added,
        meta_changed: r.meta.changed,
        meta_removed: r.meta.removed,
        meta_unchanged: r.meta.unchanged,
      }
      return recordResult(
        s.dryRun
          ? `DRY RUN: restore plan of backup ${r.backup_id} into ${attached.alias} (nothing was changed)`
          : `restored backup ${r.backup_id} into ${attached.alias}`,
        row,
        r,
      )
    })
  }

  private vacuum(s: Ast.VacuumBackups) {
    return Effect.gen({ self: this }, function* () {
      const vacuum = this.options.vacuum ?? vacuumWorkflow
      const onProgress = this.options.onProgress
      const repo = yield* this.openRepository(s.repository)
      const o = s.options
      const r = yield* vacuum({
        repo,
        policy: {
          ...(o.RETENTION_DAYS !== undefined ? { retentionDays: o.RETENTION_DAYS } : {}),
          ...(o.MIN_RETENTION_DAYS !== undefined ? { minRetentionDays: o.MIN_RETENTION_DAYS } : {}),
          ...(o.MAX_BACKUPS !== undefined ? { maxBackups: o.MAX_BACKUPS } : {}),
          ...(o.MIN_BACKUPS !== undefined ? { minBackups: o.MIN_BACKUPS } : {}),
          ...(o.KEEP_DAILY !== undefined ? { keepDaily: o.KEEP_DAILY } : {}),
          ...(o.KEEP_WEEKLY !== undefined ? { keepWeekly: o.KEEP_WEEKLY } : {}),
          ...(o.KEEP_MONTHLY !== undefined ? { keepMonthly: o.KEEP_MONTHLY } : {}),
        },
        dryRun: s.dryRun,
        ...(onProgress === undefined
          ? {}
          : { onProgress: (p) => onProgress({ label: `vacuum ${p.phase}`, filesDone: p.done, bytesDone: 0, filesTotal: p.total }) }),
      })
      return recordResult(
        s.dryRun ? `DRY RUN: vacuum plan for ${repo.location} (nothing was deleted)` : `vacuumed ${repo.location}`,
        vacuumSummary(r),
        r,
      )
    })
  }

  private replicate(s: Ast.Replicate) {
    return Effect.gen({ self: this }, function* () {
      const from = yield* this.clusterOf(s.source)
      const to = yield* this.clusterOf(s.target)
      const named = s.scope
      const scope = parseScope(
        named.kind === "database"
          ? { database: named.database.parts[0] }
          : named.kind === "table"
            ? { table: named.table.parts.join(".") }
            : {},
      )
      if (!("kind" in scope)) {
        const name = named.kind === "database" ? named.database : named.kind === "table" ? named.table : s.target
        return yield* this.errorAt(
          name.span,
          "BadName",
          `'${this.written(name)}' is not a ${named.kind} of the table layout: ${scope.detail}`,
          named.kind === "table"
            ? "e.g. REPLICATE TABLE sales.orders FROM prod TO standby"
            : "e.g. REPLICATE DATABASE sales FROM prod TO standby",
        )
      }
      const source = yield* this.open(from)
      // The target may be a new, empty cluster: a round creates its directories, a DRY RUN looks at it as it is.
      const target = yield* this.openTarget(to, s.dryRun)
      const via = s.via !== undefined && !s.dryRun ? yield* this.openRepository(s.via, true) : undefined
      const o = s.options
      const onProgress = this.options.onProgress
      const r = yield* this.replication.round(source, target, {
        scope,
        ...(via !== undefined ? { via } : {}),
        ...(o.maxDelete !== undefined ? { maxDelete: o.maxDelete } : {}),
        deleteMode: o.deleteMode ?? "mirror",
        ...(o.parallelism !== undefined ? { parallelism: o.parallelism } : {}),
        ...(o.bandwidthLimit !== undefined ? { bandwidthLimit: o.bandwidthLimit } : {}),
        dryRun: s.dryRun,
        ...(onProgress === undefined ? {} : { onProgress: (p) => onProgress({ ...p, label: `replicate ${p.phase}` }) }),
      })
      const what = `the ${r.scope} of ${from.alias} to ${to.alias}`
      return recordResult(
        r.dry_run
          ? `DRY RUN: replication plan of ${what} (nothing was changed)`
          : `replicated ${what}: round ${r.round}, source revision ${r.source_revision}, ${plural(r.files_copied, "file")} copied, ${plural(r.files_deleted, "file")} deleted, ${plural(r.keys_added + r.keys_changed + r.keys_removed, "key")} changed`,
        roundRow(r),
        r,
      )
    })
  }

  private showReplicationStatus(s: Ast.ShowReplicationStatus) {
    return Effect.gen({ self: this }, function* () {
      const clusters = s.target !== undefined ? [yield* this.clusterOf(s.target)] : yield* this.listed()
      const rows: Array<object> = []
      const results: Array<{ cluster: string; target: string; streams: ReadonlyArray<unknown> }> = []
      for (const attached of clusters) {
        // Read only: a cluster that was never a target (or does not exist yet) has no replication.
        const opened = attached.opened ?? (yield* openRestoreTarget(attached.config, { create: false }))
        const status = yield* this.replication.status(opened)
        results.push({ cluster: attached.alias, ...status })
        for (const st of status.streams) {
          const ok = st.last_success
          const last = st.last_round
          rows.push({
            ...(clusters.length > 1 ? { cluster: attached.alias } : {}),
            stream: st.stream,
            source: st.source.name,
            last_revision: ok?.source_revision ?? null,
            replicated_at: ok?.source_time ?? null,
            lag: st.lag,
            lag_ms: st.lag_ms,
            last_round: last.round,
            outcome: last.outcome,
            running: st.running === null ? null : `${st.running.operation} (${st.running.holder}, since ${st.running.since})`,
            files_copied: last.files_copied,
            bytes_copied: last.bytes_copied,
            files_deleted: last.files_deleted,
            keys_added: last.keys_added,
            keys_changed: last.keys_changed,
            keys_removed: last.keys_removed,
            duration_ms: last.duration_ms,
            errors: last.errors.join("; "),
          })
        }
      }
      const where = clusters.map((c) => c.alias).join(", ")
      return rowsResult(
        rows.length === 0 ? `no replication has run into ${where}` : `${plural(rows.length, "replication stream")} into ${where}`,
        rows,
        s.target !== undefined ? results[0] : results,
        ["cluster", "stream", "source", "last_revision", "replicated_at", "lag"],
      )
    })
  }

  private createClone(s: Ast.CreateClone) {
    return Effect.gen({ self: this }, function* () {
      const onExists = s.orReplace ? "replace" : s.ifNotExists ? "ignore" : "error"
      const from = s.from
      const repo = from.kind === "backup" ? yield* this.openRepository(from.repository) : undefined
      const point =
        from.kind === "backup" && from.point !== undefined
          ? from.point.kind === "backup"
            ? { backupId: from.point.id.value }
            : { at: from.point.at }
          : {}
      let results: ReadonlyArray<CloneResult>
      let targetAlias: string
      if (s.object === "table") {
        const target = yield* this.tableOf(s.target)
        targetAlias = target.cluster.alias
        const source =
          repo !== undefined
            ? ({ kind: "backup", repo, ...point, table: { database: s.source.parts[0], table: s.source.parts[1] } } as const)
            : yield* Effect.gen({ self: this }, function* () {
                const live = yield* this.tableOf(s.source)
                return {
                  kind: "live",
                  cluster: yield* this.open(live.cluster),
                  table: live.table,
                  ...(from.kind === "live" && from.version !== undefined ? { version: from.version } : {}),
                } as const
              })
        const targetCluster = yield* this.openTarget(target.cluster, s.dryRun)
        results = [
          yield* this.clone.cloneTable({
            source,
            target: { cluster: targetCluster, table: target.table },
            mode: s.mode,
            onExists,
            dryRun: s.dryRun,
          }),
        ]
      } else {
        const target = yield* this.databaseOf(s.target)
        targetAlias = target.cluster.alias
        const source =
          repo !== undefined
            ? ({ kind: "backup", repo, ...point, database: s.source.parts[0] } as const)
            : yield* Effect.gen({ self: this }, function* () {
                const live = yield* this.databaseOf(s.source)
                return { kind: "live", cluster: yield* this.open(live.cluster), database: live.database } as const
              })
        const targetCluster = yield* this.openTarget(target.cluster, s.dryRun)
        results = yield* this.clone.cloneDatabase({
          source,
          target: { cluster: targetCluster, database: target.database },
          mode: s.mode,
          onExists,
          dryRun: s.dryRun,
        })
      }
      const copied = results.reduce((n, r) => n + r.num_copied_files, 0)
      const message = s.dryRun
        ? `DRY RUN: ${s.mode} CLONE plan into ${targetAlias} (nothing was changed)`
        : `${s.mode} CLONE into ${targetAlias}: ${plural(results.length, "table")}, ${plural(copied, "file")} copied`
      return s.object === "table"
        ? recordResult(message, results[0], results[0], CLONE_COLUMNS)
        : rowsResult(message, results, results, CLONE_COLUMNS)
    })
  }

  private dropTable(s: Ast.DropTable) {
    return Effect.gen({ self: this }, function* () {
      const { cluster, table } = yield* this.tableOf(s.table)
      const opened = yield* this.open(cluster)
      const r = yield* this.clone.dropTable(opened, table, { ifExists: s.ifExists, purge: s.purge, dryRun: s.dryRun })
      const name = `${cluster.alias}.${table.database}.${table.table}`
      return recordResult(s.dryRun ? `DRY RUN: drop plan of ${name} (nothing was changed)` : `DROP TABLE ${name}`, r)
    })
  }

  /** The clusters a listing covers: the one named, else every attached cluster. */
  private listed(): Effect.Effect<ReadonlyArray<Attached>, SqlError> {
    if (this.clusters.size === 0) {
      return Effect.fail(
        new SqlError({
          reason: "NoCluster",
          detail: "no cluster is attached",
          fix: "attach one first: ATTACH CLUSTER 'prod.toml' AS prod;",
        }),
      )
    }
    return Effect.succeed([...this.clusters.values()])
  }

  /** Rows of every cluster, with a leading `cluster` column when there are several. */
  private perCluster(clusters: ReadonlyArray<Attached>, list: (cluster: Cluster) => Effect.Effect<ReadonlyArray<object>, unknown>) {
    return Effect.gen({ self: this }, function* () {
      const rows: Array<object> = []
      for (const attached of clusters) {
        const opened = yield* this.open(attached)
        for (const row of yield* list(opened)) rows.push(clusters.length > 1 ? { cluster: attached.alias, ...row } : row)
      }
      return rows
    })
  }

  private showDatabases(s: Ast.ShowDatabases) {
    return Effect.gen({ self: this }, function* () {
      const clusters = s.cluster !== undefined ? [yield* this.clusterOf(s.cluster)] : yield* this.listed()
      const rows = yield* this.perCluster(clusters, (c) => this.clone.listDatabases(c))
      return rowsResult(plural(rows.length, "database"), rows, rows, ["cluster", "name"])
    })
  }

  private showTables(s: Ast.ShowTables) {
    return Effect.gen({ self: this }, function* () {
      if (s.database !== undefined) {
        const { cluster, database } = yield* this.databaseOf(s.database)
        const rows = yield* this.perCluster([cluster], (c) => this.clone.listTables(c, database))
        return rowsResult(plural(rows.length, "table"), rows, rows, ["database", "table"])
      }
      const rows = yield* this.perCluster(yield* this.listed(), (c) => this.clone.listTables(c))
      return rowsResult(plural(rows.length, "table"), rows, rows, ["cluster", "database", "table"])
    })
  }

  private describeTable(s: Ast.DescribeTable) {
    return Effect.gen({ self: this }, function* () {
      const { cluster, table } = yield* this.tableOf(s.table)
      const d = yield* this.clone.describeTable(yield* this.open(cluster), table)
      const rows = Object.entries(d).map(([property, value]) => ({ property, value }))
      return { message: `${cluster.alias}.${table.database}.${table.table}`, columns: ["property", "value"], rows, record: false, value: d }
    })
  }

  private showClones(s: Ast.ShowClones) {
    return Effect.gen({ self: this }, function* () {
      if (s.of !== undefined) {
        const { cluster, table } = yield* this.tableOf(s.of)
        const opened = yield* this.open(cluster)
        const rows = yield* this.clone.listClones(opened, table)
        return rowsResult(plural(rows.length, "clone"), rows, rows, ["clone", "source", "mode"])
      }
      const rows = yield* this.perCluster(yield* this.listed(), (c) => this.clone.listClones(c))
      return rowsResult(plural(rows.length, "clone"), rows, rows, ["cluster", "clone", "source", "mode"])
    })
  }
}

const internalError = (defect: unknown) =>
  new SqlError({
    reason: "Internal",
    detail: `bendsave hit an internal error: ${defect instanceof Error ? defect.message : String(defect)}`,
    fix: "please report this with the script you ran",
  })

/**
 * Runs statements in order within the caller's scope (opened clusters close
 * with it). Never fails: every statement that ran has an Outcome, and the
 * run stops after the first failure unless `continueOnError`.
 */
export const runStatements = Effect.fn("Sql.run")(function* (statements: ReadonlyArray<Ast.Statement>, options: RunOptions) {
  const session = new Session(options)
  const outcomes: Array<Outcome> = []
  for (let i = 0; i < statements.length; i++) {
    const statement = statements[i]
    const exit = yield* Effect.exit(session.execute(statement))
    const outcome: Outcome = Exit.isSuccess(exit)
      ? { index: i + 1, statement, ok: true, result: exit.value }
      : {
          index: i + 1,
          statement,
          ok: false,
          error: (() => {
            const fail = exit.cause.reasons.find(Cause.isFailReason)
            if (fail !== undefined) return fail.error
            const die = exit.cause.reasons.find(Cause.isDieReason)
            return internalError(die !== undefined ? die.defect : Cause.squash(exit.cause))
          })(),
        }
    outcomes.push(outcome)
    if (options.onOutcome !== undefined) yield* options.onOutcome(outcome)
    if (!outcome.ok && options.continueOnError !== true) break
  }
  return outcomes
})
