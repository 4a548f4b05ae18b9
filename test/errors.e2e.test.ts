/**
 * Clear errors: every failure exits non-zero and prints
 * `bendsave: error: ...` and `  fix: ...` on stderr (nothing on stdout), or
 * with --json one `{"error":{tag,message,fix}}` object on stdout; and the
 * failing command creates nothing.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  bendsave,
  bendsaveJson,
  describeRun,
  exists,
  makeTempDir,
  parseSingleJson,
  type RunResult,
  removeTempDirs,
  snapshotTree,
  walk,
  writeCluster,
  writeRandomFile,
} from "./helpers.ts"

afterAll(removeTempDirs)

/** A failed run in text mode: exit 1, nothing on stdout, the error and its fix on stderr. */
const expectError = (r: RunResult, ...needles: ReadonlyArray<string | RegExp>) => {
  expect(r.code, describeRun(r)).toBe(1)
  expect(r.stdout, describeRun(r)).toBe("")
  const lines = r.stderr.split("\n")
  expect(lines[0], describeRun(r)).toMatch(/^bendsave: error: \S/)
  expect(lines[1], describeRun(r)).toMatch(/^ {2}fix: \S/)
  for (const n of needles) {
    if (typeof n === "string") expect(r.stderr, describeRun(r)).toContain(n)
    else expect(r.stderr, describeRun(r)).toMatch(n)
  }
}

const GOOD = [
  'name = "prod"',
  "[meta]",
  'type = "local"',
  'path = "./meta"',
  "[storage]",
  'type = "fs"',
  "[storage.fs]",
  'data_path = "./data"',
  "",
]

describe("6. clear errors and a non-zero exit", () => {
  let root: string

  beforeAll(async () => {
    root = await makeTempDir("errors")
  })

  describe.concurrent("bad cluster files name the file and the key, with a fix", () => {
    const cases: ReadonlyArray<{ name: string; lines: ReadonlyArray<string>; needles: ReadonlyArray<string | RegExp> }> = [
      {
        name: "missing [meta] path",
        lines: GOOD.filter((l) => !l.startsWith("path")),
        needles: ["key 'meta.path'", "missing required key", 'fix: set `path = "./meta"` in [meta]'],
      },
      {
        name: "wrong type for a key",
        lines: GOOD.map((l) => (l.startsWith("path") ? "path = 42" : l)),
        needles: ["key 'meta.path'", "expected string"],
      },
      {
        name: "unknown key",
        lines: GOOD.map((l) => (l.startsWith("data_path") ? 'data_pth = "./data"' : l)),
        needles: ["key 'storage.fs.data_pth'", "unknown key in [storage.fs]", "did you mean 'data_path'?"],
      },
      {
        name: "unknown top-level key",
        lines: GOOD.map((l) => (l.startsWith("name") ? 'nmae = "prod"' : l)),
        needles: ["key 'nmae'", "unknown key at the top level", "did you mean 'name'?"],
      },
      {
        name: "TOML syntax error",
        lines: ['name = "prod"', "[meta", 'type = "local"'],
        needles: ["not valid TOML at line 2", "fix: fix the TOML syntax"],
      },
    ]
    for (const c of cases) {
      it(c.name, async () => {
        const dir = join(root, c.name.replace(/\W+/g, "-"))
        await mkdir(dir)
        await writeFile(join(dir, "bad.toml"), c.lines.join("\n"))
        const r = await bendsave(["backup", "--from", "bad.toml", "--to", "repo"], { cwd: dir })
        expectError(r, `${join(dir, "bad.toml")}: `, ...c.needles)
        // Nothing was created: no repository, no cluster directories.
        expect(await walk(dir)).toEqual(["bad.toml"])
      })
    }

    it("with --json the same error is one JSON object on stdout", async () => {
      const dir = join(root, "json-config")
      await mkdir(dir)
      await writeFile(join(dir, "bad.toml"), GOOD.filter((l) => !l.startsWith("path")).join("\n"))
      const r = await bendsave(["backup", "--from", "bad.toml", "--to", "repo", "--json"], { cwd: dir })
      expect(r.code, describeRun(r)).toBe(1)
      expect(r.stderr).toBe("")
      expect(parseSingleJson(r)).toEqual({
        error: {
          tag: "ClusterConfigError",
          message: `${join(dir, "bad.toml")}: key 'meta.path': missing required key`,
          fix: expect.stringContaining("path = "),
        },
      })
    })

    it("a cluster file that does not exist", async () => {
      const r = await bendsave(["backup", "--from", "nope.toml", "--to", "repo"], { cwd: root })
      expectError(r, `${join(root, "nope.toml")}: the cluster file does not exist`)
      expect(await exists(join(root, "repo"))).toBe(false)
    })
  })

  // Product bug: usage errors (a missing required flag, an unknown flag) are
  // reported by effect/cli itself: the whole help text on stdout and
  // "ERROR\n  Missing required flag: --from" on stderr, without the
  // `bendsave: error:` / `fix:` form, and with --json still no JSON on stdout
  // (the help text instead), so scripts using --json cannot parse the failure.
  describe.concurrent("usage errors use the same error form", () => {
    it("a missing required flag: 'bendsave: error:' naming the flag, and a fix", async () => {
      const r = await bendsave(["backup", "--to", "repo"], { cwd: root })
      expectError(r, "--from")
    })

    it("a missing required flag with --json: one {error} object on stdout", async () => {
      const r = await bendsave(["backup", "--to", "repo", "--json"], { cwd: root })
      expect(r.code, describeRun(r)).toBe(1)
      expect(parseSingleJson(r).error).toMatchObject({ message: expect.stringContaining("--from") })
    })
  })

  describe.concurrent("repositories and manifests", () => {
    it("an unknown repository scheme (foo://x)", async () => {
      const [list, backup] = await Promise.all([
        bendsave(["list", "foo://x"], { cwd: root }),
        (async () => {
          const c = await writeCluster(join(root, "scheme"))
          await mkdir(c.metaDir)
          await mkdir(c.dataDir)
          return bendsave(["backup", "--from", c.toml, "--to", "foo://x"], { cwd: root })
        })(),
      ])
      expectError(list, "'foo://x': unknown repository scheme 'foo'", /fix: .*fs:\/\//)
      expectError(backup, "unknown repository scheme 'foo'")
    })

    it("a manifest that does not exist (restore --from <repo>/manifests/20990101_000000.manifest)", async () => {
      const src = await writeCluster(join(root, "missing-manifest"))
      await writeRandomFile(join(src.dataDir, "f.bin"), 100)
      await mkdir(src.metaDir)
      const repo = join(root, "missing-manifest", "repo")
      await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root })
      const target = await writeCluster(join(root, "missing-manifest-target"))
      const r = await bendsave(
        ["restore", "--from", join(repo, "manifests", "20990101_000000.manifest"), "--to", target.toml, "--confirm"],
        { cwd: root },
      )
      expectError(r, "backup 20990101_000000 does not exist", "fix: run `bendsave list")
      expect(await walk(join(root, "missing-manifest-target"))).toEqual(["cluster.toml"])
    })

    it("list on a directory that is not a repository", async () => {
      const dir = join(root, "not-a-repo")
      await writeRandomFile(join(dir, "some", "file.bin"), 10)
      const before = await snapshotTree(dir)
      const r = await bendsave(["list", dir], { cwd: root })
      expectError(r, "there is no bendsave repository here (no config.json)")
      expect(await snapshotTree(dir)).toEqual(before)
    })

    it("verify on a path that does not exist", async () => {
      const path = join(root, "does", "not", "exist")
      const r = await bendsave(["verify", path], { cwd: root })
      expectError(r, path, "does not exist")
      expect(await exists(join(root, "does"))).toBe(false)
    })

    it("restore --at a time before any backup", async () => {
      const src = await writeCluster(join(root, "at"))
      await writeRandomFile(join(src.dataDir, "f.bin"), 100)
      await mkdir(src.metaDir)
      const repo = join(root, "at", "repo")
      await bendsaveJson(["backup", "--from", src.toml, "--to", repo], { cwd: root })
      const r = await bendsave(["restore", "--from", repo, "--at", "2000-01-01T00:00:00Z", "--to", src.toml], { cwd: root })
      expectError(r, "there is no backup at or before this time")
    })
  })
})
