/**
 * @bendsave/sql: bendsave's SQL-like statements. `parseScript` turns a
 * script into typed statements (or syntax errors with line, column and a
 * caret); `runStatements` executes them with the core and clone workflows.
 */
export type * as Ast from "./Ast.ts"
export { REPLICATE_OPTIONS, type ReplicateOption, VACUUM_OPTIONS, type VacuumOption } from "./Ast.ts"
export * from "./CloneApi.ts"
export { type LexError, type Token, tokenize } from "./Lexer.ts"
export { excerpt, type ParseResult, parseScript, SqlSyntaxError, STATEMENT_KEYWORDS, STATEMENT_SYNTAX } from "./Parser.ts"
export * from "./ReplicationApi.ts"
export * from "./Runner.ts"
export { closest, editDistance } from "./Suggest.ts"
