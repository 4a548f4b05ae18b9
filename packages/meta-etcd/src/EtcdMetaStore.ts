/**
 * EtcdMetaStore: the `etcd` meta driver (etcd v3 API, over gRPC with the
 * `etcd3` client). The cluster's keys are the etcd keys under a non-empty
 * prefix; the store hands out and takes keys relative to it.
 *
 * # Snapshot
 * One linearizable range read fixes the revision R (the etcd revision at that
 * moment); every page is then a range read pinned to R (`revision = R`), in
 * key order, continuing after the last key of the previous page. Pages hold
 * at most `pageSize` keys and adapt so a page stays near `pageBytes`: memory
 * does not grow with the number of keys. If etcd compacts its history past R
 * while the snapshot runs, the snapshot fails with reason `Conflict`.
 *
 * # Replace
 * The input is read twice. The first pass only checks it (ascending bytewise
 * order, no duplicates, no stream error) and fingerprints it (count and
 * SHA-256): a bad input writes nothing, and a second read that differs (a
 * one-shot source already drained) is refused before the keys after the
 * input's last one are removed. The
 * second pass merges it with the current keyspace, read in pages pinned to one
 * revision R0, and writes the differences in transactions of at most
 * `txnOps` operations and about `txnBytes` bytes of keys and values (etcd's
 * defaults are 128 operations and 1.5 MiB per request). A run of removed keys
 * is one delete-range operation. Each transaction covers a key interval
 * [lo, hi) that no other transaction touches, and is guarded: it applies only
 * if no key in [lo, hi) was written after R0. So a concurrent writer makes the
 * replace stop with reason `Conflict` naming the key, and a concurrent delete
 * is caught by the final count. The replace is not atomic as a whole (etcd
 * cannot commit an unbounded transaction): a replace that fails while writing
 * leaves the transactions it committed, and running it again completes it.
 * Up to `txnConcurrency` transactions are in flight at once (their key
 * intervals are disjoint, so their order does not matter). A transaction that
 * etcd refuses as too large or as having too many operations is split in two
 * and retried.
 *
 * # Retries
 * A request that finds an endpoint unavailable is retried (three attempts,
 * exponential backoff) on the next endpoint; with several endpoints one that
 * keeps failing is skipped for a second. Nothing else is retried here: a
 * deadline, a refusal or a conflict is reported.
 *
 * # Compare-and-swap
 * One transaction comparing the value (or `version = 0` for "absent").
 *
 * # Errors
 * Every failure is a MetaStoreError built by `classifyError` (EtcdErrors.ts);
 * no message contains the password.
 */
import { Buffer } from "node:buffer"
import { createHash } from "node:crypto"
import { compareBytes, displayKey, type MetaDiff, type MetaEntry, type MetaStore, MetaStoreError } from "@bendsave/core"
import { ConsecutiveBreaker, circuitBreaker, ExponentialBackoff, handleWhen, noop, retry } from "cockatiel"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Etcd3, GRPCUnavailableError, type ICompare, type IKeyValue, type IOptions, type IRangeRequest, type IRequestOp } from "etcd3"
import { classifyError, DRIVER, type EtcdErrorContext } from "./EtcdErrors.ts"

export interface EtcdMetaStoreOptions {
  /** Client URLs: `http://host:port` or `https://host:port`. */
  readonly endpoints: ReadonlyArray<string>
  /** Non-empty key prefix (UTF-8). */
  readonly prefix: string
  readonly username?: string
  readonly password?: Redacted.Redacted<string>
  /** Where the password came from, for messages. */
  readonly passwordSource?: string
  /** PEM contents for TLS: the CA of the server certificate, and a client certificate and key. */
  readonly tls?: { readonly ca?: Uint8Array; readonly cert?: Uint8Array; readonly key?: Uint8Array }
  /** Deadline of the first request, which also connects. Default 5000 ms. */
  readonly dialTimeoutMs?: number
  /** Deadline of every other request. Default 30000 ms. */
  readonly requestTimeoutMs?: number
  /** Without it, a prefix with no keys is a `NotFound` error (the cluster is not there). Default false. */
  readonly create?: boolean
  /**
   * Most keys per range page. Default 10 000 (etcd 3.4 walks the rest of the
   * range on every page, so pages must not be small).
   */
  readonly pageSize?: number
  /** Target bytes of keys and values per range page. Default 4 MiB. */
  readonly pageBytes?: number
  /** Most operations per transaction. Default 128 (etcd's --max-txn-ops default). */
  readonly txnOps?: number
  /** Target bytes of keys and values per transaction. Default 1 MiB (etcd's --max-request-bytes default is 1.5 MiB). */
  readonly txnBytes?: number
  /** Most keys one delete-range operation removes. Default 10 000. */
  readonly deleteRunKeys?: number
  /** Transactions in flight at once (on disjoint key ranges). Default 4. */
  readonly txnConcurrency?: number
}

const SAMPLE_SIZE = 5
const utf8 = new TextEncoder()
const ZERO = Uint8Array.of(0)

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/** The smallest key greater than `key`: `key + "\0"`. */
const successor = (key: Uint8Array): Uint8Array => concat(key, ZERO)

/** The end of the range of keys starting with `prefix` (etcd's `--prefix`): the prefix with its last byte < 0xff incremented. */
export const prefixRangeEnd = (prefix: Uint8Array): Uint8Array => {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] < 0xff) {
      const end = prefix.slice(0, i + 1)
      end[i]++
      return end
    }
  }
  return ZERO // every key from `prefix` on
}

/** The next page size: shrink after a page heavier than the target, grow after a light one. */
const nextLimit = (limit: number, bytes: number, targetBytes: number, maxKeys: number): number =>
  bytes > targetBytes ? Math.max(1, Math.floor((limit * targetBytes) / bytes)) : bytes < targetBytes / 4 ? Math.min(maxKeys, limit * 2) : limit

/** A view of bytes as a Buffer (no copy), for the gRPC client. */
const buf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)

/** A copy: the client's Buffers are views of whole response messages, which must not stay alive. */
const copy = (bytes: Uint8Array): Uint8Array => Uint8Array.prototype.slice.call(bytes)

const location = (endpoints: ReadonlyArray<string>, prefix: string): string => {
  const tls = endpoints.some((e) => e.startsWith("https:"))
  const hosts = endpoints.map((e) => e.replace(/^https?:\/\//, "").replace(/\/$/, "")).join(",")
  return `${tls ? "etcds" : "etcd"}://${hosts}${prefix.startsWith("/") ? "" : "/"}${prefix}`
}

/** An endpoint that cannot be reached (the host policy sees raw gRPC errors, the global one etcd3's typed ones). */
const SLASH = 0x2f

/**
 * Prefixes that do hold keys near a prefix that holds none, for the "no keys
 * under the prefix" hint: the keys under the closest parent (cut at the
 * prefix's depth, e.g. `/prod/` for `/prdo/`), at most five.
 */
const nearbyPrefixes = <E>(
  prefix: Uint8Array,
  list: (from: Uint8Array, to: Uint8Array) => Effect.Effect<ReadonlyArray<Uint8Array>, E>,
): Effect.Effect<Array<string>, E> =>
  Effect.gen(function* () {
    const depth = prefix.filter((b) => b === SLASH).length
    const cut = (key: Uint8Array): Uint8Array => {
      let seen = 0
      for (let i = 0; i < key.length; i++) {
        if (key[i] === SLASH && ++seen === Math.max(depth, 1)) return key.subarray(0, i + 1)
      }
      return key.subarray(0, Math.min(key.length, prefix.length + 8))
    }
    // Parents of the prefix, deepest first: "/a/b/c/" -> "/a/b/", "/a/", "" (everything).
    const parents: Array<Uint8Array> = []
    for (let i = prefix.length - 2; i >= 0; i--) if (prefix[i] === SLASH) parents.push(prefix.subarray(0, i + 1))
    parents.push(new Uint8Array(0))
    for (const parent of parents) {
      const keys = yield* list(parent.length === 0 ? ZERO : parent, parent.length === 0 ? ZERO : prefixRangeEnd(parent))
      const found = new Set<string>()
      for (const key of keys) {
        found.add(displayKey(cut(key)))
        if (found.size >= 5) break
      }
      if (found.size > 0) return [...found]
    }
    return []
  })

/** Count and SHA-256 of an entry sequence: the two reads of a replace's input must agree. */
interface InputFingerprint {
  count: number
  add(entry: MetaEntry): void
  sameAs(other: InputFingerprint): boolean
  digest(): string
}

const makeFingerprint = (): InputFingerprint => {
  const hash = createHash("sha256")
  const lengths = new DataView(new ArrayBuffer(8))
  let digest: string | undefined
  const fingerprint: InputFingerprint = {
    count: 0,
    add: (entry) => {
      fingerprint.count++
      lengths.setUint32(0, entry.key.length)
      lengths.setUint32(4, entry.value.length)
      hash.update(new Uint8Array(lengths.buffer)).update(entry.key).update(entry.value)
    },
    digest: () => {
      digest ??= hash.digest("hex")
      return digest
    },
    sameAs: (other) => fingerprint.count === other.count && fingerprint.digest() === other.digest(),
  }
  return fingerprint
}

const unavailable = (error: Error): boolean => error instanceof GRPCUnavailableError || (error as { code?: unknown }).code === 14

interface Batch {
  readonly ops: Array<IRequestOp>
  /** End (exclusive) of the key interval of each op. */
  readonly ends: Array<Uint8Array>
  bytes: number
}

const emptyBatch = (): Batch => ({ ops: [], ends: [], bytes: 0 })

/**
 * Connects to etcd and returns the store; the client is closed with the
 * scope. Fails with `InvalidConfig` for an empty prefix, `NotFound` (without
 * `create`) when no key exists under the prefix, and with the classified
 * connection error (unreachable, TLS, authentication) otherwise.
 */
export const makeEtcdMetaStore = Effect.fnUntraced(function* (
  options: EtcdMetaStoreOptions,
): Effect.fn.Return<MetaStore, MetaStoreError, Scope.Scope> {
  const prefix = options.prefix
  const endpoints = [...options.endpoints]
  const dialTimeoutMs = options.dialTimeoutMs ?? 5_000
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  const maxPageKeys = Math.max(1, options.pageSize ?? 10_000)
  const pageBytes = Math.max(1, options.pageBytes ?? 4 * 1024 * 1024)
  let txnOps = Math.max(1, options.txnOps ?? 128)
  let txnBytes = Math.max(1, options.txnBytes ?? 1024 * 1024)
  const deleteRunKeys = Math.max(1, options.deleteRunKeys ?? 10_000)
  const txnConcurrency = Math.max(1, options.txnConcurrency ?? 4)
  const password = options.password === undefined ? undefined : Redacted.value(options.password)
  const context: EtcdErrorContext = {
    endpoints,
    prefix,
    username: options.username,
    passwordSource: options.passwordSource,
    password,
    tls: options.tls !== undefined,
    dialTimeoutMs,
    requestTimeoutMs,
  }
  const fail = (operation: string, reason: MetaStoreError["reason"], detail: string, fix?: string) =>
    new MetaStoreError({ reason, driver: DRIVER, operation, detail, fix })

  if (prefix === "") {
    return yield* fail(
      "open",
      "InvalidConfig",
      "the etcd prefix is empty: bendsave refuses to back up or replace a whole etcd keyspace",
      'set `prefix = "/<cluster>/"` in [meta]',
    )
  }
  if (endpoints.length === 0) return yield* fail("open", "InvalidConfig", "no etcd endpoints are given", 'set `endpoints = ["http://127.0.0.1:2379"]` in [meta]')

  const prefixBytes = utf8.encode(prefix)
  const rangeEnd = prefixRangeEnd(prefixBytes)
  const fullKey = (key: Uint8Array): Uint8Array => concat(prefixBytes, key)
  const relative = (key: Uint8Array): Uint8Array => key.subarray(prefixBytes.length)

  const clientOptions = (withAuth: boolean): IOptions => ({
    hosts: endpoints,
    ...(withAuth && options.username !== undefined ? { auth: { username: options.username, password: password ?? "" } } : {}),
    ...(options.tls?.ca !== undefined || options.tls?.cert !== undefined
      ? {
          credentials: {
            rootCertificate: options.tls.ca === undefined ? (undefined as unknown as Buffer) : Buffer.from(options.tls.ca),
            ...(options.tls.key === undefined ? {} : { privateKey: Buffer.from(options.tls.key) }),
            ...(options.tls.cert === undefined ? {} : { certChain: Buffer.from(options.tls.cert) }),
          },
        }
      : {}),
    // Pages are bounded by this driver, not by gRPC's 4 MiB default.
    grpcOptions: { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 },
    defaultCallOptions: () => ({ deadline: Date.now() + requestTimeoutMs }),
    // etcd3's defaults also retry (and trip a 5 s circuit breaker on) deadlines and refusals such
    // as "message too large": only an unreachable endpoint is worth another attempt.
    faultHandling: {
      host: () =>
        endpoints.length === 1 ? noop : circuitBreaker(handleWhen(unavailable), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(unavailable), { maxAttempts: 2, backoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1_000 }) }),
    },
  })

  const connect = (withAuth: boolean) =>
    Effect.acquireRelease(
      Effect.try({ try: () => new Etcd3(clientOptions(withAuth)), catch: (cause) => classifyError("open", cause, context) }),
      (client) => Effect.sync(() => client.close()),
    )

  let client = yield* connect(true)

  const call = <A>(operation: string, run: (client: Etcd3) => Promise<A>): Effect.Effect<A, MetaStoreError> =>
    Effect.tryPromise({ try: () => run(client), catch: (cause) => classifyError(operation, cause, context) })

  // Open: one small read checks the connection, TLS, the credentials and the prefix.
  const probe: IRangeRequest = { key: buf(prefixBytes), range_end: buf(rangeEnd), limit: 1, keys_only: true }
  const dial = { deadline: Date.now() + dialTimeoutMs }
  let first = yield* Effect.tryPromise({ try: () => client.kv.range(probe, dial), catch: (cause) => cause }).pipe(
    Effect.map((response) => ({ response, retryWithoutAuth: false })),
    Effect.catch((cause) =>
      // A server without authentication refuses to hand out tokens; like etcdctl, go on without them.
      String((cause as Error)?.message).includes("authentication is not enabled")
        ? Effect.succeed({ response: undefined, retryWithoutAuth: true })
        : Effect.fail(classifyError("open", cause, context)),
    ),
  )
  if (first.retryWithoutAuth) {
    client = yield* connect(false)
    first = { response: yield* call("open", (c) => c.kv.range(probe, { deadline: Date.now() + dialTimeoutMs })), retryWithoutAuth: false }
  }
  const probeResponse = first.response!
  if (!options.create && probeResponse.kvs.length === 0) {
    const elsewhere = yield* nearbyPrefixes(prefixBytes, (from, to) =>
      call("open", (c) => c.kv.range({ key: buf(from), range_end: buf(to), limit: 500, keys_only: true })).pipe(
        Effect.map((r) => r.kvs.map((kv) => kv.key as Uint8Array)),
      ),
    ).pipe(Effect.orElseSucceed(() => [] as Array<string>))
    return yield* fail(
      "open",
      "NotFound",
      `etcd at ${endpoints.join(", ")} has no keys under the prefix ${JSON.stringify(prefix)} (revision ${probeResponse.header.revision})`,
      `check \`prefix\` in [meta]${elsewhere.length > 0 ? ` (this etcd has keys under: ${elsewhere.join(", ")})` : ""}; \`bendsave restore --confirm\` and \`bendsave meta import\` fill a new cluster's prefix`,
    )
  }

  /** One page of keys from `from` (inclusive) to the end of the prefix, at `revision` (0: the current one). */
  const readPage = (operation: string, from: Uint8Array, limit: number, revision: number) =>
    call(operation, (c) => c.kv.range({ key: buf(from), range_end: buf(rangeEnd), limit, ...(revision > 0 ? { revision } : {}) }))

  /** Cursor over the keyspace under the prefix at one revision, one page at a time. */
  const makeCursor = (operation: string, revision: number) => {
    let page: Array<IKeyValue> = []
    let index = 0
    let from: Uint8Array | undefined = prefixBytes
    let limit = Math.min(128, maxPageKeys)
    let pinned = revision
    const fetch = Effect.gen(function* () {
      while (index >= page.length && from !== undefined) {
        const response = yield* readPage(operation, from, limit, pinned)
        if (pinned === 0) pinned = Number(response.header.revision)
        page = response.kvs
        index = 0
        let bytes = 0
        for (const kv of page) bytes += kv.key.length + kv.value.length
        from = response.more && page.length > 0 ? successor(page[page.length - 1].key) : undefined
        limit = nextLimit(limit, bytes, pageBytes, maxPageKeys)
      }
    })
    return {
      revision: () => pinned,
      /** Whether `current()` can be called (else run `fetch` first). */
      ready: () => index < page.length || from === undefined,
      fetch,
      /** The current key-value (full key), or undefined at the end. */
      current: (): IKeyValue | undefined => (index < page.length ? page[index] : undefined),
      advance: () => {
        page[index] = undefined as unknown as IKeyValue // let it go
        index++
      },
    }
  }

  const snapshot = () =>
    Effect.gen(function* () {
      const head = yield* call("snapshot", (c) => c.kv.range({ key: buf(prefixBytes), range_end: buf(rangeEnd), limit: 1, keys_only: true }))
      const revision = Number(head.header.revision)
      const entries = Stream.paginate(
        { from: prefixBytes, limit: Math.min(128, maxPageKeys) },
        (state): Effect.Effect<readonly [ReadonlyArray<MetaEntry>, Option.Option<{ from: Uint8Array; limit: number }>], MetaStoreError> =>
          Effect.map(readPage("snapshot", state.from, state.limit, revision), (response) => {
            let bytes = 0
            const out: Array<MetaEntry> = new Array(response.kvs.length)
            for (let i = 0; i < response.kvs.length; i++) {
              const kv = response.kvs[i]
              bytes += kv.key.length + kv.value.length
              out[i] = { key: copy(relative(kv.key)), value: copy(kv.value) }
            }
            const last = response.kvs[response.kvs.length - 1]
            const next =
              response.more && last !== undefined
                ? Option.some({ from: successor(last.key), limit: nextLimit(state.limit, bytes, pageBytes, maxPageKeys) })
                : Option.none()
            return [out, next] as const
          }),
      )
      return { revision, entries }
    })

  // --- replace ----------------------------------------------------------------------------------

  /** First pass: the input in ascending bytewise order without duplicates (and no stream error). */
  const checkInput = <E>(entries: Stream.Stream<MetaEntry, E>): Effect.Effect<InputFingerprint, MetaStoreError | E> => {
    let previous: Uint8Array | undefined
    const fingerprint = makeFingerprint()
    return Stream.runForEachArray(entries, (chunk): Effect.Effect<void, MetaStoreError> => {
      for (const entry of chunk) {
        const problem = orderProblem(previous, entry.key)
        if (problem !== undefined) return Effect.fail(inputError(problem, fingerprint.count))
        previous = entry.key
        fingerprint.add(entry)
      }
      return Effect.void
    }).pipe(Effect.as(fingerprint))
  }

  const orderProblem = (previous: Uint8Array | undefined, key: Uint8Array): string | undefined => {
    if (previous === undefined) return undefined
    const order = compareBytes(previous, key)
    if (order < 0) return undefined
    return order === 0 ? `duplicate key '${displayKey(key)}'` : `key '${displayKey(key)}' comes after '${displayKey(previous)}'`
  }

  const inputError = (problem: string, index: number) =>
    fail(
      "replace",
      "InvalidInput",
      `entries must be in ascending bytewise key order without duplicates: ${problem} (entry ${index}); nothing was written`,
    )

  /** Commits one batch guarded on [lo, hi); splits it when etcd finds it too big (and makes later batches smaller). */
  const commit = (batch: Batch, lo: Uint8Array, hi: Uint8Array, since: number, progress: { committed: number }): Effect.Effect<void, MetaStoreError> =>
    Effect.gen(function* () {
      const guard: ICompare = { target: "Mod", result: "Less", key: buf(lo), range_end: buf(hi), mod_revision: since + 1 }
      const outcome = yield* Effect.tryPromise({
        try: () => client.kv.txn({ compare: [guard], success: batch.ops, failure: [] }),
        catch: (cause) => cause,
      }).pipe(
        Effect.map((response) => ({ response, tooMany: false, tooLarge: false })),
        Effect.catch((cause) => {
          const text = String((cause as Error)?.message)
          const tooMany = text.includes("too many operations in txn request")
          const tooLarge = text.includes("request is too large") || text.includes("larger than max")
          return (tooMany || tooLarge) && batch.ops.length > 1
            ? Effect.succeed({ response: undefined, tooMany, tooLarge })
            : Effect.fail(classifyError("replace", cause, context))
        }),
      )
      if (outcome.tooMany || outcome.tooLarge) {
        // Split in two at an op boundary; each half guards its own part of [lo, hi).
        const half = Math.floor(batch.ops.length / 2)
        if (outcome.tooMany) txnOps = Math.max(1, Math.min(txnOps, half))
        if (outcome.tooLarge) txnBytes = Math.max(1, Math.min(txnBytes, Math.floor(batch.bytes / 2)))
        const left: Batch = { ops: batch.ops.slice(0, half), ends: batch.ends.slice(0, half), bytes: batch.bytes / 2 }
        const right: Batch = { ops: batch.ops.slice(half), ends: batch.ends.slice(half), bytes: batch.bytes / 2 }
        const middle = left.ends[left.ends.length - 1]
        yield* commit(left, lo, middle, since, progress)
        return yield* commit(right, middle, hi, since, progress)
      }
      const response = outcome.response!
      if (!response.succeeded) {
        const changed = yield* call("replace", (c) =>
          c.kv.range({ key: buf(lo), range_end: buf(hi), min_mod_revision: since + 1, limit: 1, keys_only: true }),
        )
        const kv = changed.kvs[0]
        const what =
          kv === undefined
            ? "a key in its range was written"
            : `key '${displayKey(relative(kv.key))}' was written at revision ${kv.mod_revision}`
        return yield* fail(
          "replace",
          "Conflict",
          `the keyspace under ${JSON.stringify(prefix)} changed while it was being replaced: ${what}, after the replace read the keyspace at revision ${since}. ` +
            `${progress.committed} of the replace's transactions were committed, so the keyspace is partly replaced`,
          "stop the cluster's writers (the service using this etcd prefix) and run the same command again; it completes the replace",
        )
      }
      progress.committed++
    })

  const replace = <E>(entries: Stream.Stream<MetaEntry, E>, replaceOptions?: { readonly dryRun?: boolean }): Effect.Effect<MetaDiff, MetaStoreError | E> =>
    Effect.gen(function* () {
      const dryRun = replaceOptions?.dryRun === true
      const checked = dryRun ? undefined : yield* checkInput(entries)
      const fingerprint = makeFingerprint()

      const counts = { added: 0, changed: 0, removed: 0, unchanged: 0 }
      const sample = { added: [] as Array<string>, changed: [] as Array<string>, removed: [] as Array<string> }
      const note = (kind: "added" | "changed" | "removed", key: Uint8Array) => {
        counts[kind]++
        if (sample[kind].length < SAMPLE_SIZE) sample[kind].push(displayKey(key))
      }

      const cursor = makeCursor("replace", 0)
      const progress = { committed: 0 }
      /** Transactions in flight, oldest first. */
      const pending: Array<Fiber.Fiber<void, MetaStoreError>> = []
      /** Waits until at most `keep` transactions are in flight; on a failure, lets the rest settle, then fails. */
      const settle = (keep: number): Effect.Effect<void, MetaStoreError> =>
        Effect.gen(function* () {
          while (pending.length > keep) {
            const exit = yield* Fiber.await(pending.shift()!)
            if (Exit.isFailure(exit)) {
              yield* Effect.forEach(pending.splice(0), Fiber.await, { discard: true })
              return yield* Effect.failCause(exit.cause)
            }
          }
        })
      let batch = emptyBatch()
      let lo: Uint8Array = prefixBytes
      /** Full key of the last key decided (from either side); the next batch starts after it. */
      let lastDecided: Uint8Array | undefined
      /** An open run of removed keys (full keys). */
      let run: { first: Uint8Array; last: Uint8Array; keys: number } | undefined
      let inputCount = 0
      let previous: Uint8Array | undefined

      const closeRun = () => {
        if (run === undefined) return
        const end = successor(run.last)
        batch.ops.push({ request_delete_range: { key: buf(run.first), range_end: buf(end) } })
        batch.ends.push(end)
        batch.bytes += run.first.length + end.length
        run = undefined
      }
      const flush = (hi: Uint8Array) =>
        Effect.suspend(() => {
          closeRun()
          if (batch.ops.length === 0) return Effect.void
          const full = batch
          const from = lo
          batch = emptyBatch()
          lo = hi
          return Effect.flatMap(settle(txnConcurrency - 1), () =>
            Effect.map(Effect.forkChild(commit(full, from, hi, cursor.revision(), progress)), (fiber) => {
              pending.push(fiber)
            }),
          )
        })
      const mustFlush = () => !dryRun && lastDecided !== undefined && (batch.ops.length >= txnOps || batch.bytes >= txnBytes)
      const removeCurrent = (kv: IKeyValue) => {
        note("removed", relative(kv.key))
        lastDecided = kv.key
        if (dryRun) return
        const key = copy(kv.key)
        if (run === undefined) run = { first: key, last: key, keys: 1 }
        else {
          run.last = key
          run.keys++
        }
        if (run.keys >= deleteRunKeys) closeRun()
      }
      const put = (full: Uint8Array, value: Uint8Array) => {
        if (dryRun) return
        closeRun()
        batch.ops.push({ request_put: { key: buf(full), value: buf(value) } })
        batch.ends.push(successor(full))
        batch.bytes += full.length + value.length + 16
      }

      // The merge: synchronous while the current page lasts; effects only to fetch a page or commit.
      yield* Stream.runForEachArray(entries, (chunk) =>
        Effect.gen(function* () {
          for (const entry of chunk) {
            const problem = orderProblem(previous, entry.key)
            if (problem !== undefined) return yield* inputError(problem, inputCount)
            previous = entry.key
            inputCount++
            fingerprint.add(entry)
            const full = fullKey(entry.key)
            // Every current key before this one is removed.
            let current: IKeyValue | undefined
            while (true) {
              if (!cursor.ready()) yield* cursor.fetch
              current = cursor.current()
              if (current === undefined || compareBytes(current.key, full) >= 0) break
              cursor.advance()
              removeCurrent(current)
              if (mustFlush()) yield* flush(successor(lastDecided!))
            }
            if (current !== undefined && compareBytes(current.key, full) === 0) {
              cursor.advance()
              if (compareBytes(current.value, entry.value) === 0) {
                counts.unchanged++
                closeRun()
              } else {
                note("changed", entry.key)
                put(full, entry.value)
              }
            } else {
              note("added", entry.key)
              put(full, entry.value)
            }
            lastDecided = full
            if (mustFlush()) yield* flush(successor(full))
          }
        }),
      )
      // A stream that gives other entries the second time (a one-shot source already drained, say)
      // must not make the rest of the keyspace look removed.
      if (checked !== undefined && !checked.sameAs(fingerprint)) {
        return yield* fail(
          "replace",
          "InvalidInput",
          `the entries stream gave different entries when it was read again (${checked.count} entries, then ${fingerprint.count}): ` +
            `a replace reads its input twice (a check, then the writes), so it must be re-runnable; ${progress.committed} transactions were committed`,
          "pass a stream that gives the same entries every time it runs (e.g. Stream.fromIterable over an array, or pages re-read from storage)",
        )
      }
      // The rest of the current keyspace is removed.
      while (true) {
        if (!cursor.ready()) yield* cursor.fetch
        const current = cursor.current()
        if (current === undefined) break
        cursor.advance()
        removeCurrent(current)
        if (mustFlush()) yield* flush(successor(lastDecided!))
      }
      if (!dryRun) {
        yield* flush(rangeEnd)
        yield* settle(0)
        if (progress.committed > 0) {
          // A key deleted concurrently (the guards see writes, not deletes) shows in the count.
          const after = yield* call("replace", (c) => c.kv.range({ key: buf(prefixBytes), range_end: buf(rangeEnd), count_only: true }))
          if (Number(after.count) !== inputCount) {
            return yield* fail(
              "replace",
              "Conflict",
              `the keyspace under ${JSON.stringify(prefix)} changed while it was being replaced: it holds ${after.count} keys afterwards, not the ${inputCount} given`,
              "stop the cluster's writers (the service using this etcd prefix) and run the same command again; it completes the replace",
            )
          }
        }
      }
      return { ...counts, sample }
    })

  // --- get / compare-and-swap ---------------------------------------------------------------------

  const get = (key: Uint8Array) =>
    Effect.map(
      call("get", (c) => c.kv.range({ key: buf(fullKey(key)) })),
      (response) => (response.kvs.length === 0 ? undefined : copy(response.kvs[0].value)),
    )

  const compareAndSwap = (key: Uint8Array, expected: Uint8Array | undefined, next: Uint8Array | undefined) => {
    const full = buf(fullKey(key))
    const compare: ICompare =
      expected === undefined ? { target: "Version", result: "Equal", key: full, version: 0 } : { target: "Value", result: "Equal", key: full, value: buf(expected) }
    const op: IRequestOp = next === undefined ? { request_delete_range: { key: full } } : { request_put: { key: full, value: buf(next) } }
    return Effect.map(
      call("compareAndSwap", (c) => c.kv.txn({ compare: [compare], success: [op], failure: [] })),
      (response) => response.succeeded,
    )
  }

  const store: MetaStore = {
    driver: DRIVER,
    location: location(endpoints, prefix),
    prefix,
    snapshot,
    replace,
    get,
    compareAndSwap,
  }
  return store
})
