/**
 * @bendsave/meta-etcd: the `etcd` meta driver of bendsave.
 *
 * `openEtcdMetaStore(config)` opens the store a cluster file's `[meta] type =
 * "etcd"` section describes (core's `openCluster` imports this package on
 * first use); `makeEtcdMetaStore(options)` takes the options directly. See
 * EtcdMetaStore.ts for the behaviour and EtcdErrors.ts for the errors.
 */
import { readFile } from "node:fs/promises"
import { type EtcdMetaConfig, type EtcdMetaDriverModule, MetaStoreError } from "@bendsave/core"
import * as Effect from "effect/Effect"
import { DRIVER } from "./EtcdErrors.ts"
import { makeEtcdMetaStore } from "./EtcdMetaStore.ts"

export { classifyError, type EtcdErrorContext } from "./EtcdErrors.ts"
export { type EtcdMetaStoreOptions, makeEtcdMetaStore, prefixRangeEnd } from "./EtcdMetaStore.ts"

const readPem = (key: string, file: string | undefined) =>
  file === undefined
    ? Effect.succeed(undefined)
    : Effect.tryPromise({
        try: () => readFile(file),
        catch: (cause) =>
          new MetaStoreError({
            reason: "InvalidConfig",
            driver: DRIVER,
            operation: "open",
            detail: `cannot read the [meta.tls] ${key} ${file}: ${(cause as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : String((cause as Error).message ?? cause)}`,
            fix: `correct \`${key}\` in [meta.tls] (relative paths resolve against the cluster file's directory)`,
            cause,
          }),
      })

/** Opens the etcd meta store of a cluster file's `[meta]` section; the client closes with the scope. */
export const openEtcdMetaStore = Effect.fnUntraced(function* (config: EtcdMetaConfig, options?: { readonly create?: boolean }) {
  const ca = yield* readPem("ca_file", config.tls?.caFile)
  const cert = yield* readPem("cert_file", config.tls?.certFile)
  const key = yield* readPem("key_file", config.tls?.keyFile)
  return yield* makeEtcdMetaStore({
    endpoints: config.endpoints,
    prefix: config.prefix,
    username: config.username,
    password: config.password,
    passwordSource: config.passwordSource,
    tls: config.tls === undefined ? undefined : { ca, cert, key },
    dialTimeoutMs: config.dialTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    create: options?.create,
  })
})

/** What core's `openCluster` imports (checked against core's interface). */
export const etcdMetaDriver: EtcdMetaDriverModule = { openEtcdMetaStore }
