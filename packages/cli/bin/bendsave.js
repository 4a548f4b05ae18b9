#!/usr/bin/env node
// bendsave CLI entry. Runs the bundle built at install time (dist/bendsave.mjs:
// one file, tree-shaken, starts in ~0.1 s) when it is newer than every source
// file; otherwise the TypeScript sources directly (Node 22.18+ strips types).
import { existsSync, readdirSync, statSync } from "node:fs"
import module from "node:module"
import { fileURLToPath } from "node:url"

// Cache compiled code on disk: later runs start faster.
module.enableCompileCache?.()
// More libuv threads let block reads, hashes and fsyncs overlap (set before the pool starts).
process.env.UV_THREADPOOL_SIZE ??= "8"

const here = (p) => fileURLToPath(new URL(p, import.meta.url))
const newestSource = (dir) => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${entry.name}`
    newest = Math.max(newest, entry.isDirectory() ? newestSource(p) : statSync(p).mtimeMs)
  }
  return newest
}
const bundleIsFresh = () => {
  try {
    const built = statSync(here("../dist/bendsave.mjs")).mtimeMs
    const sources = ["../src", "../../core/src", "../../sql/src", "../../clone/src", "../../replicate/src", "../../meta-etcd/src", "../../drivers-s3/src", "../../drivers-gcs/src", "../../drivers-azure/src"]
    // A driver package that is not next to the CLI (an installed CLI) has no sources to compare.
    const present = sources.filter((dir) => dir === "../src" || existsSync(here(dir)))
    return built >= Math.max(...present.map((dir) => newestSource(here(dir))))
  } catch {
    return false
  }
}
await import(process.env.BENDSAVE_FROM_SOURCE !== "1" && bundleIsFresh() ? "../dist/bendsave.mjs" : "../src/main.ts")
