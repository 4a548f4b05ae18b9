/**
 * classifyError without a server: each kind of etcd / gRPC failure becomes the
 * reason, detail and fix a user can act on, and no message carries the password.
 */
import { MetaStoreError } from "@bendsave/core"
import { BrokenCircuitError } from "cockatiel"
import {
  EtcdAuthenticationFailedError,
  EtcdError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCOutOfRangeError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
} from "etcd3"
import { describe, expect, it } from "vitest"
import { classifyError, type EtcdErrorContext } from "../src/index.ts"

const context: EtcdErrorContext = {
  endpoints: ["http://10.0.0.1:2379"],
  prefix: "/prod/",
  username: "backup",
  passwordSource: "the environment variable PROD_PW",
  password: "hunter2-secret",
  tls: false,
  dialTimeoutMs: 5000,
  requestTimeoutMs: 30000,
}

describe("classifyError", () => {
  const cases: Array<[string, Error, string, RegExp, RegExp]> = [
    [
      "connection refused",
      new GRPCUnavailableError("14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 10.0.0.1:2379. Resolution note: "),
      "Unavailable",
      /^cannot reach etcd at http:\/\/10\.0\.0\.1:2379 \(connection refused\)$/,
      /endpoints/,
    ],
    ["circuit open", new BrokenCircuitError(), "Unavailable", /cannot reach etcd .*failed repeatedly/, /endpoints/],
    ["deadline", new GRPCDeadlineExceededError("4 DEADLINE_EXCEEDED: Deadline exceeded"), "Unavailable", /did not answer within 30000 ms \(request_timeout_ms = 30000\)/, /timeout/],
    [
      "wrong password",
      new EtcdAuthenticationFailedError("3 INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password"),
      "PermissionDenied",
      /rejected the user name or password \(user 'backup'\)/,
      /the environment variable PROD_PW/,
    ],
    ["no user", new GRPCInvalidArgumentError("3 INVALID_ARGUMENT: etcdserver: user name is empty"), "PermissionDenied", /does not accept user 'backup'/, /password_env/],
    [
      "no permission",
      new EtcdPermissionDeniedError("7 PERMISSION_DENIED: etcdserver: permission denied"),
      "PermissionDenied",
      /user 'backup' may not read the keys under "\/prod\/"/,
      /grant-permission --prefix=true <role> readwrite \/prod\//,
    ],
    ["compacted", new GRPCOutOfRangeError("11 OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted"), "Conflict", /compacted its history/, /auto-compaction/],
    ["too many ops", new GRPCInvalidArgumentError("3 INVALID_ARGUMENT: etcdserver: too many operations in txn request"), "InvalidConfig", /refused a transaction/, /--max-txn-ops/],
    ["request too large", new GRPCInvalidArgumentError("3 INVALID_ARGUMENT: etcdserver: request is too large"), "InvalidInput", /too large/, /--max-request-bytes/],
    [
      "grpc message too large",
      new GRPCResourceExhastedError("8 RESOURCE_EXHAUSTED: Received message larger than max (2000000 vs. 1000000)"),
      "InvalidInput",
      /too large/,
      /--max-request-bytes/,
    ],
    ["no space", new EtcdError("etcdserver: mvcc: database space exceeded"), "Unknown", /out of space/, /alarm disarm/],
    ["no leader", new EtcdError("etcdserver: no leader"), "Unavailable", /not serving right now/, /endpoint health/],
    [
      "TLS",
      new GRPCUnavailableError("14 UNAVAILABLE: No connection established. Last error: Error: self-signed certificate in certificate chain"),
      "Unavailable",
      /cannot open a TLS connection/,
      /https:\/\/ and set \[meta\.tls\] ca_file/,
    ],
  ]
  for (const [label, cause, reason, detail, fix] of cases) {
    it(`${label} -> ${reason}`, () => {
      const error = classifyError("snapshot", cause, context)
      expect(error).toBeInstanceOf(MetaStoreError)
      expect(error.reason).toBe(reason)
      expect(error.detail).toMatch(detail)
      expect(error.fix ?? "").toMatch(fix)
      expect(error.driver).toBe("etcd")
      expect(error.operation).toBe("snapshot")
      expect(error.isRetryable).toBe(reason === "Unavailable")
    })
  }

  it("scrubs the password from anything the server or client says", () => {
    const error = classifyError("open", new Error("weird failure for hunter2-secret at the gate"), context)
    expect(error.reason).toBe("Unknown")
    expect(error.message).not.toContain("hunter2-secret")
    expect(error.message).toContain("***")
  })

  it("a writing operation asks for read and write permission", () => {
    const error = classifyError("replace", new EtcdPermissionDeniedError("etcdserver: permission denied"), context)
    expect(error.detail).toContain("may not read or write the keys")
    expect(error.fix).toContain("readwrite permission")
  })

  it("names the dial timeout when opening", () => {
    const error = classifyError("open", new GRPCDeadlineExceededError("4 DEADLINE_EXCEEDED: Deadline exceeded"), context)
    expect(error.detail).toContain("within 5000 ms (dial_timeout_ms = 5000)")
  })
})
