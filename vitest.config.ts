import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    // Starts the etcd servers of the *.integration.test.ts files (scripts/etcd-up.sh).
    globalSetup: ["./test/global-setup-etcd.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
})
