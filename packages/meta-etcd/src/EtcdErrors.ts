/**
 * EtcdErrors: the one place where errors of the etcd client (the `etcd3`
 * package, gRPC, the etcd server) become `MetaStoreError`s with a reason, a
 * detail and a fix. Nothing the server or the client says is trusted to be
 * free of secrets, so a known password is scrubbed from every message.
 */
import { MetaStoreError, type MetaStoreErrorReason } from "@bendsave/core"

/** What the classifier knows about the connection, for messages (never the password itself). */
export interface EtcdErrorContext {
  readonly endpoints: ReadonlyArray<string>
  readonly prefix: string
  readonly username?: string
  /** Where the password came from (e.g. "the environment variable ETCD_PASSWORD"). */
  readonly passwordSource?: string
  /** Scrubbed from every message (a server or library might echo it). */
  readonly password?: string
  readonly tls: boolean
  readonly dialTimeoutMs: number
  readonly requestTimeoutMs: number
}

export const DRIVER = "etcd"

const errorName = (cause: unknown): string => {
  if (cause === null || typeof cause !== "object") return ""
  const ctor = (cause as { constructor?: { name?: unknown } }).constructor
  const name = typeof ctor?.name === "string" && ctor.name !== "Error" ? ctor.name : (cause as { name?: unknown }).name
  return typeof name === "string" ? name : ""
}

const errorMessage = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : String(cause)

const scrub = (text: string, context: EtcdErrorContext): string =>
  context.password !== undefined && context.password.length >= 1 ? text.split(context.password).join("***") : text

/** The server's or client's own words, shortened: gRPC adds "14 UNAVAILABLE: " and resolution notes. */
const shortMessage = (message: string): string =>
  message
    .replace(/^\d+ [A-Z_]+: /, "")
    .replace(/\.?\s*Resolution note:.*$/s, "")
    .trim()

const quote = (prefix: string) => JSON.stringify(prefix)

/**
 * Maps any error thrown by the etcd client to a MetaStoreError. `operation` is
 * the MetaStore operation ("open", "snapshot", "replace", ...).
 */
export const classifyError = (operation: string, cause: unknown, context: EtcdErrorContext): MetaStoreError => {
  const name = errorName(cause)
  const raw = scrub(errorMessage(cause), context)
  const message = shortMessage(raw)
  const where = context.endpoints.join(", ")
  const make = (reason: MetaStoreErrorReason, detail: string, fix?: string) =>
    new MetaStoreError({ reason, driver: DRIVER, operation, detail: scrub(detail, context), fix, cause })
  const has = (...needles: Array<string>) => needles.some((n) => raw.includes(n))

  // Authentication and authorisation.
  if (name === "EtcdAuthenticationFailedError" || has("authentication failed, invalid user ID or password")) {
    return make(
      "PermissionDenied",
      `etcd at ${where} rejected the user name or password (user '${context.username ?? ""}')`,
      `check \`username\` in [meta] (or ETCD_USERNAME) and the password${context.passwordSource ? ` in ${context.passwordSource}` : ""}`,
    )
  }
  if (has("user name is empty", "user name not found") || name === "GRPCUnauthenticatedError" || name === "EtcdInvalidAuthTokenError") {
    return make(
      "PermissionDenied",
      context.username === undefined
        ? `etcd at ${where} requires authentication and no user name is configured`
        : `etcd at ${where} does not accept user '${context.username}' (${message})`,
      "set `username` and `password_env` in [meta] (or ETCD_USERNAME / ETCD_PASSWORD)",
    )
  }
  if (name === "EtcdPermissionDeniedError" || has("etcdserver: permission denied")) {
    return make(
      "PermissionDenied",
      `user '${context.username ?? "(none)"}' may not ${operation === "snapshot" || operation === "get" ? "read" : "read or write"} the keys under ${quote(context.prefix)} on etcd at ${where}`,
      `grant a role of that user ${operation === "snapshot" || operation === "get" ? "read" : "readwrite"} permission on the prefix, e.g. \`etcdctl role grant-permission --prefix=true <role> readwrite ${context.prefix}\``,
    )
  }

  // History compacted under a pinned read.
  if (has("required revision has been compacted")) {
    return make(
      "Conflict",
      `etcd compacted its history past the revision this ${operation} reads at (${message})`,
      "run it again; if it keeps happening, make etcd's auto-compaction retention longer than a snapshot takes",
    )
  }
  if (has("required revision is a future revision")) {
    return make("Conflict", `etcd at ${where} is behind the revision this ${operation} reads at (${message})`, "run it again")
  }

  // Size limits and quotas.
  if (has("too many operations in txn request")) {
    return make("InvalidConfig", `etcd at ${where} refused a transaction: ${message}`, "raise the server's --max-txn-ops (default 128)")
  }
  if (has("request is too large") || (name === "GRPCResourceExhastedError" && has("larger than max"))) {
    return make(
      "InvalidInput",
      `etcd at ${where} refused a request as too large: ${message}`,
      "raise the server's --max-request-bytes (default 1.5 MiB): one key and value must fit in one request",
    )
  }
  if (has("database space exceeded")) {
    return make(
      "Unknown",
      `etcd at ${where} is out of space: ${message}`,
      "compact and defragment etcd or raise --quota-backend-bytes, then clear the alarm (`etcdctl alarm disarm`)",
    )
  }

  // Connectivity: refused, unreachable, TLS, timeouts, no leader.
  const tlsProblem = /certificate|ssl|tls|handshake|self.signed|unable to verify|wrong version number|alert/i.test(raw)
  if (tlsProblem && (name.startsWith("GRPC") || name === "BrokenCircuitError" || has("UNAVAILABLE"))) {
    return make(
      "Unavailable",
      `cannot open a TLS connection to etcd at ${where}: ${message}`,
      context.tls
        ? "check [meta.tls] ca_file (the CA of the server certificate), cert_file/key_file (a client certificate the server trusts) and that the endpoints are the server's https URLs"
        : "the server expects TLS: write the endpoints as https:// and set [meta.tls] ca_file (and cert_file/key_file for client certificates)",
    )
  }
  if (name === "GRPCDeadlineExceededError" || has("DEADLINE_EXCEEDED", "Deadline exceeded")) {
    const limit = operation === "open" ? `dial_timeout_ms = ${context.dialTimeoutMs}` : `request_timeout_ms = ${context.requestTimeoutMs}`
    return make(
      "Unavailable",
      `etcd at ${where} did not answer within ${operation === "open" ? context.dialTimeoutMs : context.requestTimeoutMs} ms (${limit})`,
      "check `endpoints` in [meta], that etcd is running and reachable from here (firewall), or raise the timeout in [meta]",
    )
  }
  if (name === "BrokenCircuitError" || name === "GRPCUnavailableError" || has("UNAVAILABLE", "ECONNREFUSED", "No connection established")) {
    const refused = has("ECONNREFUSED") ? " (connection refused)" : has("ENOTFOUND", "EAI_AGAIN") ? " (host name not found)" : ""
    return make(
      "Unavailable",
      `cannot reach etcd at ${where}${refused !== "" ? refused : `: ${name === "BrokenCircuitError" ? "the endpoints failed repeatedly" : message}`}`,
      "check `endpoints` in [meta] and that etcd is running and listening there",
    )
  }
  if (has("no leader", "leader changed", "request timed out", "too many requests")) {
    return make("Unavailable", `etcd at ${where} is not serving right now: ${message}`, "try again in a moment; check the etcd cluster's health (`etcdctl endpoint health`)")
  }
  if (name === "ClientClosedError") {
    return make("Unknown", `the etcd client was already closed: ${message}`)
  }
  return make("Unknown", `etcd at ${where}: ${name ? `${name}: ` : ""}${message}`)
}
