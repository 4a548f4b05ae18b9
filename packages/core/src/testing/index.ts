export * from "./BlobStoreConformance.ts"
export * from "./MetaStoreConformance.ts"
