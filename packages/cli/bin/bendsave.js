#!/usr/bin/env node
// bendsave CLI entry: runs the TypeScript sources directly (Node 22.18+ strips types).
import "../src/main.ts"
