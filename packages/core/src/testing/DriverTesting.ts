/**
 * DriverTesting: the setup every driver's integration tests repeat, so that
 * a driver's test file holds only what is specific to its service:
 *
 * - `serviceConformance`: the conformance suite against a real server, in a
 *   bucket the setup creates and removes, under a random root, through core's
 *   retry wrapper (as bendsave opens every store), with the server's gaps
 *   declared per setup (`capabilityOverrides`, each with its reason);
 * - `openTestStore` / `withTestStore`: a store opened outside any Effect scope
 *   and closed afterwards;
 * - `expectSuccess` / `expectFailure`: run one store operation from an async
 *   test, resolving with its value or with its error;
 * - `randomData`, `chunked`, `sha256Hex`: bodies and their digests.
 *
 * ```ts
 * serviceConformance("my driver on <server> (conformance)", {
 *   before: () => createBucket("test-c"),
 *   open: (root) => makeMyStore(settingsFor("test-c", root)),
 *   after: () => removeBucket("test-c"),
 * })
 * ```
 */
import { createHash, randomBytes } from "node:crypto"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { BlobStore, BlobStoreError } from "../BlobStore.ts"
import { DEFAULT_RETRY, withRetry } from "../StorageLimits.ts"
import { blobStoreConformance, type CapabilityOverrides } from "./BlobStoreConformance.ts"

/** How a store is opened: a driver's `make...BlobStore(settings)`. */
export type OpenStore = Effect.Effect<BlobStore, BlobStoreError, Scope.Scope>

/** A store opened outside any Effect scope; `close()` releases its clients and sockets. */
export interface TestStore {
  readonly store: BlobStore
  readonly close: () => Promise<void>
}

/** Opens a store outside any Effect scope (an async test, a `beforeAll`). */
export const openTestStore = async (open: OpenStore): Promise<TestStore> => {
  const scope = Effect.runSync(Scope.make())
  const store = await Effect.runPromise(Scope.provide(open, scope)).catch(async (error) => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  })
  return { store, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** Opens a store, runs `use` with it, and closes it, also when `use` fails. */
export const withTestStore = async <A>(open: OpenStore, use: (store: BlobStore) => Promise<A>): Promise<A> => {
  const { store, close } = await openTestStore(open)
  try {
    return await use(store)
  } finally {
    await close()
  }
}

/** Runs a store operation; resolves with its value, rejects (failing the test) with its error. */
export const expectSuccess = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

/** Runs a store operation that must fail; resolves with its error, rejects (failing the test) if it succeeds. */
export const expectFailure = <E>(effect: Effect.Effect<unknown, E>): Promise<E> => Effect.runPromise(Effect.flip(effect))

/** `n` random bytes. */
export const randomData = (n: number): Uint8Array => new Uint8Array(randomBytes(n))

/** `data` as a streamed body of chunks of `size` bytes (the last one shorter), each a copy. */
export const chunked = (data: Uint8Array, size: number): Stream.Stream<Uint8Array, BlobStoreError> => {
  const chunks: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += size) chunks.push(data.slice(i, i + size))
  return Stream.fromIterable(chunks)
}

/** Lowercase hex SHA-256, to compare large bodies in one assertion. */
export const sha256Hex = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex")

/** How `serviceConformance` reaches the service. */
export interface ServiceConformanceSetup {
  /** Opens the store under test with `root` (random per setup) as its prefix. */
  readonly open: (root: string) => OpenStore
  /** Runs before the store opens: create the bucket or container (drivers never create them). */
  readonly before?: () => Promise<void>
  /** Runs after the store closed: remove what `before` made. */
  readonly after?: () => Promise<void>
  /** Where the test server lacks a feature the real service has: the gap, with its reason (shown as a test). */
  readonly capabilityOverrides?: CapabilityOverrides
}

/**
 * The BlobStore conformance suite against a real server: per setup, `before`,
 * a store under a random root (`conformance-<hex>`) wrapped in core's retry of
 * transient failures (as bendsave opens it: a server's socket reset under load
 * is retried, not a failed test), then close and `after`.
 */
export const serviceConformance = (name: string, setup: ServiceConformanceSetup): void =>
  blobStoreConformance(
    name,
    async () => {
      await setup.before?.()
      const { store, close } = await openTestStore(setup.open(`conformance-${randomBytes(4).toString("hex")}`))
      return {
        store: withRetry(store, DEFAULT_RETRY),
        cleanup: async () => {
          await close()
          await setup.after?.()
        },
      }
    },
    setup.capabilityOverrides === undefined ? {} : { capabilityOverrides: setup.capabilityOverrides },
  )
