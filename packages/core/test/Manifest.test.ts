import { create, fromBinary, toBinary } from "@bufbuild/protobuf"
import { describe, expect, it } from "vitest"
import {
  BackupManifestSchema,
  BackupType,
  backupIdOf,
  backupIdTime,
  decodeFilePage,
  decodeManifest,
  encodeFilePage,
  encodeManifest,
  makeBackupFile,
  ManifestError,
  unsafePathProblem,
} from "../src/Manifest.ts"

const sample = () =>
  create(BackupManifestSchema, {
    formatVersion: 1,
    minReaderVersion: 1,
    backupMeta: {
      backupId: "20250114_201500",
      backupType: BackupType.INCREMENTAL,
      parentBackupId: "20250113_201500",
      clusterName: "prod",
      toolVersion: "0.1.0",
      labels: { keep: "yes" },
      totals: { files: 3n, bytes: 1234n },
    },
    metasrv: { revision: 42n, driver: "local", keyCount: 2n, pages: [{ blockId: "a".repeat(64), blockSize: 10n, entryCount: 2, first: "k" }] },
    storage: { fileCount: 3n, totalBytes: 1234n, pages: [{ blockId: "b".repeat(64), blockSize: 99n, entryCount: 3, first: "x" }] },
  })

describe("Manifest", () => {
  it("round-trips every field", () => {
    const m = sample()
    const decoded = decodeManifest(encodeManifest(m), "test")
    expect(decoded).not.toBeInstanceOf(ManifestError)
    const back = decoded as typeof m
    expect(back.backupMeta?.backupId).toBe("20250114_201500")
    expect(back.backupMeta?.backupType).toBe(BackupType.INCREMENTAL)
    expect(back.backupMeta?.labels).toEqual({ keep: "yes" })
    expect(back.metasrv?.revision).toBe(42n)
    expect(back.storage?.pages[0].blockId).toBe("b".repeat(64))
    expect(toBinary(BackupManifestSchema, back)).toEqual(encodeManifest(m))
  })

  it("preserves unknown fields through decode and re-encode", () => {
    const bytes = encodeManifest(sample())
    // Field 99, wire type 2 (length-delimited), payload "future": what a newer writer might add.
    const payload = new TextEncoder().encode("future")
    const tag = [0x9a, 0x06] // (99 << 3) | 2 = 794 as a varint
    const withUnknown = new Uint8Array([...bytes, ...tag, payload.length, ...payload])
    const decoded = decodeManifest(withUnknown, "test")
    expect(decoded).not.toBeInstanceOf(ManifestError)
    const reencoded = encodeManifest(decoded as ReturnType<typeof sample>)
    expect(Buffer.from(reencoded).includes(Buffer.from(payload))).toBe(true)
    expect(reencoded.length).toBe(withUnknown.length)
    // Unknown fields inside nested messages survive too.
    const meta = fromBinary(BackupManifestSchema, reencoded)
    expect(meta.backupMeta?.clusterName).toBe("prod")
  })

  it("refuses a manifest that needs a newer reader or an unknown feature", () => {
    const tooNew = sample()
    tooNew.minReaderVersion = 2
    const e1 = decodeManifest(encodeManifest(tooNew), "m1")
    expect(e1).toBeInstanceOf(ManifestError)
    expect((e1 as ManifestError).reason).toBe("TooNew")
    expect((e1 as ManifestError).fix).toMatch(/upgrade/)
    const feature = sample()
    feature.requiredFeatures = ["encryption"]
    const e2 = decodeManifest(encodeManifest(feature), "m2")
    expect((e2 as ManifestError).reason).toBe("TooNew")
    expect((e2 as ManifestError).message).toContain("encryption")
  })

  it("reports garbage and empty input as corrupt", () => {
    expect((decodeManifest(new Uint8Array([0xff, 0xff, 0xff]), "x") as ManifestError).reason).toBe("Corrupt")
    expect((decodeManifest(new Uint8Array(), "x") as ManifestError).reason).toBe("Corrupt")
    expect(decodeFilePage(new Uint8Array([0x0a, 0xff]), "p")).toBeInstanceOf(ManifestError)
  })

  it("round-trips file pages with block lists and millisecond mtimes", () => {
    const file = makeBackupFile({ path: "db/t/a.parquet", size: 9, etag: "e1", lastModified: 1736885700123, blocks: [{ id: "c".repeat(64), size: 9 }] })
    const page = decodeFilePage(encodeFilePage([file]), "p")
    expect(page).not.toBeInstanceOf(ManifestError)
    const [f] = (page as { files: Array<typeof file> }).files
    expect(f.path).toBe("db/t/a.parquet")
    expect(f.blocks[0].blockSize).toBe(9n)
    expect(Number(f.lastModified?.seconds) * 1000 + Math.round((f.lastModified?.nanos ?? 0) / 1e6)).toBe(1736885700123)
  })

  it("flags unsafe paths", () => {
    for (const bad of ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\b", "", "C:/x", "a/\0"]) {
      expect(unsafePathProblem(bad), bad).toBeDefined()
    }
    for (const good of ["a", "a/b.parquet", "..a/b", "a../b", ".hidden/x"]) {
      expect(unsafePathProblem(good), good).toBeUndefined()
    }
  })

  it("names backups by UTC time", () => {
    const t = Date.UTC(2025, 0, 14, 20, 15, 0)
    expect(backupIdOf(t + 999)).toBe("20250114_201500")
    expect(backupIdTime("20250114_201500")).toBe(t)
    expect(backupIdTime("2025-01-14")).toBeUndefined()
  })
})

describe("comparePaths", () => {
  it("orders paths by their UTF-8 bytes, also around surrogate pairs", async () => {
    const { comparePaths } = await import("../src/Pages.ts")
    const paths = ["a/b", "a.b", "a", "\u{1F600}", "\uFFFD", "a/\u00e9", "a/z", "ab", "\uE000"]
    const byBytes = [...paths].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    expect([...paths].sort(comparePaths)).toEqual(byBytes)
    expect(comparePaths("\uFFFD", "\u{1F600}")).toBeLessThan(0)
    expect(comparePaths("same", "same")).toBe(0)
  })
})
