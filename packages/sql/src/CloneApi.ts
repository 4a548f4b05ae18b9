/**
 * CloneApi: the table-level workflows the runner calls (clone, drop, catalog
 * listings, partial restore), as an interface. `@bendsave/clone` implements
 * it and is the default; tests may pass their own (a recording double). The
 * request types are those of `@bendsave/clone`; results are only read as
 * rows, so any JSON object will do. VACUUM BACKUPS calls a VacuumWorkflow,
 * by default core's `vacuum`.
 */
import type { CloneDatabaseRequest, CloneResult, CloneTableRequest, RestoreTablesRequest, TableRef } from "@bendsave/clone"
import * as Clone from "@bendsave/clone"
import { type Cluster, type Repository, VacuumError, vacuum, validatePolicy } from "@bendsave/core"
import * as Effect from "effect/Effect"

export type { CloneDatabaseRequest, CloneResult, CloneTableRequest, RestoreTablesRequest, TableRef }

/** A workflow result: a JSON object (rendered as a table row) or a list of them. */
type Row = object

export interface CloneApi {
  readonly cloneTable: (request: CloneTableRequest) => Effect.Effect<CloneResult, unknown>
  readonly cloneDatabase: (request: CloneDatabaseRequest) => Effect.Effect<ReadonlyArray<CloneResult>, unknown>
  readonly dropTable: (
    cluster: Cluster,
    table: TableRef,
    options: { readonly ifExists: boolean; readonly purge: boolean; readonly dryRun?: boolean },
  ) => Effect.Effect<Row, unknown>
  readonly listDatabases: (cluster: Cluster) => Effect.Effect<ReadonlyArray<Row>, unknown>
  readonly listTables: (cluster: Cluster, database?: string) => Effect.Effect<ReadonlyArray<Row>, unknown>
  readonly describeTable: (cluster: Cluster, table: TableRef) => Effect.Effect<Row, unknown>
  readonly listClones: (cluster: Cluster, of?: TableRef) => Effect.Effect<ReadonlyArray<Row>, unknown>
  readonly restoreTables: (request: RestoreTablesRequest) => Effect.Effect<Row, unknown>
}

/** The workflows of `@bendsave/clone`. */
export const cloneWorkflows: CloneApi = Clone

/** The retention policy of VACUUM BACKUPS (the options given; the vacuum workflow's RetentionPolicy). */
export interface VacuumPolicy {
  readonly retentionDays?: number
  readonly minRetentionDays?: number
  readonly maxBackups?: number
  readonly minBackups?: number
  readonly keepDaily?: number
  readonly keepWeekly?: number
  readonly keepMonthly?: number
}

/** VACUUM BACKUPS: the repository, the policy and the plan-only switch; the result is shown as one row. */
export interface VacuumRequest {
  readonly repo: Repository
  readonly policy: VacuumPolicy
  readonly dryRun: boolean
  readonly onProgress?: (progress: { readonly phase: string; readonly done: number; readonly total?: number | undefined }) => void
}

export type VacuumWorkflow = (request: VacuumRequest) => Effect.Effect<Row, unknown>

/** The statement's option names for the verb's flags in the vacuum workflow's messages. */
const OPTION_OF_FLAG: Record<string, string> = {
  "--retention-days": "RETENTION_DAYS",
  "--min-retention-days": "MIN_RETENTION_DAYS",
  "--max-backups": "MAX_BACKUPS",
  "--min-backups": "MIN_BACKUPS",
  "--keep-daily": "KEEP_DAILY",
  "--keep-weekly": "KEEP_WEEKLY",
  "--keep-monthly": "KEEP_MONTHLY",
  "--dry-run": "DRY RUN",
}
const inStatementWords = (text: string) => text.replace(/--[a-z-]+/g, (flag) => OPTION_OF_FLAG[flag] ?? flag)

/** Core's vacuum: the policy is checked first, its problems told in the statement's words (MAX_BACKUPS, not --max-backups). */
export const vacuumWorkflow: VacuumWorkflow = (request) => {
  const problem = validatePolicy(request.policy)
  if (problem !== undefined) {
    return Effect.fail(
      new VacuumError({ reason: problem.reason, detail: inStatementWords(problem.detail), fix: inStatementWords(problem.fix) }),
    )
  }
  return vacuum(request.repo, request.policy, {
    dryRun: request.dryRun,
    ...(request.onProgress !== undefined ? { onProgress: request.onProgress } : {}),
  })
}
