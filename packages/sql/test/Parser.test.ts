import { describe, expect, it } from "@effect/vitest"
import type { Ast } from "../src/index.ts"
import { parseScript, type SqlSyntaxError, tokenize } from "../src/index.ts"

/** The statements of a script that must parse. */
const parse = (source: string): ReadonlyArray<Ast.Statement> => {
  const r = parseScript(source)
  if (r.errors.length > 0) throw new Error(r.errors.map((e) => `${e.message}\n${e.excerpt}`).join("\n"))
  return r.statements
}

/** The one statement of a script, without its text and span (for toEqual). */
const one = (source: string) => {
  const statements = parse(source)
  expect(statements).toHaveLength(1)
  const { text: _text, span: _span, ...rest } = statements[0]
  return JSON.parse(JSON.stringify(rest, (k, v) => (k === "span" ? undefined : v)))
}

/** The only syntax error of a script. */
const errorOf = (source: string, name = ""): SqlSyntaxError => {
  const r = parseScript(source, name)
  expect(r.errors, `errors of ${JSON.stringify(source)}`).toHaveLength(1)
  return r.errors[0]
}

const n = (...parts: Array<string>) => ({ parts })
const s = (value: string) => ({ value })

describe("lexer", () => {
  it("tokens carry line and column; comments and space are skipped", () => {
    const r = tokenize("-- a comment\n  SHOW /* two\nlines */ Tables;")
    if ("error" in r) throw new Error(r.error.detail)
    expect(r.tokens.map((t) => [t.kind, t.value, t.line, t.column])).toEqual([
      ["word", "SHOW", 2, 3],
      ["word", "Tables", 3, 10],
      ["punct", ";", 3, 16],
      ["eof", "", 3, 17],
    ])
  })

  it("strings unescape '' and quoted identifiers unescape their doubled quote", () => {
    const r = tokenize(`'it''s' "a""b" \`c\`\`d\``)
    if ("error" in r) throw new Error(r.error.detail)
    expect(r.tokens.slice(0, 3).map((t) => [t.kind, t.value, t.length])).toEqual([
      ["string", "it's", 7],
      ["quoted", 'a"b', 6],
      ["quoted", "c`d", 6],
    ])
  })
})

describe("statements", () => {
  it("ATTACH CLUSTER: keywords in any case, unquoted names fold to lower case, quoted names keep theirs", () => {
    expect(one("ATTACH CLUSTER 'prod.toml' AS Prod")).toEqual({ kind: "Attach", file: s("prod.toml"), alias: n("prod") })
    expect(one(`attach cluster '../x/it''s.toml' as "Staging"`)).toEqual({ kind: "Attach", file: s("../x/it's.toml"), alias: n("Staging") })
  })

  it("DETACH CLUSTER and USE [CLUSTER]", () => {
    expect(one("DETACH CLUSTER prod")).toEqual({ kind: "Detach", alias: n("prod") })
    expect(one("use prod")).toEqual({ kind: "Use", cluster: n("prod") })
    expect(one("USE CLUSTER `prod`")).toEqual({ kind: "Use", cluster: n("prod") })
  })

  it("BACKUP CLUSTER ... TO ... [DRY RUN]", () => {
    expect(one("BACKUP CLUSTER prod TO 's3://b/p?region=us-east-1'")).toEqual({
      kind: "Backup",
      cluster: n("prod"),
      repository: s("s3://b/p?region=us-east-1"),
      dryRun: false,
    })
    expect(one("backup cluster prod to './r' dry run")).toMatchObject({ kind: "Backup", dryRun: true })
  })

  it("SHOW BACKUPS / DATABASES / TABLES / CLONES", () => {
    expect(one("SHOW BACKUPS IN './r'")).toEqual({ kind: "ShowBackups", repository: s("./r") })
    expect(one("SHOW DATABASES")).toEqual({ kind: "ShowDatabases" })
    expect(one("SHOW DATABASES IN prod")).toEqual({ kind: "ShowDatabases", cluster: n("prod") })
    expect(one("SHOW TABLES")).toEqual({ kind: "ShowTables" })
    expect(one("SHOW TABLES IN sales")).toEqual({ kind: "ShowTables", database: n("sales") })
    expect(one("SHOW TABLES IN prod.sales")).toEqual({ kind: "ShowTables", database: n("prod", "sales") })
    expect(one("SHOW CLONES")).toEqual({ kind: "ShowClones" })
    expect(one("SHOW CLONES OF prod.sales.orders")).toEqual({ kind: "ShowClones", of: n("prod", "sales", "orders") })
  })

  it("RESTORE CLUSTER / DATABASE / TABLE [AS], AT BACKUP / AT TIMESTAMP, DRY RUN", () => {
    expect(one("RESTORE CLUSTER FROM './r' TO prod")).toEqual({
      kind: "Restore",
      scope: { kind: "cluster" },
      repository: s("./r"),
      target: n("prod"),
      dryRun: false,
    })
    expect(one("RESTORE DATABASE sales FROM './r' AT BACKUP '20250114_201500' TO prod DRY RUN")).toEqual({
      kind: "Restore",
      scope: { kind: "database", database: n("sales") },
      repository: s("./r"),
      point: { kind: "backup", id: s("20250114_201500") },
      target: n("prod"),
      dryRun: true,
    })
    expect(one("RESTORE TABLE sales.orders AS sales.orders_old FROM './r' AT TIMESTAMP '2025-01-14T20:15:00Z' TO prod")).toEqual({
      kind: "Restore",
      scope: { kind: "table", table: n("sales", "orders"), as: n("sales", "orders_old") },
      repository: s("./r"),
      point: { kind: "timestamp", time: s("2025-01-14T20:15:00Z"), at: "2025-01-14T20:15:00.000Z" },
      target: n("prod"),
      dryRun: false,
    })
  })

  it("VACUUM BACKUPS IN ... [WITH (...)] [DRY RUN]", () => {
    expect(
      one("VACUUM BACKUPS IN './r' WITH (RETENTION_DAYS = 30, min_retention_days = 7, MAX_BACKUPS = 5, MIN_BACKUPS = 2) DRY RUN"),
    ).toEqual({
      kind: "VacuumBackups",
      repository: s("./r"),
      options: { RETENTION_DAYS: 30, MIN_RETENTION_DAYS: 7, MAX_BACKUPS: 5, MIN_BACKUPS: 2 },
      dryRun: true,
    })
    expect(one("VACUUM BACKUPS IN './r' WITH (keep_daily = 7, KEEP_WEEKLY = 4, KEEP_MONTHLY = 12)")).toMatchObject({
      options: { KEEP_DAILY: 7, KEEP_WEEKLY: 4, KEEP_MONTHLY: 12 },
    })
    expect(one("VACUUM BACKUPS IN './r'")).toEqual({ kind: "VacuumBackups", repository: s("./r"), options: {}, dryRun: false })
  })

  it("REPLICATE CLUSTER / DATABASE / TABLE FROM ... TO ... [VIA] [WITH (...)] [DRY RUN]", () => {
    expect(one("REPLICATE CLUSTER FROM prod TO standby")).toEqual({
      kind: "Replicate",
      scope: { kind: "cluster" },
      source: n("prod"),
      target: n("standby"),
      options: {},
      dryRun: false,
    })
    expect(
      one(
        "replicate database Sales from prod to standby via './r' with (max_delete = 0, DELETE = 'keep', BANDWIDTH_LIMIT = '100MiB/s', PARALLELISM = 4) dry run",
      ),
    ).toEqual({
      kind: "Replicate",
      scope: { kind: "database", database: n("sales") },
      source: n("prod"),
      target: n("standby"),
      via: s("./r"),
      options: { maxDelete: 0, deleteMode: "keep", bandwidthLimit: 100 * 1024 * 1024, parallelism: 4 },
      dryRun: true,
    })
    expect(one("REPLICATE TABLE sales.orders FROM prod TO standby WITH (DELETE = 'MIRROR', BANDWIDTH_LIMIT = 2048)")).toEqual({
      kind: "Replicate",
      scope: { kind: "table", table: n("sales", "orders") },
      source: n("prod"),
      target: n("standby"),
      options: { deleteMode: "mirror", bandwidthLimit: 2048 },
      dryRun: false,
    })
  })

  it("SHOW REPLICATION STATUS [FOR cluster]", () => {
    expect(one("SHOW REPLICATION STATUS")).toEqual({ kind: "ShowReplicationStatus" })
    expect(one("show replication status for Standby")).toEqual({ kind: "ShowReplicationStatus", target: n("standby") })
  })

  it("CREATE TABLE ... CLONE: DEEP by default, SHALLOW, OR REPLACE, IF NOT EXISTS, VERSION AS OF", () => {
    expect(one("CREATE TABLE sales.o2 CLONE sales.orders")).toEqual({
      kind: "CreateClone",
      object: "table",
      orReplace: false,
      ifNotExists: false,
      target: n("sales", "o2"),
      mode: "DEEP",
      source: n("sales", "orders"),
      from: { kind: "live" },
      dryRun: false,
    })
    expect(one("CREATE OR REPLACE TABLE dev.sales.o2 SHALLOW CLONE prod.sales.orders VERSION AS OF 3 DRY RUN")).toMatchObject({
      orReplace: true,
      ifNotExists: false,
      target: n("dev", "sales", "o2"),
      mode: "SHALLOW",
      source: n("prod", "sales", "orders"),
      from: { kind: "live", version: 3 },
      dryRun: true,
    })
    expect(one("create table if not exists sales.o2 deep clone sales.orders")).toMatchObject({
      ifNotExists: true,
      orReplace: false,
      mode: "DEEP",
    })
  })

  it("CREATE TABLE ... CLONE from a backup: FROM with AT BACKUP / AT TIMESTAMP in either order, or the newest backup", () => {
    expect(one("CREATE TABLE sales.o2 CLONE sales.orders AT BACKUP '20250114_201500' FROM './r'")).toMatchObject({
      source: n("sales", "orders"),
      from: { kind: "backup", repository: s("./r"), point: { kind: "backup", id: s("20250114_201500") } },
    })
    expect(one("CREATE TABLE sales.o2 CLONE sales.orders FROM './r' AT TIMESTAMP '2025-01-14'")).toMatchObject({
      from: { kind: "backup", repository: s("./r"), point: { kind: "timestamp", at: "2025-01-14T00:00:00.000Z" } },
    })
    expect(one("CREATE TABLE sales.o2 CLONE sales.orders FROM './r'")).toMatchObject({ from: { kind: "backup", repository: s("./r") } })
  })

  it("CREATE DATABASE ... CLONE", () => {
    expect(one("CREATE OR REPLACE DATABASE dev.sales SHALLOW CLONE prod.sales")).toMatchObject({
      object: "database",
      orReplace: true,
      target: n("dev", "sales"),
      source: n("prod", "sales"),
      mode: "SHALLOW",
      from: { kind: "live" },
    })
    expect(one("CREATE DATABASE IF NOT EXISTS sales_copy CLONE sales FROM './r' AT BACKUP 'x'")).toMatchObject({
      object: "database",
      ifNotExists: true,
      target: n("sales_copy"),
      source: n("sales"),
      from: { kind: "backup", point: { kind: "backup", id: s("x") } },
    })
  })

  it("DROP TABLE [IF EXISTS] ... [PURGE] [DRY RUN]", () => {
    expect(one("DROP TABLE sales.orders")).toEqual({
      kind: "DropTable",
      ifExists: false,
      table: n("sales", "orders"),
      purge: false,
      dryRun: false,
    })
    expect(one("DROP TABLE IF EXISTS prod.sales.orders PURGE DRY RUN")).toEqual({
      kind: "DropTable",
      ifExists: true,
      table: n("prod", "sales", "orders"),
      purge: true,
      dryRun: true,
    })
  })

  it("DESCRIBE [TABLE] and DESC", () => {
    expect(one("DESCRIBE TABLE sales.orders")).toEqual({ kind: "DescribeTable", table: n("sales", "orders") })
    expect(one("describe sales.orders")).toEqual({ kind: "DescribeTable", table: n("sales", "orders") })
    expect(one("DESC prod.sales.orders")).toEqual({ kind: "DescribeTable", table: n("prod", "sales", "orders") })
  })

  it("a script: statements separated by ';', empty statements, comments, the last ';' optional; text and span of each", () => {
    const source = "-- nightly\nATTACH CLUSTER 'p.toml' AS p;;\n/* list */ SHOW BACKUPS IN './r' ; \n  SHOW TABLES -- done"
    const statements = parse(source)
    expect(statements.map((x) => x.kind)).toEqual(["Attach", "ShowBackups", "ShowTables"])
    expect(statements.map((x) => x.text)).toEqual(["ATTACH CLUSTER 'p.toml' AS p", "SHOW BACKUPS IN './r'", "SHOW TABLES"])
    expect(statements.map((x) => [x.span.line, x.span.column])).toEqual([
      [2, 1],
      [3, 12],
      [4, 3],
    ])
    expect(parse("")).toEqual([])
    expect(parse(" ; -- nothing\n;")).toEqual([])
  })
})

describe("syntax errors: line, column, caret, expected and found", () => {
  it("a wrong keyword: expected TO, found 'INTO', with the source line and a caret under the token", () => {
    const e = errorOf("ATTACH CLUSTER 'p.toml' AS prod;\nBACKUP CLUSTER prod INTO './r';", "nightly.sql")
    expect(e.line).toBe(2)
    expect(e.column).toBe(21)
    expect(e.expected).toEqual(["TO"])
    expect(e.found).toBe("'INTO'")
    expect(e.detail).toBe("expected TO, found 'INTO'")
    expect(e.message).toBe("syntax error at line 2, column 21 of nightly.sql: expected TO, found 'INTO'")
    expect(e.excerpt).toBe("2 | BACKUP CLUSTER prod INTO './r';\n  |                     ^^^^")
    expect(e.fix).toBe("BACKUP CLUSTER <cluster> TO '<repository>' [DRY RUN]")
  })

  it("an unknown statement gets a did-you-mean and that statement's syntax", () => {
    const e = errorOf("BAKUP CLUSTER prod TO './r'")
    expect([e.line, e.column]).toEqual([1, 1])
    expect(e.detail).toBe("unknown statement 'BAKUP'; did you mean BACKUP?")
    expect(e.excerpt).toBe("1 | BAKUP CLUSTER prod TO './r'\n  | ^^^^^")
    expect(e.fix).toContain("BACKUP CLUSTER <cluster> TO")
    expect(e.expected).toContain("RESTORE")
    expect(errorOf("SELEKT 1").detail).toBe("unknown statement 'SELEKT'")
  })

  it("misspelt keywords inside a statement get a did-you-mean (DRYRUN, TABEL, CLONES)", () => {
    const dry = errorOf("RESTORE CLUSTER FROM './r' TO prod DRYRUN")
    expect(dry.detail).toBe("expected DRY RUN or ';', found 'DRYRUN'; did you mean DRY RUN?")
    expect(dry.column).toBe(36)
    const tabel = errorOf("RESTORE TABEL db.t FROM './r' TO prod")
    expect(tabel.detail).toBe("expected CLUSTER, DATABASE or TABLE, found 'TABEL'; did you mean TABLE?")
    expect(errorOf("SHOW CLONE").detail).toBe(
      "expected BACKUPS, DATABASES, TABLES, CLONES or REPLICATION STATUS, found 'CLONE'; did you mean CLONES?",
    )
  })

  it("the end of input: caret just after the last character", () => {
    const e = errorOf("BACKUP CLUSTER prod TO")
    expect(e.detail).toBe("expected a repository ('./backups', 's3://bucket/prefix'), found end of input")
    expect([e.line, e.column]).toEqual([1, 23])
    expect(e.excerpt).toBe("1 | BACKUP CLUSTER prod TO\n  |                       ^")
  })

  it("optional clauses are listed as expected: AT BACKUP, AT TIMESTAMP, TO", () => {
    const e = errorOf("RESTORE CLUSTER FROM './r' INTO prod")
    expect(e.expected).toEqual(["AT BACKUP", "AT TIMESTAMP", "TO"])
    const c = errorOf("CREATE TABLE a.b CLONE c.d WITH x")
    expect(c.expected).toEqual(["AT BACKUP", "AT TIMESTAMP", "VERSION AS OF", "FROM", "DRY RUN", "';'"])
    expect(c.column).toBe(28)
  })

  it("a missing ';' between statements", () => {
    const e = errorOf("SHOW DATABASES\nSHOW TABLES")
    expect(e.detail).toBe("expected IN or ';', found 'SHOW'")
    expect([e.line, e.column]).toEqual([2, 1])
    expect(e.fix).toBe("end the statement before 'SHOW' with ';'")
  })

  it("a string where a cluster name belongs suggests ATTACH", () => {
    const e = errorOf("BACKUP CLUSTER 'prod.toml' TO './r'")
    expect(e.detail).toBe("expected a cluster name, found string 'prod.toml'")
    expect(e.column).toBe(16)
    expect(e.fix).toBe("attach the cluster file first and use its name: ATTACH CLUSTER 'prod.toml' AS <name>;")
  })

  it("a name where a string belongs says to quote it", () => {
    const e = errorOf("SHOW BACKUPS IN backups")
    expect(e.detail).toBe("expected a repository ('./backups', 's3://bucket/prefix'), found 'backups'")
    expect(e.fix).toContain("single quotes, e.g. 'backups'")
  })

  it("names with the wrong number of parts: caret under the whole name", () => {
    const t = errorOf("DROP TABLE orders")
    expect(t.detail).toBe("'orders' is not a table name: write <db>.<table> or <cluster>.<db>.<table>")
    expect(t.fix).toBe("name the database too, e.g. <db>.orders")
    expect(t.column).toBe(12)
    const four = errorOf("DESCRIBE a.b.c.d")
    expect(four.excerpt).toBe("1 | DESCRIBE a.b.c.d\n  |          ^^^^^^^")
    expect(errorOf("SHOW TABLES IN a.b.c").detail).toBe("'a.b.c' is not a database name: write <db> or <cluster>.<db>")
    expect(errorOf("RESTORE TABLE prod.db.t FROM './r' TO prod").detail).toContain("is not a table in a backup name")
    expect(errorOf("CREATE TABLE a.b CLONE prod.c.d FROM './r'").detail).toBe(
      "'prod.c.d' is not a table in a backup name: write <db>.<table> (the backup holds one cluster)",
    )
    const dot = errorOf("SHOW CLONES OF a.")
    expect(dot.detail).toBe("expected a name, found end of input")
  })

  it("OR REPLACE with IF NOT EXISTS is a contradiction, pointed at IF NOT EXISTS", () => {
    const e = errorOf("CREATE OR REPLACE TABLE IF NOT EXISTS a.b CLONE c.d")
    expect(e.detail).toContain("OR REPLACE and IF NOT EXISTS contradict each other")
    expect(e.excerpt).toBe("1 | CREATE OR REPLACE TABLE IF NOT EXISTS a.b CLONE c.d\n  |                         ^^^^^^^^^^^^^")
    expect(e.expected).toEqual([])
  })

  it("source versions: AT without FROM, VERSION AS OF with FROM, two versions, version 0, a bad time", () => {
    const at = errorOf("CREATE TABLE a.b CLONE c.d AT BACKUP 'x'")
    expect(at.detail).toBe("AT BACKUP picks a backup, but no repository is named")
    expect(at.column).toBe(28)
    expect(at.fix).toBe("add FROM '<repository>' to clone the table out of a backup")
    const version = errorOf("CREATE TABLE a.b CLONE c.d FROM './r' VERSION AS OF 2")
    expect(version.detail).toContain("VERSION AS OF picks a snapshot of a live table")
    expect(version.column).toBe(39)
    expect(errorOf("CREATE TABLE a.b CLONE c.d VERSION AS OF 2 AT BACKUP 'x' FROM './r'").detail).toBe("the source version is given twice")
    expect(errorOf("CREATE TABLE a.b CLONE c.d FROM './r' FROM './s'").detail).toBe("FROM is given twice")
    const zero = errorOf("CREATE TABLE a.b CLONE c.d VERSION AS OF 0")
    expect([zero.detail, zero.column]).toEqual(["versions start at 1", 42])
    const time = errorOf("RESTORE CLUSTER FROM './r' AT TIMESTAMP 'yesterday' TO prod")
    expect(time.detail).toBe("'yesterday' is not a time")
    expect(time.excerpt).toBe(
      "1 | RESTORE CLUSTER FROM './r' AT TIMESTAMP 'yesterday' TO prod\n  |                                         ^^^^^^^^^^^",
    )
    expect(errorOf("CREATE TABLE a.b CLONE c.d VERSION AS OF 99999999999999999999").detail).toBe("99999999999999999999 is too large")
  })

  it("VACUUM options: unknown (did-you-mean), twice, not a number, unclosed", () => {
    const unknown = errorOf("VACUUM BACKUPS IN './r' WITH (RETENTION_DAY = 3)")
    expect(unknown.detail).toBe("unknown option 'RETENTION_DAY'; did you mean RETENTION_DAYS?")
    expect(unknown.column).toBe(31)
    expect(unknown.fix).toBe(
      "the options are RETENTION_DAYS, MIN_RETENTION_DAYS, MAX_BACKUPS, MIN_BACKUPS, KEEP_DAILY, KEEP_WEEKLY or KEEP_MONTHLY",
    )
    expect(errorOf("VACUUM BACKUPS IN './r' WITH (KEEP_DAYLY = 7)").detail).toBe("unknown option 'KEEP_DAYLY'; did you mean KEEP_DAILY?")
    expect(errorOf("VACUUM BACKUPS IN './r' WITH (KEEP = 3)").detail).toBe("unknown option 'KEEP'")
    expect(errorOf("VACUUM BACKUPS IN './r' WITH (MAX_BACKUPS = 3, max_backups = 4)").detail).toBe("option MAX_BACKUPS is given twice")
    const value = errorOf("VACUUM BACKUPS IN './r' WITH (MAX_BACKUPS = 'five')")
    expect(value.detail).toBe("expected a whole number, found string 'five'")
    expect(errorOf("VACUUM BACKUPS IN './r' WITH (MAX_BACKUPS = 5").detail).toBe("expected ',' or ')', found end of input")
    expect(errorOf("VACUUM BACKUPS IN './r' WITH MAX_BACKUPS = 5").detail).toBe("expected '(', found 'MAX_BACKUPS'")
  })

  it("REPLICATE: the scope, FROM and TO, names with the wrong parts, one cluster onto itself", () => {
    const scope = errorOf("REPLICATE CLUSTERS FROM prod TO standby")
    expect(scope.detail).toBe("expected CLUSTER, DATABASE or TABLE, found 'CLUSTERS'; did you mean CLUSTER?")
    expect(scope.column).toBe(11)
    expect(scope.fix).toContain("REPLICATE {CLUSTER | DATABASE <db> | TABLE <db>.<table>} FROM <cluster> TO <cluster>")
    const into = errorOf("REPLICATE CLUSTER FROM prod INTO standby")
    expect([into.detail, into.column]).toEqual(["expected TO, found 'INTO'", 29])
    expect(into.excerpt).toBe("1 | REPLICATE CLUSTER FROM prod INTO standby\n  |                             ^^^^")
    const file = errorOf("REPLICATE CLUSTER FROM 'prod.toml' TO standby")
    expect(file.detail).toBe("expected a cluster name, found string 'prod.toml'")
    expect(file.fix).toBe("attach the cluster file first and use its name: ATTACH CLUSTER 'prod.toml' AS <name>;")
    const table = errorOf("REPLICATE TABLE orders FROM prod TO standby")
    expect([table.detail, table.column]).toEqual([
      "'orders' is not a table to replicate name: write <db>.<table> (the clusters are named after FROM and TO)",
      17,
    ])
    const db = errorOf("REPLICATE DATABASE prod.sales FROM prod TO standby")
    expect(db.detail).toBe("'prod.sales' is not a database to replicate name: write <db> (the clusters are named after FROM and TO)")
    expect(db.excerpt).toBe("1 | REPLICATE DATABASE prod.sales FROM prod TO standby\n  |                    ^^^^^^^^^^")
    const self = errorOf("REPLICATE CLUSTER FROM prod TO PROD")
    expect([self.detail, self.column]).toEqual(["FROM and TO name the same cluster 'prod': a cluster cannot be replicated onto itself", 32])
    expect(self.fix).toContain("REPLICATE ... FROM prod TO <standby>")
    const end = errorOf("REPLICATE CLUSTER FROM prod TO standby DRYRUN")
    expect(end.detail).toBe("expected VIA, WITH, DRY RUN or ';', found 'DRYRUN'; did you mean DRY RUN?")
    const via = errorOf("REPLICATE CLUSTER FROM prod TO standby VIA backups")
    expect(via.detail).toBe("expected a repository ('./backups', 's3://bucket/prefix'), found 'backups'")
    expect(via.fix).toContain("in single quotes, e.g. 'backups'")
    expect(errorOf("SHOW REPLICATION STATE").detail).toBe("expected STATUS, found 'STATE'; did you mean STATUS?")
    expect(errorOf("SHOW REPLICATION STATUS FOR 'standby.toml'").fix).toContain("ATTACH CLUSTER 'standby.toml' AS <name>")
    expect(errorOf("SHOW REPLICATON STATUS").detail).toBe(
      "expected BACKUPS, DATABASES, TABLES, CLONES or REPLICATION STATUS, found 'REPLICATON'; did you mean REPLICATION STATUS?",
    )
  })

  it("REPLICATE options: unknown (did-you-mean), twice, values checked with the caret under the value", () => {
    const unknown = errorOf("REPLICATE CLUSTER FROM a TO b WITH (MAX_DELETES = 3)")
    expect([unknown.detail, unknown.column]).toEqual(["unknown option 'MAX_DELETES'; did you mean MAX_DELETE?", 37])
    expect(unknown.fix).toBe("the options are MAX_DELETE, DELETE, BANDWIDTH_LIMIT or PARALLELISM")
    expect(errorOf("REPLICATE CLUSTER FROM a TO b WITH (PARALELLISM = 3)").detail).toBe(
      "unknown option 'PARALELLISM'; did you mean PARALLELISM?",
    )
    expect(errorOf("REPLICATE CLUSTER FROM a TO b WITH (DELETE = 'KEEP', delete = 'MIRROR')").detail).toBe("option DELETE is given twice")
    const mode = errorOf("REPLICATE CLUSTER FROM a TO b WITH (DELETE = 'MIROR')")
    expect([mode.detail, mode.column]).toEqual(["'MIROR' is not a DELETE mode; did you mean 'MIRROR'?", 46])
    expect(mode.fix).toContain("DELETE = 'KEEP' (never delete)")
    const bare = errorOf("REPLICATE CLUSTER FROM a TO b WITH (DELETE = KEEP)")
    expect(bare.detail).toBe("expected 'MIRROR' or 'KEEP', found 'KEEP'")
    expect(bare.fix).toContain("in single quotes, e.g. 'KEEP'")
    const rate = errorOf("REPLICATE CLUSTER FROM a TO b WITH (BANDWIDTH_LIMIT = 'fast')")
    expect([rate.detail, rate.column]).toEqual(["'fast' is not a rate", 55])
    expect(rate.fix).toContain("'100MiB/s'")
    expect(errorOf("REPLICATE CLUSTER FROM a TO b WITH (BANDWIDTH_LIMIT = 0)").detail).toBe("'0' is not a rate")
    expect(errorOf("REPLICATE CLUSTER FROM a TO b WITH (BANDWIDTH_LIMIT = fast)").detail).toBe("expected a rate ('100MiB/s'), found 'fast'")
    const par = errorOf("REPLICATE CLUSTER FROM a TO b WITH (PARALLELISM = 0)")
    expect([par.detail, par.column]).toEqual(["PARALLELISM must be at least 1", 51])
    expect(errorOf("REPLICATE CLUSTER FROM a TO b WITH (MAX_DELETE = 'ten')").detail).toBe("expected a whole number, found string 'ten'")
    expect(errorOf("REPLICATE CLUSTER FROM a TO b WITH (MAX_DELETE = -1)").detail).toBe("unexpected character '-'")
    expect(errorOf("REPLICATE CLUSTER FROM a TO b WITH (MAX_DELETE = 1").detail).toBe("expected ',' or ')', found end of input")
  })

  it("lexical errors: unexpected character, unterminated string / identifier / comment, digit-led names", () => {
    const minus = errorOf("VACUUM BACKUPS IN './r' WITH (MAX_BACKUPS = -1)")
    expect([minus.detail, minus.column]).toEqual(["unexpected character '-'", 45])
    expect(minus.fix).toContain("cannot be negative")
    const str = errorOf("SHOW BACKUPS IN './r;\nSHOW TABLES")
    expect([str.line, str.column]).toEqual([1, 17])
    expect(str.detail).toBe("unterminated string: the ' that opens it is never closed")
    expect(errorOf('SHOW TABLES IN "sales').detail).toBe('unterminated quoted identifier: the " that opens it is never closed')
    expect(errorOf("SHOW TABLES /* forever").detail).toBe("unterminated comment: '/*' has no closing '*/'")
    expect(errorOf("SHOW TABLES IN 2024_sales").fix).toContain('"2024_sales"')
    expect(errorOf('SHOW TABLES IN ""').detail).toBe("empty quoted identifier")
    const semicolonish = errorOf("SHOW TABLES IN sales!")
    expect([semicolonish.detail, semicolonish.column]).toEqual(["unexpected character '!'", 21])
  })

  it("every syntax error of a script is reported (the parser resumes after the next ';')", () => {
    const r = parseScript("SHOW TABLES;\nBAKUP x;\nSHOW BACKUPS IN x;\nDROP TABLE a.b PURGE;\nDESCRIBE t")
    expect(r.errors.map((e) => [e.line, e.column])).toEqual([
      [2, 1],
      [3, 17],
      [5, 10],
    ])
    expect(r.statements.map((x) => x.kind)).toEqual(["ShowTables", "DropTable"])
    expect(r.errors.map((e) => e.statement)).toEqual(["BAKUP x", "SHOW BACKUPS IN x", "DESCRIBE t"])
  })

  it("the caret lines up under tabs and on later lines of a multi-line statement", () => {
    const e = errorOf("\tCREATE TABLE a.b\n\t\tCLONE c.d\n\t\tVERSON AS OF 2")
    expect([e.line, e.column]).toEqual([3, 3])
    expect(e.detail).toContain("did you mean VERSION AS OF?")
    expect(e.excerpt).toBe("3 | \t\tVERSON AS OF 2\n  | \t\t^^^^^^")
  })
})
