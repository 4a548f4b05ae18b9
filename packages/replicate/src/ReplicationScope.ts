/**
 * ReplicationScope: what a replication stream covers.
 *
 * - `cluster`: every meta key except the reserved `bendsave/` ones, and every
 *   storage file except the reserved `.bendsave/` ones.
 * - `database db`: the keys `catalog/databases/<db>` and
 *   `catalog/tables/<db>/*`, and the files of those tables.
 * - `table db.t`: the key `catalog/tables/<db>/<t>` (with
 *   `catalog/databases/<db>`, which the layout requires beside it) and the
 *   table's files.
 *
 * A table's files (docs/table-layout.md) are everything stored under its
 * location (data files and snapshot objects, including older snapshots kept
 * for time travel) plus every file its current snapshot lists elsewhere (the
 * source's files of a shallow clone), so the replicated table reads the same
 * on the target.
 */
import { RESERVED_STORAGE_PREFIX } from "@bendsave/core"
import * as Schema from "effect/Schema"

export type ReplicationScope =
  | { readonly kind: "cluster" }
  | { readonly kind: "database"; readonly database: string }
  | { readonly kind: "table"; readonly database: string; readonly table: string }

/** Meta keys under this prefix belong to bendsave on every cluster: never copied, compared or deleted. */
export const RESERVED_META_PREFIX = "bendsave/"
export const DATABASE_KEY_PREFIX = "catalog/databases/"
export const TABLE_KEY_PREFIX = "catalog/tables/"

const NAME = /^[a-z][a-z0-9_]{0,62}$/

/** A scope the user named that does not fit the table layout's names. */
export class ReplicationScopeError extends Schema.TaggedError<ReplicationScopeError>()("ReplicationScopeError", {
  input: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `'${this.input}': ${this.detail}`
  }
}

/** The scope of `--database db` / `--table db.t` (neither: the whole cluster). */
export const parseScope = (options: { readonly database?: string; readonly table?: string }): ReplicationScope | ReplicationScopeError => {
  if (options.database !== undefined && options.table !== undefined) {
    return new ReplicationScopeError({
      input: `${options.database} / ${options.table}`,
      detail: "give either a database or a table, not both",
      fix: "use --database db to replicate a database, or --table db.t for one table",
    })
  }
  if (options.table !== undefined) {
    const parts = options.table.split(".")
    if (parts.length !== 2 || !NAME.test(parts[0]) || !NAME.test(parts[1])) {
      return new ReplicationScopeError({
        input: options.table,
        detail: "a table is named <database>.<table>, each lowercase letters, digits and '_' starting with a letter",
        fix: "e.g. --table sales.orders",
      })
    }
    return { kind: "table", database: parts[0], table: parts[1] }
  }
  if (options.database !== undefined) {
    if (!NAME.test(options.database)) {
      return new ReplicationScopeError({
        input: options.database,
        detail: "a database name is lowercase letters, digits and '_' starting with a letter",
        fix: "e.g. --database sales",
      })
    }
    return { kind: "database", database: options.database }
  }
  return { kind: "cluster" }
}

/** The stream name of a scope: the directory of its state under `.bendsave/replication/`. */
export const streamOf = (scope: ReplicationScope): string =>
  scope.kind === "cluster" ? "cluster" : scope.kind === "database" ? `database.${scope.database}` : `table.${scope.database}.${scope.table}`

/** How a scope reads in messages: `cluster`, `database sales`, `table sales.orders`. */
export const describeScope = (scope: ReplicationScope): string =>
  scope.kind === "cluster" ? "cluster" : scope.kind === "database" ? `database ${scope.database}` : `table ${scope.database}.${scope.table}`

const decoder = new TextDecoder()

/** Whether a meta key (bytes, relative to the cluster prefix) is replicated by `scope`. */
export const metaKeyInScope = (scope: ReplicationScope, key: Uint8Array): boolean => {
  const text = decoder.decode(key)
  if (text.startsWith(RESERVED_META_PREFIX)) return false
  switch (scope.kind) {
    case "cluster":
      return true
    case "database":
      return text === `${DATABASE_KEY_PREFIX}${scope.database}` || text.startsWith(`${TABLE_KEY_PREFIX}${scope.database}/`)
    case "table":
      return text === `${DATABASE_KEY_PREFIX}${scope.database}` || text === `${TABLE_KEY_PREFIX}${scope.database}/${scope.table}`
  }
}

/** Whether a storage path is bendsave's own (never replicated, compared or deleted). */
export const isReservedPath = (path: string): boolean => path.startsWith(RESERVED_STORAGE_PREFIX)

/** A table entry of the layout, the fields replication needs. */
export interface TableLocation {
  readonly key: string
  readonly location: string
  readonly snapshot: string
}

/** The table entry in a meta entry, if it is one with a usable location and snapshot. */
export const tableLocationOf = (key: Uint8Array, value: Uint8Array): TableLocation | undefined => {
  const text = decoder.decode(key)
  if (!text.startsWith(TABLE_KEY_PREFIX)) return undefined
  try {
    const parsed = JSON.parse(decoder.decode(value)) as { location?: unknown; snapshot?: unknown }
    if (typeof parsed.location !== "string" || typeof parsed.snapshot !== "string") return undefined
    return { key: text, location: parsed.location, snapshot: parsed.snapshot }
  } catch {
    return undefined
  }
}
