/**
 * The storage plugin point: definitions are validated, plugin modules load
 * from a path or a package name named in a cluster file, or register their
 * URL schemes (BENDSAVE_DRIVERS, registerStorageDriver), and every mistake
 * is an error that names the key or module and the fix. Uses the example
 * plugin (examples/driver-plugin, package bendsave-driver-flatdir).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { BlobStore } from "../src/BlobStore.ts"
import { ClusterConfigError, loadClusterConfig } from "../src/ClusterConfig.ts"
import { makeMemoryBlobStore } from "../src/drivers/MemoryBlobStore.ts"
import { openRepositoryStore, openStorage } from "../src/Registry.ts"
import {
  BlobStoreService,
  clearRegisteredStorageDrivers,
  openDriverStore,
  registerStorageDriver,
  registerStorageDriversFromEnv,
  type StorageDriver,
  storageDriverProblem,
} from "../src/StorageDriver.ts"

const EXAMPLE = resolve(import.meta.dirname, "../../../examples/driver-plugin/src/index.ts")
const BROKEN = resolve(import.meta.dirname, "fixtures/not-a-driver.ts")

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "bendsave-plugins-"))
})
afterAll(async () => {
  clearRegisteredStorageDrivers()
  await rm(dir, { recursive: true, force: true })
})

/** Runs a scoped effect to completion, returning its exit; the scope closes afterwards. */
const scoped = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromiseExit(Effect.scoped(effect))

const clusterFile = async (name: string, storage: string) => {
  const file = join(dir, `${name}.toml`)
  await writeFile(file, `[meta]\ntype = "local"\npath = "./meta"\n[storage]\n${storage}\n`)
  return Effect.runPromise(loadClusterConfig(file))
}

const roundTrip = (store: BlobStore) =>
  Effect.gen(function* () {
    yield* store.put("a", new TextEncoder().encode("A"))
    yield* store.put("a/b", new TextEncoder().encode("B"))
    return (yield* Stream.runCollect(store.list(""))).map((i) => i.key)
  })

const memoryDriver = (name: string, schemes: Array<string>, via: "make" | "layer"): StorageDriver<{ label?: string }> => ({
  name,
  schemes,
  configSchema: { "~standard": { version: 1, vendor: "test", validate: (v) => ({ value: v as { label?: string } }) } },
  capabilities: { conditionalPut: true, rangeRead: true, batchDelete: true, serverSideCopy: true, maxObjectSize: 2 ** 31 - 1 },
  fromUrl: (url) => ({ label: url.pathname }),
  ...(via === "make"
    ? { make: (o) => Effect.succeed(makeMemoryBlobStore({ name: o.label })) }
    : { layer: (o) => Layer.succeed(BlobStoreService, makeMemoryBlobStore({ name: o.label })) }),
})

describe("driver definitions", () => {
  it("a well-formed definition passes; each missing piece is named", () => {
    expect(storageDriverProblem(memoryDriver("mem", ["mem"], "make"))).toBeUndefined()
    expect(storageDriverProblem(null)).toMatch(/default export is not an object/)
    expect(storageDriverProblem({ ...memoryDriver("mem", [], "make"), name: "Bad Name" })).toMatch(/`name`/)
    expect(storageDriverProblem({ ...memoryDriver("mem", [], "make"), schemes: ["s3:"] })).toMatch(/`schemes`/)
    expect(storageDriverProblem({ ...memoryDriver("mem", [], "make"), configSchema: {} })).toMatch(/Standard Schema/)
    expect(storageDriverProblem({ ...memoryDriver("mem", [], "make"), capabilities: { conditionalPut: true } })).toMatch(/capabilities\.rangeRead/)
    expect(storageDriverProblem({ ...memoryDriver("mem", [], "make"), make: undefined })).toMatch(/make.*layer/)
  })

  it("a driver may give a Layer providing BlobStoreService instead of make", async () => {
    const exit = await scoped(Effect.flatMap(openDriverStore(memoryDriver("memlayer", [], "layer"), { label: "x" }, { source: "url", create: false, baseDir: dir, env: {} }), roundTrip))
    expect(exit).toEqual(Exit.succeed(["a", "a/b"]))
  })

  it("a URL scheme belongs to one driver: built-in schemes and taken schemes are refused", async () => {
    expect((await Effect.runPromiseExit(registerStorageDriver(memoryDriver("evil", ["s3"], "make"))))._tag).toBe("Failure")
    await Effect.runPromise(registerStorageDriver(memoryDriver("mem1", ["mem1"], "make")))
    const clash = await Effect.runPromise(Effect.flip(registerStorageDriver(memoryDriver("mem2", ["mem1"], "make"))))
    expect(clash.detail).toContain("'mem1' already belongs to another driver")
  })

  it("registered drivers serve repository URLs of their schemes", async () => {
    await Effect.runPromise(registerStorageDriver(memoryDriver("memurl", ["memurl"], "make")))
    const exit = await scoped(Effect.flatMap(openRepositoryStore("memurl://host/repo"), roundTrip))
    expect(exit).toEqual(Exit.succeed(["a", "a/b"]))
  })
})

describe("plugin modules named in a cluster file", () => {
  it("by path: the example plugin opens with its [storage.<name>] options (relative to the cluster file)", async () => {
    const config = await clusterFile("by-path", `type = "${EXAMPLE}"\n[storage.flatdir]\ndir = "./objects"\ncreate = true`)
    const exit = await scoped(Effect.flatMap(openStorage(config), (store) => Effect.map(roundTrip(store), (keys) => [store.location, keys])))
    expect(exit).toEqual(Exit.succeed([`flatdir://${join(dir, "objects")}`, ["a", "a/b"]]))
  })

  it("by package name", async () => {
    const config = await clusterFile("by-package", `type = "bendsave-driver-flatdir"\n[storage.flatdir]\ndir = "./objects2"\ncreate = true`)
    expect(await scoped(Effect.flatMap(openStorage(config), roundTrip))).toEqual(Exit.succeed(["a", "a/b"]))
  })

  const configError = async (name: string, storage: string) => {
    const config = await clusterFile(name, storage)
    const exit = await scoped(openStorage(config))
    if (Exit.isSuccess(exit)) throw new Error("expected a failure")
    const error = (exit.cause.reasons[0] as { error?: unknown }).error
    expect(error).toBeInstanceOf(ClusterConfigError)
    return error as ClusterConfigError
  }

  it("a missing module, a module that is not a driver, a bad option and a stray table are errors naming the key", async () => {
    const missing = await configError("missing", 'type = "./drivers/nope.js"')
    expect(missing.key).toBe("storage.type")
    expect(missing.detail).toContain(join(dir, "drivers/nope.js"))
    const notDriver = await configError("not-driver", `type = "${BROKEN}"`)
    expect(notDriver.detail).toContain("not a valid bendsave storage driver")
    expect(notDriver.fix).toContain("writing-a-driver")
    const badOption = await configError("bad-option", `type = "${EXAMPLE}"\n[storage.flatdir]\ndir = "x"\ndirectory = "y"`)
    expect(badOption.key).toBe("storage.flatdir.directory")
    expect(badOption.detail).toBe("unknown option")
    const missingOption = await configError("missing-option", `type = "${EXAMPLE}"\n[storage.flatdir]`)
    expect(missingOption.key).toBe("storage.flatdir.dir")
    const stray = await configError("stray", `type = "${EXAMPLE}"\n[storage.flatdir]\ndir = "x"\n[storage.fs]\ndata_path = "y"`)
    expect(stray.key).toBe("storage.fs")
    const unknownPackage = await configError("unknown-package", 'type = "bendsave-driver-does-not-exist"')
    expect(unknownPackage.fix).toContain("npm install bendsave-driver-does-not-exist")
  })
})

describe("plugin modules registered for URL schemes", () => {
  it("BENDSAVE_DRIVERS registers the modules it names; their schemes then open repositories", async () => {
    await Effect.runPromise(registerStorageDriversFromEnv({ BENDSAVE_DRIVERS: EXAMPLE }, dir))
    const exit = await scoped(Effect.flatMap(openRepositoryStore(`flatdir://${join(dir, "repo")}`, { create: true }), roundTrip))
    expect(exit).toEqual(Exit.succeed(["a", "a/b"]))
  })

  it("an unknown scheme lists the schemes there are", async () => {
    const exit = await scoped(openRepositoryStore("nosuch://x/y"))
    expect(Exit.isFailure(exit) && String((exit.cause.reasons[0] as { error?: { fix?: string } }).error?.fix)).toContain("s3://")
  })
})
