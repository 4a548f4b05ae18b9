import { describe, expect, it } from "vitest"
import { normalizeArgs } from "../src/Argv.ts"

const commands = new Set(["sql", "list", "backup"])

describe("normalizeArgs", () => {
  it("passes statement text that begins with '-' after -e / --execute as the flag's value", () => {
    expect(normalizeArgs(["sql", "-e", "-- c\nSHOW TABLES"], commands)).toEqual(["sql", "--execute=-- c\nSHOW TABLES"])
    expect(normalizeArgs(["sql", "--execute", "-- c\nSHOW TABLES", "--json"], commands)).toEqual([
      "sql",
      "--execute=-- c\nSHOW TABLES",
      "--json",
    ])
    // Ordinary values and flags are left alone.
    expect(normalizeArgs(["sql", "-e", "SHOW TABLES", "--continue-on-error"], commands)).toEqual([
      "sql",
      "-e",
      "SHOW TABLES",
      "--continue-on-error",
    ])
    expect(normalizeArgs(["sql", "-e", "--json"], commands)).toEqual(["sql", "-e", "--json"])
    expect(normalizeArgs(["backup", "--from", "-- x y"], commands)).toEqual(["backup", "--from", "-- x y"])
  })

  it("takes a whole number after --read-data as its value", () => {
    expect(normalizeArgs(["verify", "./r", "--read-data", "10"], commands)).toEqual(["verify", "./r", "--read-data=10"])
    expect(normalizeArgs(["verify", "--read-data", "./r"], commands)).toEqual(["verify", "--read-data", "./r"])
  })

  it("moves --json from before the command behind it; leaves everything after -- alone", () => {
    expect(normalizeArgs(["--json", "list", "./r"], commands)).toEqual(["list", "./r", "--json"])
    expect(normalizeArgs(["--request-timeout", "30s", "--json", "list", "./r"], commands)).toEqual([
      "--request-timeout",
      "30s",
      "list",
      "./r",
      "--json",
    ])
    expect(normalizeArgs(["list", "./r", "--json"], commands)).toEqual(["list", "./r", "--json"])
    expect(normalizeArgs(["sql", "--", "-e", "-- a b"], commands)).toEqual(["sql", "--", "-e", "-- a b"])
  })
})
