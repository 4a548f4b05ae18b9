/**
 * The CLI with an etcd meta service (real etcd servers, started by the vitest
 * global setup): backup records the etcd revision and `list` shows it;
 * restore (dry run with the diff, then --confirm) into a second etcd under
 * another prefix gives exactly what `etcdctl get --prefix --rev=R` returns for
 * the source; a drifted target is put back; meta export / import; clear errors
 * for an unreachable endpoint, an empty or unknown prefix and a wrong password.
 */
import { randomBytes } from "node:crypto"
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Etcd3 } from "etcd3"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type EtcdServer,
  etcdAvailable,
  etcdctlGetPrefix,
  etcdctlOk,
  etcdEndpoints,
  freePort,
  startEtcdServer,
} from "../packages/meta-etcd/test/etcdServers.ts"
import { bendsave, bendsaveJson, describeRun, makeTempDir, metaImportLines, parseSingleJson, removeTempDirs } from "./helpers.ts"

afterAll(removeTempDirs)

const PASSWORD = "cli-Secret-7781"

const etcdCluster = async (
  dir: string,
  file: string,
  options: { readonly endpoints: string; readonly prefix: string; readonly data: string; readonly extra?: string },
): Promise<string> => {
  const toml = join(dir, file)
  await writeFile(
    toml,
    [
      `name = "${file.replace(/\.toml$/, "")}"`,
      "[meta]",
      'type = "etcd"',
      `endpoints = ["${options.endpoints}"]`,
      `prefix = ${JSON.stringify(options.prefix)}`,
      options.extra ?? "",
      "[storage]",
      'type = "fs"',
      "[storage.fs]",
      `data_path = "./${options.data}"`,
      "",
    ].join("\n"),
  )
  return toml
}

const relative = (prefix: string, kvs: ReadonlyArray<{ key: Buffer; value: Buffer }>) =>
  kvs.map((kv) => `${kv.key.subarray(Buffer.byteLength(prefix)).toString("hex")}=${kv.value.toString("hex")}`)

describe("bendsave with an etcd meta service", () => {
  let dir: string
  let source: string
  let target: string
  let endpoints: string
  let endpoints2: string
  const prefix = `/cli-${randomBytes(4).toString("hex")}/prod/`
  const prefix2 = `/cli-${randomBytes(4).toString("hex")}/restored/`
  const revisions: Array<number> = []
  const backupIds: Array<string> = []

  beforeAll(async () => {
    if (!etcdAvailable()) return
    ;({ endpoints, endpoints2 } = etcdEndpoints())
    dir = await makeTempDir("etcd-cli")
    await mkdir(join(dir, "data/db1/t1"), { recursive: true })
    await writeFile(join(dir, "data/db1/t1/part-0.parquet"), randomBytes(50_000))
    await writeFile(join(dir, "data/db1/t1/_snapshot.json"), '{"version":1}')
    source = await etcdCluster(dir, "prod.toml", { endpoints, prefix, data: "data" })
    target = await etcdCluster(dir, "restored.toml", { endpoints: endpoints2, prefix: prefix2, data: "data-restored" })
    // Seed the source: text, JSON and binary keys and values.
    for (let i = 0; i < 40; i++) etcdctlOk(endpoints, ["put", `${prefix}catalog/tables/db1/t${i}`, JSON.stringify({ id: i, location: `1/${i}/` })])
    etcdctlOk(endpoints, ["put", `${prefix}catalog/databases/db1`, '{"id":"1"}'])
    const binary = metaImportLines([{ key: Buffer.from([0xff, 0x00, 0x01]), value: Buffer.from([0x80, 0x81, 0x00]) }])
    const imported = await bendsaveJson(["meta", "import", "--cluster", source], { cwd: dir, input: binary })
    expect(imported.added).toBe(1)
  })

  afterAll(() => {
    if (endpoints) etcdctlOk(endpoints, ["del", prefix, "--prefix"])
    if (endpoints2) etcdctlOk(endpoints2, ["del", prefix2, "--prefix"])
  })

  it("backup records the etcd revision as the consistency point; list shows it", async () => {
    etcdEndpoints()
    const first = await bendsaveJson(["backup", "--from", source, "--to", join(dir, "repo")], { cwd: dir })
    expect(first.meta_keys).toBe(42)
    expect(first.files_total).toBe(2)
    revisions.push(first.meta_revision)
    backupIds.push(first.backup_id)
    // Keys at the recorded revision are exactly the 42 keys seeded.
    expect(etcdctlGetPrefix(endpoints, prefix, first.meta_revision).length).toBe(42)

    // The cluster changes; the next backup is incremental and at a later revision.
    etcdctlOk(endpoints, ["put", `${prefix}catalog/tables/db1/t0`, '{"id":0,"changed":true}'])
    etcdctlOk(endpoints, ["del", `${prefix}catalog/tables/db1/t1`])
    etcdctlOk(endpoints, ["put", `${prefix}catalog/tables/db1/new`, "{}"])
    await new Promise((resolve) => setTimeout(resolve, 1100)) // backup ids are per second
    const second = await bendsaveJson(["backup", "--from", source, "--to", join(dir, "repo")], { cwd: dir })
    expect(second.backup_type).toBe("incremental")
    expect(second.meta_keys).toBe(42)
    expect(second.meta_revision).toBeGreaterThan(first.meta_revision)
    revisions.push(second.meta_revision)
    backupIds.push(second.backup_id)

    const listed = await bendsaveJson(["list", join(dir, "repo")], { cwd: dir })
    expect(listed.backups.map((b: { meta_revision: number }) => b.meta_revision)).toEqual(revisions)
    const text = await bendsave(["list", join(dir, "repo")], { cwd: dir })
    expect(text.code, describeRun(text)).toBe(0)
    expect(text.stdout).toContain("REVISION")
    expect(text.stdout).toContain(String(revisions[0]))
  })

  it("restore into a second etcd under another prefix: the dry run shows the diff, --confirm makes it equal to etcdctl's view at the revision", async () => {
    etcdEndpoints()
    const manifest = join(dir, "repo", "manifests", `${backupIds[0]}.manifest`)
    // Something already in the target prefix, to be removed.
    etcdctlOk(endpoints2, ["put", `${prefix2}stale/key`, "x"])
    etcdctlOk(endpoints2, ["put", `${prefix2}catalog/databases/db1`, "old"])
    const plan = await bendsave(["restore", "--from", manifest, "--to", target], { cwd: dir })
    expect(plan.code, describeRun(plan)).toBe(0)
    expect(plan.stdout).toContain("DRY RUN")
    expect(plan.stdout).toContain("meta keys:         41 to add, 1 to change, 1 to remove, 0 unchanged")
    expect(plan.stdout).toContain("added: catalog/tables/db1/t0, catalog/tables/db1/t1, catalog/tables/db1/t10")
    expect(plan.stdout).toContain("changed: catalog/databases/db1")
    expect(plan.stdout).toContain("removed: stale/key")
    expect(etcdctlOk(endpoints2, ["get", `${prefix2}stale/key`, "--print-value-only"]).toString().trim()).toBe("x")

    const done = await bendsaveJson(["restore", "--from", manifest, "--to", target, "--confirm"], { cwd: dir })
    expect([done.meta.added, done.meta.changed, done.meta.removed]).toEqual([41, 1, 1])
    expect(relative(prefix2, etcdctlGetPrefix(endpoints2, prefix2))).toEqual(relative(prefix, etcdctlGetPrefix(endpoints, prefix, revisions[0])))
  })

  it("restore --confirm over a drifted target puts every key back", async () => {
    etcdEndpoints()
    etcdctlOk(endpoints2, ["put", `${prefix2}catalog/tables/db1/t5`, "drifted"])
    etcdctlOk(endpoints2, ["del", `${prefix2}catalog/tables/db1/t6`])
    etcdctlOk(endpoints2, ["put", `${prefix2}catalog/tables/db1/zz`, "added later"])
    const done = await bendsaveJson(["restore", "--from", join(dir, "repo"), "--backup", backupIds[1], "--to", target, "--confirm"], { cwd: dir })
    // Backup 2 vs the drifted copy of backup 1: t0 changed, t1 removed, new added; t5 reset, t6 recreated, zz removed.
    expect([done.meta.added, done.meta.changed, done.meta.removed]).toEqual([2, 2, 2])
    expect(relative(prefix2, etcdctlGetPrefix(endpoints2, prefix2))).toEqual(relative(prefix, etcdctlGetPrefix(endpoints, prefix, revisions[1])))
  })

  it("meta export prints the prefix's keys; meta import --replace loads them into another prefix", async () => {
    etcdEndpoints()
    const exported = await bendsave(["meta", "export", "--cluster", source], { cwd: dir })
    expect(exported.code, describeRun(exported)).toBe(0)
    const lines = exported.stdout.trim().split("\n")
    expect(lines.length).toBe(42)
    expect(lines[lines.length - 1]).toBe(JSON.stringify({ key_b64: "/wAB", value_b64: "gIEA" }))
    const copy = await etcdCluster(dir, "copy.toml", { endpoints: endpoints2, prefix: `${prefix2}copy/`, data: "data-copy" })
    const imported = await bendsaveJson(["meta", "import", "--cluster", copy, "--replace"], { cwd: dir, input: exported.stdout })
    expect(imported.added).toBe(42)
    const again = await bendsave(["meta", "export", "--cluster", copy], { cwd: dir })
    expect(again.stdout).toBe(exported.stdout)
  })

  it("a backup taken while writers keep changing keys restores to exactly etcdctl's view at the recorded revision", async () => {
    etcdEndpoints()
    const busyPrefix = prefix.replace("/prod/", "/busy/")
    const busyPrefix2 = prefix2.replace("/restored/", "/busy-restored/")
    const busy = await etcdCluster(dir, "busy.toml", { endpoints, prefix: busyPrefix, data: "data" })
    const lines = Array.from({ length: 30_000 }, (_, i) => ({ key: `k/${String(i).padStart(6, "0")}`, value: `v${i}-${"x".repeat(i % 300)}` }))
    await bendsaveJson(["meta", "import", "--cluster", busy, "--replace"], { cwd: dir, input: metaImportLines(lines) })
    const writer = new Etcd3({ hosts: endpoints })
    let writing = true
    let writes = 0
    const loop = (async () => {
      while (writing) {
        const i = Math.floor(Math.random() * 31_000)
        const key = `${busyPrefix}k/${String(i).padStart(6, "0")}`
        if (i % 7 === 0) await writer.delete().key(key)
        else await writer.put(key).value(`changed ${writes}`)
        writes++
      }
    })()
    try {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const taken = await bendsaveJson(["backup", "--from", busy, "--to", join(dir, "repo-busy")], { cwd: dir })
      writing = false
      await loop
      expect(writes).toBeGreaterThan(20)
      const atRevision = relative(busyPrefix, etcdctlGetPrefix(endpoints, busyPrefix, taken.meta_revision))
      expect(taken.meta_keys).toBe(atRevision.length)
      expect(relative(busyPrefix, etcdctlGetPrefix(endpoints, busyPrefix))).not.toEqual(atRevision)

      const busyTarget = await etcdCluster(dir, "busy-restored.toml", { endpoints: endpoints2, prefix: busyPrefix2, data: "data-busy" })
      await bendsaveJson(["restore", "--from", join(dir, "repo-busy"), "--to", busyTarget, "--confirm"], { cwd: dir })
      expect(relative(busyPrefix2, etcdctlGetPrefix(endpoints2, busyPrefix2))).toEqual(atRevision)
    } finally {
      writing = false
      await loop
      writer.close()
      etcdctlOk(endpoints, ["del", busyPrefix, "--prefix"])
      etcdctlOk(endpoints2, ["del", busyPrefix2, "--prefix"])
    }
  })

  it("an unreachable endpoint, an empty prefix and a prefix without keys are clear errors", async () => {
    etcdEndpoints()
    const dead = await etcdCluster(dir, "dead.toml", { endpoints: `http://127.0.0.1:${await freePort()}`, prefix, data: "data" })
    const unreachable = await bendsave(["backup", "--from", dead, "--to", join(dir, "repo")], { cwd: dir })
    expect(unreachable.code).toBe(1)
    expect(unreachable.stderr).toMatch(/bendsave: error: etcd meta open: Unavailable: cannot reach etcd at http:\/\/127\.0\.0\.1:\d+ \(connection refused\)/)
    expect(unreachable.stderr).toContain("fix: check `endpoints` in [meta]")

    const empty = await etcdCluster(dir, "empty.toml", { endpoints, prefix: "", data: "data" })
    const emptyRun = await bendsave(["meta", "export", "--cluster", empty], { cwd: dir })
    expect(emptyRun.code).toBe(1)
    expect(emptyRun.stderr).toContain("key 'meta.prefix': the etcd prefix is empty: bendsave refuses to back up or replace a whole etcd keyspace")

    const typo = await etcdCluster(dir, "typo.toml", { endpoints, prefix: prefix.replace("prod", "prdo"), data: "data" })
    const typoRun = parseSingleJson(await bendsave(["backup", "--from", typo, "--to", join(dir, "repo"), "--json"], { cwd: dir }))
    expect(typoRun.error.tag).toBe("ClusterConfigError")
    expect(typoRun.error.message).toContain(`key 'meta.prefix': etcd at ${endpoints} has no keys under the prefix "${prefix.replace("prod", "prdo")}"`)
    expect(typoRun.error.fix).toContain(`this etcd has keys under: ${prefix}`)
    expect(typoRun.error.fix).toContain("restore --confirm")
  })

  describe("with authentication", () => {
    let server: EtcdServer
    beforeAll(async () => {
      if (!etcdAvailable()) return
      server = await startEtcdServer()
      etcdctlOk(server.endpoint, ["user", "add", `root:${PASSWORD}`])
      etcdctlOk(server.endpoint, ["user", "grant-role", "root", "root"])
      etcdctlOk(server.endpoint, ["auth", "enable"])
      etcdctlOk(server.endpoint, ["put", "/auth/prod/a", "1"], ["--user", `root:${PASSWORD}`])
    })
    afterAll(async () => {
      await server?.stop()
    })

    it("credentials come from the environment; a wrong password is reported without echoing it", async () => {
      etcdEndpoints()
      const toml = await etcdCluster(dir, "auth.toml", { endpoints: server.endpoint, prefix: "/auth/prod/", data: "data", extra: 'username = "root"\npassword_env = "AUTH_PW"' })
      const ok = await bendsave(["meta", "export", "--cluster", toml], { cwd: dir, env: { AUTH_PW: PASSWORD } })
      expect(ok.code, describeRun(ok)).toBe(0)
      expect(ok.stdout).toBe('{"key":"a","value":"1"}\n')

      const wrong = `${PASSWORD}-nope`
      const bad = await bendsave(["backup", "--from", toml, "--to", join(dir, "repo-auth")], { cwd: dir, env: { AUTH_PW: wrong } })
      expect(bad.code).toBe(1)
      expect(bad.stderr).toContain("PermissionDenied: etcd at")
      expect(bad.stderr).toContain("rejected the user name or password (user 'root')")
      expect(bad.stderr).toContain("the environment variable AUTH_PW")
      expect(bad.stderr + bad.stdout).not.toContain(wrong)

      const none = await bendsave(["backup", "--from", toml, "--to", join(dir, "repo-auth")], { cwd: dir })
      expect(none.code).toBe(1)
      expect(none.stderr).toContain("key 'meta.password_env': the environment variable AUTH_PW is not set")
    })
  })
})
