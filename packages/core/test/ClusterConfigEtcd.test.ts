import * as Redacted from "effect/Redacted"
import { describe, expect, it } from "vitest"
import { type ClusterConfig, ClusterConfigError, type EtcdMetaConfig, parseClusterConfig } from "../src/ClusterConfig.ts"

const FILE = "/etc/bendsave/prod.toml"
const storage = `[storage]\ntype = "fs"\n[storage.fs]\ndata_path = "./data"\n`
const toml = (meta: string) => `name = "prod"\n[meta]\ntype = "etcd"\n${meta}\n${storage}`
const base = `endpoints = ["http://127.0.0.1:2379"]\nprefix = "/prod/"`

const parse = (meta: string, env: Record<string, string> = {}): EtcdMetaConfig => {
  const r = parseClusterConfig(toml(meta), FILE, env)
  if (r instanceof ClusterConfigError) throw new Error(`unexpected error: ${r.message} / ${r.fix}`)
  expect(r.meta.type).toBe("etcd")
  return (r as ClusterConfig).meta as EtcdMetaConfig
}
const error = (meta: string, env: Record<string, string> = {}) => {
  const r = parseClusterConfig(toml(meta), FILE, env)
  expect(r).toBeInstanceOf(ClusterConfigError)
  return r as ClusterConfigError
}

describe("ClusterConfig: [meta] type = \"etcd\"", () => {
  it("parses endpoints, prefix, credentials, TLS paths (relative to the file) and timeouts", () => {
    const meta = parse(
      `endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]\nprefix = "/prod/"\nusername = "backup"\npassword = "pw"\ndial_timeout_ms = 1500\nrequest_timeout_ms = 9000\n[meta.tls]\nca_file = "certs/ca.pem"\ncert_file = "/abs/client.pem"\nkey_file = "client-key.pem"`,
    )
    expect({ ...meta, password: undefined }).toEqual({
      type: "etcd",
      endpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
      prefix: "/prod/",
      username: "backup",
      password: undefined,
      passwordSource: "`password` in the cluster file",
      tls: { caFile: "/etc/bendsave/certs/ca.pem", certFile: "/abs/client.pem", keyFile: "/etc/bendsave/client-key.pem" },
      dialTimeoutMs: 1500,
      requestTimeoutMs: 9000,
    })
    expect(Redacted.value(meta.password!)).toBe("pw")
  })

  it("defaults the timeouts and needs no credentials", () => {
    const meta = parse(base)
    expect(meta.dialTimeoutMs).toBe(5000)
    expect(meta.requestTimeoutMs).toBe(30000)
    expect(meta.username).toBeUndefined()
    expect(meta.password).toBeUndefined()
  })

  it("takes the password from password_env or ETCD_PASSWORD and the user from ETCD_USERNAME, and never shows it", () => {
    const fromVar = parse(`${base}\nusername = "backup"\npassword_env = "PROD_ETCD_PW"`, { PROD_ETCD_PW: "from-var" })
    expect(Redacted.value(fromVar.password!)).toBe("from-var")
    expect(fromVar.passwordSource).toContain("PROD_ETCD_PW")
    const fromEnv = parse(base, { ETCD_USERNAME: "env-user", ETCD_PASSWORD: "from-env" })
    expect(fromEnv.username).toBe("env-user")
    expect(Redacted.value(fromEnv.password!)).toBe("from-env")
    // The file's user wins over ETCD_USERNAME.
    expect(parse(`${base}\nusername = "file-user"`, { ETCD_USERNAME: "env-user" }).username).toBe("file-user")
    for (const text of [String(fromEnv.password), JSON.stringify(fromEnv), `${fromEnv.password}`]) expect(text).not.toContain("from-env")
  })

  it("reports credential mistakes without the password", () => {
    const unset = error(`${base}\nusername = "u"\npassword_env = "NOT_SET"`)
    expect(unset.key).toBe("meta.password_env")
    expect(unset.message).toContain("NOT_SET is not set")
    const both = error(`${base}\nusername = "u"\npassword = "topsecret"\npassword_env = "X"`)
    expect(both.key).toBe("meta.password")
    const noUser = error(`${base}\npassword = "topsecret"`)
    expect(noUser.key).toBe("meta.username")
    expect(noUser.message).toContain("no user name")
    const wrongType = error(`${base}\nusername = "u"\npassword = 123456789`)
    expect(wrongType.key).toBe("meta.password")
    expect(wrongType.message).toContain("the value is not shown")
    for (const e of [both, noUser, wrongType]) {
      expect(`${e.message} ${e.fix}`).not.toContain("topsecret")
      expect(`${e.message} ${e.fix}`).not.toContain("123456789")
    }
  })

  it("refuses an empty or missing prefix: a whole etcd is never backed up by accident", () => {
    const empty = error(`endpoints = ["http://127.0.0.1:2379"]\nprefix = ""`)
    expect(empty.key).toBe("meta.prefix")
    expect(empty.message).toContain("refuses to back up or replace a whole etcd keyspace")
    expect(empty.fix).toContain('prefix = "/<cluster>/"')
    const missing = error(`endpoints = ["http://127.0.0.1:2379"]`)
    expect(missing.key).toBe("meta.prefix")
    expect(missing.message).toContain("missing required key")
    expect(missing.fix).toContain("etcd key prefix")
  })

  it("checks each endpoint URL, never echoing credentials written into one", () => {
    const cases: Array<[string, string]> = [
      ['["127.0.0.1:2379"]', "has no scheme: write http://127.0.0.1:2379"],
      ['["etcd-1.internal:2379"]', "has no scheme: write http://etcd-1.internal:2379"],
      ['["not a url"]', "is not a URL"],
      ['["grpc://127.0.0.1:2379"]', "scheme 'grpc'"],
      ['["http://127.0.0.1"]', "needs a host and a port"],
      ['["http://127.0.0.1:2379/v3"]', "must not have a path"],
      ['["http://root:hunter2@127.0.0.1:2379"]', "holds credentials"],
      ["[]", "no endpoints are given"],
      ['"http://127.0.0.1:2379"', "expected"],
    ]
    for (const [value, problem] of cases) {
      const e = error(`endpoints = ${value}\nprefix = "/p/"`)
      expect(e.key, value).toMatch(/^meta\.endpoints/)
      expect(e.message, value).toContain(problem)
      expect(e.message).not.toContain("hunter2")
    }
    const mixed = error(`endpoints = ["http://a:1", "https://b:2"]\nprefix = "/p/"`)
    expect(mixed.message).toContain("mixes http:// and https://")
  })

  it("checks the TLS section", () => {
    const http = error(`${base}\n[meta.tls]\nca_file = "ca.pem"`)
    expect(http.key).toBe("meta.tls")
    expect(http.fix).toContain("https://")
    const https = `endpoints = ["https://127.0.0.1:2379"]\nprefix = "/prod/"`
    const noKey = error(`${https}\n[meta.tls]\ncert_file = "c.pem"`)
    expect(noKey.key).toBe("meta.tls.key_file")
    const unknown = error(`${https}\n[meta.tls]\nca = "ca.pem"`)
    expect(unknown.key).toBe("meta.tls.ca")
    expect(unknown.fix).toContain("ca_file")
  })

  it("suggests the etcd key for a misspelt one, and rejects local keys", () => {
    const typo = error(`endpoint = ["http://127.0.0.1:2379"]\nprefix = "/p/"`)
    expect(typo.key).toBe("meta.endpoint")
    expect(typo.fix).toContain("'endpoints'")
    const pw = error(`${base}\nusername = "u"\npasword = "x"`)
    expect(pw.fix).toContain("'password'")
    const local = error(`${base}\npath = "./meta"`)
    expect(local.key).toBe("meta.path")
    expect(local.message).toContain("unknown key")
    const timeout = error(`${base}\ndial_timeout_ms = 0`)
    expect(timeout.key).toBe("meta.dial_timeout_ms")
  })

  it("names both meta types for an unknown one", () => {
    const r = parseClusterConfig(`[meta]\ntype = "zookeeper"\n${storage}`, FILE, {})
    expect(r).toBeInstanceOf(ClusterConfigError)
    expect((r as ClusterConfigError).message).toContain("available: local, etcd")
  })
})
