/**
 * Tests of the `local` meta driver: the MetaStore conformance suite (plain and
 * under a prefix), then what is specific to the one-file format: the exact
 * file layout, revisions, crash safety, corruption, a missing directory, the
 * lock file and prefix isolation.
 */
import * as fs from "node:fs/promises"
import { hostname, tmpdir } from "node:os"
import * as path from "node:path"
import process from "node:process"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { describe, expect, it } from "vitest"
import { type LocalMetaStoreOptions, makeLocalMetaStore } from "../src/drivers/LocalMetaStore.ts"
import { compareBytes, displayKey, type MetaEntry, type MetaStore, type MetaStoreError } from "../src/MetaStore.ts"
import { metaStoreConformance } from "../src/testing/index.ts"

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)
const raw = (...bytes: Array<number>): Uint8Array => Uint8Array.from(bytes)
const entry = (key: Uint8Array | string, value: Uint8Array | string): MetaEntry => ({
  key: typeof key === "string" ? utf8(key) : key,
  value: typeof value === "string" ? utf8(value) : value,
})
const sorted = (entries: ReadonlyArray<MetaEntry>) => [...entries].sort((a, b) => compareBytes(a.key, b.key))
const show = (entries: ReadonlyArray<MetaEntry>) => entries.map((e) => `${displayKey(e.key)} = ${Buffer.from(e.value).toString("hex")}`)

const run = <A>(effect: Effect.Effect<A, MetaStoreError>): Promise<A> => Effect.runPromise(effect)
const runError = (effect: Effect.Effect<unknown, MetaStoreError>): Promise<MetaStoreError> => Effect.runPromise(Effect.flip(effect))

const open = (dir: string, options?: LocalMetaStoreOptions) => run(makeLocalMetaStore(dir, options))
const snapshotOf = async (store: MetaStore) => {
  const snapshot = await run(store.snapshot())
  return { revision: snapshot.revision, entries: await run(Stream.runCollect(snapshot.entries)) }
}
const replace = (store: MetaStore, entries: ReadonlyArray<MetaEntry>, dryRun = false) =>
  run(store.replace(Stream.fromIterable(entries), { dryRun }))

const tempDir = () => fs.mkdtemp(path.join(tmpdir(), "bendsave-local-meta-"))
const withDir = (body: (dir: string) => Promise<void>) => async () => {
  const dir = await tempDir()
  try {
    await body(dir)
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
}

/** Writes one key through a second store instance: a writer that is not the store under test. */
const writerFor = (dir: string, prefix?: string) => async (key: Uint8Array, value: Uint8Array | undefined) => {
  const other = await open(dir, { prefix })
  const before = await run(other.get(key))
  if (!(await run(other.compareAndSwap(key, before, value)))) throw new Error("writer lost a race")
}

metaStoreConformance("local", async () => {
  const dir = await tempDir()
  return {
    store: await open(dir),
    writer: writerFor(dir),
    cleanup: () => fs.rm(dir, { recursive: true, force: true }),
  }
})

/** Keys around "cluster/" on both sides; a store with that prefix must never see or touch them. */
const outsideEntries = sorted([
  entry("a", "outside"),
  entry("cluster", "no slash"),
  entry("cluster.", "sorts just before the prefix"),
  entry("cluster0", "sorts just after the prefix"),
  entry("clustez", "after"),
  entry(raw(0xff), raw(0x00)),
])

metaStoreConformance("local with prefix", async () => {
  const dir = await tempDir()
  await replace(await open(dir), outsideEntries)
  return {
    store: await open(dir, { prefix: "cluster/" }),
    writer: writerFor(dir, "cluster/"),
    cleanup: async () => {
      const all = await snapshotOf(await open(dir))
      const prefix = Buffer.from("cluster/")
      const outside = all.entries.filter((e) => !Buffer.from(e.key).subarray(0, prefix.length).equals(prefix))
      await fs.rm(dir, { recursive: true, force: true })
      expect(show(outside)).toEqual(show(outsideEntries))
    },
  }
})

describe("LocalMetaStore", () => {
  it(
    "reports driver, absolute location and prefix",
    withDir(async (dir) => {
      const store = await open(path.relative(process.cwd(), dir), { prefix: "p/" })
      expect(store.driver).toBe("local")
      expect(store.location).toBe(`local://${path.resolve(dir)}`)
      expect(store.prefix).toBe("p/")
    }),
  )

  describe("file format", () => {
    it(
      "writes the documented layout, plain text when UTF-8 and base64 otherwise",
      withDir(async (dir) => {
        const store = await open(dir)
        await replace(
          store,
          sorted([
            entry("a", "1"),
            entry('b\n"q\\', ""),
            entry("k", raw(0xc3)),
            entry(raw(0xef, 0xbb, 0xbf, 0x78), "é"),
            entry(raw(0xff, 0x00), raw(0x00, 0xff)),
          ]),
        )
        const text = await fs.readFile(path.join(dir, "meta.json"), "utf8")
        expect(text).toBe(
          [
            '{"format":"bendsave-local-meta","version":1,"revision":1,"entries":[',
            '{"key":"a","value":"1"},',
            '{"key":"b\\n\\"q\\\\","value":""},',
            '{"key":"k","value_b64":"ww=="},',
            '{"key":"\uFEFFx","value":"é"},',
            '{"key_b64":"/wA=","value_b64":"AP8="}',
            "]}",
            "",
          ].join("\n"),
        )
        expect(JSON.parse(text)).toEqual({
          format: "bendsave-local-meta",
          version: 1,
          revision: 1,
          entries: [
            { key: "a", value: "1" },
            { key: 'b\n"q\\', value: "" },
            { key: "k", value_b64: "ww==" },
            { key: "\uFEFFx", value: "é" },
            { key_b64: "/wA=", value_b64: "AP8=" },
          ],
        })
        // The BOM is part of the key, not stripped on the way back.
        const reread = await snapshotOf(await open(dir))
        expect(Buffer.from(reread.entries[3].key).toString("hex")).toBe("efbbbf78")

        await replace(store, [])
        expect(await fs.readFile(path.join(dir, "meta.json"), "utf8")).toBe(
          '{"format":"bendsave-local-meta","version":1,"revision":2,"entries":[]}\n',
        )
      }),
    )

    it(
      "reads any JSON layout with the documented structure",
      withDir(async (dir) => {
        const document = {
          format: "bendsave-local-meta",
          version: 1,
          revision: 41,
          entries: [
            { key_b64: Buffer.from("a").toString("base64"), value: "plain" },
            { key: "b", value_b64: "AAE=" },
          ],
        }
        await fs.writeFile(path.join(dir, "meta.json"), JSON.stringify(document, null, 4))
        const { revision, entries } = await snapshotOf(await open(dir))
        expect(revision).toBe(41)
        expect(show(entries)).toEqual(show([entry("a", "plain"), entry("b", raw(0, 1))]))
      }),
    )

    it(
      "a missing file is an empty keyspace at revision 0, and nothing is created by reading",
      withDir(async (dir) => {
        const store = await open(dir)
        expect(await snapshotOf(store)).toEqual({ revision: 0, entries: [] })
        expect(await run(store.get(utf8("a")))).toBeUndefined()
        expect(await replace(store, [entry("a", "1")], true)).toMatchObject({ added: 1 })
        expect(await fs.readdir(dir)).toEqual([])
      }),
    )

    it(
      "the revision goes up by exactly 1 on each write that changes something",
      withDir(async (dir) => {
        const store = await open(dir)
        const revision = async () => (await run(store.snapshot())).revision
        await replace(store, [entry("a", "1"), entry("b", "2")])
        expect(await revision()).toBe(1)
        await replace(store, [entry("a", "1"), entry("b", "2")])
        expect(await revision()).toBe(1)
        await replace(store, [entry("a", "changed")], true)
        expect(await revision()).toBe(1)
        expect(await run(store.compareAndSwap(utf8("a"), utf8("wrong"), utf8("x")))).toBe(false)
        expect(await revision()).toBe(1)
        expect(await run(store.compareAndSwap(utf8("a"), utf8("1"), utf8("x")))).toBe(true)
        expect(await revision()).toBe(2)
        expect(await run(store.compareAndSwap(utf8("a"), utf8("x"), utf8("x")))).toBe(true)
        expect(await run(store.compareAndSwap(utf8("zz"), undefined, undefined))).toBe(true)
        expect(await revision()).toBe(2)
        await replace(store, [entry("b", "2")])
        expect(await revision()).toBe(3)
        expect(JSON.parse(await fs.readFile(path.join(dir, "meta.json"), "utf8")).revision).toBe(3)
      }),
    )

    it(
      "the diff samples the first 5 keys of each kind",
      withDir(async (dir) => {
        const store = await open(dir)
        const keys = Array.from({ length: 8 }, (_, i) => entry(`k${i}`, "v"))
        const diff = await replace(store, [entry(raw(0x00, 0xff), "binary"), ...keys])
        expect(diff.added).toBe(9)
        expect(diff.sample.added).toEqual(["base64:AP8=", "k0", "k1", "k2", "k3"])
        const next = keys.map((e) => entry(e.key, "changed"))
        const second = await replace(store, next)
        expect(second.sample).toEqual({
          added: [],
          changed: ["k0", "k1", "k2", "k3", "k4"],
          removed: ["base64:AP8="],
        })
      }),
    )
  })

  describe("crash safety", () => {
    it(
      "ignores a temp file left by a crashed write and keeps the old content",
      withDir(async (dir) => {
        const initial = [entry("a", "1"), entry("b", "2")]
        await replace(await open(dir), initial)
        const good = await fs.readFile(path.join(dir, "meta.json"), "utf8")
        // A writer "crashed" halfway through its temp file, before the rename.
        const leftover = path.join(dir, ".meta.json.tmp-0123456789abcdef")
        await fs.writeFile(leftover, good.slice(0, good.length / 2))

        const store = await open(dir)
        expect(show((await snapshotOf(store)).entries)).toEqual(show(initial))
        expect(await fs.readFile(path.join(dir, "meta.json"), "utf8")).toBe(good)

        expect(await run(store.compareAndSwap(utf8("c"), undefined, utf8("3")))).toBe(true)
        expect(show((await snapshotOf(await open(dir))).entries)).toEqual(show([...initial, entry("c", "3")]))
        expect((await fs.readdir(dir)).sort()).toEqual([".meta.json.tmp-0123456789abcdef", "meta.json"])
      }),
    )

    it(
      "leaves no temp or lock file behind and serializes concurrent writers",
      withDir(async (dir) => {
        const stores = [await open(dir), await open(dir), await open(dir)]
        const increment = (store: MetaStore) =>
          Effect.gen(function* () {
            while (true) {
              const before = yield* store.get(utf8("counter"))
              const n = before === undefined ? 0 : Number(new TextDecoder().decode(before))
              if (yield* store.compareAndSwap(utf8("counter"), before, utf8(String(n + 1)))) return
            }
          })
        await run(
          Effect.all(
            Array.from({ length: 30 }, (_, i) => increment(stores[i % stores.length])),
            { concurrency: "unbounded" },
          ),
        )
        expect(new TextDecoder().decode(await run(stores[0].get(utf8("counter"))))).toBe("30")
        expect((await snapshotOf(stores[0])).revision).toBe(30)
        expect(await fs.readdir(dir)).toEqual(["meta.json"])
      }),
    )

    it(
      "a reader never sees a half-written file",
      withDir(async (dir) => {
        const store = await open(dir)
        const big = (round: number) =>
          Array.from({ length: 2000 }, (_, i) => entry(`key/${String(i).padStart(5, "0")}`, `round ${round} ${"x".repeat(64)}`))
        await replace(store, big(0))
        let writing = true
        let reads = 0
        const reader = (async () => {
          while (writing) {
            const text = await fs.readFile(path.join(dir, "meta.json"), "utf8")
            expect(JSON.parse(text).entries).toHaveLength(2000)
            reads++
          }
        })()
        for (let round = 1; round <= 15; round++) await replace(store, big(round))
        writing = false
        await reader
        expect(reads).toBeGreaterThan(0)
      }),
    )
  })

  describe("corruption", () => {
    const header = '"format":"bendsave-local-meta","version":1,"revision":3'
    const cases: ReadonlyArray<readonly [string, string | Uint8Array, string]> = [
      ["bad JSON", "{not json", "not valid JSON"],
      ["truncated file", `{${header},"entries":[{"key":"a","val`, "not valid JSON"],
      ["not UTF-8", raw(0x7b, 0xff, 0x7d), "not valid UTF-8"],
      ["another format", '{"format":"something-else","version":1,"revision":0,"entries":[]}', "bendsave-local-meta"],
      ["another version", '{"format":"bendsave-local-meta","version":2,"revision":0,"entries":[]}', "version 2"],
      ["negative revision", '{"format":"bendsave-local-meta","version":1,"revision":-1,"entries":[]}', "revision"],
      ["unknown field", `{${header},"entries":[],"extra":true}`, "extra"],
      ["key and key_b64", `{${header},"entries":[{"key":"a","key_b64":"YQ==","value":""}]}`, "key"],
      ["missing value", `{${header},"entries":[{"key":"a"}]}`, "entries"],
      ["unsorted keys", `{${header},"entries":[{"key":"b","value":""},{"key":"a","value":""}]}`, "ascending"],
      ["duplicate keys", `{${header},"entries":[{"key":"a","value":""},{"key_b64":"YQ==","value":""}]}`, "duplicate key 'a'"],
      ["bad base64", `{${header},"entries":[{"key":"a","value_b64":"not base64!"}]}`, "base64"],
      ["unpadded base64", `{${header},"entries":[{"key":"a","value_b64":"YQ"}]}`, "base64"],
      ["lone surrogate", `{${header},"entries":[{"key":"\\ud800","value":""}]}`, "surrogate"],
    ]
    for (const [label, content, problem] of cases) {
      it(
        `${label}: fails with Corrupt naming the file, and never overwrites it`,
        withDir(async (dir) => {
          const file = path.join(dir, "meta.json")
          await fs.writeFile(file, content)
          const store = await open(dir)
          const errors = [
            await runError(store.snapshot()),
            await runError(store.get(utf8("a"))),
            await runError(store.compareAndSwap(utf8("z"), undefined, utf8("1"))),
            await runError(store.replace(Stream.fromIterable([entry("a", "1")]))),
          ]
          for (const error of errors) {
            expect(error.reason).toBe("Corrupt")
            expect(error.detail).toContain(file)
            expect(error.detail).toContain(problem)
          }
          expect(Buffer.from(await fs.readFile(file)).equals(Buffer.from(content))).toBe(true)
          expect(await fs.readdir(dir)).toEqual(["meta.json"])
        }),
      )
    }
  })

  describe("missing directory", () => {
    const expectFixHint = (error: MetaStoreError, dir: string) => {
      expect(error.reason).toBe("NotFound")
      expect(error.detail).toContain(dir)
      expect(error.detail).toContain("create it")
      expect(error.detail).toContain("bendsave meta import")
      expect(error.detail).toContain("[meta] path")
    }

    it(
      "fails NotFound with how to fix it, unless create is set",
      withDir(async (base) => {
        const dir = path.join(base, "nested", "meta")
        expectFixHint(await runError(makeLocalMetaStore(dir)), dir)
        await expect(fs.stat(dir)).rejects.toThrow()

        const store = await open(dir, { create: true })
        expect((await fs.stat(dir)).isDirectory()).toBe(true)
        expect(await snapshotOf(store)).toEqual({ revision: 0, entries: [] })
        expect(await run(store.compareAndSwap(utf8("a"), undefined, utf8("1")))).toBe(true)
        expect(show((await snapshotOf(await open(dir))).entries)).toEqual(show([entry("a", "1")]))
      }),
    )

    it(
      "fails NotFound when the directory disappears after opening",
      withDir(async (base) => {
        const dir = path.join(base, "meta")
        const store = await open(dir, { create: true })
        await fs.rm(dir, { recursive: true })
        expectFixHint(await runError(store.snapshot()), dir)
        expectFixHint(await runError(store.get(utf8("a"))), dir)
        expectFixHint(await runError(store.compareAndSwap(utf8("a"), undefined, utf8("1"))), dir)
        expectFixHint(await runError(store.replace(Stream.fromIterable([entry("a", "1")]))), dir)
      }),
    )

    it(
      "fails InvalidConfig when the path is a file",
      withDir(async (base) => {
        const file = path.join(base, "not-a-dir")
        await fs.writeFile(file, "")
        const error = await runError(makeLocalMetaStore(file, { create: true }))
        expect(error.reason).toBe("InvalidConfig")
        expect(error.detail).toContain(file)
      }),
    )
  })

  describe("lock file", () => {
    const lockFile = (dir: string) => path.join(dir, "meta.lock")
    const writeLock = (dir: string, info: { pid?: number; host?: string; time?: string } | string) =>
      fs.writeFile(lockFile(dir), typeof info === "string" ? info : JSON.stringify(info))

    it(
      "fails Conflict while another live process holds a fresh lock, and waits for it otherwise",
      withDir(async (dir) => {
        const store = await open(dir, { lockWaitMs: 200 })
        await replace(store, [entry("a", "1")])
        const before = await fs.readFile(path.join(dir, "meta.json"), "utf8")
        await writeLock(dir, { pid: process.pid, host: hostname(), time: new Date().toISOString() })

        const started = Date.now()
        const error = await runError(store.compareAndSwap(utf8("a"), utf8("1"), utf8("2")))
        expect(Date.now() - started).toBeGreaterThanOrEqual(150)
        expect(error.reason).toBe("Conflict")
        expect(error.detail).toContain(lockFile(dir))
        expect(error.detail).toContain(`pid ${process.pid}`)
        expect((await runError(store.replace(Stream.fromIterable([])))).reason).toBe("Conflict")
        expect(await fs.readFile(path.join(dir, "meta.json"), "utf8")).toBe(before)
        await fs.stat(lockFile(dir)) // the failed writer did not remove someone else's lock

        // Reads do not take the lock.
        expect(show((await snapshotOf(store)).entries)).toEqual(show([entry("a", "1")]))

        // A patient writer proceeds once the holder removes its lock.
        const patient = await open(dir, { lockWaitMs: 10_000 })
        setTimeout(() => void fs.rm(lockFile(dir)), 300)
        expect(await run(patient.compareAndSwap(utf8("a"), utf8("1"), utf8("2")))).toBe(true)
        expect(await fs.readdir(dir)).toEqual(["meta.json"])
      }),
    )

    const staleLocks: ReadonlyArray<readonly [string, (dir: string) => Promise<void>]> = [
      ["a lock whose pid is not running", (dir) => writeLock(dir, { pid: 2 ** 30, host: hostname(), time: new Date().toISOString() })],
      [
        "a lock older than 30 s",
        (dir) => writeLock(dir, { pid: process.pid, host: hostname(), time: new Date(Date.now() - 31_000).toISOString() }),
      ],
      [
        "an unreadable lock file last modified over 30 s ago",
        async (dir) => {
          await writeLock(dir, "")
          const old = new Date(Date.now() - 60_000)
          await fs.utimes(lockFile(dir), old, old)
        },
      ],
    ]
    for (const [label, makeLock] of staleLocks) {
      it(
        `takes over ${label}`,
        withDir(async (dir) => {
          await makeLock(dir)
          const store = await open(dir, { lockWaitMs: 300 })
          expect(await run(store.compareAndSwap(utf8("a"), undefined, utf8("1")))).toBe(true)
          expect(show((await snapshotOf(store)).entries)).toEqual(show([entry("a", "1")]))
          expect(await fs.readdir(dir)).toEqual(["meta.json"])
        }),
      )
    }
  })

  describe("prefix", () => {
    it(
      "exposes and changes only keys under the prefix, relative to it",
      withDir(async (dir) => {
        const all = await open(dir)
        await replace(
          all,
          [...outsideEntries, entry("cluster/x", "1"), entry("cluster/y", "2")].sort((a, b) => compareBytes(a.key, b.key)),
        )
        const scoped = await open(dir, { prefix: "cluster/" })

        expect(show((await snapshotOf(scoped)).entries)).toEqual(show([entry("x", "1"), entry("y", "2")]))
        expect(await run(scoped.get(utf8("x")))).toEqual(utf8("1"))
        expect(await run(scoped.get(utf8("cluster/x")))).toBeUndefined()
        expect(await run(scoped.get(utf8("a")))).toBeUndefined()

        const diff = await replace(scoped, [entry("w", "0"), entry("y", "changed")])
        expect(diff).toEqual({
          added: 1,
          changed: 1,
          removed: 1,
          unchanged: 0,
          sample: { added: ["w"], changed: ["y"], removed: ["x"] },
        })
        expect(await run(scoped.compareAndSwap(utf8("z"), undefined, utf8("3")))).toBe(true)
        expect(await run(scoped.compareAndSwap(utf8("a"), utf8("outside"), undefined))).toBe(false)

        const expected = sorted([...outsideEntries, entry("cluster/w", "0"), entry("cluster/y", "changed"), entry("cluster/z", "3")])
        expect(show((await snapshotOf(all)).entries)).toEqual(show(expected))

        expect((await replace(scoped, [])).removed).toBe(3)
        expect(show((await snapshotOf(all)).entries)).toEqual(show(outsideEntries))
        expect((await snapshotOf(scoped)).revision).toBe((await snapshotOf(all)).revision)
      }),
    )
  })
})
