/**
 * @bendsave/replicate: incremental, resumable replication of a cluster, a
 * database or a table to another cluster (directly, or through a backup
 * repository), with its lease, state and status kept on the target under
 * the reserved `.bendsave/` prefix. The layout is specified in
 * docs/replication.md.
 */
export * from "./Continuous.ts"
export { prefixedStore } from "./PrefixedStore.ts"
export * from "./Replicate.ts"
export * from "./ReplicationScope.ts"
export {
  type CommittedState,
  type FileRecord,
  REPLICATION_PREFIX,
  ReplicationStateError,
  readCommittedState,
  stateKey,
  statusKey,
  streamPrefix,
} from "./ReplicationState.ts"
export * from "./ReplicationStatus.ts"
