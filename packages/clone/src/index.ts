/**
 * @bendsave/clone: table-level workflows over the table layout of
 * docs/table-layout.md: SHALLOW / DEEP CLONE of tables and databases (from a
 * live cluster or from a backup), DROP TABLE [PURGE], SHOW DATABASES / TABLES /
 * CLONES, DESCRIBE TABLE, and partial restore of databases and tables.
 */
export { listPins, PIN_PREFIX, type Pin } from "./BackupSource.ts"
export * from "./Catalog.ts"
export * from "./Clone.ts"
export * from "./CloneError.ts"
export {
  type CatalogTable,
  type CloneMode,
  type CloneOf,
  type DatabaseEntry,
  EXTERNAL_CLONE_PREFIX,
  type ExternalCloneRecord,
  type Snapshot,
  type SnapshotFile,
  type TableEntry,
  type TableRef,
} from "./Layout.ts"
export * from "./TableRestore.ts"
