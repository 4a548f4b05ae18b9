/**
 * Tests of the `fs` BlobStore driver: the conformance suite over a temp
 * directory, then what is specific to files: the on-disk layout, temp-file
 * hygiene after failed and interrupted puts, path escapes and symlinks, key
 * conflicts between files and directories, chunked reads, the missing-root
 * error and the errno classification.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import { hostname, tmpdir } from "node:os"
import * as path from "node:path"
import { afterEach, assert, beforeEach, describe, it } from "@effect/vitest"
import { Effect, Fiber, Result, Stream } from "effect"
import { BlobStoreError, type BlobStoreErrorReason } from "../src/BlobStore.ts"
import { classifyError, makeFsBlobStore } from "../src/drivers/FsBlobStore.ts"
import { blobStoreConformance } from "../src/testing/index.ts"

blobStoreConformance("FsBlobStore conformance", async () => {
  const dir = await fs.mkdtemp(path.join(tmpdir(), "bendsave-fs-blob-"))
  const store = await Effect.runPromise(makeFsBlobStore(path.join(dir, "root"), { create: true }))
  return { store, cleanup: () => fs.rm(dir, { recursive: true, force: true }) }
})

/** Every file and symlink under `dir`, relative, sorted. */
const filesUnder = async (dir: string): Promise<Array<string>> => {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/"))
    .sort()
}

const reasonOf = <A>(effect: Effect.Effect<A, BlobStoreError>) =>
  Effect.map(Effect.result(effect), (result): BlobStoreErrorReason | "success" =>
    Result.isSuccess(result) ? "success" : result.failure.reason,
  )

const bytes = (text: string) => new TextEncoder().encode(text)

const injected = new BlobStoreError({ reason: "Unavailable", driver: "test", operation: "body", detail: "injected" })

/**
 * A separate process that opens an fs store at `root` and starts a put of
 * `key` whose body never ends; resolves once its temp file exists.
 */
const startWriter = async (root: string, key: string): Promise<{ child: ChildProcess; temp: string }> => {
  const source = new URL("../src/drivers/FsBlobStore.ts", import.meta.url).href
  const script = `
    import { Effect, Stream } from "effect"
    import { makeFsBlobStore } from ${JSON.stringify(source)}
    setInterval(() => {}, 1000) // the put waits forever: keep the process alive
    const store = await Effect.runPromise(makeFsBlobStore(${JSON.stringify(root)}))
    await Effect.runPromise(store.put(${JSON.stringify(key)}, Stream.concat(Stream.make(new Uint8Array(10)), Stream.never)))
  `
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: import.meta.dirname, stdio: "ignore" })
  const dir = path.join(root, path.dirname(key))
  const prefix = `.${path.basename(key)}.tmp-`
  for (let i = 0; i < 600; i++) {
    const found = (await fs.readdir(dir).catch(() => [] as Array<string>)).find((n) => n.startsWith(prefix))
    if (found !== undefined) return { child, temp: `${path.dirname(key)}/${found}` }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  child.kill("SIGKILL")
  throw new Error(`the writer process did not start its put of ${key}`)
}

/** SIGKILLs a writer and waits until it is gone. */
const killWriter = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

describe("FsBlobStore", () => {
  let base = ""
  let root = ""
  beforeEach(async () => {
    base = await fs.mkdtemp(path.join(tmpdir(), "bendsave-fs-blob-"))
    root = path.join(base, "root")
    await fs.mkdir(root)
  })
  afterEach(async () => {
    await fs.rm(base, { recursive: true, force: true })
  })

  it.live("describes itself: driver, location and capabilities", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      assert.strictEqual(store.driver, "fs")
      assert.strictEqual(store.location, `fs://${root}`)
      assert.deepStrictEqual(store.capabilities, {
        conditionalPut: true,
        rangeRead: true,
        batchDelete: false,
        serverSideCopy: true,
        maxObjectSize: Number.MAX_SAFE_INTEGER,
      })
    }),
  )

  it.live("stores a key as the file <root>/<segments>", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      yield* store.put("a/b/c.txt", bytes("content"))
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), ["a/b/c.txt"])
      assert.strictEqual(yield* Effect.promise(() => fs.readFile(path.join(root, "a/b/c.txt"), "utf8")), "content")
    }),
  )

  it.live("many puts at once into new and shared directories (shared directory fsyncs) all land, with no temp file left", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      const keys = Array.from({ length: 60 }, (_, i) => `d${i % 3}/sub/f${String(i).padStart(2, "0")}`)
      yield* Effect.forEach(keys, (key) => store.put(key, bytes(`content of ${key}`)), { concurrency: 16, discard: true })
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), [...keys].sort())
      for (const key of keys) {
        assert.strictEqual(yield* Effect.promise(() => fs.readFile(path.join(root, key), "utf8")), `content of ${key}`)
      }
      // A second wave replaces every object while the first directories' syncs may still be shared.
      yield* Effect.forEach(keys, (key) => store.put(key, bytes(`v2 ${key}`)), { concurrency: 16, discard: true })
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), [...keys].sort())
      assert.strictEqual(new TextDecoder().decode(yield* store.get(keys[7])), `v2 ${keys[7]}`)
    }),
  )

  it.live("a stream body that fails midway leaves no target and no temp file, and keeps an existing object", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      const failing = Stream.concat(Stream.make(new Uint8Array(300_000).fill(7)), Stream.fail(injected))
      const error = yield* Effect.flip(store.put("d/new", failing))
      assert.strictEqual(error, injected, "the body's error is passed through")
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), [])

      yield* store.put("d/existing", bytes("old"))
      const before = yield* store.head("d/existing")
      assert.strictEqual(yield* reasonOf(store.put("d/existing", failing)), "Unavailable")
      assert.strictEqual(yield* reasonOf(store.put("d/existing", failing, { ifNotExists: true })), "Unavailable")
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), ["d/existing"])
      assert.deepStrictEqual(yield* store.get("d/existing"), bytes("old"))
      assert.strictEqual((yield* store.head("d/existing")).etag, before.etag)
    }),
  )

  it.live("an interrupted put removes its temp file", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      const endless = Stream.concat(Stream.make(new Uint8Array(1000)), Stream.never)
      const fiber = yield* Effect.forkChild(store.put("dir/slow", endless))
      let seen: Array<string> = []
      for (let i = 0; i < 500 && seen.length === 0; i++) {
        yield* Effect.sleep(5)
        seen = yield* Effect.promise(() => filesUnder(root).catch(() => []))
      }
      assert.strictEqual(seen.length, 1, "the put created its temp file")
      assert.match(seen[0], /^dir\/\.slow\.tmp-[0-9a-f]{16}$/)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), [])
    }),
  )

  it.live("sweepLeftovers removes the temp files of a SIGKILLed writer, never those of a live writer or of this process's puts", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      // Two real writer processes, each in the middle of a put that never ends.
      const killed = yield* Effect.promise(() => startWriter(root, "a/killed"))
      const live = yield* Effect.promise(() => startWriter(root, "a/live"))
      try {
        yield* Effect.promise(() => killWriter(killed.child))
        // This process's own put in flight, its temp file made to look old.
        const own = yield* Effect.forkChild(store.put("b/own", Stream.concat(Stream.make(bytes("x")), Stream.never)))
        let ownTemp: string | undefined
        for (let i = 0; i < 500 && ownTemp === undefined; i++) {
          yield* Effect.sleep(5)
          ownTemp = (yield* Effect.promise(() => filesUnder(root))).find((f) => f.startsWith("b/"))
        }
        assert.isDefined(ownTemp)
        const old = new Date(Date.now() - 2 * 3600_000)
        yield* Effect.promise(() => fs.utimes(path.join(root, ownTemp!), old, old))
        // Leftovers of writers this process cannot ask: another host's (fresh, and two hours old).
        const thisHost = createHash("sha256").update(hostname()).digest("hex").slice(0, 4)
        const otherHost = thisHost === "ffff" ? "fffe" : "ffff"
        yield* Effect.promise(async () => {
          await fs.mkdir(path.join(root, "c"))
          await fs.writeFile(path.join(root, `c/.fresh.tmp-${otherHost}000001000001`), "x")
          await fs.writeFile(path.join(root, `c/.old.tmp-${otherHost}000001000002`), "x")
          await fs.utimes(path.join(root, `c/.old.tmp-${otherHost}000001000002`), old, old)
          // This host and this pid, but not a put of this process: an earlier process that had our pid.
          const earlier = `c/.earlier.tmp-${thisHost}${(process.pid & 0xffffff).toString(16).padStart(6, "0")}000003`
          await fs.writeFile(path.join(root, earlier), "x")
          await fs.utimes(path.join(root, earlier), old, old)
        })
        assert.strictEqual(yield* store.sweepLeftovers!(), 3)
        assert.deepStrictEqual(
          yield* Effect.promise(() => filesUnder(root)),
          [live.temp, ownTemp!, `c/.fresh.tmp-${otherHost}000001000001`].sort(),
        )
        yield* Fiber.interrupt(own)
        yield* Effect.promise(() => killWriter(live.child))
        assert.strictEqual(yield* store.sweepLeftovers!(), 1)
        assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), [`c/.fresh.tmp-${otherHost}000001000001`])
      } finally {
        killed.child.kill("SIGKILL")
        live.child.kill("SIGKILL")
      }
    }),
  )

  it.live("keys cannot escape the root", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      for (const key of ["../outside", "a/../../outside", "/etc/passwd", "..\\outside", "a/..", "./x"]) {
        assert.strictEqual(yield* reasonOf(store.put(key, bytes("x"))), "InvalidKey", `put ${key}`)
        assert.strictEqual(yield* reasonOf(store.get(key)), "InvalidKey", `get ${key}`)
        assert.strictEqual(yield* reasonOf(store.delete(key)), "InvalidKey", `delete ${key}`)
      }
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(base)), ["root"])
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), [])
      assert.deepStrictEqual(yield* Stream.runCollect(store.list("../")), [])
    }),
  )

  it.live("symlinks are not objects: list skips them and reads do not follow them", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      const outside = path.join(base, "outside")
      yield* Effect.promise(async () => {
        await fs.mkdir(outside)
        await fs.writeFile(path.join(outside, "secret"), "secret")
        await fs.symlink(path.join(outside, "secret"), path.join(root, "file-link"))
        await fs.symlink(outside, path.join(root, "dir-link"))
      })
      yield* store.put("real", bytes("real"))
      assert.deepStrictEqual(
        (yield* Stream.runCollect(store.list(""))).map((info) => info.key),
        ["real"],
      )
      assert.strictEqual(yield* reasonOf(store.get("file-link")), "NotFound")
      assert.strictEqual(yield* reasonOf(store.head("file-link")), "NotFound")
      assert.strictEqual(yield* reasonOf(store.getRange("file-link", 0, 1)), "NotFound")
      assert.strictEqual(yield* reasonOf(store.copy("file-link", "copied")), "NotFound")
    }),
  )

  it.live("list skips temp files; keys that look like temp files are rejected", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      yield* store.put("x/.config", bytes("dotfile keys are fine"))
      yield* Effect.promise(() => fs.writeFile(path.join(root, "x/.obj.tmp-0123456789abcdef"), "partial"))
      assert.deepStrictEqual(
        (yield* Stream.runCollect(store.list(""))).map((info) => info.key),
        ["x/.config"],
      )
      assert.strictEqual(yield* reasonOf(store.put("x/.obj.tmp-0123456789abcdef", bytes("x"))), "InvalidKey")
      assert.strictEqual(yield* reasonOf(store.get("x/.obj.tmp-0123456789abcdef")), "InvalidKey")
    }),
  )

  it.live("a key that needs a file where a directory is (or the reverse) fails with InvalidKey", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      yield* store.put("file", bytes("f"))
      yield* store.put("dir/child", bytes("c"))
      assert.strictEqual(yield* reasonOf(store.put("file/below", bytes("x"))), "InvalidKey")
      assert.strictEqual(yield* reasonOf(store.put("dir", bytes("x"))), "InvalidKey")
      assert.strictEqual(yield* reasonOf(store.put("dir", bytes("x"), { ifNotExists: true })), "InvalidKey")
      assert.strictEqual(yield* reasonOf(store.copy("file", "dir")), "InvalidKey")
      assert.strictEqual(yield* reasonOf(store.get("dir")), "NotFound")
      assert.strictEqual(yield* reasonOf(store.head("dir")), "NotFound")
      yield* store.delete("dir")
      assert.deepStrictEqual(yield* Effect.promise(() => filesUnder(root)), ["dir/child", "file"])
    }),
  )

  it.live("delete removes emptied parent directories, never the root", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      yield* store.put("a/b/c/one", bytes("1"))
      yield* store.put("a/two", bytes("2"))
      yield* store.delete("a/b/c/one")
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(path.join(root, "a"))), ["two"])
      yield* store.delete("a/two")
      assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(root)), [])
      // A put into a pruned directory recreates it.
      yield* store.put("a/b/again", bytes("3"))
      assert.deepStrictEqual(yield* store.get("a/b/again"), bytes("3"))
    }),
  )

  it.live("getStream reads chunks of at most 1 MiB", () =>
    Effect.gen(function* () {
      const store = yield* makeFsBlobStore(root)
      const size = 3.5 * 1024 * 1024
      yield* store.put("big", new Uint8Array(size).fill(9))
      const chunks = yield* Stream.runCollect(store.getStream("big"))
      assert.strictEqual(chunks.length, 4)
      assert.isTrue(chunks.every((c) => c.length <= 1024 * 1024))
      assert.strictEqual(
        chunks.reduce((n, c) => n + c.length, 0),
        size,
      )
    }),
  )

  it.live("a missing root fails with NotFound and says how to fix it", () =>
    Effect.gen(function* () {
      const missing = path.join(base, "does", "not", "exist")
      const error = yield* Effect.flip(makeFsBlobStore(missing))
      assert.strictEqual(error.reason, "NotFound")
      assert.include(error.detail, `the directory ${missing} does not exist`)
      assert.include(error.detail, "mkdir -p")
      assert.include(error.detail, "{ create: true }")
      const store = yield* makeFsBlobStore(missing, { create: true })
      yield* store.put("k", bytes("v"))
      assert.deepStrictEqual(yield* store.get("k"), bytes("v"))
    }),
  )

  it.live("a root that is a file fails with InvalidConfig", () =>
    Effect.gen(function* () {
      const file = path.join(base, "plain-file")
      yield* Effect.promise(() => fs.writeFile(file, "x"))
      assert.strictEqual((yield* Effect.flip(makeFsBlobStore(file))).reason, "InvalidConfig")
      assert.strictEqual((yield* Effect.flip(makeFsBlobStore(file, { create: true }))).reason, "InvalidConfig")
    }),
  )
})

describe("FsBlobStore classifyError", () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: simulated`), { code })
  const cases: ReadonlyArray<readonly [string, "read" | "write", BlobStoreErrorReason, boolean]> = [
    ["ENOENT", "read", "NotFound", false],
    ["EEXIST", "write", "AlreadyExists", false],
    ["EACCES", "read", "PermissionDenied", false],
    ["EPERM", "write", "PermissionDenied", false],
    ["EROFS", "write", "PermissionDenied", false],
    ["ENOSPC", "write", "Unknown", false],
    ["EMFILE", "read", "Unavailable", true],
    ["ENFILE", "read", "Unavailable", true],
    ["EAGAIN", "read", "Unavailable", true],
    ["EBUSY", "write", "Unavailable", true],
    ["ENOTDIR", "read", "NotFound", false],
    ["EISDIR", "read", "NotFound", false],
    ["ENOTDIR", "write", "InvalidKey", false],
    ["EISDIR", "write", "InvalidKey", false],
    ["ENAMETOOLONG", "write", "InvalidKey", false],
    ["ENOTSUP", "write", "Unsupported", false],
    ["EIO", "read", "Unknown", false],
  ]
  for (const [code, access, reason, retryable] of cases) {
    it(`${code} (${access}) -> ${reason}${retryable ? ", retryable" : ""}`, () => {
      const error = classifyError(errno(code), { operation: "put", key: "a/b", access })
      assert.instanceOf(error, BlobStoreError)
      assert.strictEqual(error.reason, reason)
      assert.strictEqual(error.isRetryable, retryable)
      assert.strictEqual(error.driver, "fs")
      assert.strictEqual(error.operation, "put")
      assert.strictEqual(error.key, "a/b")
      assert.include(error.detail, `${code}: simulated`, "the OS message is kept")
    })
  }

  it("ENOSPC says there is no space left on the device", () => {
    assert.include(classifyError(errno("ENOSPC"), { operation: "put" }).detail, "no space left on device")
  })

  it("passes a BlobStoreError through and handles values without a code", () => {
    assert.strictEqual(classifyError(injected, { operation: "put" }), injected)
    assert.strictEqual(classifyError("boom", { operation: "get" }).reason, "Unknown")
    assert.strictEqual(classifyError(new Error("no code"), { operation: "get" }).reason, "Unknown")
  })
})
