/**
 * The helpers BlobStore.ts gives drivers: bytewise key order, putting a
 * UTF-16-ordered listing into bytewise order page by page, and cutting a
 * put's body into parts.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { describe, expect, it } from "vitest"
import { bodyParts, compareKeysBytewise, makeBytewiseListingOrder } from "../src/BlobStore.ts"

const utf8 = new TextEncoder()
const bytewise = (a: string, b: string) => Buffer.compare(Buffer.from(utf8.encode(a)), Buffer.from(utf8.encode(b)))
const keys = ["a", "a/b", "é", "\uFFFD", "😀", "\uE000x", "😀/z", "\uFF01", "z", "a\uFFFD", "a😀", "a😀b", "a\uFFFDb", "𝄞", "\uD7FF"]

describe("compareKeysBytewise", () => {
  it("agrees with comparing UTF-8 bytes, unlike JavaScript's string order", () => {
    expect([...keys].sort(compareKeysBytewise)).toEqual([...keys].sort(bytewise))
    expect([...keys].sort()).not.toEqual([...keys].sort(bytewise))
  })
})

describe("makeBytewiseListingOrder", () => {
  const reorder = (listing: ReadonlyArray<string>, pageSize: number) => {
    const order = makeBytewiseListingOrder<{ key: string }>()
    const out: Array<string> = []
    for (let i = 0; i < listing.length; i += pageSize) out.push(...order.push(listing.slice(i, i + pageSize).map((key) => ({ key }))).map((x) => x.key))
    out.push(...order.end().map((x) => x.key))
    return out
  }

  it("turns a UTF-16-ordered listing into bytewise order, whatever the page size", () => {
    const many = [...keys, ...keys.map((k) => `dir/${k}`), ...keys.map((k) => `${k}/x`)]
    const utf16 = [...new Set(many)].sort()
    for (const pageSize of [1, 2, 3, 7, 1000]) expect(reorder(utf16, pageSize)).toEqual([...utf16].sort(bytewise))
  })

  it("leaves a listing that is already bytewise as it is", () => {
    const sorted = [...new Set([...keys, ...keys.map((k) => `p/${k}`)])].sort(bytewise)
    expect(reorder(sorted, 4)).toEqual(sorted)
  })
})

describe("bodyParts", () => {
  const parts = (body: Parameters<typeof bodyParts>[0], size: number) =>
    Effect.runPromise(Effect.map(Stream.runCollect(bodyParts(body, size)), (all) => all.map((p) => Array.from(p))))
  const range = (n: number) => Uint8Array.from({ length: n }, (_, i) => i)

  it("cuts streamed and in-memory bodies into full parts and a shorter last one", async () => {
    const expected = [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]
    expect(await parts(range(10), 4)).toEqual(expected)
    expect(await parts(Stream.make(range(3), new Uint8Array(0), range(10).subarray(3, 9), range(10).subarray(9)), 4)).toEqual(expected)
    expect(await parts(Stream.make(range(8)), 4)).toEqual(expected.slice(0, 2))
  })

  it("an empty body is one empty part", async () => {
    expect(await parts(new Uint8Array(0), 4)).toEqual([[]])
    expect(await parts(Stream.empty, 4)).toEqual([[]])
  })
})
