import { describe, expect, it } from "vitest"
import { ClusterConfigError, parseClusterConfig } from "../src/ClusterConfig.ts"
import { formatMetaLine, MetaLinesError, parseMetaLines } from "../src/MetaJsonLines.ts"

const good = `name = "prod"
[meta]
type = "local"
path = "./meta"
[storage]
type = "fs"
[storage.fs]
data_path = "/abs/data"
`

const error = (text: string) => {
  const r = parseClusterConfig(text, "/etc/bendsave/prod.toml")
  expect(r).toBeInstanceOf(ClusterConfigError)
  return r as ClusterConfigError
}

describe("ClusterConfig", () => {
  it("parses the embedded default and resolves relative paths against the file's directory", () => {
    const r = parseClusterConfig(good, "/etc/bendsave/prod.toml")
    expect(r).toEqual({
      file: "/etc/bendsave/prod.toml",
      name: "prod",
      meta: { type: "local", path: "/etc/bendsave/meta", prefix: "" },
      storage: { type: "fs", dataPath: "/abs/data" },
    })
  })

  it("defaults the name to the file name", () => {
    const r = parseClusterConfig(good.replace('name = "prod"\n', ""), "/x/staging.toml")
    expect((r as { name: string }).name).toBe("staging")
  })

  it("names the file, key, expectation and fix for a missing key", () => {
    const e = error(good.replace('path = "./meta"\n', ""))
    expect(e.file).toBe("/etc/bendsave/prod.toml")
    expect(e.key).toBe("meta.path")
    expect(e.message).toContain("missing")
    expect(e.fix).toContain('path = "./meta"')
  })

  it("reports a wrong type with what was expected", () => {
    const e = error(good.replace('path = "./meta"', "path = 3"))
    expect(e.key).toBe("meta.path")
    expect(e.message).toMatch(/expected string/i)
  })

  it("suggests the right name for a misspelt key", () => {
    const e = error(good.replace("data_path", "data_pth"))
    expect(e.key).toBe("storage.fs.data_pth")
    expect(e.fix).toContain("data_path")
    const top = error(`nme = "x"\n${good}`)
    expect(top.key).toBe("nme")
    expect(top.fix).toContain("name")
  })

  it("reports TOML syntax errors with the line", () => {
    const e = error("[meta\ntype = 1")
    expect(e.message).toMatch(/line 1/)
  })

  it("cloud storage types need their own options table, and only it", () => {
    const missing = error(good.replace('type = "fs"', 'type = "s3"').replace("[storage.fs]", "[storage.x]"))
    expect(missing.key).toBe("storage.x")
    const noTable = error(good.replace('type = "fs"', 'type = "gcs"').replace(/\[storage\.fs\][^[]*/, ""))
    expect(noTable.key).toBe("storage.gcs")
    expect(noTable.detail).toBe("missing required table")
    expect(noTable.fix).toContain("bucket")
  })

  it("keeps the options of a cloud or plugin storage type for its driver (validated when it loads)", () => {
    const s3 = parseClusterConfig(
      good.replace(/\[storage\][\s\S]*/, '[storage]\ntype = "s3"\n[storage.s3]\nbucket = "prod-data"\nroot = "/cluster"\n'),
      "/etc/bendsave/prod.toml",
    )
    if (s3 instanceof ClusterConfigError) throw s3
    expect(s3.storage).toEqual({ type: "s3", tables: { s3: { bucket: "prod-data", root: "/cluster" } } })
    const plugin = parseClusterConfig(
      good.replace(/\[storage\][\s\S]*/, '[storage]\ntype = "./drivers/my-store.js"\n[storage.mystore]\ndir = "x"\n'),
      "/etc/bendsave/prod.toml",
    )
    if (plugin instanceof ClusterConfigError) throw plugin
    expect(plugin.storage).toEqual({ type: "./drivers/my-store.js", tables: { mystore: { dir: "x" } } })
  })
})

describe("MetaJsonLines", () => {
  it("round-trips text and binary keys and values", () => {
    const entries = [
      { key: new TextEncoder().encode("a/b"), value: new TextEncoder().encode('{"x":1}') },
      { key: new Uint8Array([0xff, 0x00]), value: new Uint8Array([0xc3, 0x28]) },
    ]
    const text = entries.map(formatMetaLine).join("\n")
    expect(text).toContain('"key":"a/b"')
    expect(text).toContain('"key_b64":"/wA="')
    expect(text).toContain('"value_b64":"wyg="')
    expect(parseMetaLines(text, "t")).toEqual(entries)
  })

  it("names the line of a malformed entry", () => {
    const e = parseMetaLines('{"key":"a","value":"b"}\n\n{"key":"c"}\n', "in.jsonl") as MetaLinesError
    expect(e).toBeInstanceOf(MetaLinesError)
    expect(e.line).toBe(3)
    expect(e.message).toContain("in.jsonl:3")
    expect((parseMetaLines("not json", "x") as MetaLinesError).line).toBe(1)
    expect(parseMetaLines('{"key":"a","value_b64":"***"}', "x")).toBeInstanceOf(MetaLinesError)
  })
})
