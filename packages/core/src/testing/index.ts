export * from "./BlobStoreConformance.ts"
export * from "./MetaStoreConformance.ts"
export * from "./FaultyBlobStore.ts"
