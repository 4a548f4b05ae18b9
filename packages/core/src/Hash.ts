/**
 * Hash: SHA-256 of blocks and pages, the content address of everything in a
 * repository. Uses WebCrypto's `subtle.digest`, which Node runs on its thread
 * pool (hashing of several blocks proceeds in parallel with reads and
 * uploads) and which Bun and Deno provide as well.
 */
import * as Effect from "effect/Effect"

const hex = (buffer: ArrayBuffer): string => Buffer.from(buffer).toString("hex")

/** Lowercase hex SHA-256 of `bytes`. */
export const sha256Hex = (bytes: Uint8Array): Effect.Effect<string> =>
  Effect.promise(() => globalThis.crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>)).pipe(
    Effect.map(hex),
  )
