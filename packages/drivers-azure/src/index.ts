/**
 * @bendsave/drivers-azure: the storage driver for Azure Blob Storage. The
 * default export is the driver definition bendsave loads for
 * `[storage] type = "azblob"` and `azblob://container/prefix` repositories.
 */
import * as CloudDriver from "@bendsave/core/CloudDriver"
import type { StorageDriver } from "@bendsave/core/StorageDriver"
import { AZURE_CAPABILITIES, makeAzureBlobStore } from "./AzureBlobStore.ts"
import {
  AZURE_OPTIONS_HELP,
  AZURE_SECRET_KEYS,
  type AzureOptions,
  AzureOptionsSchema,
  azureOptionsFromUrl,
  resolveAzureSettings,
} from "./AzureConfig.ts"
import { DRIVER } from "./AzureErrors.ts"

export * from "./AzureBlobStore.ts"
export * from "./AzureConfig.ts"
export * from "./AzureErrors.ts"

const azureDriver: StorageDriver<AzureOptions> = {
  name: "azblob",
  schemes: ["azblob"],
  configSchema: AzureOptionsSchema,
  secretKeys: AZURE_SECRET_KEYS,
  optionsHelp: AZURE_OPTIONS_HELP,
  capabilities: AZURE_CAPABILITIES,
  fromUrl: azureOptionsFromUrl,
  make: CloudDriver.makeFromSettings(DRIVER, (options, context) => resolveAzureSettings(options, context.env), makeAzureBlobStore),
}

export default azureDriver
