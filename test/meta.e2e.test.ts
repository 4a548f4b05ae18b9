/**
 * `meta export` / `meta import`: JSON lines with `key`/`value` for UTF-8 and
 * `key_b64`/`value_b64` for other bytes; an export imported into another
 * cluster exports identically.
 */
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  bendsave,
  bendsaveJson,
  type ClusterFiles,
  describeRun,
  expectedMeta,
  exportMetaText,
  importMeta,
  type MetaInput,
  makeTempDir,
  metaImportLines,
  parseMetaExport,
  removeTempDirs,
  writeCluster,
} from "./helpers.ts"

afterAll(removeTempDirs)

const ENTRIES: ReadonlyArray<MetaInput> = [
  { key: "catalog/databases/sales", value: '{"id":"7f1c","name":"sales"}' },
  { key: "ключ/日本語/😀", value: "значение ✓ — ñ" },
  { key: 'quotes"and\\backslash', value: 'line1\nline2\t"quoted"\u2028' },
  { key: "e\u0301 (combining)", value: "" },
  { key: Buffer.from([0xff, 0xfe, 0x00, 0x80]), value: Buffer.from([0x00, 0x01, 0x02, 0xfe, 0xff]) },
  { key: Buffer.from([0x00]), value: "key is one NUL byte" },
  { key: "bin/invalid-utf8-value", value: Buffer.from([0xc3, 0x28, 0xa0, 0xa1]) },
  { key: "bin/truncated-utf8", value: Buffer.from([0xe2, 0x82]) },
  { key: "bin/lone-surrogate-bytes", value: Buffer.from([0xed, 0xa0, 0x80]) },
  { key: Buffer.from("prefix/\u00ff", "latin1"), value: "latin1 byte in key" },
]

/** Which of the export's fields carry a key/value: text or base64. */
const fieldKinds = (text: string) =>
  text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => Object.keys(JSON.parse(l)).sort().join(","))

describe("8. meta export / import round trip", () => {
  let root: string
  let a: ClusterFiles
  let b: ClusterFiles

  beforeAll(async () => {
    root = await makeTempDir("meta")
    a = await writeCluster(join(root, "a"))
    b = await writeCluster(join(root, "b"))
  })

  it("import then export gives back exactly the keys and values, binary ones as base64", async () => {
    expect(await importMeta(a, ENTRIES)).toMatchObject({
      imported: ENTRIES.length,
      added: ENTRIES.length,
      changed: 0,
      removed: 0,
      unchanged: 0,
    })
    const text = await exportMetaText(a)
    expect(parseMetaExport(text)).toEqual(expectedMeta(ENTRIES))
    // Text where the bytes are UTF-8, base64 where they are not.
    const kinds = new Map(expectedMeta(ENTRIES).map((e, i) => [e.key, fieldKinds(text)[i]]))
    const kind = (e: MetaInput) => kinds.get((typeof e.key === "string" ? Buffer.from(e.key) : e.key).toString("hex"))
    expect(kind(ENTRIES[1])).toBe("key,value")
    expect(kind(ENTRIES[4])).toBe("key_b64,value_b64")
    expect(kind(ENTRIES[5])).toBe("key,value") // NUL is valid UTF-8
    expect(kind(ENTRIES[6])).toBe("key,value_b64")
    expect(kind(ENTRIES[7])).toBe("key,value_b64")
    expect(kind(ENTRIES[8])).toBe("key,value_b64") // CESU/surrogate bytes are not UTF-8
    expect(kind(ENTRIES[9])).toBe("key_b64,value")
  })

  it("an export imported into another cluster exports identically (also via --output)", async () => {
    const file = join(root, "export.jsonl")
    const out = await bendsave(["meta", "export", "--cluster", a.toml, "--output", file], { cwd: root })
    expect(out.code, describeRun(out)).toBe(0)
    expect(out.stdout + out.stderr).toContain(`exported ${ENTRIES.length} keys`)
    const exported = await readFile(file, "utf8")
    expect(exported).toBe(await exportMetaText(a))
    const r = await bendsaveJson(["meta", "import", "--cluster", b.toml, "--input", file], { cwd: root })
    expect(r).toMatchObject({ imported: ENTRIES.length, added: ENTRIES.length })
    expect(await exportMetaText(b)).toBe(exported)
  })

  it("import adds and overwrites; --replace makes the keyspace exactly the input", async () => {
    const update: Array<MetaInput> = [
      { key: "catalog/databases/sales", value: "changed" },
      { key: "new/key", value: Buffer.from([0xff]) },
    ]
    expect(await importMeta(b, update)).toMatchObject({ imported: 2, added: 1, changed: 1, removed: 0, unchanged: ENTRIES.length - 1 })
    expect(parseMetaExport(await exportMetaText(b))).toEqual(expectedMeta([...ENTRIES, ...update]))

    const exact: Array<MetaInput> = [ENTRIES[4], { key: "new/key", value: Buffer.from([0xff]) }, { key: "only", value: "this" }]
    expect(await importMeta(b, exact, { replace: true })).toMatchObject({ added: 1, changed: 0, removed: ENTRIES.length - 1, unchanged: 2 })
    expect(parseMetaExport(await exportMetaText(b))).toEqual(expectedMeta(exact))
  })

  // Product bug: packages/core/src/MetaJsonLines.ts decodes with
  // `new TextDecoder("utf-8", { fatal: true })`, which strips a leading BOM
  // (ignoreBOM defaults to false), so `meta export` silently drops the bytes
  // EF BB BF at the start of a key or value; the export no longer round-trips.
  it("keys and values that start with U+FEFF (bytes EF BB BF) survive export", async () => {
    const c = await writeCluster(join(root, "bom"))
    const bom: Array<MetaInput> = [
      { key: "\uFEFFkey starting with a BOM", value: "v" },
      { key: "value/bom", value: "\uFEFFvalue starting with a BOM" },
    ]
    await importMeta(c, bom)
    expect(parseMetaExport(await exportMetaText(c))).toEqual(expectedMeta(bom))
  })

  it("a bad line is an error naming the file and the line; nothing is imported", async () => {
    const file = join(root, "bad.jsonl")
    await writeFile(file, `${metaImportLines([{ key: "x", value: "1" }])}{"key":"y","value_b64":"not base64!"}\n`)
    const before = await exportMetaText(a)
    const r = await bendsave(["meta", "import", "--cluster", a.toml, "--input", file], { cwd: root })
    expect(r.code, describeRun(r)).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`^bendsave: error: ${file}:2: "value_b64" is not valid base64`, "m"))
    expect(r.stderr).toContain("  fix: ")
    expect(await exportMetaText(a)).toBe(before)
  })
})
