/**
 * The backup side of the GC protocol (docs/repository-format.md §10): a
 * backup announces itself with a shared lease before it looks at any block,
 * and waits while a vacuum sweeps.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { backup, type Cluster } from "../src/Backup.ts"
import { makeLocalMetaStore } from "../src/drivers/LocalMetaStore.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import { acquireExclusiveLease, BACKUP_LEASE, type LeaseRecord, liveSharedLeases, SWEEPING_PHASE, VACUUM_LEASE } from "../src/Lease.ts"
import { listBackupIds, openRepository } from "../src/Repository.ts"

const makeCluster = Effect.gen(function* () {
  const dir = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "bendsave-gc-")))
  yield* Effect.addFinalizer(() => Effect.promise(() => rm(dir, { recursive: true, force: true })))
  const cluster: Cluster = { name: "prod", meta: yield* makeLocalMetaStore(dir), storage: makeMemoryBlobStore() }
  yield* cluster.storage.put("t/a.parquet", new TextEncoder().encode("a".repeat(1000)))
  return cluster
})

describe("backup under the GC protocol", () => {
  it.live("waits while a vacuum is sweeping, and is listed as a live backup lease meanwhile", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const cluster = yield* makeCluster
        const repo = yield* openRepository(makeMemoryBlobStore(), { create: true })
        const waited = yield* Deferred.make<LeaseRecord>()
        const vacuum = yield* Effect.forkChild(
          Effect.scoped(
            Effect.gen(function* () {
              const lease = yield* acquireExclusiveLease(repo.store, VACUUM_LEASE, { operation: "vacuum (test)" })
              yield* lease.update({ phase: SWEEPING_PHASE })
              yield* Effect.sleep(1500)
            }),
          ),
        )
        yield* Effect.sleep(50)
        const running = yield* Effect.forkChild(
          backup(cluster, repo, { onVacuumWait: (v) => Deferred.doneUnsafe(waited, Effect.succeed(v)) }),
        )
        const seen = yield* Deferred.await(waited)
        assert.strictEqual(seen.operation, "vacuum (test)")
        // While it waits, the backup's lease is visible to the vacuum, and nothing is committed.
        const leases = yield* liveSharedLeases(repo.store, BACKUP_LEASE)
        assert.strictEqual(leases.length, 1)
        assert.strictEqual(leases[0].record.details.cluster, "prod")
        assert.deepStrictEqual(yield* listBackupIds(repo), [])
        yield* Fiber.join(vacuum)
        const result = yield* Fiber.join(running)
        assert.strictEqual(result.files_total, 1)
        // Done: the backup's lease is gone.
        assert.strictEqual((yield* liveSharedLeases(repo.store, BACKUP_LEASE)).length, 0)
        assert.strictEqual((yield* Stream.runCollect(repo.store.list("leases/shared/"))).length, 0)
      }),
    ),
  )

  it.live("does not wait for a vacuum that is not sweeping", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const cluster = yield* makeCluster
        const repo = yield* openRepository(makeMemoryBlobStore(), { create: true })
        yield* acquireExclusiveLease(repo.store, VACUUM_LEASE, { operation: "vacuum planning" })
        let waited = false
        const result = yield* backup(cluster, repo, { onVacuumWait: () => (waited = true) })
        assert.isFalse(waited)
        assert.strictEqual(result.files_total, 1)
      }),
    ),
  )
})
