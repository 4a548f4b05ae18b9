/**
 * Duration: how the CLI reads durations (`--grace 1h`, `--wait 30s`).
 *
 * One or more `<number><unit>` parts (`1h30m`, `90s`, `1.5h`) with units
 * `ms`, `s`, `m`, `h`, `d`; a bare `0` means zero. Returns milliseconds, or
 * undefined when the text is not a duration.
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y

export const parseDuration = (text: string): number | undefined => {
  const s = text.trim().toLowerCase()
  if (s === "0") return 0
  if (s === "") return undefined
  let total = 0
  PART.lastIndex = 0
  while (PART.lastIndex < s.length) {
    const at = PART.lastIndex
    const m = PART.exec(s)
    if (m === null || m.index !== at) return undefined
    total += Number(m[1]) * UNITS[m[2]]
  }
  return Number.isFinite(total) ? Math.round(total) : undefined
}

/** A duration for humans: `1h`, `30m`, `45s`, `1h30m`, `0`. */
export const formatDurationShort = (ms: number): string => {
  if (ms === 0) return "0"
  const parts: Array<string> = []
  let rest = Math.round(ms)
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  return parts.join("")
}
