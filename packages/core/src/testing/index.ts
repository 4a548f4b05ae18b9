export * from "./BlobStoreConformance.ts"
export * from "./FaultyBlobStore.ts"
export * from "./MetaStoreConformance.ts"
