/**
 * MetaStore conformance suite.
 *
 * `metaStoreConformance(name, setup)` registers a vitest `describe` block that
 * checks the behaviour sentences of the `MetaStore` contract against any
 * driver. Every test calls `setup()` for a store over an EMPTY keyspace (a
 * fresh directory, a fresh etcd prefix) and `cleanup()` afterwards. `writer`,
 * when given, writes one key behind the store's back (bypassing the driver
 * under test, `undefined` deletes); without it the suite writes through
 * `compareAndSwap`.
 */
import { Buffer } from "node:buffer"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { describe, expect, it } from "vitest"
import { compareBytes, displayKey, type MetaDiff, type MetaEntry, type MetaSnapshot, type MetaStore, MetaStoreError } from "../MetaStore.ts"

export interface MetaStoreFixture {
  readonly store: MetaStore
  readonly cleanup?: () => Promise<void>
  readonly writer?: (key: Uint8Array, value: Uint8Array | undefined) => Promise<void>
}

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)
const raw = (...bytes: Array<number>): Uint8Array => Uint8Array.from(bytes)
const entry = (key: Uint8Array | string, value: Uint8Array | string): MetaEntry => ({
  key: typeof key === "string" ? utf8(key) : key,
  value: typeof value === "string" ? utf8(value) : value,
})
const sortEntries = (entries: ReadonlyArray<MetaEntry>): Array<MetaEntry> => [...entries].sort((a, b) => compareBytes(a.key, b.key))

const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex")
/** Exact, type-independent rendering of entries for comparison (Buffer vs Uint8Array does not matter). */
const show = (entries: ReadonlyArray<MetaEntry>): Array<string> =>
  entries.map((e) => `${displayKey(e.key)} [${hex(e.key)}] = [${hex(e.value)}]`)
const showValue = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : hex(value))

const run = <A>(effect: Effect.Effect<A, MetaStoreError>): Promise<A> => Effect.runPromise(effect)
const runError = (effect: Effect.Effect<unknown, MetaStoreError>): Promise<MetaStoreError> => Effect.runPromise(Effect.flip(effect))

const collect = (snapshot: MetaSnapshot): Promise<Array<MetaEntry>> => run(Stream.runCollect(snapshot.entries))
const current = async (store: MetaStore): Promise<{ revision: number; entries: Array<MetaEntry> }> => {
  const snapshot = await run(store.snapshot())
  return { revision: snapshot.revision, entries: await collect(snapshot) }
}
const replace = (store: MetaStore, entries: ReadonlyArray<MetaEntry>, dryRun = false): Promise<MetaDiff> =>
  run(store.replace(Stream.fromIterable(entries), { dryRun }))

/**
 * Entries whose bytewise order differs from naive string order: binary
 * (non-UTF-8) keys and values, an empty value, a NUL byte, a BOM, and
 * U+FFFD (EF BF BD) vs U+1F600 (F0 9F 98 80), which sort the other way round
 * as UTF-16 strings.
 */
const trickyEntries: ReadonlyArray<MetaEntry> = [
  entry("\u{1F600}", "emoji"),
  entry(raw(0xff), raw(0x00)),
  entry("a", "1"),
  entry("\uFFFD", "replacement character"),
  entry(raw(0x80, 0x00), "lone continuation byte key"),
  entry("a\u0000", ""),
  entry("Z", "upper case sorts before lower case"),
  entry("ab", raw(0xff, 0xfe, 0x00)),
  entry("b/c", "slash"),
  entry("b0", "zero"),
  entry(raw(0xef, 0xbb, 0xbf, 0x62), "key starting with a UTF-8 BOM"),
  entry("é", raw(0xc3)),
  entry(raw(0x00), "NUL key"),
]

const initialEntries: ReadonlyArray<MetaEntry> = sortEntries([entry("a", "1"), entry("b", "2"), entry("c", "3"), entry("d", "4")])

export const metaStoreConformance = (name: string, setup: () => Promise<MetaStoreFixture>): void => {
  /** Runs `body` against a fresh fixture and always cleans up. */
  const withStore = (body: (fixture: MetaStoreFixture) => Promise<void>) => async () => {
    const fixture = await setup()
    try {
      await body(fixture)
    } finally {
      await fixture.cleanup?.()
    }
  }

  /** Writes one key behind the store's back: the fixture's writer, or compareAndSwap. */
  const writeBehind = async (fixture: MetaStoreFixture, key: Uint8Array, value: Uint8Array | undefined) => {
    if (fixture.writer) return fixture.writer(key, value)
    const before = await run(fixture.store.get(key))
    expect(await run(fixture.store.compareAndSwap(key, before, value))).toBe(true)
  }

  describe(`MetaStore conformance: ${name}`, () => {
    it(
      "a fresh keyspace is empty",
      withStore(async ({ store }) => {
        expect((await current(store)).entries).toEqual([])
        expect(await run(store.get(utf8("a")))).toBeUndefined()
      }),
    )

    it(
      "snapshot streams every key in ascending bytewise order, binary keys and values included",
      withStore(async ({ store }) => {
        // Guard: these two keys sort differently as UTF-16 strings and as bytes.
        expect("\uFFFD" > "\u{1F600}").toBe(true)
        expect(compareBytes(utf8("\uFFFD"), utf8("\u{1F600}"))).toBeLessThan(0)

        // Insert one by one in a scrambled order so the store has to do the sorting.
        for (const e of trickyEntries) {
          expect(await run(store.compareAndSwap(e.key, undefined, e.value))).toBe(true)
        }
        const { entries } = await current(store)
        expect(show(entries)).toEqual(show(sortEntries(trickyEntries)))
        const keys = entries.map((e) => displayKey(e.key))
        expect(keys.indexOf("\uFFFD")).toBeLessThan(keys.indexOf("\u{1F600}"))

        for (const e of trickyEntries) {
          expect(showValue(await run(store.get(e.key)))).toBe(hex(e.value))
        }
        // An empty value is present, not absent.
        const empty = await run(store.get(utf8("a\u0000")))
        expect(empty).toBeInstanceOf(Uint8Array)
        expect(empty?.length).toBe(0)
      }),
    )

    it(
      "snapshot is at one revision: writes after it was taken are not in it",
      withStore(async (fixture) => {
        const { store } = fixture
        // Enough keys that a paging driver reads more than one page.
        const base = sortEntries([
          ...initialEntries,
          ...Array.from({ length: 3000 }, (_, i) => entry(`page/${String(i).padStart(5, "0")}`, `v${i}`)),
          entry("zz-last", "last"),
        ])
        await replace(store, base)
        const snapshot = await run(store.snapshot())

        await writeBehind(fixture, utf8("a"), utf8("changed"))
        await writeBehind(fixture, utf8("b"), undefined)
        await writeBehind(fixture, utf8("c0"), utf8("added"))
        await writeBehind(fixture, utf8("zz-last"), utf8("changed"))
        await writeBehind(fixture, utf8("zzz-new"), utf8("added"))

        expect(show(await collect(snapshot))).toEqual(show(base))

        const after = await current(store)
        expect(after.revision).toBeGreaterThan(snapshot.revision)
        const expected = sortEntries([
          ...base.filter((e) => !["a", "b", "zz-last"].includes(displayKey(e.key))),
          entry("a", "changed"),
          entry("c0", "added"),
          entry("zz-last", "changed"),
          entry("zzz-new", "added"),
        ])
        expect(show(after.entries)).toEqual(show(expected))
      }),
    )

    it(
      "snapshot stays at its revision while writes land between the entries it streams",
      withStore(async (fixture) => {
        const { store } = fixture
        const base = sortEntries(Array.from({ length: 3000 }, (_, i) => entry(`k/${String(i).padStart(5, "0")}`, `v${i}`)))
        await replace(store, base)
        const snapshot = await run(store.snapshot())
        const seen: Array<MetaEntry> = []
        let writes = 0
        // Every 250 entries, change keys already streamed and keys still to come, delete one, add one.
        await run(
          Stream.runForEach(snapshot.entries, (e) =>
            Effect.promise(async () => {
              seen.push(e)
              if (seen.length % 250 !== 0) return
              const n = seen.length
              await writeBehind(fixture, utf8(`k/${String(n - 100).padStart(5, "0")}`), utf8("changed behind"))
              await writeBehind(fixture, utf8(`k/${String(Math.min(n + 100, 2999)).padStart(5, "0")}`), utf8("changed ahead"))
              await writeBehind(fixture, utf8(`k/${String(Math.min(n + 50, 2999)).padStart(5, "0")}`), undefined)
              await writeBehind(fixture, utf8(`k/${String(Math.min(n + 10, 2999)).padStart(5, "0")}a`), utf8("added ahead"))
              writes += 4
            }),
          ),
        )
        expect(writes).toBeGreaterThan(0)
        expect(show(seen)).toEqual(show(base))
        expect((await current(store)).revision).toBeGreaterThan(snapshot.revision)
      }),
    )

    it(
      "replace makes the keyspace equal to the given entries exactly and reports the diff",
      withStore(async ({ store }) => {
        expect(await replace(store, initialEntries)).toEqual({
          added: 4,
          changed: 0,
          removed: 0,
          unchanged: 0,
          sample: { added: ["a", "b", "c", "d"], changed: [], removed: [] },
        })
        const next = sortEntries([entry("b", "2"), entry("c", "30"), entry("e", "5"), entry(raw(0xff, 0x01), raw(0x80))])
        expect(await replace(store, next)).toEqual({
          added: 2,
          changed: 1,
          removed: 2,
          unchanged: 1,
          sample: { added: ["e", displayKey(raw(0xff, 0x01))], changed: ["c"], removed: ["a", "d"] },
        })
        expect(show((await current(store)).entries)).toEqual(show(next))

        // Replacing with nothing empties the keyspace.
        const cleared = await replace(store, [])
        expect([cleared.added, cleared.changed, cleared.removed, cleared.unchanged]).toEqual([0, 0, 4, 0])
        expect((await current(store)).entries).toEqual([])
      }),
    )

    it(
      "replace samples are the first keys of each kind in key order",
      withStore(async ({ store }) => {
        const many = Array.from({ length: 12 }, (_, i) => entry(`k${String(i).padStart(2, "0")}`, "v"))
        const diff = await replace(store, many)
        expect(diff.added).toBe(12)
        expect(diff.sample.added.length).toBeGreaterThan(0)
        expect(diff.sample.added.length).toBeLessThanOrEqual(12)
        expect(diff.sample.added).toEqual(many.slice(0, diff.sample.added.length).map((e) => displayKey(e.key)))
        expect(diff.sample.changed).toEqual([])
        expect(diff.sample.removed).toEqual([])

        const removedAll = await replace(store, [])
        expect(removedAll.removed).toBe(12)
        expect(removedAll.sample.removed).toEqual(many.slice(0, removedAll.sample.removed.length).map((e) => displayKey(e.key)))
      }),
    )

    it(
      "replace with dryRun computes the diff and changes nothing",
      withStore(async ({ store }) => {
        await replace(store, initialEntries)
        const before = await current(store)
        const next = sortEntries([entry("a", "1"), entry("b", "changed"), entry("x", "new")])

        const planned = await replace(store, next, true)
        expect([planned.added, planned.changed, planned.removed, planned.unchanged]).toEqual([1, 1, 2, 1])
        const after = await current(store)
        expect(after.revision).toBe(before.revision)
        expect(show(after.entries)).toEqual(show(initialEntries))

        expect(await replace(store, next)).toEqual(planned)
        expect(show((await current(store)).entries)).toEqual(show(next))
      }),
    )

    it(
      "replace rejects unsorted or duplicate input with InvalidInput and changes nothing",
      withStore(async ({ store }) => {
        await replace(store, initialEntries)
        const before = await current(store)
        const good = Array.from({ length: 50 }, (_, i) => entry(`k${String(i).padStart(3, "0")}`, "new"))
        const inputs: Record<string, ReadonlyArray<MetaEntry>> = {
          unsorted: [...good, entry("a", "out of order")],
          "UTF-16 order instead of bytewise": [entry("\u{1F600}", "x"), entry("\uFFFD", "y")],
          duplicate: [...good, entry("k049", "again")],
        }
        for (const [label, input] of Object.entries(inputs)) {
          const error = await runError(store.replace(Stream.fromIterable(input)))
          expect(error, label).toBeInstanceOf(MetaStoreError)
          expect(error.reason, label).toBe("InvalidInput")
          const dryRunError = await runError(store.replace(Stream.fromIterable(input), { dryRun: true }))
          expect(dryRunError.reason, label).toBe("InvalidInput")
          const after = await current(store)
          expect(after.revision, label).toBe(before.revision)
          expect(show(after.entries), label).toEqual(show(initialEntries))
        }
      }),
    )

    it(
      "replace whose input stream fails passes the error through and leaves the keyspace as it was",
      withStore(async ({ store }) => {
        await replace(store, initialEntries)
        // The stream's own error type, not a MetaStoreError: it must pass through unchanged.
        const failure = new Error("input stream failed on purpose")
        const input = Stream.concat(Stream.fromIterable([entry("a", "changed"), entry("z", "new")]), Stream.fail(failure))
        for (const dryRun of [true, false]) {
          expect(await Effect.runPromise(Effect.flip(store.replace(input, { dryRun })))).toBe(failure)
        }
        expect(show((await current(store)).entries)).toEqual(show(initialEntries))
      }),
    )

    it(
      "compareAndSwap writes only when the current value equals expected",
      withStore(async ({ store }) => {
        await replace(store, initialEntries)
        expect(await run(store.compareAndSwap(utf8("a"), utf8("1"), utf8("one")))).toBe(true)
        expect(showValue(await run(store.get(utf8("a"))))).toBe(hex(utf8("one")))

        expect(await run(store.compareAndSwap(utf8("a"), utf8("1"), utf8("stale")))).toBe(false)
        expect(await run(store.compareAndSwap(utf8("a"), utf8("one!"), utf8("longer")))).toBe(false)
        expect(await run(store.compareAndSwap(utf8("a"), utf8(""), utf8("empty")))).toBe(false)
        expect(showValue(await run(store.get(utf8("a"))))).toBe(hex(utf8("one")))

        // Binary values compare bytewise too.
        expect(await run(store.compareAndSwap(utf8("a"), utf8("one"), raw(0xff, 0x00)))).toBe(true)
        expect(await run(store.compareAndSwap(utf8("a"), raw(0xff, 0x01), utf8("x")))).toBe(false)
        expect(await run(store.compareAndSwap(utf8("a"), raw(0xff, 0x00), utf8("x")))).toBe(true)
        expect(show((await current(store)).entries)).toEqual(show(sortEntries([entry("a", "x"), ...initialEntries.slice(1)])))
      }),
    )

    it(
      "compareAndSwap with expected undefined creates an absent key and fails on a present one",
      withStore(async ({ store }) => {
        expect(await run(store.compareAndSwap(utf8("new"), undefined, utf8("")))).toBe(true)
        const created = await run(store.get(utf8("new")))
        expect(created?.length).toBe(0)
        // The key now exists with an empty value: "absent" no longer matches.
        expect(await run(store.compareAndSwap(utf8("new"), undefined, utf8("again")))).toBe(false)
        // An expected value never matches an absent key, not even the empty value.
        expect(await run(store.compareAndSwap(utf8("missing"), utf8(""), utf8("x")))).toBe(false)
        expect(await run(store.get(utf8("missing")))).toBeUndefined()
        expect(show((await current(store)).entries)).toEqual(show([entry("new", "")]))
      }),
    )

    it(
      "compareAndSwap with next undefined deletes the key when expected matches",
      withStore(async ({ store }) => {
        await replace(store, initialEntries)
        expect(await run(store.compareAndSwap(utf8("b"), utf8("wrong"), undefined))).toBe(false)
        expect(await run(store.compareAndSwap(utf8("b"), undefined, undefined))).toBe(false)
        expect(showValue(await run(store.get(utf8("b"))))).toBe(hex(utf8("2")))

        expect(await run(store.compareAndSwap(utf8("b"), utf8("2"), undefined))).toBe(true)
        expect(await run(store.get(utf8("b")))).toBeUndefined()
        expect(show((await current(store)).entries)).toEqual(show(initialEntries.filter((e) => displayKey(e.key) !== "b")))
        // Deleting again with the old value fails: the key is absent now.
        expect(await run(store.compareAndSwap(utf8("b"), utf8("2"), undefined))).toBe(false)
      }),
    )

    it(
      "the revision increases after every write",
      withStore(async ({ store }) => {
        const r0 = (await run(store.snapshot())).revision
        expect(await run(store.compareAndSwap(utf8("k"), undefined, utf8("1")))).toBe(true)
        const r1 = (await run(store.snapshot())).revision
        expect(r1).toBeGreaterThan(r0)
        await replace(store, [entry("k", "2"), entry("l", "3")])
        const r2 = (await run(store.snapshot())).revision
        expect(r2).toBeGreaterThan(r1)
        expect(await run(store.compareAndSwap(utf8("k"), utf8("2"), undefined))).toBe(true)
        const r3 = (await run(store.snapshot())).revision
        expect(r3).toBeGreaterThan(r2)
      }),
    )

    it(
      "replace and snapshot round-trip 10 000 keys",
      withStore(async ({ store }) => {
        const entries = sortEntries(
          Array.from({ length: 10_000 }, (_, i) =>
            i % 10 === 0
              ? entry(raw(0xfe, (i >> 8) & 0xff, i & 0xff, 0x80), raw(i & 0xff, 0xff, (i >> 8) & 0xff))
              : entry(`meta/${(i * 7919) % 10_000}/${i.toString(36)}`, `value ${i}`),
          ),
        )
        expect(new Set(entries.map((e) => hex(e.key))).size).toBe(10_000)

        const diff = await replace(store, entries)
        expect([diff.added, diff.changed, diff.removed, diff.unchanged]).toEqual([10_000, 0, 0, 0])
        expect(show((await current(store)).entries)).toEqual(show(entries))

        // Change every third value, drop every fifth key.
        const next = entries.filter((_, i) => i % 5 !== 0).map((e, i) => (i % 3 === 0 ? { key: e.key, value: utf8(`changed ${i}`) } : e))
        const changed = Math.ceil(next.length / 3)
        const second = await replace(store, next)
        expect([second.added, second.changed, second.removed, second.unchanged]).toEqual([0, changed, 2_000, next.length - changed])
        expect(show((await current(store)).entries)).toEqual(show(next))
      }),
    )
  })
}
