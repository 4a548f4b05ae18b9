/**
 * Duration: how bendsave reads a duration a user writes, in every place one
 * is written (`--grace 1h`, `--wait 30s`, `--every 5m`, `--checkpoint-interval
 * 500ms`, `--request-timeout 2m`): one syntax and one error everywhere.
 *
 * Syntax: one or more `<number><unit>` parts (`1h30m`, `90s`, `1.5h`) with the
 * units `ms`, `s`, `m`, `h`, `d` (case-insensitive, no spaces); a bare `0`
 * means zero.
 */
import * as Schema from "effect/Schema"

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y

/** The text as milliseconds, or undefined when it is not a duration. */
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

/** A duration a user wrote that is not one, or is out of range for its option. */
export class DurationError extends Schema.TaggedError<DurationError>()("DurationError", {
  /** The option or statement part it was given to (`--every`). */
  option: Schema.String,
  input: Schema.String,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `${this.option} '${this.input}' ${this.detail}`
  }
}

export interface DurationRule {
  /** An example of a good value, e.g. `5m` (shown in the fix). */
  readonly example: string
  /** The least duration allowed, ms (default 0). */
  readonly min?: number
  /** `0` is allowed below `min` and means this (e.g. "no deadline"). */
  readonly zero?: string
}

const UNIT_HELP = "units ms, s, m, h, d; parts combine, e.g. 1h30m"

/**
 * Reads the duration given to `option`: milliseconds, or a DurationError
 * naming the option, what is wrong and a value that works.
 */
export const readDuration = (option: string, text: string, rule: DurationRule): number | DurationError => {
  const ms = parseDuration(text)
  const zero = rule.zero !== undefined ? `; 0 for ${rule.zero}` : ""
  if (ms === undefined) {
    return new DurationError({
      option,
      input: text,
      detail: "is not a duration",
      fix: `write a number with a unit, e.g. ${option} ${rule.example} (${UNIT_HELP}${zero})`,
    })
  }
  if (ms === 0 && rule.zero !== undefined) return 0
  const min = rule.min ?? 0
  if (ms < min) {
    return new DurationError({
      option,
      input: text,
      detail: `is shorter than ${formatDurationShort(min)}`,
      fix: `give ${option} at least ${formatDurationShort(min)}, e.g. ${option} ${rule.example}${zero}`,
    })
  }
  return ms
}

/** A duration for humans, in the same syntax: `1h`, `30m`, `45s`, `1h30m`, `0`. */
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
