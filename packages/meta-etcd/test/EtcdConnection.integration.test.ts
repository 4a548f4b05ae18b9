/**
 * Connection settings of the etcd meta driver against real etcd servers:
 * cluster-file credentials (file, password_env, ETCD_USERNAME/ETCD_PASSWORD),
 * authentication and permission errors, TLS with client certificates,
 * unreachable and silent endpoints, several endpoints, a prefix without keys.
 * No error message may contain the password.
 */
import { spawnSync } from "node:child_process"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ClusterConfigError, type EtcdMetaConfig, type MetaStore, MetaStoreError, parseClusterConfig } from "@bendsave/core"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { openEtcdMetaStore } from "../src/index.ts"
import { type EtcdServer, etcdAvailable, etcdctlOk, etcdEndpoints, freePort, startEtcdServer } from "./etcdServers.ts"

const PASSWORD = "s3cret-Pa55word!"
const utf8 = (text: string) => new TextEncoder().encode(text)

/** The `[meta]` section of a cluster file, parsed like the CLI does. */
const metaConfig = (meta: string, env: Record<string, string> = {}, dir = "/tmp"): EtcdMetaConfig => {
  const parsed = parseClusterConfig(`[meta]\n${meta}\n[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./data"\n`, join(dir, "c.toml"), env)
  if (parsed instanceof ClusterConfigError) throw new Error(parsed.message)
  if (parsed.meta.type !== "etcd") throw new Error("not etcd")
  return parsed.meta
}

/** Opens the store and runs `use` with it; the client is closed afterwards. */
const withStore = async <A>(config: EtcdMetaConfig, use: (store: MetaStore) => Effect.Effect<A, MetaStoreError>, create = true): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  try {
    return await Effect.runPromise(Scope.provide(Effect.flatMap(openEtcdMetaStore(config, { create }), use), scope))
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
const openError = async (config: EtcdMetaConfig, create = true): Promise<MetaStoreError> => {
  try {
    await withStore(config, (store) => store.snapshot(), create)
  } catch (error) {
    expect(error).toBeInstanceOf(MetaStoreError)
    return error as MetaStoreError
  }
  throw new Error("expected the store to fail")
}
const expectNoSecret = (error: MetaStoreError) => {
  for (const text of [error.message, error.detail, error.fix ?? "", String(error)]) expect(text).not.toContain(PASSWORD)
}
const snapshotKeys = (store: MetaStore) =>
  Effect.flatMap(store.snapshot(), (s) => Effect.map(Stream.runCollect(s.entries), (entries) => entries.map((e) => new TextDecoder().decode(e.key))))

describe("etcd connection settings", () => {
  it("an endpoint where nothing listens is Unavailable (connection refused), quickly", async () => {
    etcdEndpoints()
    const port = await freePort()
    const started = Date.now()
    const error = await openError(metaConfig(`type = "etcd"\nendpoints = ["http://127.0.0.1:${port}"]\nprefix = "/p/"`))
    expect(error.reason).toBe("Unavailable")
    expect(error.detail).toBe(`cannot reach etcd at http://127.0.0.1:${port} (connection refused)`)
    expect(error.fix).toContain("endpoints")
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  describe("an endpoint that accepts connections and never answers", () => {
    let server: Server
    const sockets: Array<Socket> = []
    let port: number
    beforeAll(async () => {
      port = await freePort()
      server = createServer((socket) => sockets.push(socket))
      await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
    })
    afterAll(async () => {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    })

    it("fails after dial_timeout_ms with the setting to check", async () => {
      etcdEndpoints()
      const started = Date.now()
      const error = await openError(metaConfig(`type = "etcd"\nendpoints = ["http://127.0.0.1:${port}"]\nprefix = "/p/"\ndial_timeout_ms = 400`))
      expect(error.reason).toBe("Unavailable")
      expect(error.detail).toContain("did not answer within 400 ms (dial_timeout_ms = 400)")
      expect(Date.now() - started).toBeLessThan(4_000)
    })
  })

  it("with one dead endpoint among several, the live one serves", async () => {
    const { endpoints } = etcdEndpoints()
    const dead = `http://127.0.0.1:${await freePort()}`
    const prefix = `/multi-${Date.now()}/`
    const config = metaConfig(`type = "etcd"\nendpoints = ["${dead}", "${endpoints}"]\nprefix = "${prefix}"`)
    for (let i = 0; i < 3; i++) {
      const keys = await withStore(config, (store) =>
        Effect.andThen(store.replace(Stream.fromIterable([{ key: utf8(`k${i}`), value: utf8("v") }])), snapshotKeys(store)),
      )
      expect(keys).toEqual([`k${i}`])
    }
    etcdctlOk(endpoints, ["del", prefix, "--prefix"])
  })

  it("a prefix without keys is NotFound (naming prefixes that do exist) unless the store may create it", async () => {
    const { endpoints } = etcdEndpoints()
    const stamp = Date.now()
    etcdctlOk(endpoints, ["put", `/existing-${stamp}/a`, "1"])
    const config = metaConfig(`type = "etcd"\nendpoints = ["${endpoints}"]\nprefix = "/missing-${stamp}/"`)
    const error = await openError(config, false)
    expect(error.reason).toBe("NotFound")
    expect(error.detail).toContain(`has no keys under the prefix "/missing-${stamp}/"`)
    expect(error.fix).toContain("prefix")
    expect(await withStore(config, snapshotKeys, true)).toEqual([])
    etcdctlOk(endpoints, ["del", `/existing-${stamp}/a`])
  })

  it("credentials given to a server without authentication are not needed and do not get in the way", async () => {
    const { endpoints } = etcdEndpoints()
    const config = metaConfig(`type = "etcd"\nendpoints = ["${endpoints}"]\nprefix = "/noauth-${Date.now()}/"\nusername = "someone"\npassword = "${PASSWORD}"`)
    expect(await withStore(config, snapshotKeys)).toEqual([])
  })

  describe("with authentication enabled", () => {
    let server: EtcdServer
    beforeAll(async () => {
      if (!etcdAvailable()) return
      server = await startEtcdServer()
      const e = server.endpoint
      etcdctlOk(e, ["user", "add", `root:${PASSWORD}`])
      etcdctlOk(e, ["user", "grant-role", "root", "root"])
      etcdctlOk(e, ["user", "add", `backup:${PASSWORD}`])
      etcdctlOk(e, ["role", "add", "prod-rw"])
      etcdctlOk(e, ["role", "grant-permission", "prod-rw", "--prefix=true", "readwrite", "/prod/"])
      etcdctlOk(e, ["user", "grant-role", "backup", "prod-rw"])
      etcdctlOk(e, ["user", "add", `stranger:${PASSWORD}`])
      etcdctlOk(e, ["auth", "enable"])
      etcdctlOk(e, ["put", "/prod/catalog/databases/a", "{}"], ["--user", `root:${PASSWORD}`])
    })
    afterAll(async () => {
      await server?.stop()
    })

    it("reads with the user and password from the cluster file, password_env, or ETCD_USERNAME / ETCD_PASSWORD", async () => {
      etcdEndpoints()
      const base = `type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/prod/"`
      const configs = [
        metaConfig(`${base}\nusername = "backup"\npassword = "${PASSWORD}"`),
        metaConfig(`${base}\nusername = "backup"\npassword_env = "PROD_ETCD_PW"`, { PROD_ETCD_PW: PASSWORD }),
        metaConfig(base, { ETCD_USERNAME: "backup", ETCD_PASSWORD: PASSWORD }),
      ]
      for (const config of configs) {
        expect(await withStore(config, snapshotKeys, false)).toEqual(["catalog/databases/a"])
      }
    })

    it("a wrong password is PermissionDenied naming the user and where the password came from, never the password", async () => {
      etcdEndpoints()
      const wrong = `${PASSWORD}-wrong`
      const config = metaConfig(`type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/prod/"\nusername = "backup"\npassword_env = "PW"`, { PW: wrong })
      const error = await openError(config)
      expect(error.reason).toBe("PermissionDenied")
      expect(error.detail).toContain("rejected the user name or password (user 'backup')")
      expect(error.fix).toContain("the environment variable PW")
      for (const text of [error.message, error.detail, error.fix ?? "", String(error)]) expect(text).not.toContain(wrong)
      expectNoSecret(error)
    })

    it("no credentials is PermissionDenied saying the server requires authentication", async () => {
      etcdEndpoints()
      const error = await openError(metaConfig(`type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/prod/"`))
      expect(error.reason).toBe("PermissionDenied")
      expect(error.detail).toContain("requires authentication and no user name is configured")
      expect(error.fix).toContain("username")
    })

    it("a user without permission on the prefix is PermissionDenied with the grant to add", async () => {
      etcdEndpoints()
      const error = await openError(
        metaConfig(`type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/prod/"\nusername = "stranger"\npassword = "${PASSWORD}"`),
      )
      expect(error.reason).toBe("PermissionDenied")
      expect(error.detail).toContain("user 'stranger' may not")
      expect(error.fix).toContain("etcdctl role grant-permission --prefix=true <role> readwrite /prod/")
      expectNoSecret(error)
    })

    it("replace and compare-and-swap work for a user granted readwrite on the prefix", async () => {
      etcdEndpoints()
      const config = metaConfig(`type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/prod/"\nusername = "backup"\npassword = "${PASSWORD}"`)
      const keys = await withStore(config, (store) =>
        Effect.gen(function* () {
          yield* store.replace(Stream.fromIterable([{ key: utf8("catalog/databases/b"), value: utf8("{}") }]))
          expect(yield* store.compareAndSwap(utf8("x"), undefined, utf8("1"))).toBe(true)
          return yield* snapshotKeys(store)
        }),
      )
      expect(keys).toEqual(["catalog/databases/b", "x"])
    })
  })

  describe("with TLS and client certificates", () => {
    let server: EtcdServer
    let dir: string
    const openssl = (...args: Array<string>) => {
      const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" })
      if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`)
    }
    /** A key and a certificate signed by `ca` (or self-signed when ca is undefined). */
    const issue = async (name: string, subject: string, ca: string | undefined, extensions: string) => {
      await writeFile(join(dir, `${name}.ext`), extensions)
      openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", subject)
      const signer = ca === undefined ? ["-signkey", `${name}-key.pem`] : ["-CA", `${ca}.pem`, "-CAkey", `${ca}-key.pem`, "-CAcreateserial"]
      openssl("x509", "-req", "-in", `${name}.csr`, "-days", "2", "-out", `${name}.pem`, "-extfile", `${name}.ext`, ...signer)
    }
    beforeAll(async () => {
      if (!etcdAvailable()) return
      dir = await mkdtemp(join(tmpdir(), "bendsave-etcd-tls-"))
      await issue("ca", "/CN=bendsave test CA", undefined, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
      await issue("other-ca", "/CN=some other CA", undefined, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
      await issue("server", "/CN=127.0.0.1", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
      await issue("client", "/CN=backup", "ca", "extendedKeyUsage=clientAuth\n")
      server = await startEtcdServer({
        https: true,
        flags: [
          `--cert-file=${join(dir, "server.pem")}`,
          `--key-file=${join(dir, "server-key.pem")}`,
          "--client-cert-auth",
          `--trusted-ca-file=${join(dir, "ca.pem")}`,
        ],
        healthArgs: ["--cacert", join(dir, "ca.pem"), "--cert", join(dir, "client.pem"), "--key", join(dir, "client-key.pem")],
      })
    })
    afterAll(async () => {
      await server?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it("connects with [meta.tls] ca_file, cert_file and key_file, relative to the cluster file", async () => {
      etcdEndpoints()
      const config = metaConfig(
        `type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/tls/"\n[meta.tls]\nca_file = "ca.pem"\ncert_file = "client.pem"\nkey_file = "client-key.pem"`,
        {},
        dir,
      )
      const keys = await withStore(config, (store) =>
        Effect.andThen(store.replace(Stream.fromIterable([{ key: utf8("a"), value: utf8("1") }])), snapshotKeys(store)),
      )
      expect(keys).toEqual(["a"])
    })

    it("a CA that did not sign the server certificate is a TLS error that points at ca_file", async () => {
      etcdEndpoints()
      const config = metaConfig(
        `type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/tls/"\n[meta.tls]\nca_file = "other-ca.pem"\ncert_file = "client.pem"\nkey_file = "client-key.pem"`,
        {},
        dir,
      )
      const error = await openError(config)
      expect(error.reason).toBe("Unavailable")
      expect(error.detail).toContain("cannot open a TLS connection")
      expect(error.fix).toContain("ca_file")
    })

    it("without the client certificate the server refuses the connection", async () => {
      etcdEndpoints()
      const config = metaConfig(`type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/tls/"\n[meta.tls]\nca_file = "ca.pem"`, {}, dir)
      const error = await openError(config)
      expect(error.reason).toBe("Unavailable")
      expect(error.fix).toContain("cert_file")
    })

    it("a missing PEM file is InvalidConfig naming the key and the path", async () => {
      etcdEndpoints()
      const config = metaConfig(`type = "etcd"\nendpoints = ["${server.endpoint}"]\nprefix = "/tls/"\n[meta.tls]\nca_file = "nope.pem"`, {}, dir)
      const error = await openError(config)
      expect(error.reason).toBe("InvalidConfig")
      expect(error.detail).toBe(`cannot read the [meta.tls] ca_file ${join(dir, "nope.pem")}: no such file`)
    })

    it("plain http to a TLS server fails with advice to use https", async () => {
      etcdEndpoints()
      const error = await openError(metaConfig(`type = "etcd"\nendpoints = ["${server.endpoint.replace("https:", "http:")}"]\nprefix = "/tls/"`))
      expect(error.reason).toBe("Unavailable")
    })
  })
})
