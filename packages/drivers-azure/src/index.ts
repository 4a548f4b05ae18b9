/**
 * @bendsave/drivers-azure: the storage driver for Azure Blob Storage. The
 * default export is the driver definition bendsave loads for
 * `[storage] type = "azblob"` and `azblob://container/prefix` repositories.
 */
import { BlobStoreError } from "@bendsave/core/BlobStore"
import type { StorageDriver } from "@bendsave/core/StorageDriver"
import * as Effect from "effect/Effect"
import { AZURE_CAPABILITIES, makeAzureBlobStore } from "./AzureBlobStore.ts"
import { AZURE_OPTIONS_HELP, AZURE_SECRET_KEYS, type AzureOptions, AzureOptionsSchema, azureOptionsFromUrl, resolveAzureSettings } from "./AzureConfig.ts"
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
  make: (options, context) =>
    Effect.flatMap(
      Effect.try({
        try: () => resolveAzureSettings(options, context.env),
        catch: (e) =>
          new BlobStoreError({
            reason: "InvalidConfig",
            driver: DRIVER,
            operation: "open",
            detail: `${(e as { key?: string }).key === undefined ? "" : `option '${(e as { key?: string }).key}': `}${(e as Error).message}`,
          }),
      }),
      (settings) => makeAzureBlobStore(settings),
    ),
}

export default azureDriver
