/**
 * `bendsave quickstart --dir <tmp>`: the guided tour runs to the end, says the
 * restored cluster is identical, and it really is (checked independently).
 */
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  bendsave,
  compareDirs,
  describeRun,
  exists,
  expectOk,
  exportMetaText,
  listFiles,
  makeTempDir,
  parseMetaExport,
  parseSingleJson,
  type RunResult,
  removeTempDirs,
} from "./helpers.ts"

afterAll(removeTempDirs)

describe("9. quickstart", () => {
  let root: string
  let text: RunResult
  let json: RunResult

  beforeAll(async () => {
    root = await makeTempDir("quickstart")
    ;[text, json] = await Promise.all([
      bendsave(["quickstart", "--dir", "qs"], { cwd: root, timeoutMs: 90_000 }),
      bendsave(["quickstart", "--dir", "qs-json", "--json"], { cwd: root, timeoutMs: 90_000 }),
    ])
  })

  it("quickstart --dir <tmp> exits 0 and prints 'identical'", async () => {
    expect(text.code, describeRun(text)).toBe(0)
    expect(text.stdout).toMatch(/^ {3}identical: \d+ files byte for byte and \d+ meta keys$/m)
    expect(text.stdout).toContain("quickstart OK")
  })

  it("the restored cluster really is identical to the source (files byte for byte, meta via export)", async () => {
    expect(text.code, describeRun(text)).toBe(0)
    const qs = join(root, "qs")
    expect(await exists(join(qs, "repo", "config.json"))).toBe(true)
    expect((await listFiles(join(qs, "prod", "data"))).length).toBeGreaterThan(10)
    expect(await compareDirs(join(qs, "prod", "data"), join(qs, "restored", "data"))).toEqual([])
    const [a, b] = await Promise.all([exportMetaText({ toml: join(qs, "prod.toml") }), exportMetaText({ toml: join(qs, "restored.toml") })])
    expect(parseMetaExport(a).length).toBeGreaterThan(0)
    expect(b).toBe(a)
    const verify = expectOk(await bendsave(["verify", join(qs, "repo"), "--read-data", "--json"], { cwd: root }))
    expect(parseSingleJson(verify)).toMatchObject({ ok: true, backups_checked: 2 })
  })

  it("quickstart --json prints one JSON object saying identical", async () => {
    expect(json.code, describeRun(json)).toBe(0)
    expect(parseSingleJson(json)).toMatchObject({ identical: true, directory: join(root, "qs-json") })
  })
})
