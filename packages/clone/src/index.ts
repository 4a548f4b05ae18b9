/**
 * @bendsave/clone: table-level workflows over the table layout of
 * docs/table-layout.md: SHALLOW / DEEP CLONE of tables and databases (from a
 * live cluster or from a backup), DROP TABLE [PURGE], SHOW DATABASES / TABLES /
 * CLONES, DESCRIBE TABLE, and partial restore of databases and tables.
 */
export * from "./Catalog.ts"
export * from "./Clone.ts"
export * from "./CloneError.ts"
export type { CatalogTable, CloneMode, CloneOf, DatabaseEntry, Snapshot, SnapshotFile, TableEntry, TableRef } from "./Layout.ts"
export * from "./TableRestore.ts"
