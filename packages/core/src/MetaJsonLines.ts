/**
 * MetaJsonLines: the text form of a meta keyspace used by `bendsave meta
 * export` and `meta import`, one JSON object per line:
 *
 * ```
 * {"key":"catalog/databases/sales","value":"{\"id\":\"...\"}"}
 * {"key":"bin/k","value_b64":"AAEC"}
 * {"key_b64":"/w==","value":"text"}
 * ```
 *
 * `key`/`value` carry UTF-8 text; `key_b64`/`value_b64` carry base64 bytes and
 * are used when the bytes are not valid UTF-8. Keys are relative to the
 * cluster's meta prefix.
 */
import * as Schema from "effect/Schema"
import type { MetaEntry } from "./MetaStore.ts"

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const encoder = new TextEncoder()

const textOrBase64 = (bytes: Uint8Array, name: string): Record<string, string> => {
  try {
    return { [name]: utf8.decode(bytes) }
  } catch {
    return { [`${name}_b64`]: Buffer.from(bytes).toString("base64") }
  }
}

/** One entry as a JSON line (without the newline). */
export const formatMetaLine = (entry: MetaEntry): string =>
  JSON.stringify({ ...textOrBase64(entry.key, "key"), ...textOrBase64(entry.value, "value") })

export class MetaLinesError extends Schema.TaggedError<MetaLinesError>()("MetaLinesError", {
  source: Schema.String,
  line: Schema.Number,
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `${this.source}:${this.line}: ${this.detail}`
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

const field = (obj: Record<string, unknown>, name: string, source: string, line: number): Uint8Array | MetaLinesError => {
  const text = obj[name]
  const b64 = obj[`${name}_b64`]
  if (text !== undefined && b64 !== undefined) {
    return new MetaLinesError({ source, line, detail: `both "${name}" and "${name}_b64" are set`, fix: `keep only one of them` })
  }
  if (typeof text === "string") return encoder.encode(text)
  if (typeof b64 === "string" && BASE64.test(b64) && b64.length % 4 === 0) return new Uint8Array(Buffer.from(b64, "base64"))
  if (b64 !== undefined) {
    return new MetaLinesError({
      source,
      line,
      detail: `"${name}_b64" is not valid base64`,
      fix: "encode the bytes with standard base64 (RFC 4648)",
    })
  }
  return new MetaLinesError({
    source,
    line,
    detail: `missing "${name}" (or "${name}_b64")`,
    fix: `each line must look like {"key":"...","value":"..."}`,
  })
}

/** Parses JSON lines (blank lines allowed); the first problem is returned with its line number. */
export const parseMetaLines = (text: string, source: string): Array<MetaEntry> | MetaLinesError => {
  const entries: Array<MetaEntry> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim()
    if (raw === "") continue
    let obj: unknown
    try {
      obj = JSON.parse(raw)
    } catch {
      return new MetaLinesError({
        source,
        line: i + 1,
        detail: "not valid JSON",
        fix: 'each line must be one JSON object like {"key":"k","value":"v"}',
      })
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      return new MetaLinesError({
        source,
        line: i + 1,
        detail: "not a JSON object",
        fix: 'each line must be one JSON object like {"key":"k","value":"v"}',
      })
    }
    const record = obj as Record<string, unknown>
    const unknownKey = Object.keys(record).find((k) => !["key", "key_b64", "value", "value_b64"].includes(k))
    if (unknownKey !== undefined) {
      return new MetaLinesError({
        source,
        line: i + 1,
        detail: `unknown field "${unknownKey}"`,
        fix: "allowed fields: key, key_b64, value, value_b64",
      })
    }
    const key = field(record, "key", source, i + 1)
    if (key instanceof MetaLinesError) return key
    if (key.length === 0)
      return new MetaLinesError({ source, line: i + 1, detail: "the key is empty", fix: "give every entry a non-empty key" })
    const value = field(record, "value", source, i + 1)
    if (value instanceof MetaLinesError) return value
    entries.push({ key, value })
  }
  return entries
}
