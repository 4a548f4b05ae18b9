#!/usr/bin/env node
// bendsave CLI entry: runs the TypeScript sources directly (Node 22.18+ strips types).
import module from "node:module"

// Cache compiled code on disk: later runs start several times faster.
module.enableCompileCache?.()
// More libuv threads let block reads, hashes and fsyncs overlap (set before the pool starts).
process.env.UV_THREADPOOL_SIZE ??= "8"
await import("../src/main.ts")
