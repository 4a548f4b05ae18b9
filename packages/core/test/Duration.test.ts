import { describe, expect, it } from "@effect/vitest"
import { DurationError, formatDurationShort, parseDuration, readDuration } from "../src/Duration.ts"

describe("Duration", () => {
  it("reads one or more <number><unit> parts, case-insensitive, and a bare 0", () => {
    expect(parseDuration("5m")).toBe(300_000)
    expect(parseDuration("1h30m")).toBe(5_400_000)
    expect(parseDuration("1500ms")).toBe(1500)
    expect(parseDuration("1.5h")).toBe(5_400_000)
    expect(parseDuration(" 2D ")).toBe(172_800_000)
    expect(parseDuration("0")).toBe(0)
    for (const bad of ["", "5", "5 minutes", "5m 3s", "-5m", "m", "1x", "1h-", "0x"]) expect(parseDuration(bad), bad).toBeUndefined()
  })

  it("readDuration names the option, what is wrong and a value that works", () => {
    const bad = readDuration("--every", "5 minutes", { example: "5m", min: 1000 })
    expect(bad).toBeInstanceOf(DurationError)
    expect((bad as DurationError).message).toBe("--every '5 minutes' is not a duration")
    expect((bad as DurationError).fix).toContain("e.g. --every 5m")
    const short = readDuration("--every", "10ms", { example: "5m", min: 1000 })
    expect((short as DurationError).message).toBe("--every '10ms' is shorter than 1s")
    expect(readDuration("--every", "0", { example: "5m", min: 1000 })).toBeInstanceOf(DurationError)
    // 0 is allowed below the minimum where it has a meaning of its own.
    expect(readDuration("--request-timeout", "0", { example: "30s", min: 100, zero: "no deadline" })).toBe(0)
    expect((readDuration("--request-timeout", "x", { example: "30s", zero: "no deadline" }) as DurationError).fix).toContain(
      "0 for no deadline",
    )
    expect(readDuration("--request-timeout", "50ms", { example: "30s", min: 100, zero: "no deadline" })).toBeInstanceOf(DurationError)
    expect(readDuration("--request-timeout", "2m", { example: "30s", min: 100, zero: "no deadline" })).toBe(120_000)
  })

  it("formats in the same syntax, so a formatted duration reads back", () => {
    for (const ms of [0, 1, 999, 1000, 61_000, 5_400_000, 90_061_001]) expect(parseDuration(formatDurationShort(ms))).toBe(ms)
    expect(formatDurationShort(5_400_000)).toBe("1h30m")
  })
})
