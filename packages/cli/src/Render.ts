/**
 * Render: how the CLI shows results, errors and progress.
 *
 * A live progress bar (files, bytes, rate, ETA) is drawn on stderr only when
 * stderr is a terminal and `--json` is off; pipes and JSON consumers get one
 * clean result and nothing else.
 */
import * as Predicate from "effect/Predicate"

export const formatBytes = (n: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let value = n
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`
}

export const formatDuration = (ms: number): string => {
  if (!Number.isFinite(ms) || ms < 0) return "?"
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}

/** A plain text table with left-aligned columns. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join("  ")
      .trimEnd()
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n")
}

export interface ProgressSample {
  readonly label: string
  readonly filesDone: number
  readonly bytesDone: number
  readonly filesTotal?: number
  readonly bytesTotal?: number
}

/** A progress bar on stderr when it is a terminal; a no-op otherwise. */
export const makeProgressBar = (enabled: boolean) => {
  const stream = process.stderr
  const active = enabled && stream.isTTY === true
  const startedAt = Date.now()
  let lastDraw = 0
  let drawn = false
  const draw = (s: ProgressSample, force = false) => {
    if (!active) return
    const now = Date.now()
    if (!force && now - lastDraw < 100) return
    lastDraw = now
    const elapsed = (now - startedAt) / 1000
    const rate = elapsed > 0 ? s.bytesDone / elapsed : 0
    const width = 24
    let bar = ""
    let eta = ""
    if (s.bytesTotal !== undefined && s.bytesTotal > 0) {
      const ratio = Math.min(1, s.bytesDone / s.bytesTotal)
      const filled = Math.round(ratio * width)
      bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% `
      eta = rate > 0 ? ` ETA ${formatDuration(((s.bytesTotal - s.bytesDone) / rate) * 1000)}` : ""
    }
    const files = s.filesTotal !== undefined ? `${s.filesDone}/${s.filesTotal} files` : `${s.filesDone} files`
    const bytes = s.bytesTotal !== undefined ? `${formatBytes(s.bytesDone)}/${formatBytes(s.bytesTotal)}` : formatBytes(s.bytesDone)
    const text = `${s.label} ${bar}${files} ${bytes} ${formatBytes(rate)}/s${eta}`
    const columns = stream.columns ?? 120
    stream.write(`\r${text.slice(0, columns - 1).padEnd(Math.min(columns - 1, text.length + 8))}`)
    drawn = true
  }
  const clear = () => {
    if (active && drawn) {
      stream.write(`\r${" ".repeat(Math.max(0, (stream.columns ?? 120) - 1))}\r`)
      drawn = false
    }
  }
  return { active, draw, clear }
}

/** The text and fix of any error a workflow can fail with. */
export const describeError = (error: unknown): { tag: string; message: string; fix?: string } => {
  if (Predicate.isObject(error)) {
    const tag = Predicate.isString((error as { _tag?: unknown })._tag) ? (error as { _tag: string })._tag : "Error"
    const message = Predicate.isString((error as { message?: unknown }).message)
      ? (error as { message: string }).message
      : String(error)
    const fix = (error as { fix?: unknown }).fix
    if (Predicate.isString(fix)) return { tag, message, fix }
    // Storage errors carry their advice in the reason.
    const reason = (error as { reason?: unknown }).reason
    if (tag === "BlobStoreError" || tag === "MetaStoreError") {
      const hint =
        reason === "Unavailable" && message.includes("the request timed out")
          ? "check that the service answers (endpoint, network); if it is only slow, allow each request more time with --request-timeout (e.g. --request-timeout 10m; 0 = no deadline)"
          : reason === "PermissionDenied"
          ? "check the permissions of the path or the credentials"
          : reason === "NotFound"
            ? "check that the path exists"
            : reason === "Unavailable" || reason === "RateLimited"
              ? "the service is busy or unreachable; try again"
              : reason === "InvalidConfig" && tag === "BlobStoreError"
                ? "check the storage settings: the repository URL's options (?endpoint=...&region=...) or the [storage] section of the cluster file (README: 'Cloud storage')"
                : undefined
      return hint === undefined ? { tag, message } : { tag, message, fix: hint }
    }
    return { tag, message }
  }
  return { tag: "Error", message: String(error) }
}
