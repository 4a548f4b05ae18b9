/**
 * Lexer: turns the text of a bendsave SQL script into tokens.
 *
 * - words: `[A-Za-z_][A-Za-z0-9_$]*`; keywords are words, matched
 *   case-insensitively by the parser (no word is reserved);
 * - quoted identifiers: `"name"` or `` `name` ``, the quote doubled inside
 *   (`"a""b"` is `a"b`); they keep their case;
 * - strings: `'text'`, `''` inside is one `'`;
 * - integers: `[0-9]+`;
 * - punctuation: `.` `,` `(` `)` `=` `;`;
 * - `-- comment` to the end of the line and `/* comment *\/` are skipped.
 *
 * Every token carries its offset, length, line and column (1-based) so the
 * parser can point a caret at it. A character that starts no token, an
 * unterminated string, quoted identifier or comment is a syntax error.
 */

export type TokenKind = "word" | "quoted" | "string" | "number" | "punct" | "eof"

export interface Token {
  readonly kind: TokenKind
  /** The value: the word as written, the identifier or string without quotes, the digits, the punctuation character. */
  readonly value: string
  /** Offset of the first character in the source. */
  readonly offset: number
  /** Length of the token in the source (quotes included); 0 at the end of input. */
  readonly length: number
  /** 1-based line and column of the first character. */
  readonly line: number
  readonly column: number
}

/** A lexical error: where it is and what is wrong (turned into a SqlSyntaxError by the parser). */
export interface LexError {
  readonly offset: number
  readonly length: number
  readonly line: number
  readonly column: number
  readonly detail: string
  readonly fix: string
}

const isWordStart = (c: string) => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c === "_"
const isWordPart = (c: string) => isWordStart(c) || isDigit(c) || c === "$"
const isDigit = (c: string) => c >= "0" && c <= "9"
const isSpace = (c: string) =>
  c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v" || c === "\u00a0" || c === "\ufeff"
const PUNCTUATION = ".,()=;"

/** The tokens of `source`, ending with one `eof` token, or the first lexical error. */
export const tokenize = (source: string): { readonly tokens: ReadonlyArray<Token> } | { readonly error: LexError } => {
  const tokens: Array<Token> = []
  let pos = 0
  let line = 1
  let lineStart = 0

  /** Advances over `source[pos]`, keeping line and column. */
  const step = () => {
    if (source[pos] === "\n") {
      line++
      lineStart = pos + 1
    }
    pos++
  }

  while (pos < source.length) {
    const c = source[pos]
    if (isSpace(c)) {
      step()
      continue
    }
    const start = pos
    const startLine = line
    const startColumn = pos - lineStart + 1
    const at = (detail: string, fix: string, length = 1): { error: LexError } => ({
      error: { offset: start, length, line: startLine, column: startColumn, detail, fix },
    })
    const push = (kind: TokenKind, value: string) =>
      tokens.push({ kind, value, offset: start, length: pos - start, line: startLine, column: startColumn })

    if (c === "-" && source[pos + 1] === "-") {
      while (pos < source.length && source[pos] !== "\n") step()
      continue
    }
    if (c === "/" && source[pos + 1] === "*") {
      step()
      step()
      while (pos < source.length && !(source[pos] === "*" && source[pos + 1] === "/")) step()
      if (pos >= source.length) return at("unterminated comment: '/*' has no closing '*/'", "close the comment with */", 2)
      step()
      step()
      continue
    }
    if (isWordStart(c)) {
      while (pos < source.length && isWordPart(source[pos])) step()
      push("word", source.slice(start, pos))
      continue
    }
    if (isDigit(c)) {
      while (pos < source.length && isDigit(source[pos])) step()
      if (pos < source.length && (isWordStart(source[pos]) || source[pos] === ".")) {
        return at(
          `'${source.slice(start, pos + 1)}' is not a number or a name`,
          'numbers are whole numbers (e.g. 30); a name that starts with a digit must be quoted: "2024_sales"',
          pos - start + 1,
        )
      }
      push("number", source.slice(start, pos))
      continue
    }
    if (c === "'" || c === '"' || c === "`") {
      const what = c === "'" ? "string" : "quoted identifier"
      step()
      let value = ""
      for (;;) {
        if (pos >= source.length) {
          return at(`unterminated ${what}: the ${c} that opens it is never closed`, `close it with ${c} (write ${c}${c} for a ${c} inside)`)
        }
        if (source[pos] === c) {
          if (source[pos + 1] === c) {
            value += c
            step()
            step()
            continue
          }
          step()
          break
        }
        value += source[pos]
        step()
      }
      if (c !== "'" && value === "") return at("empty quoted identifier", "write a name between the quotes", pos - start)
      push(c === "'" ? "string" : "quoted", value)
      continue
    }
    if (PUNCTUATION.includes(c)) {
      step()
      push("punct", c)
      continue
    }
    return at(
      `unexpected character '${c}'`,
      c === "-"
        ? "numbers cannot be negative; comments start with --"
        : "names are letters, digits and _ (quote other names: \"my-table\"); strings and paths go in single quotes: 'prod.toml'",
    )
  }
  tokens.push({ kind: "eof", value: "", offset: pos, length: 0, line, column: pos - lineStart + 1 })
  return { tokens }
}
