/**
 * @bendsave/drivers-gcs: the storage driver for Google Cloud Storage. The
 * default export is the driver definition bendsave loads for
 * `[storage] type = "gcs"` and `gs://bucket/prefix` repositories.
 */
import * as CloudDriver from "@bendsave/core/CloudDriver"
import type { StorageDriver } from "@bendsave/core/StorageDriver"
import { GCS_CAPABILITIES, makeGcsBlobStore } from "./GcsBlobStore.ts"
import { GCS_OPTIONS_HELP, GCS_SECRET_KEYS, type GcsOptions, GcsOptionsSchema, gcsOptionsFromUrl, resolveGcsSettings } from "./GcsConfig.ts"
import { DRIVER } from "./GcsErrors.ts"

export * from "./GcsBlobStore.ts"
export * from "./GcsConfig.ts"
export * from "./GcsErrors.ts"

const gcsDriver: StorageDriver<GcsOptions> = {
  name: "gcs",
  schemes: ["gs"],
  configSchema: GcsOptionsSchema,
  secretKeys: GCS_SECRET_KEYS,
  optionsHelp: GCS_OPTIONS_HELP,
  capabilities: GCS_CAPABILITIES,
  fromUrl: gcsOptionsFromUrl,
  make: CloudDriver.makeFromSettings(
    DRIVER,
    (options, context) => resolveGcsSettings(options, context.env, context.baseDir),
    makeGcsBlobStore,
  ),
}

export default gcsDriver
