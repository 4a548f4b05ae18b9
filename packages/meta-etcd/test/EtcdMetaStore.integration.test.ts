/**
 * The etcd meta driver against real etcd servers (started by the vitest
 * global setup with scripts/etcd-up.sh; see etcdServers.ts): the MetaStore
 * conformance suite, snapshots under concurrent writers checked against
 * `etcdctl get --prefix --rev=R`, restores into a second etcd, drift, 100 000
 * keys, transaction limits, and concurrent-change detection.
 */
import { Buffer } from "node:buffer"
import { createHash, randomBytes } from "node:crypto"
import { compareBytes, displayKey, type MetaEntry, type MetaStore, type MetaStoreError } from "@bendsave/core"
import { metaStoreConformance } from "@bendsave/core/testing"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Etcd3 } from "etcd3"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type EtcdMetaStoreOptions, makeEtcdMetaStore } from "../src/index.ts"
import { type EtcdServer, etcdAvailable, etcdctlGetPrefix, etcdctlOk, etcdEndpoints, startEtcdServer } from "./etcdServers.ts"

const utf8 = (text: string) => new TextEncoder().encode(text)
const randomPrefix = (label: string) => `/bendsave-test/${label}-${randomBytes(6).toString("hex")}/`
const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex")
/** Exact rendering of entries for comparison. */
const show = (entries: ReadonlyArray<{ key: Uint8Array; value: Uint8Array }>) => entries.map((e) => `${hex(e.key)}=${hex(e.value)}`)
const digest = (entries: ReadonlyArray<{ key: Uint8Array; value: Uint8Array }>) => {
  const hash = createHash("sha256")
  for (const e of entries) {
    hash.update(`${e.key.length}:`).update(e.key).update(`${e.value.length}:`).update(e.value)
  }
  return { count: entries.length, sha256: hash.digest("hex") }
}

/** Opens a store outside any Effect scope: `close()` closes its client. */
const open = async (options: EtcdMetaStoreOptions): Promise<{ store: MetaStore; close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const exit = await Effect.runPromiseExit(Scope.provide(makeEtcdMetaStore(options), scope))
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw Exit.isFailure(exit) ? (exit.cause.reasons[0] as { error?: unknown }).error ?? exit.cause : exit
  }
  return { store: exit.value, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect)
const runError = <A>(effect: Effect.Effect<A, MetaStoreError>) => Effect.runPromise(Effect.flip(effect))
const collect = async (store: MetaStore) => {
  const snapshot = await run(store.snapshot())
  return { revision: snapshot.revision, entries: await run(Stream.runCollect(snapshot.entries)) }
}
const relativeTo = (prefix: string, kvs: ReadonlyArray<{ key: Buffer; value: Buffer }>) =>
  kvs.map((kv) => ({ key: kv.key.subarray(Buffer.byteLength(prefix)), value: kv.value }))

/** A raw etcd3 client for writing behind the store's back. */
const rawClient = (endpoint: string) => new Etcd3({ hosts: endpoint, grpcOptions: { "grpc.max_receive_message_length": -1 } })

const clients: Array<Etcd3> = []
afterAll(() => {
  for (const c of clients) c.close()
})

const conformanceSetup = (options: Partial<EtcdMetaStoreOptions>) => async () => {
  const { endpoints } = etcdEndpoints()
  const prefix = randomPrefix("conformance")
  const { store, close } = await open({ endpoints: [endpoints], prefix, create: true, ...options })
  const raw = rawClient(endpoints)
  clients.push(raw)
  return {
    store,
    writer: async (key: Uint8Array, value: Uint8Array | undefined) => {
      const full = Buffer.concat([Buffer.from(prefix), key])
      if (value === undefined) await raw.delete().key(full)
      else await raw.put(full).value(Buffer.from(value))
    },
    cleanup: async () => {
      await raw.delete().prefix(prefix)
      await close()
    },
  }
}

metaStoreConformance("etcd", conformanceSetup({}))
// Tiny pages and transactions: every paging, batching and delete-run path runs many times.
metaStoreConformance("etcd (5-key pages, 8-op transactions, 3-key delete runs)", conformanceSetup({ pageSize: 5, txnOps: 8, txnBytes: 600, deleteRunKeys: 3 }))

describe("etcd meta driver", () => {
  it("a snapshot taken while writers keep changing keys equals etcdctl's view at the recorded revision, and restores exactly into a second etcd", async () => {
    const { endpoints, endpoints2 } = etcdEndpoints()
    const prefix = randomPrefix("writers")
    const raw = rawClient(endpoints)
    clients.push(raw)
    // 3000 keys with binary bits, written in batches.
    const initial: Array<MetaEntry> = []
    for (let i = 0; i < 3000; i++) {
      initial.push({ key: Uint8Array.of(...utf8(`k/${String(i).padStart(5, "0")}`), i % 256), value: randomBytes(i % 97) })
    }
    initial.sort((a, b) => compareBytes(a.key, b.key))
    const { store, close } = await open({ endpoints: [endpoints], prefix, create: true, pageSize: 50 })
    try {
      await run(store.replace(Stream.fromIterable(initial)))
      // Writers change, add and delete keys all through the snapshot.
      let writing = true
      let writes = 0
      const writer = (async () => {
        while (writing) {
          const i = Math.floor(Math.random() * 3500)
          const key = Buffer.concat([Buffer.from(`${prefix}k/${String(i).padStart(5, "0")}`), Buffer.of(i % 256)])
          if (i % 5 === 0) await raw.delete().key(key)
          else await raw.put(key).value(randomBytes(8))
          writes++
        }
      })()
      await new Promise((resolve) => setTimeout(resolve, 50))
      const snapshot = await run(store.snapshot())
      const entries: Array<MetaEntry> = []
      await run(
        Stream.runForEach(snapshot.entries, (e) =>
          Effect.promise(async () => {
            entries.push(e)
            // Slow the reader down so the writers interleave with the pages.
            if (entries.length % 100 === 0) await new Promise((resolve) => setTimeout(resolve, 5))
          }),
        ),
      )
      writing = false
      await writer
      expect(writes).toBeGreaterThan(50)
      const current = etcdctlGetPrefix(endpoints, prefix)
      expect(digest(relativeTo(prefix, current))).not.toEqual(digest(entries))

      const atRevision = relativeTo(prefix, etcdctlGetPrefix(endpoints, prefix, snapshot.revision))
      expect(show(entries)).toEqual(show(atRevision))

      // Restore into the second etcd under another prefix.
      const prefix2 = randomPrefix("writers-restored")
      const target = await open({ endpoints: [endpoints2], prefix: prefix2, create: true })
      try {
        const diff = await run(target.store.replace(Stream.fromIterable(entries)))
        expect(diff.added).toBe(entries.length)
        expect(show(relativeTo(prefix2, etcdctlGetPrefix(endpoints2, prefix2)))).toEqual(show(atRevision))
      } finally {
        etcdctlOk(endpoints2, ["del", prefix2, "--prefix"])
        await target.close()
      }
    } finally {
      etcdctlOk(endpoints, ["del", prefix, "--prefix"])
      await close()
    }
  })

  it("replace over a drifted keyspace reports added / changed / removed with samples and leaves exactly the snapshot", async () => {
    const { endpoints2 } = etcdEndpoints()
    const prefix = randomPrefix("drift")
    const { store, close } = await open({ endpoints: [endpoints2], prefix, create: true })
    try {
      const backup = Array.from({ length: 500 }, (_, i) => ({ key: utf8(`t/${String(i).padStart(4, "0")}`), value: utf8(`v${i}`) }))
      await run(store.replace(Stream.fromIterable(backup)))
      const saved = await collect(store)
      // Drift: keys added, changed, removed behind the store's back.
      etcdctlOk(endpoints2, ["put", `${prefix}t/0007`, "changed"])
      etcdctlOk(endpoints2, ["put", `${prefix}t/0100`, "changed"])
      etcdctlOk(endpoints2, ["del", `${prefix}t/0200`, `${prefix}t/0210`])
      etcdctlOk(endpoints2, ["put", `${prefix}new/a`, "x"])
      etcdctlOk(endpoints2, ["put", `${prefix}t/0050x`, "x"])
      // A key just outside the prefix must be left alone.
      const outside = `${prefix.slice(0, -1)}0outside`
      etcdctlOk(endpoints2, ["put", outside, "keep"])

      const plan = await run(store.replace(Stream.fromIterable(saved.entries), { dryRun: true }))
      expect(plan).toEqual({
        added: 10,
        changed: 2,
        removed: 2,
        unchanged: 488,
        sample: {
          added: ["t/0200", "t/0201", "t/0202", "t/0203", "t/0204"],
          changed: ["t/0007", "t/0100"],
          removed: ["new/a", "t/0050x"],
        },
      })
      expect(relativeTo(prefix, etcdctlGetPrefix(endpoints2, prefix)).length).toBe(500 - 10 + 2)

      expect(await run(store.replace(Stream.fromIterable(saved.entries)))).toEqual(plan)
      expect(show(relativeTo(prefix, etcdctlGetPrefix(endpoints2, prefix)))).toEqual(show(saved.entries))
      expect(etcdctlOk(endpoints2, ["get", outside, "--print-value-only"]).toString().trim()).toBe("keep")
      etcdctlOk(endpoints2, ["del", outside])
    } finally {
      etcdctlOk(endpoints2, ["del", prefix, "--prefix"])
      await close()
    }
  })

  it("100 000 keys with values up to 64 KiB and binary keys: snapshot equals etcdctl's view, restore into a second etcd is exact", async () => {
    const { endpoints, endpoints2 } = etcdEndpoints()
    const prefix = randomPrefix("100k")
    const prefix2 = randomPrefix("100k-restored")
    const big = 64 * 1024
    const entries: Array<MetaEntry> = []
    for (let i = 0; i < 100_000; i++) {
      const key =
        i % 10 === 0 ? Uint8Array.of(0xfe, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff, 0x00, 0xff) : utf8(`tables/${(i * 7919) % 100_003}/${i.toString(36)}`)
      const size = i % 500 === 0 ? big : i % 7 === 0 ? 0 : 16 + (i % 200)
      const value = new Uint8Array(size)
      for (let j = 0; j < size; j += 997) value[j] = (i + j) & 0xff
      value[size - 1] = i & 0xff
      entries.push({ key, value })
    }
    entries.sort((a, b) => compareBytes(a.key, b.key))
    const source = await open({ endpoints: [endpoints], prefix, create: true })
    const target = await open({ endpoints: [endpoints2], prefix: prefix2, create: true })
    try {
      const loaded = await run(source.store.replace(Stream.fromIterable(entries)))
      expect(loaded.added).toBe(100_000)
      const snapshot = await run(source.store.snapshot())
      const restored = await run(target.store.replace(snapshot.entries))
      expect([restored.added, restored.changed, restored.removed]).toEqual([100_000, 0, 0])

      const expected = digest(entries)
      expect(digest(relativeTo(prefix, etcdctlGetPrefix(endpoints, prefix, snapshot.revision)))).toEqual(expected)
      expect(digest(relativeTo(prefix2, etcdctlGetPrefix(endpoints2, prefix2)))).toEqual(expected)
      expect(digest((await collect(target.store)).entries)).toEqual(expected)

      // Replacing again changes nothing and writes nothing.
      const before = (await run(target.store.snapshot())).revision
      const again = await run(target.store.replace(snapshot.entries))
      expect([again.added, again.changed, again.removed, again.unchanged]).toEqual([0, 0, 0, 100_000])
      expect((await run(target.store.snapshot())).revision).toBe(before)
    } finally {
      etcdctlOk(endpoints, ["del", prefix, "--prefix"])
      etcdctlOk(endpoints2, ["del", prefix2, "--prefix"])
      await source.close()
      await target.close()
    }
  })

  it("a key written concurrently during a replace stops it with Conflict naming the key; running it again completes it", async () => {
    const { endpoints } = etcdEndpoints()
    const prefix = randomPrefix("conflict")
    const raw = rawClient(endpoints)
    clients.push(raw)
    const { store, close } = await open({ endpoints: [endpoints], prefix, create: true, txnOps: 10 })
    try {
      const entries = Array.from({ length: 200 }, (_, i) => ({ key: utf8(`k${String(i).padStart(3, "0")}`), value: utf8(`v${i}`) }))
      await run(store.replace(Stream.fromIterable(entries)))
      const next = entries.map((e) => ({ key: e.key, value: utf8("new") }))
      // The replace reads its input twice (check, then write): interfere during the second pass only.
      let passes = 0
      const input = Stream.unwrap(
        Effect.sync(() => {
          passes++
          if (passes === 1) return Stream.fromIterable(next)
          return Stream.concat(
            Stream.fromIterable(next.slice(0, 50)),
            Stream.concat(
              Stream.fromEffect(Effect.promise(() => raw.put(`${prefix}k150`).value("someone else"))).pipe(Stream.drain),
              Stream.fromIterable(next.slice(50)),
            ),
          )
        }),
      )
      const error = await runError(store.replace(input))
      expect(error.reason).toBe("Conflict")
      expect(error.message).toContain("k150")
      expect(error.fix).toMatch(/stop the cluster's writers/)
      const partial = relativeTo(prefix, etcdctlGetPrefix(endpoints, prefix))
      expect(partial.filter((e) => Buffer.from(e.value).toString() === "new").length).toBeGreaterThan(0)
      expect(partial.filter((e) => Buffer.from(e.value).toString() !== "new").length).toBeGreaterThan(0)

      const diff = await run(store.replace(Stream.fromIterable(next)))
      expect(diff.changed).toBeGreaterThan(0)
      expect(show(relativeTo(prefix, etcdctlGetPrefix(endpoints, prefix)))).toEqual(show(next))
    } finally {
      etcdctlOk(endpoints, ["del", prefix, "--prefix"])
      await close()
    }
  })

  it("a key deleted concurrently during a replace is reported as a Conflict", async () => {
    const { endpoints } = etcdEndpoints()
    const prefix = randomPrefix("conflict-delete")
    const raw = rawClient(endpoints)
    clients.push(raw)
    const { store, close } = await open({ endpoints: [endpoints], prefix, create: true, txnOps: 10 })
    try {
      const entries = Array.from({ length: 100 }, (_, i) => ({ key: utf8(`k${String(i).padStart(3, "0")}`), value: utf8(`v${i}`) }))
      await run(store.replace(Stream.fromIterable(entries)))
      // Change the second half only; delete an unchanged key of the first half while the replace runs.
      const next = entries.map((e, i) => (i >= 50 ? { key: e.key, value: utf8("new") } : e))
      let passes = 0
      const input = Stream.unwrap(
        Effect.sync(() => {
          passes++
          if (passes === 1) return Stream.fromIterable(next)
          return Stream.concat(
            Stream.fromIterable(next.slice(0, 60)),
            Stream.concat(Stream.fromEffect(Effect.promise(() => raw.delete().key(`${prefix}k010`))).pipe(Stream.drain), Stream.fromIterable(next.slice(60))),
          )
        }),
      )
      const error = await runError(store.replace(input))
      expect(error.reason).toBe("Conflict")
      expect(error.message).toContain("99 keys afterwards, not the 100 given")
    } finally {
      etcdctlOk(endpoints, ["del", prefix, "--prefix"])
      await close()
    }
  })

  it("a one-shot input stream (drained by the check pass) is refused and removes nothing", async () => {
    const { endpoints } = etcdEndpoints()
    const prefix = randomPrefix("one-shot")
    const { store, close } = await open({ endpoints: [endpoints], prefix, create: true })
    try {
      const entries = Array.from({ length: 300 }, (_, i) => ({ key: utf8(`k${String(i).padStart(3, "0")}`), value: utf8(`v${i}`) }))
      await run(store.replace(Stream.fromIterable(entries)))
      function* once() {
        yield* entries
      }
      const error = await runError(store.replace(Stream.fromIterable(once())))
      expect(error.reason).toBe("InvalidInput")
      expect(error.detail).toContain("gave different entries when it was read again (300 entries, then 0)")
      expect(show(relativeTo(prefix, etcdctlGetPrefix(endpoints, prefix)))).toEqual(show(entries))
    } finally {
      etcdctlOk(endpoints, ["del", prefix, "--prefix"])
      await close()
    }
  })

  it("never touches keys outside the prefix, also when the prefix ends in 0xff bytes", async () => {
    const { endpoints } = etcdEndpoints()
    const raw = rawClient(endpoints)
    clients.push(raw)
    const base = randomPrefix("ff")
    const prefix = `${base}\u00ff` // UTF-8 C3 BF: the range end increments the last byte
    const neighbours = [`${base}\u00fe`, `${base}\u0100`, `${base}`]
    for (const key of neighbours) await raw.put(key).value("neighbour")
    const { store, close } = await open({ endpoints: [endpoints], prefix, create: true })
    try {
      await run(store.replace(Stream.fromIterable([{ key: Uint8Array.of(0xff, 0xff), value: utf8("mine") }])))
      expect((await collect(store)).entries.length).toBe(1)
      await run(store.replace(Stream.empty))
      for (const key of neighbours) expect(await raw.get(key).string()).toBe("neighbour")
      expect((await collect(store)).entries.length).toBe(0)
    } finally {
      await raw.delete().prefix(base)
      await close()
    }
  })

  describe("on a server with lower limits (--max-txn-ops 16, --max-request-bytes 96 KiB)", () => {
    let server: EtcdServer
    beforeAll(async () => {
      if (!etcdAvailable()) return
      server = await startEtcdServer({ flags: ["--max-txn-ops=16", `--max-request-bytes=${96 * 1024}`] })
    })
    afterAll(async () => {
      await server?.stop()
    })

    it("replace splits transactions the server refuses and still writes everything", async () => {
      etcdEndpoints()
      const prefix = randomPrefix("limits")
      const { store, close } = await open({ endpoints: [server.endpoint], prefix, create: true })
      try {
        const entries = Array.from({ length: 600 }, (_, i) => ({ key: utf8(`k${String(i).padStart(4, "0")}`), value: randomBytes(i % 3 === 0 ? 20_000 : 10) }))
        const diff = await run(store.replace(Stream.fromIterable(entries)))
        expect(diff.added).toBe(600)
        expect(show(relativeTo(prefix, etcdctlGetPrefix(server.endpoint, prefix)))).toEqual(show(entries))
      } finally {
        await close()
      }
    })

    it("a value larger than the server accepts in one request is InvalidInput with the server setting to raise", async () => {
      etcdEndpoints()
      const prefix = randomPrefix("too-big")
      const { store, close } = await open({ endpoints: [server.endpoint], prefix, create: true })
      try {
        const error = await runError(store.replace(Stream.fromIterable([{ key: utf8("huge"), value: new Uint8Array(200 * 1024) }])))
        expect(error.reason).toBe("InvalidInput")
        expect(error.fix).toContain("--max-request-bytes")
      } finally {
        await close()
      }
    })
  })

  it("snapshot and get hand out copies, not views of whole gRPC messages", async () => {
    const { endpoints } = etcdEndpoints()
    const prefix = randomPrefix("copies")
    const { store, close } = await open({ endpoints: [endpoints], prefix, create: true })
    try {
      await run(store.replace(Stream.fromIterable([{ key: utf8("a"), value: utf8("1") }, { key: utf8("b"), value: utf8("2") }])))
      const { entries } = await collect(store)
      for (const e of entries) {
        expect(e.key.byteLength).toBe(e.key.buffer.byteLength)
        expect(e.value.byteLength).toBe(e.value.buffer.byteLength)
      }
      expect(entries.map((e) => displayKey(e.key))).toEqual(["a", "b"])
    } finally {
      etcdctlOk(endpoints, ["del", prefix, "--prefix"])
      await close()
    }
  })
})
