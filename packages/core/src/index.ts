/**
 * @bendsave/core: repository format, manifests, driver contracts and the
 * backup, restore, verify, list and vacuum workflows.
 */
export * from "./Backup.ts"
export * from "./BlobStore.ts"
export * from "./ClusterConfig.ts"
export { makeFsBlobStore } from "./drivers/FsBlobStore.ts"
export { makeLocalMetaStore } from "./drivers/LocalMetaStore.ts"
export { makeMemoryBlobStore } from "./drivers/MemoryBlobStore.ts"
/** The generated protobuf types of repository format v1 (`bendsave.manifest.v1`). */
export * as ManifestProto from "./gen/bendsave/manifest/v1/manifest_pb.ts"
export * from "./Hash.ts"
export * from "./IdSorter.ts"
export * from "./Lease.ts"
export * from "./List.ts"
export * from "./Manifest.ts"
export * from "./MetaJsonLines.ts"
export * from "./MetaStore.ts"
export * from "./Pages.ts"
export * from "./Pins.ts"
export * from "./Registry.ts"
export * from "./Repository.ts"
export * from "./Restore.ts"
export * from "./StorageDriver.ts"
export * from "./StorageLimits.ts"
export * from "./Vacuum.ts"
export * from "./Verify.ts"
export * from "./Version.ts"
