// Runs the Cloud Storage emulator of firebase-tools (its GCS JSON/XML API) WITHOUT the Java rules
// runtime: `firebase emulators:start --only storage` wants Java 21 and downloads a rules jar from
// the internet; the GCS API routes never evaluate rules, so the HTTP server alone serves them.
// Relies on firebase-tools internals (lib/emulator/storage/*): the version is pinned in
// tools/test-servers/package.json. Started by scripts/gcs-up.sh.
// Env: GCS_PORT (default 18200), GCS_HOST (127.0.0.1), GCS_PROJECT (demo-test), FIREBASE_TOOLS_DIR
// (the directory holding node_modules/firebase-tools). TMPDIR decides where blobs are kept.
const path = require("node:path")
const base = process.env.FIREBASE_TOOLS_DIR ?? path.join(__dirname, "..", "tools", "test-servers")
const fb = path.join(path.dirname(require.resolve("firebase-tools/package.json", { paths: [base] })), "lib", "emulator")
const { StorageEmulator } = require(path.join(fb, "storage", "index.js"))
const { createApp } = require(path.join(fb, "storage", "server.js"))
const { EmulatorRegistry } = require(path.join(fb, "registry.js"))

class NoRulesStorageEmulator extends StorageEmulator {
  async start() {
    const { host, port } = this.getInfo()
    this._app = await createApp(this.args.projectId, this)
    await new Promise((resolve, reject) => {
      this._server = this._app.listen(port, host, resolve)
      this._server.on("error", reject)
    })
    // Long uploads: no request timeout.
    this._server.requestTimeout = 0
  }
  async stop() {
    await this._persistence.deleteAll()
    await new Promise((resolve) => this._server.close(resolve))
  }
}

;(async () => {
  const emulator = new NoRulesStorageEmulator({
    projectId: process.env.GCS_PROJECT ?? "demo-test",
    host: process.env.GCS_HOST ?? "127.0.0.1",
    port: Number(process.env.GCS_PORT ?? 18200),
    rules: { name: "unused", content: "" },
    auto_download: false,
  })
  await EmulatorRegistry.start(emulator)
  console.log(`GCS emulator (firebase-tools, no rules runtime) listening on http://${emulator.getInfo().host}:${emulator.getInfo().port}`)
  const bye = async () => {
    await emulator.stop().catch(() => {})
    process.exit(0)
  }
  process.on("SIGTERM", bye)
  process.on("SIGINT", bye)
})().catch((error) => {
  console.error(error)
  process.exit(1)
})
