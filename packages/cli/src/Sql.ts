/**
 * Sql: the `bendsave sql` verb. Reads a script (`-e`, `-f` or stdin),
 * parses all of it first (a script with a syntax error runs nothing), runs
 * the statements with @bendsave/sql, and prints each result as it comes: a
 * message and an aligned table on stdout, errors with their fix on stderr;
 * or, with `--json`, one JSON array of `{statement, line, ok, result | error}`
 * at the end.
 */
import { readFile } from "node:fs/promises"
import { dirname, resolve } from "node:path"
import { type Outcome, parseScript, runStatements, type StatementResult } from "@bendsave/sql"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { describeError, makeProgressBar, table } from "./Render.ts"

/** The script could not be read. */
export class SqlInputError extends Schema.TaggedError<SqlInputError>()("SqlInputError", {
  detail: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return this.detail
  }
}

export interface SqlVerbOptions {
  readonly execute: string | undefined
  readonly file: string | undefined
  readonly json: boolean
  readonly continueOnError: boolean
}

/** JSON that survives bigints and Dates (as numbers/strings). */
const toJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v))

const cell = (value: unknown): string =>
  value === undefined || value === null ? "" : typeof value === "string" ? value : typeof value === "object" ? toJson(value) : String(value)

/** A record with more columns than this prints as a two-column table (column, value), which stays readable. */
const VERTICAL_AFTER = 6

/** A statement result as text: the message, then the rows as an aligned table. */
export const renderResult = (r: StatementResult): string => {
  if (r.rows.length === 0) return r.message
  if (r.record && r.columns.length > VERTICAL_AFTER) {
    const row = r.rows[0]
    return `${r.message}\n${table(
      ["column", "value"],
      r.columns.map((c) => [c, cell(row[c])]),
    )}`
  }
  return `${r.message}\n${table(
    r.columns,
    r.rows.map((row) => r.columns.map((c) => cell(row[c]))),
  )}`
}

/** An error as JSON fields: tag, message, fix, and where in the script when known. */
const errorJson = (error: unknown) => {
  const described = describeError(error)
  const e = error as { line?: unknown; column?: unknown; excerpt?: unknown; expected?: unknown; found?: unknown }
  return {
    ...described,
    ...(typeof e.line === "number" ? { line: e.line, column: e.column } : {}),
    ...(typeof e.excerpt === "string" ? { excerpt: e.excerpt } : {}),
    ...(Array.isArray(e.expected) ? { expected: e.expected, found: e.found } : {}),
  }
}

/** An error as text for stderr: the message, the excerpt with its caret, the fix. */
const errorText = (prefix: string, error: unknown): string => {
  const d = describeError(error)
  const excerpt = (error as { excerpt?: unknown }).excerpt
  const lines = [`bendsave: error: ${prefix}${d.message}`]
  if (typeof excerpt === "string") lines.push(...excerpt.split("\n").map((l) => `  ${l}`))
  if (d.fix !== undefined) lines.push(`  fix: ${d.fix}`)
  return lines.join("\n")
}

const readStdin = async (): Promise<string> => {
  const chunks: Array<Buffer> = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

/** The script's text, its name for errors, and the directory its relative paths resolve against. */
const readScript = (options: SqlVerbOptions) =>
  Effect.gen(function* () {
    if (options.execute !== undefined && options.file !== undefined) {
      return yield* new SqlInputError({
        detail: "both -e and -f were given",
        fix: "give the statements with -e '<statements>' or a script with -f <file>, not both",
      })
    }
    if (options.execute !== undefined) return { source: options.execute, name: "", baseDir: process.cwd() }
    if (options.file !== undefined && options.file !== "-") {
      const path = resolve(options.file)
      const source = yield* Effect.tryPromise({
        try: () => readFile(path, "utf8"),
        catch: (cause) => {
          const code = (cause as NodeJS.ErrnoException).code
          return new SqlInputError({
            detail: `cannot read the script ${path}: ${
              code === "ENOENT"
                ? "it does not exist"
                : code === "EISDIR"
                  ? "it is a directory"
                  : code === "EACCES" || code === "EPERM"
                    ? "permission denied"
                    : String((cause as Error).message ?? cause)
            }`,
            fix: code === "EACCES" || code === "EPERM" ? "make the file readable, or pipe it: bendsave sql < script.sql" : "check the path given to -f (-f - reads stdin)",
          })
        },
      })
      return { source, name: options.file, baseDir: dirname(path) }
    }
    if (process.stdin.isTTY === true && options.file === undefined) {
      return yield* new SqlInputError({
        detail: "no statements: give them with -e, a script with -f, or pipe them on stdin",
        fix: "bendsave sql -e \"SHOW BACKUPS IN './backups'\" or bendsave sql -f script.sql",
      })
    }
    const source = yield* Effect.promise(readStdin)
    return { source, name: "<stdin>", baseDir: process.cwd() }
  })

/**
 * Runs the verb. Succeeds with whether every statement succeeded (the
 * caller turns false into a non-zero exit); input errors fail.
 */
export const sqlVerb = (options: SqlVerbOptions) =>
  Effect.gen(function* () {
    const { source, name, baseDir } = yield* readScript(options)
    const parsed = parseScript(source, name)
    if (parsed.errors.length > 0) {
      if (options.json) {
        yield* Console.log(
          toJson(
            parsed.errors.map((e) => ({
              statement: e.statement === "" ? null : e.statement,
              line: e.line,
              ok: false,
              error: errorJson(e),
            })),
          ),
        )
      } else {
        for (const e of parsed.errors) yield* Console.error(errorText("", e))
        const n = parsed.errors.length
        yield* Console.error(`bendsave: ${n} syntax error${n === 1 ? "" : "s"}; no statement was run`)
      }
      return false
    }
    const total = parsed.statements.length
    if (total === 0 && !options.json) {
      yield* Console.error(`bendsave: no statements to run (the ${name === "" ? "-e text" : `script ${name}`} holds only comments or blank lines)`)
    }
    let printed = 0
    const bar = makeProgressBar(!options.json)
    const outcomes = yield* Effect.scoped(
      runStatements(parsed.statements, {
        source,
        baseDir,
        continueOnError: options.continueOnError,
        ...(bar.active ? { onProgress: (p) => bar.draw(p) } : {}),
        onOutcome: (o: Outcome) =>
          options.json
            ? Effect.void
            : Effect.gen(function* () {
                bar.clear()
                if (o.ok) {
                  yield* Console.log(`${printed++ > 0 ? "\n" : ""}${renderResult(o.result)}`)
                } else {
                  const where = total > 1 ? `statement ${o.index} (line ${o.statement.span.line}): ` : ""
                  yield* Console.error(errorText(where, o.error))
                }
              }),
      }),
    ).pipe(Effect.ensuring(Effect.sync(bar.clear)))
    const failed = outcomes.filter((o) => !o.ok).length
    if (options.json) {
      yield* Console.log(
        toJson(
          outcomes.map((o) =>
            o.ok
              ? { statement: o.statement.text, line: o.statement.span.line, ok: true, result: o.result.value }
              : { statement: o.statement.text, line: o.statement.span.line, ok: false, error: errorJson(o.error) },
          ),
        ),
      )
    } else if (failed > 0) {
      const notRun = total - outcomes.length
      yield* Console.error(
        notRun > 0
          ? `bendsave: stopped at statement ${outcomes.length} of ${total}; ${notRun} not run (--continue-on-error runs the rest)`
          : `bendsave: ${failed} of ${total} statements failed`,
      )
    }
    return failed === 0
  })
