export * from "./BlobStoreConformance.ts"
export * from "./DriverTesting.ts"
export * from "./FaultyBlobStore.ts"
export * from "./MetaStoreConformance.ts"
