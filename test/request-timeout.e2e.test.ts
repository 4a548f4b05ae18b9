/**
 * `--request-timeout <duration>` (global): a storage request with no answer
 * within it is abandoned and retried, then fails naming the flag; `0` waits
 * for as long as the server takes. Driven against a real HTTP server of this
 * test that answers every S3 request only after 2.5 s (a slow link), and with
 * the bad values a user can give.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { bendsave, describeRun, makeTempDir, removeTempDirs } from "./helpers.ts"

afterAll(removeTempDirs)

const ANSWER_AFTER_MS = 2500
const NO_SUCH_KEY =
  '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>'

describe("--request-timeout", () => {
  let server: Server
  let repo = ""
  let dir = ""
  const env = { AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test" }

  beforeAll(async () => {
    dir = await makeTempDir("request-timeout")
    server = createServer((_req, res) => {
      setTimeout(() => {
        res.writeHead(404, { "content-type": "application/xml" })
        res.end(NO_SUCH_KEY)
      }, ANSWER_AFTER_MS)
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    repo = `s3://bucket/prefix?endpoint=http://127.0.0.1:${(server.address() as AddressInfo).port}&region=us-east-1`
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  it("a request slower than the deadline is abandoned, retried, and fails naming the flag", async () => {
    const started = Date.now()
    const r = await bendsave(["list", repo, "--request-timeout", "400ms"], { cwd: dir, env })
    expect(r.code, describeRun(r)).toBe(1)
    expect(r.stderr).toContain("no answer within 0.4 s (the request timed out")
    expect(r.stderr).toContain(
      "fix: check that the service answers (endpoint, network); if it is only slow, allow each request more time with --request-timeout",
    )
    // Six attempts of 0.4 s plus backoff: well before the server's first answer would have arrived six times over.
    expect(Date.now() - started).toBeLessThan(6 * ANSWER_AFTER_MS + 10_000)
  })

  it("0 (no deadline) and a longer deadline wait for the slow answer (here: no repository at that URL)", async () => {
    for (const value of ["0", "10s"]) {
      const r = await bendsave(["--request-timeout", value, "list", repo], { cwd: dir, env })
      expect(r.code, describeRun(r)).toBe(1)
      expect(r.stderr, describeRun(r)).toContain("there is no bendsave repository here (no config.json)")
      expect(r.stderr).not.toContain("timed out")
    }
  })

  it("bad values fail before anything is contacted, naming the flag and a value that works", async () => {
    const cases: ReadonlyArray<[string, string, string]> = [
      ["soon", "--request-timeout 'soon' is not a duration", "e.g. --request-timeout 30s (units ms, s, m, h, d"],
      ["10ms", "--request-timeout '10ms' is shorter than 100ms", "give --request-timeout at least 100ms"],
      ["30", "--request-timeout '30' is not a duration", "0 for no deadline"],
    ]
    for (const [value, message, fix] of cases) {
      const r = await bendsave(["list", "./nowhere", "--request-timeout", value], { cwd: dir })
      expect(r.code, describeRun(r)).toBe(1)
      expect(r.stderr).toContain(`bendsave: error: ${message}`)
      expect(r.stderr).toContain(fix)
      const json = await bendsave(["list", "./nowhere", "--request-timeout", value, "--json"], { cwd: dir })
      expect(JSON.parse(json.stdout).error.tag).toBe("DurationError")
    }
  })
})
