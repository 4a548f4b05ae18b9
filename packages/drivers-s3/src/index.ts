/**
 * @bendsave/drivers-s3: the storage driver for Amazon S3 and S3-compatible
 * services. The default export is the driver definition bendsave loads for
 * `[storage] type = "s3"` and `s3://bucket/prefix` repositories.
 */

import * as CloudDriver from "@bendsave/core/CloudDriver"
import type { StorageDriver } from "@bendsave/core/StorageDriver"
import { makeS3BlobStore, S3_CAPABILITIES } from "./S3BlobStore.ts"
import { resolveS3Settings, S3_OPTIONS_HELP, S3_SECRET_KEYS, type S3Options, S3OptionsSchema, s3OptionsFromUrl } from "./S3Config.ts"
import { DRIVER } from "./S3Errors.ts"

export * from "./S3BlobStore.ts"
export * from "./S3Config.ts"
export * from "./S3Errors.ts"

const s3Driver: StorageDriver<S3Options> = {
  name: "s3",
  schemes: ["s3"],
  configSchema: S3OptionsSchema,
  secretKeys: S3_SECRET_KEYS,
  optionsHelp: S3_OPTIONS_HELP,
  capabilities: S3_CAPABILITIES,
  fromUrl: s3OptionsFromUrl,
  make: CloudDriver.makeFromSettings(DRIVER, (options, context) => resolveS3Settings(options, context.env), makeS3BlobStore),
}

export default s3Driver
