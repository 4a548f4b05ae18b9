/**
 * Files: the files a user names on the command line (`--input`, `--output`)
 * and stdout, with errors that say which file and what to do.
 *
 * - `readInput` reads a whole file (or stdin), failing with a FileError.
 * - `openOutput` writes a file atomically: into a temp file next to it,
 *   fsynced and renamed over the target when everything was written, so a
 *   failed or interrupted run never leaves a half-written output (and removes
 *   its temp file).
 * - `writeStdout` writes to stdout with backpressure; a reader that went away
 *   (`| head`) ends the output quietly (`OutputClosed`), as `cat` does.
 */
import { randomBytes } from "node:crypto"
import { type FileHandle, open, readFile, rename, unlink } from "node:fs/promises"
import { basename, dirname, join, resolve } from "node:path"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/** A file named on the command line that cannot be read or written. */
export class FileError extends Schema.TaggedError<FileError>()("FileError", {
  path: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `${this.path}: ${this.detail}`
  }
}

/** The reader of stdout went away (EPIPE): the output ends; not an error of the command. */
export class OutputClosed extends Schema.TaggedError<OutputClosed>()("OutputClosed", {}) {}

const why = (cause: unknown): string => {
  const code = (cause as { code?: unknown } | null)?.code
  switch (code) {
    case "ENOENT":
      return "it does not exist"
    case "ENOTDIR":
      return "a part of the path is a file, not a directory"
    case "EISDIR":
      return "it is a directory"
    case "EACCES":
    case "EPERM":
      return "permission denied"
    case "EROFS":
      return "the file system is read-only"
    case "ENOSPC":
      return "no space left on the device"
    default:
      return cause instanceof Error ? cause.message : String(cause)
  }
}

const readStdin = async (): Promise<string> => {
  const chunks: Array<Buffer> = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

/** The whole text of `path` (or stdin when undefined); `flag` names where the path came from, for the fix. */
export const readInput = (path: string | undefined, flag: string): Effect.Effect<string, FileError> =>
  path === undefined
    ? Effect.promise(readStdin)
    : Effect.tryPromise({
        try: () => readFile(path, "utf8"),
        catch: (cause) =>
          new FileError({
            path: resolve(path),
            detail: `cannot read it: ${why(cause)}`,
            fix: `check the path given to ${flag} (without it, stdin is read)`,
          }),
      })

export interface Output {
  readonly write: (text: string) => Effect.Effect<void, FileError>
  /** Makes the output visible under its name (fsync, rename); without it the temp file is removed. */
  readonly commit: Effect.Effect<void, FileError>
}

const FLUSH_AT = 1 << 20

/** An atomic output file at `path` (see the module header); `flag` names where the path came from. */
export const openOutput = (path: string, flag: string): Effect.Effect<Output, FileError, Scope.Scope> =>
  Effect.gen(function* () {
    const target = resolve(path)
    const fail = (what: string) => (cause: unknown) =>
      new FileError({
        path: target,
        detail: `cannot ${what} it: ${(cause as { code?: unknown }).code === "ENOENT" ? `the directory ${dirname(target)} does not exist` : why(cause)}`,
        fix: `give ${flag} a path in an existing directory you may write to`,
      })
    const temp = join(dirname(target), `.${basename(target)}.tmp-${process.pid.toString(16)}${randomBytes(4).toString("hex")}`)
    let committed = false
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(temp, "wx"), catch: fail("create") }),
      (h: FileHandle) =>
        Effect.promise(async () => {
          await h.close().catch(() => undefined)
          if (!committed) await unlink(temp).catch(() => undefined)
        }),
    )
    let pending: Array<string> = []
    let pendingBytes = 0
    const flush = Effect.tryPromise({
      try: async () => {
        if (pending.length === 0) return
        const text = pending.join("")
        pending = []
        pendingBytes = 0
        await handle.write(text)
      },
      catch: fail("write"),
    })
    const write = (text: string) =>
      Effect.suspend(() => {
        pending.push(text)
        pendingBytes += text.length
        return pendingBytes >= FLUSH_AT ? flush : Effect.void
      })
    const commit = Effect.andThen(
      flush,
      Effect.tryPromise({
        try: async () => {
          await handle.sync()
          await rename(temp, target)
          committed = true
        },
        catch: fail("write"),
      }),
    )
    return { write, commit }
  })

/** Set once stdout's reader went away (EPIPE); an error listener stays on stdout so that is never an uncaught error. */
let stdoutClosed = false
let watchingStdout = false
const watchStdout = () => {
  if (watchingStdout) return
  watchingStdout = true
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") stdoutClosed = true
  })
}

/** Writes to stdout, waiting when it asks to (memory stays flat); a closed reader (EPIPE) fails with OutputClosed. */
export const writeStdout = (text: string): Effect.Effect<void, OutputClosed> =>
  Effect.callback<void, OutputClosed>((resume) => {
    watchStdout()
    if (stdoutClosed) return resume(Effect.fail(new OutputClosed()))
    if (process.stdout.write(text)) return resume(Effect.void)
    const onDrain = () => {
      process.stdout.off("error", onError)
      resume(Effect.void)
    }
    const onError = () => {
      process.stdout.off("drain", onDrain)
      resume(stdoutClosed ? Effect.fail(new OutputClosed()) : Effect.void)
    }
    process.stdout.once("drain", onDrain)
    process.stdout.once("error", onError)
  })
