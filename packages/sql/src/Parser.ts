/**
 * Parser: a hand-written recursive-descent parser from the tokens of
 * `Lexer` to the typed statements of `Ast`. One function per production; the
 * grammar is written above each.
 *
 * Errors point at a token: line, column, the source line with a caret under
 * the token, what was expected there and what was found (`expected TO, found
 * 'INTO'`), with a "did you mean" for misspelt keywords and the statement's
 * syntax as the fix. "Expected" is collected as the parser tries
 * alternatives: every keyword or token it looks for at the position where it
 * fails is listed. After an error the parser skips to the next `;` and goes on,
 * so one run reports every syntax error of a script.
 */
import { parseByteRate } from "@bendsave/core"
import * as Schema from "effect/Schema"
import type * as Ast from "./Ast.ts"
import { REPLICATE_OPTIONS, VACUUM_OPTIONS, type VacuumOption } from "./Ast.ts"
import { type LexError, type Token, tokenize } from "./Lexer.ts"
import { closest } from "./Suggest.ts"

/** A syntax error, with the excerpt (source line and caret) that shows where. */
export class SqlSyntaxError extends Schema.TaggedError<SqlSyntaxError>()("SqlSyntaxError", {
  /** The script's name (a file path, `-e` or `<stdin>`). */
  source: Schema.String,
  /** The text of the statement with the error, up to its `;` (comments included); empty for lexical errors. */
  statement: Schema.String,
  line: Schema.Number,
  column: Schema.Number,
  /** What is wrong, e.g. `expected TO, found 'INTO'`. */
  detail: Schema.String,
  /** What was expected at the position (keywords, `';'`, `a name`, ...); empty for errors that are not about a missing token. */
  expected: Schema.Array(Schema.String),
  /** The token found there (`'INTO'`, `end of input`). */
  found: Schema.String,
  /** Two lines: the source line and a caret under the offending token. */
  excerpt: Schema.String,
  fix: Schema.String,
}) {
  override get message(): string {
    return `syntax error at line ${this.line}, column ${this.column}${this.source === "" ? "" : ` of ${this.source}`}: ${this.detail}`
  }
}

/** The statements of a script, or every syntax error in it. */
export interface ParseResult {
  readonly statements: ReadonlyArray<Ast.Statement>
  readonly errors: ReadonlyArray<SqlSyntaxError>
}

/** The syntax of each statement, shown as the fix of its syntax errors (and in the README). */
export const STATEMENT_SYNTAX: Record<string, string> = {
  ATTACH: "ATTACH CLUSTER '<cluster file.toml>' AS <name>",
  DETACH: "DETACH CLUSTER <name>",
  USE: "USE <cluster>",
  BACKUP: "BACKUP CLUSTER <cluster> TO '<repository>' [DRY RUN]",
  SHOW: "SHOW BACKUPS IN '<repository>' | SHOW DATABASES [IN <cluster>] | SHOW TABLES [IN [<cluster>.]<db>] | SHOW CLONES [OF [<cluster>.]<db>.<table>] | SHOW REPLICATION STATUS [FOR <cluster>]",
  RESTORE:
    "RESTORE {CLUSTER | DATABASE <db> | TABLE <db>.<table> [AS <db>.<table>]} FROM '<repository>' [AT BACKUP '<id>' | AT TIMESTAMP '<time>'] TO <cluster> [DRY RUN]",
  VACUUM:
    "VACUUM BACKUPS IN '<repository>' [WITH (RETENTION_DAYS = n, MIN_RETENTION_DAYS = n, MAX_BACKUPS = n, MIN_BACKUPS = n, KEEP_DAILY = n, KEEP_WEEKLY = n, KEEP_MONTHLY = n)] [DRY RUN]",
  REPLICATE:
    "REPLICATE {CLUSTER | DATABASE <db> | TABLE <db>.<table>} FROM <cluster> TO <cluster> [VIA '<repository>'] [WITH (MAX_DELETE = n, DELETE = 'MIRROR' | 'KEEP', BANDWIDTH_LIMIT = '100MiB/s', PARALLELISM = n)] [DRY RUN]",
  CREATE:
    "CREATE [OR REPLACE] {TABLE | DATABASE} [IF NOT EXISTS] <target> [SHALLOW | DEEP] CLONE <source> [AT BACKUP '<id>' | AT TIMESTAMP '<time>' | VERSION AS OF n] [FROM '<repository>'] [DRY RUN]",
  DROP: "DROP TABLE [IF EXISTS] [<cluster>.]<db>.<table> [PURGE] [DRY RUN]",
  DESCRIBE: "DESCRIBE [TABLE] [<cluster>.]<db>.<table>",
}

/** The keywords a statement can start with. */
export const STATEMENT_KEYWORDS: ReadonlyArray<string> = [...Object.keys(STATEMENT_SYNTAX), "DESC"]

/** A parse failure inside one statement (thrown within the parser only; reported as SqlSyntaxError). */
class Failure {
  readonly token: Pick<Token, "offset" | "length" | "line" | "column">
  readonly detail: string
  readonly expected: ReadonlyArray<string>
  readonly found: string
  readonly fix: string | undefined
  /** The text of the statement it is in (set once the parser skipped to its end). */
  statement = ""
  constructor(token: Failure["token"], detail: string, expected: ReadonlyArray<string>, found: string, fix: string | undefined) {
    this.token = token
    this.detail = detail
    this.expected = expected
    this.found = found
    this.fix = fix
  }
}

/** A statement without its text and span (added once it is parsed). */
type Body<T> = T extends unknown ? Omit<T, "text" | "span"> : never

const describeToken = (t: Token): string => {
  switch (t.kind) {
    case "eof":
      return "end of input"
    case "string":
      return `string '${t.value.replace(/'/g, "''")}'`
    case "quoted":
      return `name "${t.value}"`
    default:
      return `'${t.value}'`
  }
}

const listOf = (items: ReadonlyArray<string>): string =>
  items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`

/** Name roles: how many parts the name may have and how it is described in errors. */
const NAME_ROLES = {
  cluster: { min: 1, max: 1, what: "a cluster", form: "<cluster>" },
  database: { min: 1, max: 2, what: "a database", form: "<db> or <cluster>.<db>" },
  table: { min: 2, max: 3, what: "a table", form: "<db>.<table> or <cluster>.<db>.<table>" },
  backupDatabase: {
    min: 1,
    max: 1,
    what: "a database in a backup",
    form: "<db> (the backup holds one cluster; the target cluster is named after TO)",
  },
  backupTable: { min: 2, max: 2, what: "a table in a backup", form: "<db>.<table> (the backup holds one cluster)" },
  replicatedDatabase: {
    min: 1,
    max: 1,
    what: "a database to replicate",
    form: "<db> (the clusters are named after FROM and TO)",
  },
  replicatedTable: { min: 2, max: 2, what: "a table to replicate", form: "<db>.<table> (the clusters are named after FROM and TO)" },
} as const
type NameRole = keyof typeof NAME_ROLES

class Parser {
  private i = 0
  private expectedAt = -1
  private expected: Array<string> = []
  /** The keyword that started the statement being parsed (for the syntax shown as fix). */
  private statement = ""

  private readonly source: string
  private readonly tokens: ReadonlyArray<Token>

  constructor(source: string, tokens: ReadonlyArray<Token>) {
    this.source = source
    this.tokens = tokens
  }

  // tokens ---------------------------------------------------------------------------------------

  private tok(): Token {
    return this.tokens[this.i]
  }

  /** Records that `what` was acceptable at the current position (for "expected ..."). */
  private note(what: string): void {
    if (this.expectedAt !== this.i) {
      this.expectedAt = this.i
      this.expected = []
    }
    if (!this.expected.includes(what)) this.expected.push(what)
  }

  private isKeyword(keyword: string, t: Token = this.tok()): boolean {
    return t.kind === "word" && t.value.toUpperCase() === keyword
  }

  /** Whether the current token is `keyword` (noting it as expected when it is not). */
  private atKeyword(keyword: string, label = keyword): boolean {
    if (this.isKeyword(keyword)) return true
    this.note(label)
    return false
  }

  private acceptKeyword(keyword: string, label = keyword): Token | undefined {
    if (!this.atKeyword(keyword, label)) return undefined
    return this.tokens[this.i++]
  }

  private expectKeyword(keyword: string, label = keyword): Token {
    const t = this.acceptKeyword(keyword, label)
    if (t === undefined) throw this.fail()
    return t
  }

  private acceptPunct(p: string): Token | undefined {
    if (this.tok().kind === "punct" && this.tok().value === p) return this.tokens[this.i++]
    this.note(`'${p}'`)
    return undefined
  }

  private expectPunct(p: string): Token {
    const t = this.acceptPunct(p)
    if (t === undefined) throw this.fail()
    return t
  }

  /** A failure at the current token: "expected <what was noted here>, found <token>". */
  private fail(fix?: string): Failure {
    const t = this.tok()
    const expected = this.expectedAt === this.i ? this.expected : []
    let detail = `expected ${listOf(expected)}, found ${describeToken(t)}`
    if (t.kind === "word") {
      // Compare with each keyword, and with a phrase's first word and its words run together (DRYRUN).
      const candidates = new Map<string, string>()
      for (const e of expected.filter((x) => /^[A-Z_ ]+$/.test(x))) {
        candidates.set(e.split(" ")[0], e)
        candidates.set(e.replace(/ /g, ""), e)
      }
      const near = closest(t.value, candidates.keys())
      if (near !== undefined) detail += `; did you mean ${candidates.get(near)}?`
    }
    return new Failure(t, detail, expected, describeToken(t), fix ?? STATEMENT_SYNTAX[this.statement])
  }

  /** A failure about `at` that is not a missing token (a contradiction, a bad value). */
  private failAt(at: Pick<Token, "offset" | "length" | "line" | "column">, detail: string, fix?: string): Failure {
    const t = this.tokens.find((x) => x.offset === at.offset)
    return new Failure(at, detail, [], t === undefined ? "" : describeToken(t), fix)
  }

  private spanOf(first: Token, last: Token): Ast.Span {
    return { offset: first.offset, length: last.offset + last.length - first.offset, line: first.line, column: first.column }
  }

  private previous(): Token {
    return this.tokens[this.i - 1]
  }

  // terminals ------------------------------------------------------------------------------------

  /** string := '...' */
  private string(what: string): Ast.Str {
    const t = this.tok()
    if (t.kind !== "string") {
      this.note(what)
      throw this.fail(
        t.kind === "word" || t.kind === "quoted"
          ? `put ${what.replace(/^a /, "the ")} in single quotes, e.g. '${t.value}'; ${STATEMENT_SYNTAX[this.statement] ?? ""}`
          : undefined,
      )
    }
    this.i++
    return { value: t.value, span: { offset: t.offset, length: t.length, line: t.line, column: t.column } }
  }

  /** number := [0-9]+ */
  private number(what: string): { value: number; token: Token } {
    const t = this.tok()
    if (t.kind !== "number") {
      this.note(what)
      throw this.fail()
    }
    const value = Number(t.value)
    if (!Number.isSafeInteger(value)) throw this.failAt(t, `${t.value} is too large`, "use a smaller number")
    this.i++
    return { value, token: t }
  }

  /** name := ident ('.' ident)*   ident := word | "quoted" | `quoted`; unquoted parts fold to lower case */
  private name(role: NameRole): Ast.Name {
    const { min, max, what, form } = NAME_ROLES[role]
    const first = this.tok()
    const parts: Array<string> = []
    for (;;) {
      const t = this.tok()
      if (t.kind === "word") parts.push(t.value.toLowerCase())
      else if (t.kind === "quoted") parts.push(t.value)
      else {
        this.note(parts.length === 0 ? `${what} name` : "a name")
        throw this.fail(
          t.kind === "string" && role === "cluster"
            ? `attach the cluster file first and use its name: ATTACH CLUSTER '${t.value}' AS <name>;`
            : `name ${what} as ${form}`,
        )
      }
      this.i++
      // (not noted as expected: "expected '.' or TO" would only be noise)
      const dot = this.tok()
      if (!(dot.kind === "punct" && dot.value === ".")) break
      this.i++
    }
    const span = this.spanOf(first, this.previous())
    if (parts.length < min || parts.length > max) {
      const written = this.source.slice(span.offset, span.offset + span.length)
      throw this.failAt(
        span,
        `'${written}' is not ${what} name: write ${form}`,
        role === "table" && parts.length === 1 ? `name the database too, e.g. <db>.${parts[0]}` : `write ${form}`,
      )
    }
    return { parts, span }
  }

  /** dry_run := [DRY RUN] */
  private dryRun(): boolean {
    if (!this.acceptKeyword("DRY", "DRY RUN")) return false
    this.expectKeyword("RUN")
    return true
  }

  /** Whether an AT clause starts here (AT consumed; noting both forms when it does not). */
  private acceptAt(): Token | undefined {
    const t = this.acceptKeyword("AT", "AT BACKUP")
    if (t === undefined) this.note("AT TIMESTAMP")
    return t
  }

  /** point := AT BACKUP string | AT TIMESTAMP string   (AT already consumed) */
  private backupPoint(): Ast.BackupPoint {
    if (this.acceptKeyword("BACKUP")) return { kind: "backup", id: this.string("a backup id ('YYYYMMDD_HHMMSS')") }
    if (this.acceptKeyword("TIMESTAMP")) {
      const time = this.string("a time ('2025-01-14T20:15:00Z')")
      const ms = Date.parse(time.value)
      if (Number.isNaN(ms)) {
        throw this.failAt(time.span, `'${time.value}' is not a time`, "write an ISO 8601 time, e.g. AT TIMESTAMP '2025-01-14T20:15:00Z'")
      }
      return { kind: "timestamp", time, at: new Date(ms) }
    }
    throw this.fail()
  }

  // statements -----------------------------------------------------------------------------------

  /** script := [statement] (';' [statement])* EOF */
  parseScript(): { statements: Array<Ast.Statement>; failures: Array<Failure> } {
    const statements: Array<Ast.Statement> = []
    const failures: Array<Failure> = []
    for (;;) {
      while (this.tok().kind === "punct" && this.tok().value === ";") this.i++
      if (this.tok().kind === "eof") break
      const first = this.tok()
      try {
        const statement = this.statementOf(first)
        if (!(this.tok().kind === "eof" || (this.tok().kind === "punct" && this.tok().value === ";"))) {
          this.note("';'")
          const t = this.tok()
          const next = t.kind === "word" ? t.value.toUpperCase() : ""
          throw this.fail(
            STATEMENT_KEYWORDS.includes(next) ? `end the statement before '${t.value}' with ';'` : STATEMENT_SYNTAX[this.statement],
          )
        }
        statements.push(statement)
      } catch (e) {
        if (!(e instanceof Failure)) throw e
        // Recover: skip to the end of the statement (never stopping where it started: progress is guaranteed).
        if (this.i === this.tokens.indexOf(first)) this.i++
        while (this.tok().kind !== "eof" && !(this.tok().kind === "punct" && this.tok().value === ";")) this.i++
        e.statement = this.source.slice(first.offset, this.tok().offset).trim()
        failures.push(e)
      }
    }
    return { statements, failures }
  }

  private statementOf(first: Token): Ast.Statement {
    this.statement = first.kind === "word" ? first.value.toUpperCase() : ""
    if (this.statement === "DESC") this.statement = "DESCRIBE"
    const body = this.statementBody()
    const last = this.previous()
    const span = this.spanOf(first, last)
    return { ...body, text: this.source.slice(span.offset, span.offset + span.length), span }
  }

  /** statement := attach | detach | use | backup | show | restore | vacuum | replicate | create | drop | describe */
  private statementBody(): Body<Ast.Statement> {
    const t = this.tok()
    for (const keyword of STATEMENT_KEYWORDS) {
      if (this.acceptKeyword(keyword)) {
        switch (keyword) {
          case "ATTACH":
            return this.attach()
          case "DETACH":
            return this.detach()
          case "USE":
            return this.use()
          case "BACKUP":
            return this.backup()
          case "SHOW":
            return this.show()
          case "RESTORE":
            return this.restore()
          case "VACUUM":
            return this.vacuum()
          case "REPLICATE":
            return this.replicate()
          case "CREATE":
            return this.create()
          case "DROP":
            return this.drop()
          default:
            return this.describe()
        }
      }
    }
    const near = t.kind === "word" ? closest(t.value, STATEMENT_KEYWORDS) : undefined
    const failure = this.fail(near !== undefined ? STATEMENT_SYNTAX[near === "DESC" ? "DESCRIBE" : near] : undefined)
    if (t.kind !== "word") throw failure
    throw new Failure(
      t,
      `unknown statement '${t.value}'${near !== undefined ? `; did you mean ${near}?` : ""}`,
      failure.expected,
      failure.found,
      near !== undefined
        ? STATEMENT_SYNTAX[near === "DESC" ? "DESCRIBE" : near]
        : `statements start with ${listOf(Object.keys(STATEMENT_SYNTAX))}`,
    )
  }

  /** attach := ATTACH CLUSTER string AS name */
  private attach(): Body<Ast.Attach> {
    this.expectKeyword("CLUSTER")
    const file = this.string("a cluster file ('prod.toml')")
    this.expectKeyword("AS")
    return { kind: "Attach", file, alias: this.name("cluster") }
  }

  /** detach := DETACH CLUSTER name */
  private detach(): Body<Ast.Detach> {
    this.expectKeyword("CLUSTER")
    return { kind: "Detach", alias: this.name("cluster") }
  }

  /** use := USE [CLUSTER] name */
  private use(): Body<Ast.Use> {
    this.acceptKeyword("CLUSTER")
    return { kind: "Use", cluster: this.name("cluster") }
  }

  /** backup := BACKUP CLUSTER name TO string [DRY RUN] */
  private backup(): Body<Ast.Backup> {
    this.expectKeyword("CLUSTER")
    const cluster = this.name("cluster")
    this.expectKeyword("TO")
    const repository = this.string("a repository ('./backups', 's3://bucket/prefix')")
    return { kind: "Backup", cluster, repository, dryRun: this.dryRun() }
  }

  /** show := SHOW (BACKUPS IN string | DATABASES [IN name] | TABLES [IN name] | CLONES [OF name] | REPLICATION STATUS [FOR name]) */
  private show(): Body<Ast.ShowBackups | Ast.ShowDatabases | Ast.ShowTables | Ast.ShowClones | Ast.ShowReplicationStatus> {
    if (this.acceptKeyword("BACKUPS")) {
      this.expectKeyword("IN")
      return { kind: "ShowBackups", repository: this.string("a repository ('./backups', 's3://bucket/prefix')") }
    }
    if (this.acceptKeyword("DATABASES")) {
      return this.acceptKeyword("IN") ? { kind: "ShowDatabases", cluster: this.name("cluster") } : { kind: "ShowDatabases" }
    }
    if (this.acceptKeyword("TABLES")) {
      return this.acceptKeyword("IN") ? { kind: "ShowTables", database: this.name("database") } : { kind: "ShowTables" }
    }
    if (this.acceptKeyword("CLONES")) {
      return this.acceptKeyword("OF") ? { kind: "ShowClones", of: this.name("table") } : { kind: "ShowClones" }
    }
    if (this.acceptKeyword("REPLICATION", "REPLICATION STATUS")) {
      this.expectKeyword("STATUS")
      return this.acceptKeyword("FOR") ? { kind: "ShowReplicationStatus", target: this.name("cluster") } : { kind: "ShowReplicationStatus" }
    }
    throw this.fail(STATEMENT_SYNTAX.SHOW)
  }

  /** restore := RESTORE (CLUSTER | DATABASE name | TABLE name [AS name]) FROM string [AT point] TO name [DRY RUN] */
  private restore(): Body<Ast.Restore> {
    let scope: Ast.RestoreScope
    if (this.acceptKeyword("CLUSTER")) scope = { kind: "cluster" }
    else if (this.acceptKeyword("DATABASE")) scope = { kind: "database", database: this.name("backupDatabase") }
    else if (this.acceptKeyword("TABLE")) {
      const table = this.name("backupTable")
      scope = this.acceptKeyword("AS") ? { kind: "table", table, as: this.name("backupTable") } : { kind: "table", table }
    } else throw this.fail(STATEMENT_SYNTAX.RESTORE)
    this.expectKeyword("FROM")
    const repository = this.string("a repository ('./backups', 's3://bucket/prefix')")
    const point = this.acceptAt() ? this.backupPoint() : undefined
    this.expectKeyword("TO")
    const target = this.name("cluster")
    return { kind: "Restore", scope, repository, ...(point ? { point } : {}), target, dryRun: this.dryRun() }
  }

  /** vacuum := VACUUM BACKUPS IN string [WITH '(' option (',' option)* ')'] [DRY RUN]   option := name '=' number */
  private vacuum(): Body<Ast.VacuumBackups> {
    this.expectKeyword("BACKUPS")
    this.expectKeyword("IN")
    const repository = this.string("a repository ('./backups', 's3://bucket/prefix')")
    const options: Partial<Record<VacuumOption, number>> = {}
    if (this.acceptKeyword("WITH")) {
      this.optionList(VACUUM_OPTIONS, (option) => {
        options[option] = this.number("a whole number").value
      })
    }
    return { kind: "VacuumBackups", repository, options, dryRun: this.dryRun() }
  }

  /**
   * options := '(' option (',' option)* ')'   option := name '=' value   (WITH already consumed)
   * Each name is one of `names` (a misspelt one gets a "did you mean"), given once; `value` parses its value.
   */
  private optionList<O extends string>(names: ReadonlyArray<O>, value: (option: O, name: Token) => void): void {
    const known = `the options are ${listOf([...names])}`
    const seen = new Set<string>()
    this.expectPunct("(")
    do {
      const t = this.tok()
      if (t.kind !== "word" && t.kind !== "quoted") {
        this.note("an option name")
        throw this.fail(known)
      }
      const upper = t.value.toUpperCase()
      if (!(names as ReadonlyArray<string>).includes(upper)) {
        const near = closest(upper, names)
        throw this.failAt(t, `unknown option '${t.value}'${near !== undefined ? `; did you mean ${near}?` : ""}`, known)
      }
      if (seen.has(upper)) throw this.failAt(t, `option ${upper} is given twice`, "give each option once")
      seen.add(upper)
      this.i++
      this.expectPunct("=")
      value(upper as O, t)
    } while (this.acceptPunct(","))
    this.expectPunct(")")
  }

  /**
   * replicate := REPLICATE (CLUSTER | DATABASE name | TABLE name) FROM name TO name [VIA string]
   *              [WITH '(' option (',' option)* ')'] [DRY RUN]
   * option := MAX_DELETE '=' number | DELETE '=' string | BANDWIDTH_LIMIT '=' (string | number) | PARALLELISM '=' number
   */
  private replicate(): Body<Ast.Replicate> {
    let scope: Ast.ReplicateScope
    if (this.acceptKeyword("CLUSTER")) scope = { kind: "cluster" }
    else if (this.acceptKeyword("DATABASE")) scope = { kind: "database", database: this.name("replicatedDatabase") }
    else if (this.acceptKeyword("TABLE")) scope = { kind: "table", table: this.name("replicatedTable") }
    else throw this.fail(STATEMENT_SYNTAX.REPLICATE)
    this.expectKeyword("FROM")
    const source = this.name("cluster")
    this.expectKeyword("TO")
    const target = this.name("cluster")
    if (target.parts[0] === source.parts[0]) {
      throw this.failAt(
        target.span,
        `FROM and TO name the same cluster '${source.parts[0]}': a cluster cannot be replicated onto itself`,
        `replicate to another attached cluster (the standby): REPLICATE ... FROM ${source.parts[0]} TO <standby>`,
      )
    }
    const via = this.acceptKeyword("VIA") ? this.string("a repository ('./backups', 's3://bucket/prefix')") : undefined
    const options: {
      maxDelete?: number
      deleteMode?: "mirror" | "keep"
      bandwidthLimit?: number
      parallelism?: number
    } = {}
    if (this.acceptKeyword("WITH")) {
      this.optionList(REPLICATE_OPTIONS, (option) => {
        switch (option) {
          case "MAX_DELETE":
            options.maxDelete = this.number("a whole number").value
            return
          case "PARALLELISM": {
            const n = this.number("a whole number")
            if (n.value < 1)
              throw this.failAt(n.token, "PARALLELISM must be at least 1", "write PARALLELISM = 8 (files copied at once; 8 is the default)")
            options.parallelism = n.value
            return
          }
          case "DELETE": {
            const mode = this.string("'MIRROR' or 'KEEP'")
            const upper = mode.value.toUpperCase()
            if (upper !== "MIRROR" && upper !== "KEEP") {
              const near = closest(upper, ["MIRROR", "KEEP"])
              throw this.failAt(
                mode.span,
                `'${mode.value}' is not a DELETE mode${near !== undefined ? `; did you mean '${near}'?` : ""}`,
                "write DELETE = 'MIRROR' (delete on the target what the source deleted; the default) or DELETE = 'KEEP' (never delete)",
              )
            }
            options.deleteMode = upper === "MIRROR" ? "mirror" : "keep"
            return
          }
          case "BANDWIDTH_LIMIT": {
            const t = this.tok()
            if (t.kind !== "string" && t.kind !== "number") {
              this.note("a rate ('100MiB/s')")
              throw this.fail("write the bytes per second in single quotes, e.g. BANDWIDTH_LIMIT = '100MiB/s' or '500k'")
            }
            const rate = parseByteRate(t.value)
            if (rate === undefined) {
              throw this.failAt(
                t,
                `'${t.value}' is not a rate`,
                "write bytes per second (at least 1), e.g. BANDWIDTH_LIMIT = '100MiB/s', '500k' or '1048576'",
              )
            }
            this.i++
            options.bandwidthLimit = rate
            return
          }
        }
      })
    }
    return { kind: "Replicate", scope, source, target, ...(via !== undefined ? { via } : {}), options, dryRun: this.dryRun() }
  }

  /**
   * create := CREATE [OR REPLACE] (TABLE | DATABASE) [IF NOT EXISTS] name [SHALLOW | DEEP] CLONE name clause* [DRY RUN]
   * clause := AT BACKUP string | AT TIMESTAMP string | VERSION AS OF number | FROM string   (each at most once)
   */
  private create(): Body<Ast.CreateClone> {
    const or = this.acceptKeyword("OR", "OR REPLACE")
    if (or !== undefined) this.expectKeyword("REPLACE")
    const object = this.acceptKeyword("TABLE") ? "table" : this.acceptKeyword("DATABASE") ? "database" : undefined
    if (object === undefined) throw this.fail(STATEMENT_SYNTAX.CREATE)
    const ifToken = this.acceptKeyword("IF", "IF NOT EXISTS")
    if (ifToken !== undefined) {
      this.expectKeyword("NOT")
      this.expectKeyword("EXISTS")
      if (or !== undefined) {
        throw this.failAt(
          this.spanOf(ifToken, this.previous()),
          "OR REPLACE and IF NOT EXISTS contradict each other (replace an existing target, or leave it alone?)",
          "keep one: CREATE OR REPLACE ... replaces the target; CREATE ... IF NOT EXISTS does nothing when it exists",
        )
      }
    }
    const target = this.name(object === "table" ? "table" : "database")
    const modeToken = this.acceptKeyword("SHALLOW") ?? this.acceptKeyword("DEEP")
    const mode = modeToken === undefined ? "DEEP" : (modeToken.value.toUpperCase() as "SHALLOW" | "DEEP")
    this.expectKeyword("CLONE")
    // The source's role depends on FROM (live or backup), which comes after it: parse it loosely, check below.
    const source = this.name(object === "table" ? "table" : "database")
    let point: { token: Token; value: Ast.BackupPoint } | undefined
    let version: { token: Token; value: number } | undefined
    let from: { token: Token; repository: Ast.Str } | undefined
    for (;;) {
      const t = this.tok()
      if (this.acceptAt()) {
        if (point !== undefined || version !== undefined)
          throw this.failAt(t, "the source version is given twice", "give one of AT BACKUP, AT TIMESTAMP or VERSION AS OF")
        point = { token: t, value: this.backupPoint() }
      } else if (this.acceptKeyword("VERSION", "VERSION AS OF")) {
        if (point !== undefined || version !== undefined)
          throw this.failAt(t, "the source version is given twice", "give one of AT BACKUP, AT TIMESTAMP or VERSION AS OF")
        this.expectKeyword("AS")
        this.expectKeyword("OF")
        const n = this.number("a version number")
        if (n.value < 1) throw this.failAt(n.token, "versions start at 1", "write VERSION AS OF 1 or higher")
        version = { token: t, value: n.value }
      } else if (this.acceptKeyword("FROM")) {
        if (from !== undefined) throw this.failAt(t, "FROM is given twice", "name one repository")
        from = { token: t, repository: this.string("a repository ('./backups', 's3://bucket/prefix')") }
      } else break
    }
    const dryRun = this.dryRun()
    if (from === undefined && point !== undefined) {
      throw this.failAt(
        point.token,
        `AT ${point.value.kind === "backup" ? "BACKUP" : "TIMESTAMP"} picks a backup, but no repository is named`,
        "add FROM '<repository>' to clone the table out of a backup",
      )
    }
    if (from !== undefined && version !== undefined) {
      throw this.failAt(
        version.token,
        "VERSION AS OF picks a snapshot of a live table; a table in a backup is picked with AT BACKUP or AT TIMESTAMP",
        "remove VERSION AS OF, or remove FROM to clone the live table",
      )
    }
    if (from !== undefined) {
      const role = object === "table" ? "backupTable" : "backupDatabase"
      const { min, max, what, form } = NAME_ROLES[role]
      if (source.parts.length < min || source.parts.length > max) {
        const written = this.source.slice(source.span.offset, source.span.offset + source.span.length)
        throw this.failAt(source.span, `'${written}' is not ${what} name: write ${form}`, `write ${form}`)
      }
    }
    return {
      kind: "CreateClone",
      object,
      orReplace: or !== undefined,
      ifNotExists: ifToken !== undefined,
      target,
      mode,
      source,
      from:
        from === undefined
          ? { kind: "live", ...(version ? { version: version.value } : {}) }
          : { kind: "backup", repository: from.repository, ...(point ? { point: point.value } : {}) },
      dryRun,
    }
  }

  /** drop := DROP TABLE [IF EXISTS] name [PURGE] [DRY RUN] */
  private drop(): Body<Ast.DropTable> {
    this.expectKeyword("TABLE")
    let ifExists = false
    if (this.acceptKeyword("IF", "IF EXISTS")) {
      this.expectKeyword("EXISTS")
      ifExists = true
    }
    const table = this.name("table")
    const purge = this.acceptKeyword("PURGE") !== undefined
    return { kind: "DropTable", ifExists, table, purge, dryRun: this.dryRun() }
  }

  /** describe := (DESCRIBE | DESC) [TABLE] name */
  private describe(): Body<Ast.DescribeTable> {
    this.acceptKeyword("TABLE")
    return { kind: "DescribeTable", table: this.name("table") }
  }
}

/** The source line of `line` and a caret line under `offset..offset+length` (tabs kept so the caret lines up). */
export const excerpt = (source: string, at: { offset: number; length: number; line: number; column: number }): string => {
  const lineStart = at.offset - (at.column - 1)
  let lineEnd = source.indexOf("\n", lineStart)
  if (lineEnd < 0) lineEnd = source.length
  const text = source.slice(lineStart, lineEnd).replace(/\r$/, "")
  const pad = text.slice(0, at.column - 1).replace(/[^\t]/g, " ")
  const width = Math.max(1, Math.min(at.length, text.length - (at.column - 1)))
  const gutter = String(at.line)
  return `${gutter} | ${text}\n${" ".repeat(gutter.length)} | ${pad}${"^".repeat(width)}`
}

const toError = (source: string, name: string, at: Pick<Token, "offset" | "length" | "line" | "column">, f: Omit<Failure, "token">) =>
  new SqlSyntaxError({
    source: name,
    statement: f.statement,
    line: at.line,
    column: at.column,
    detail: f.detail,
    expected: [...f.expected],
    found: f.found,
    excerpt: excerpt(source, at),
    fix: f.fix ?? 'check the statement against its syntax in the README (section "SQL statements")',
  })

const lexFailure = (error: LexError) => ({ detail: error.detail, expected: [], found: "", fix: error.fix, statement: "" })

/**
 * Parses a whole script. `name` is how errors name it (a file path; empty
 * for `-e` text). Nothing in a script with a syntax error should run: check
 * `errors` first.
 */
export const parseScript = (source: string, name = ""): ParseResult => {
  const lexed = tokenize(source)
  if ("error" in lexed) return { statements: [], errors: [toError(source, name, lexed.error, lexFailure(lexed.error))] }
  const { statements, failures } = new Parser(source, lexed.tokens).parseScript()
  return { statements, errors: failures.map((f) => toError(source, name, f.token, f)) }
}
