import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { makeFsBlobStore } from "../src/drivers/FsBlobStore.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import {
  acquireExclusiveLease,
  acquireSharedLease,
  EXCLUSIVE_LEASE_PREFIX,
  listLeases,
  liveExclusiveLease,
  liveSharedLeases,
} from "../src/Lease.ts"

const keys = (store: ReturnType<typeof makeMemoryBlobStore>, prefix: string) =>
  Stream.runCollect(store.list(prefix)).pipe(Effect.map((all) => all.map((o) => o.key)))

describe("shared leases", () => {
  it.live("are listed as live while held and deleted when the scope closes", () =>
    Effect.gen(function* () {
      const store = makeMemoryBlobStore()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const a = yield* acquireSharedLease(store, "backup", { operation: "backup of a", details: { cluster: "a" } })
          yield* acquireSharedLease(store, "backup", { operation: "backup of b", details: { cluster: "b" } })
          const live = yield* liveSharedLeases(store, "backup")
          assert.deepStrictEqual(live.map((l) => l.record.details.cluster).sort(), ["a", "b"])
          assert.isTrue(a.key.startsWith("leases/shared/backup/"))
          assert.strictEqual((yield* liveSharedLeases(store, "restore")).length, 0)
        }),
      )
      assert.deepStrictEqual(yield* keys(store, "leases/"), [])
    }),
  )

  it.live("are renewed while held and expire when the holder stops renewing", () =>
    Effect.gen(function* () {
      const store = makeMemoryBlobStore()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const lease = yield* acquireSharedLease(store, "backup", { operation: "b", ttlMs: 300, renewEveryMs: 50 })
          const first = (yield* lease.current).expires_at
          yield* Effect.sleep(500)
          // Still live after more than one TTL: renewals moved the expiry.
          assert.isTrue(Date.parse((yield* lease.current).expires_at) > Date.parse(first))
          assert.strictEqual((yield* liveSharedLeases(store, "backup", 0)).length, 1)
          yield* lease.check
        }),
      )
      // A holder killed without cleanup: its object stays but stops being renewed.
      const fiber = yield* Effect.forkChild(
        Effect.scoped(Effect.andThen(acquireSharedLease(store, "backup", { operation: "killed", ttlMs: 200 }), Effect.never)),
      )
      yield* Effect.sleep(20)
      // Simulate SIGKILL: the object survives because the finalizer never ran (copy it aside).
      const [left] = yield* keys(store, "leases/shared/backup/")
      const bytes = yield* store.get(left)
      yield* Fiber.interrupt(fiber)
      yield* store.put(left, bytes)
      assert.strictEqual((yield* liveSharedLeases(store, "backup", 0)).length, 1)
      yield* Effect.sleep(300)
      assert.strictEqual((yield* liveSharedLeases(store, "backup", 0)).length, 0)
      assert.strictEqual((yield* liveSharedLeases(store, "backup", 1000)).length, 1, "clock skew widens expiry")
    }),
  )

  it.live("an unreadable lease object counts as live for a TTL after it was written", () =>
    Effect.gen(function* () {
      const store = makeMemoryBlobStore()
      yield* store.put("leases/shared/backup/x.json", new TextEncoder().encode("garbage"))
      const [info] = yield* listLeases(store)
      assert.isTrue(info.live)
      assert.isDefined(info.unreadable)
    }),
  )

  it.live("rejects a kind that is not a plain name", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Effect.scoped(acquireSharedLease(makeMemoryBlobStore(), "../x", { operation: "x" })))
      assert.isTrue(Exit.isFailure(exit))
    }),
  )
})

describe("exclusive leases", () => {
  it.live("a second taker fails with the holder named, or waits until it is released", () =>
    Effect.gen(function* () {
      const store = makeMemoryBlobStore()
      const holder = yield* Effect.forkChild(
        Effect.scoped(Effect.andThen(acquireExclusiveLease(store, "vacuum", { operation: "vacuum one" }), Effect.sleep(300))),
      )
      yield* Effect.sleep(30)
      const failed = yield* Effect.flip(Effect.scoped(acquireExclusiveLease(store, "vacuum", { operation: "vacuum two" })))
      assert.strictEqual(failed._tag, "LeaseHeldError")
      assert.include(failed.message, "vacuum one")
      assert.include(failed.fix, "expires")
      const started = Date.now()
      const second = yield* Effect.scoped(
        Effect.andThen(acquireExclusiveLease(store, "vacuum", { operation: "vacuum two", waitMs: 5000, pollMs: 20 }), (l) => l.current),
      )
      assert.isAtLeast(Date.now() - started, 150)
      assert.strictEqual(second.generation, 2)
      yield* Fiber.join(holder)
      assert.isUndefined(yield* liveExclusiveLease(store, "vacuum"))
    }),
  )

  it.live("an expired holder is taken over once, and the old holder learns it lost the lease", () =>
    Effect.gen(function* () {
      const store = makeMemoryBlobStore()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const old = yield* acquireExclusiveLease(store, "vacuum", {
            operation: "stalled",
            ttlMs: 100,
            renewEveryMs: 1_000_000,
          })
          yield* Effect.sleep(150)
          // Two racing takers: exactly one wins generation 2, the other then sees it live.
          const results = yield* Effect.all(
            [1, 2].map((i) =>
              Effect.exit(acquireExclusiveLease(store, "vacuum", { operation: `taker ${i}`, skewMs: 0 }).pipe(Effect.asVoid)),
            ),
            { concurrency: "unbounded" },
          )
          assert.strictEqual(results.filter(Exit.isSuccess).length, 1)
          const lost = yield* Effect.flip(old.check)
          assert.strictEqual(lost._tag, "LeaseLostError")
          const updated = yield* Effect.flip(old.update({ phase: "sweeping" }))
          assert.strictEqual(updated._tag, "LeaseLostError")
        }),
      )
    }),
  )

  it.live("update renews and records details others can read; generations stay few", () =>
    Effect.gen(function* () {
      const store = makeMemoryBlobStore()
      for (let i = 0; i < 5; i++) {
        yield* Effect.scoped(acquireExclusiveLease(store, "vacuum", { operation: `run ${i}` }))
      }
      yield* Effect.scoped(
        Effect.gen(function* () {
          const lease = yield* acquireExclusiveLease(store, "vacuum", { operation: "sweep" })
          yield* lease.update({ phase: "sweeping" })
          const live = yield* liveExclusiveLease(store, "vacuum")
          assert.strictEqual(live?.record.details.phase, "sweeping")
          assert.strictEqual(live?.record.generation, 6)
        }),
      )
      const left = yield* keys(store, EXCLUSIVE_LEASE_PREFIX)
      assert.isAtMost(left.length, 2)
    }),
  )

  it.live("works on the fs driver (create-only by link)", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "bendsave-lease-")))
      const store = yield* makeFsBlobStore(dir)
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* acquireExclusiveLease(store, "vacuum", { operation: "fs vacuum" })
          const again = yield* Effect.flip(acquireExclusiveLease(store, "vacuum", { operation: "second" }))
          assert.strictEqual(again._tag, "LeaseHeldError")
        }),
      )
      yield* Effect.promise(() => rm(dir, { recursive: true, force: true }))
    }),
  )
})

describe("leases of dead processes on this machine", () => {
  it.live("are not live: a rerun here takes over at once; on another host they wait for expiry", () =>
    Effect.gen(function* () {
      const store = makeMemoryBlobStore()
      const { hostname } = yield* Effect.promise(() => import("node:os"))
      const record = (host: string, pid: number) =>
        new TextEncoder().encode(
          JSON.stringify({
            format: "bendsave-lease",
            version: 1,
            mode: "exclusive",
            kind: "vacuum",
            id: "x",
            generation: 1,
            operation: "killed vacuum",
            details: {},
            holder: { host, pid, tool: "bendsave test" },
            acquired_at: new Date().toISOString(),
            renewed_at: new Date().toISOString(),
            expires_at: new Date(Date.now() + 60_000).toISOString(),
            ttl_ms: 60_000,
          }),
        )
      // A pid that cannot be running: above the kernel's pid_max.
      yield* store.put(`${EXCLUSIVE_LEASE_PREFIX}vacuum/000000000001.json`, record(hostname(), 2 ** 30))
      assert.isUndefined(yield* liveExclusiveLease(store, "vacuum"))
      const taken = yield* Effect.scoped(Effect.andThen(acquireExclusiveLease(store, "vacuum", { operation: "rerun" }), (l) => l.current))
      assert.strictEqual(taken.generation, 2)
      yield* store.put(`${EXCLUSIVE_LEASE_PREFIX}vacuum/000000000003.json`, record("another-machine", 2 ** 30))
      assert.isDefined(yield* liveExclusiveLease(store, "vacuum"))
    }),
  )
})
