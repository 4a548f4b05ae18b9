/**
 * PrefixedStore: a view of a BlobStore under one key prefix.
 *
 * Replication keeps its lease, state and status with the TARGET cluster,
 * under the target storage's reserved prefix `.bendsave/`; the lease module
 * and the state module work on a BlobStore whose keys start at that prefix.
 * Keys are joined on the way in and stripped on the way out; listings stay in
 * bytewise order because every key shares the prefix.
 */
import type { BlobStore, ObjectInfo } from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

/** `store` seen from `prefix` (which ends with '/'). */
export const prefixedStore = (store: BlobStore, prefix: string): BlobStore => {
  const inner = (key: string) => `${prefix}${key}`
  const outer = (info: ObjectInfo): ObjectInfo => ({ ...info, key: info.key.slice(prefix.length) })
  return {
    driver: store.driver,
    location: `${store.location.replace(/\/+$/, "")}/${prefix.replace(/\/+$/, "")}`,
    capabilities: store.capabilities,
    get: (key) => store.get(inner(key)),
    getRange: (key, offset, length) => store.getRange(inner(key), offset, length),
    getStream: (key) => store.getStream(inner(key)),
    put: (key, body, options) => Effect.map(store.put(inner(key), body, options), outer),
    head: (key) => Effect.map(store.head(inner(key)), outer),
    list: (p) => Stream.map(store.list(inner(p)), outer),
    delete: (key) => store.delete(inner(key)),
    deleteMany: (keys) => store.deleteMany(keys.map(inner)),
    copy: (from, to) => Effect.map(store.copy(inner(from), inner(to)), outer),
  }
}
