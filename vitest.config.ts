import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "examples/*/test/**/*.test.ts", "test/**/*.test.ts"],
    // Starts the etcd servers of the *.integration.test.ts files (scripts/etcd-up.sh), and the
    // S3 (Ceph radosgw), Azure (Azurite) and GCS (firebase-tools emulator) servers (scripts/{s3,azurite,gcs}-up.sh).
    globalSetup: ["./test/global-setup-etcd.ts", "./test/global-setup-cloud.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
})
