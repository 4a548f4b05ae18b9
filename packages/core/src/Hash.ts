/**
 * Hash: SHA-256 of blocks and pages, the content address of everything in a
 * repository.
 *
 * Hashing is the CPU cost of backup and restore (every byte is hashed), so
 * large buffers are hashed on a small pool of worker threads: the buffer is
 * transferred to a worker and back (no copy), and the main thread stays free
 * for I/O. Small buffers, buffers that cannot be transferred, and runtimes
 * without worker threads are hashed in the calling thread.
 */
import { createHash } from "node:crypto"
import { availableParallelism } from "node:os"
import * as Effect from "effect/Effect"

/** Buffers below this size are hashed in the calling thread (cheaper than a round trip). */
const WORKER_THRESHOLD = 256 * 1024
/**
 * The pool starts with the first buffer of at least POOL_START_BYTES (a file block), or once
 * POOL_START_TOTAL bytes of buffers from WORKER_THRESHOLD up were hashed here, not with the first
 * page: starting the workers costs a few hundred milliseconds of CPU, which a run that only hashes
 * a few pages (a no-change backup, a restore plan) would pay for nothing. Once it runs, it takes
 * every buffer from WORKER_THRESHOLD up.
 */
const POOL_START_BYTES = 4 * 1024 * 1024
const POOL_START_TOTAL = 32 * 1024 * 1024

const hashHere = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads")
const { createHash } = require("node:crypto")
parentPort.on("message", (job) => {
  const hex = createHash("sha256").update(new Uint8Array(job.buffer)).digest("hex")
  parentPort.postMessage({ id: job.id, buffer: job.buffer, hex }, [job.buffer])
})
`

interface Pending {
  readonly resolve: (result: { hex: string; buffer: ArrayBuffer }) => void
  readonly reject: (error: unknown) => void
}

interface WorkerLike {
  postMessage(message: unknown, transfer: ReadonlyArray<ArrayBuffer>): void
  on(event: "message", listener: (message: { id: number; buffer: ArrayBuffer; hex: string }) => void): void
  on(event: "error", listener: (error: unknown) => void): void
  ref(): void
  unref(): void
}

/** The worker pool, started on first use; undefined where worker threads are unavailable. */
interface Pool {
  readonly workers: Array<WorkerLike>
  /** Jobs in flight per worker: a worker keeps the process alive only while it has some. */
  readonly busy: Array<number>
  readonly pending: Map<number, Pending>
  next: number
}
let pool: Pool | undefined | null = null

const startPool = async () => {
  try {
    const { Worker } = await import("node:worker_threads")
    const size = Math.max(1, Math.min(4, availableParallelism()))
    const pending = new Map<number, Pending>()
    const workers: Array<WorkerLike> = []
    const busy: Array<number> = []
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true }) as unknown as WorkerLike
      worker.on("message", (message) => {
        const job = pending.get(message.id)
        pending.delete(message.id)
        job?.resolve({ hex: message.hex, buffer: message.buffer })
      })
      worker.on("error", (error) => {
        for (const job of pending.values()) job.reject(error)
        pending.clear()
        pool = undefined
      })
      worker.unref()
      workers.push(worker)
      busy.push(0)
    }
    return { workers, busy, pending, next: 0 }
  } catch {
    return undefined
  }
}

let starting: Promise<void> | undefined
let jobIds = 0
let hashedBeforePool = 0

/** Whether a transferable buffer is hashed here because the pool has not started (and does not start now). */
const hashBeforePool = (bytes: Uint8Array): boolean => {
  if (pool !== null || starting !== undefined || bytes.byteLength >= POOL_START_BYTES) return false
  hashedBeforePool += bytes.byteLength
  return hashedBeforePool < POOL_START_TOTAL
}

const transferable = (bytes: Uint8Array) =>
  bytes.byteLength >= WORKER_THRESHOLD &&
  bytes.byteOffset === 0 &&
  bytes.byteLength === bytes.buffer.byteLength &&
  bytes.buffer instanceof ArrayBuffer

/**
 * Hashes `bytes`, which the caller hands over: use the returned `bytes`
 * afterwards (the original view may have been transferred to a worker and
 * detached).
 */
export const hashBlock = (bytes: Uint8Array): Effect.Effect<{ readonly id: string; readonly bytes: Uint8Array }> => {
  if (!transferable(bytes) || hashBeforePool(bytes)) return Effect.sync(() => ({ id: hashHere(bytes), bytes }))
  return Effect.promise(async () => {
    if (pool === null) {
      starting ??= startPool().then((p) => {
        pool = p
      })
      await starting
    }
    const current = pool
    if (current === undefined || current === null) return { id: hashHere(bytes), bytes }
    const buffer = bytes.buffer as ArrayBuffer
    const id = jobIds++
    const index = current.next++ % current.workers.length
    const worker = current.workers[index]
    if (current.busy[index]++ === 0) worker.ref()
    try {
      const result = await new Promise<{ hex: string; buffer: ArrayBuffer }>((resolve, reject) => {
        current.pending.set(id, { resolve, reject })
        worker.postMessage({ id, buffer }, [buffer])
      })
      return { id: result.hex, bytes: new Uint8Array(result.buffer) }
    } finally {
      if (--current.busy[index] === 0) worker.unref()
    }
  })
}

/** Lowercase hex SHA-256 of `bytes` (which stay usable: hashed in the calling thread). */
export const sha256Hex = (bytes: Uint8Array): Effect.Effect<string> => Effect.sync(() => hashHere(bytes))
