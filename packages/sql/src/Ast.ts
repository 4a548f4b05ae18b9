/**
 * Ast: the typed statements of a bendsave SQL script, as the parser returns
 * them. Names are kept as written (parts, with their source position) and
 * resolved against the attached clusters only when the script runs.
 */

/** Where something is in the source: offset and length, 1-based line and column. */
export interface Span {
  readonly offset: number
  readonly length: number
  readonly line: number
  readonly column: number
}

/**
 * A dotted name as written: `prod.sales.orders` has parts
 * `["prod", "sales", "orders"]`. Unquoted parts are folded to lower case
 * (names are case-insensitive, as in Databricks); quoted parts keep their case.
 */
export interface Name {
  readonly parts: ReadonlyArray<string>
  readonly span: Span
}

/** A string literal with its position (paths, repository URLs, backup ids, timestamps). */
export interface Str {
  readonly value: string
  readonly span: Span
}

/** Which backup of a repository: by id, or the newest at or before a time. */
export type BackupPoint =
  | { readonly kind: "backup"; readonly id: Str }
  | { readonly kind: "timestamp"; readonly time: Str; readonly at: Date }

interface Base {
  /** The statement's source text, without the `;` and surrounding comments/space. */
  readonly text: string
  readonly span: Span
}

/** `ATTACH CLUSTER '<file.toml>' AS name` */
export interface Attach extends Base {
  readonly kind: "Attach"
  readonly file: Str
  readonly alias: Name
}

/** `DETACH CLUSTER name` */
export interface Detach extends Base {
  readonly kind: "Detach"
  readonly alias: Name
}

/** `USE name`: the default cluster of names that omit it. */
export interface Use extends Base {
  readonly kind: "Use"
  readonly cluster: Name
}

/** `BACKUP CLUSTER name TO '<repo>' [DRY RUN]` */
export interface Backup extends Base {
  readonly kind: "Backup"
  readonly cluster: Name
  readonly repository: Str
  readonly dryRun: boolean
}

/** `SHOW BACKUPS IN '<repo>'` */
export interface ShowBackups extends Base {
  readonly kind: "ShowBackups"
  readonly repository: Str
}

export type RestoreScope =
  | { readonly kind: "cluster" }
  | { readonly kind: "database"; readonly database: Name }
  | { readonly kind: "table"; readonly table: Name; readonly as?: Name }

/** `RESTORE {CLUSTER | DATABASE db | TABLE db.t [AS db.t2]} FROM '<repo>' [AT ...] TO cluster [DRY RUN]` */
export interface Restore extends Base {
  readonly kind: "Restore"
  readonly scope: RestoreScope
  readonly repository: Str
  readonly point?: BackupPoint
  readonly target: Name
  readonly dryRun: boolean
}

/** The retention options of VACUUM BACKUPS (all whole numbers, at least 0), those of the `vacuum` verb. */
export const VACUUM_OPTIONS = [
  "RETENTION_DAYS",
  "MIN_RETENTION_DAYS",
  "MAX_BACKUPS",
  "MIN_BACKUPS",
  "KEEP_DAILY",
  "KEEP_WEEKLY",
  "KEEP_MONTHLY",
] as const
export type VacuumOption = (typeof VACUUM_OPTIONS)[number]

/** `VACUUM BACKUPS IN '<repo>' [WITH (NAME = n, ...)] [DRY RUN]` */
export interface VacuumBackups extends Base {
  readonly kind: "VacuumBackups"
  readonly repository: Str
  readonly options: Partial<Record<VacuumOption, number>>
  readonly dryRun: boolean
}

/** What a REPLICATE statement covers: the names are in the source cluster (named after FROM). */
export type ReplicateScope =
  | { readonly kind: "cluster" }
  | { readonly kind: "database"; readonly database: Name }
  | { readonly kind: "table"; readonly table: Name }

/** The options of REPLICATE, those of the `replicate` verb's flags. */
export const REPLICATE_OPTIONS = ["MAX_DELETE", "DELETE", "BANDWIDTH_LIMIT", "PARALLELISM"] as const
export type ReplicateOption = (typeof REPLICATE_OPTIONS)[number]

/** The options given (checked by the parser: whole numbers in range, a known DELETE mode, a readable rate). */
export interface ReplicateOptions {
  /** `MAX_DELETE = n`: stop a round that would delete more than n files or n meta keys (`--max-delete`). */
  readonly maxDelete?: number
  /** `DELETE = 'MIRROR' | 'KEEP'` (`--delete`). */
  readonly deleteMode?: "mirror" | "keep"
  /** `BANDWIDTH_LIMIT = '100MiB/s'`, in bytes per second (`--bandwidth-limit`). */
  readonly bandwidthLimit?: number
  /** `PARALLELISM = n`: files copied at once (`--parallelism`). */
  readonly parallelism?: number
}

/** `REPLICATE {CLUSTER | DATABASE db | TABLE db.t} FROM a TO b [VIA '<repo>'] [WITH (...)] [DRY RUN]` */
export interface Replicate extends Base {
  readonly kind: "Replicate"
  readonly scope: ReplicateScope
  readonly source: Name
  readonly target: Name
  readonly via?: Str
  readonly options: ReplicateOptions
  readonly dryRun: boolean
}

/** `SHOW REPLICATION STATUS [FOR cluster]` */
export interface ShowReplicationStatus extends Base {
  readonly kind: "ShowReplicationStatus"
  readonly target?: Name
}

/** Where a clone's source comes from: a live table (optionally at a snapshot version) or a backup. */
export type CloneSourcePoint =
  | { readonly kind: "live"; readonly version?: number }
  | { readonly kind: "backup"; readonly repository: Str; readonly point?: BackupPoint }

/**
 * `CREATE [OR REPLACE] {TABLE | DATABASE} [IF NOT EXISTS] target [SHALLOW | DEEP] CLONE source
 *  [AT BACKUP '<id>' | AT TIMESTAMP '<ts>' | VERSION AS OF n] [FROM '<repo>'] [DRY RUN]`
 */
export interface CreateClone extends Base {
  readonly kind: "CreateClone"
  readonly object: "table" | "database"
  readonly orReplace: boolean
  readonly ifNotExists: boolean
  readonly target: Name
  readonly mode: "SHALLOW" | "DEEP"
  readonly source: Name
  readonly from: CloneSourcePoint
  readonly dryRun: boolean
}

/** `DROP TABLE [IF EXISTS] t [PURGE] [DRY RUN]` */
export interface DropTable extends Base {
  readonly kind: "DropTable"
  readonly ifExists: boolean
  readonly table: Name
  readonly purge: boolean
  readonly dryRun: boolean
}

/** `SHOW DATABASES [IN cluster]` */
export interface ShowDatabases extends Base {
  readonly kind: "ShowDatabases"
  readonly cluster?: Name
}

/** `SHOW TABLES [IN [cluster.]db]` */
export interface ShowTables extends Base {
  readonly kind: "ShowTables"
  readonly database?: Name
}

/** `DESCRIBE TABLE t` */
export interface DescribeTable extends Base {
  readonly kind: "DescribeTable"
  readonly table: Name
}

/** `SHOW CLONES [OF t]` */
export interface ShowClones extends Base {
  readonly kind: "ShowClones"
  readonly of?: Name
}

export type Statement =
  | Attach
  | Detach
  | Use
  | Backup
  | ShowBackups
  | Restore
  | VacuumBackups
  | Replicate
  | ShowReplicationStatus
  | CreateClone
  | DropTable
  | ShowDatabases
  | ShowTables
  | DescribeTable
  | ShowClones
