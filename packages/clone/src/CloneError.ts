/**
 * CloneError: the one error of the table-level workflows (clone, drop,
 * describe, partial restore) for everything that is not a storage, meta or
 * repository failure. Like every bendsave error it says what is wrong
 * (`message`) and what to do about it (`fix`).
 */
import * as Schema from "effect/Schema"

export const CloneErrorReason = Schema.Literals([
  /** The named table does not exist (in the cluster, at that version, or in the backup). */
  "TableNotFound",
  /** The named database does not exist. */
  "DatabaseNotFound",
  /** The target table exists and the statement says neither OR REPLACE nor IF NOT EXISTS. */
  "TableExists",
  /** A SHALLOW clone across storage roots, or from a backup whose files are gone. */
  "ShallowNotPossible",
  /** Another writer changed the catalog at the same time; nothing of this call was committed. */
  "Conflict",
  /** The requested backup or version does not exist. */
  "VersionNotFound",
  /** A database or table name that the layout does not allow. */
  "InvalidName",
  /** The catalog or a snapshot object breaks docs/table-layout.md. */
  "InvalidLayout",
  /** The source is not usable (e.g. a data file changed size while it was copied). */
  "SourceChanged",
])
export type CloneErrorReason = typeof CloneErrorReason.Type

export class CloneError extends Schema.TaggedError<CloneError>()("CloneError", {
  reason: CloneErrorReason,
  detail: Schema.String,
  /** What the user can do about it. */
  fix: Schema.String,
}) {
  override get message(): string {
    return this.detail
  }
}
