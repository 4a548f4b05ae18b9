/**
 * Argv: the command line as a user types it, made unambiguous before
 * effect/cli reads it. Two things a user writes naturally that a flag parser
 * cannot know on its own:
 *
 * - a flag value that begins with `-`: `bendsave sql -e "-- nightly
 *   BACKUP CLUSTER ..."` (a script that opens with a SQL comment). A parser
 *   takes `-- nightly ...` for a flag. Text after `-e`/`--execute` that
 *   begins with `-` and contains white space cannot be a flag (flag names
 *   have none), so it is passed as the flag's value (`--execute=<text>`).
 * - `--read-data 10` (verify): the flag's value is optional (`--read-data`
 *   alone means 100), so a parser takes `10` for the repository argument; a
 *   whole number right after it is its value (`--read-data=10`).
 * - `--json` before the command (`bendsave --json list ./backups`): it is a
 *   flag of every command, so it moves behind the command.
 *
 * Everything after a bare `--` is left as it is.
 */

/** Flags whose value is statement text (may start with a `--` comment). */
const STATEMENT_FLAGS = new Set(["-e", "--execute"])

/** Whether `text`, given after a flag that needs a value, must be that value rather than another flag. */
const isValueNotFlag = (text: string): boolean => text.startsWith("-") && text !== "--" && /\s/.test(text)

export const normalizeArgs = (args: ReadonlyArray<string>, commands: ReadonlySet<string>): Array<string> => {
  const end = args.indexOf("--")
  const head = end === -1 ? [...args] : args.slice(0, end)
  const tail = end === -1 ? [] : args.slice(end)
  const out: Array<string> = []
  for (let i = 0; i < head.length; i++) {
    const arg = head[i]
    const next = head[i + 1]
    if (STATEMENT_FLAGS.has(arg) && next !== undefined && isValueNotFlag(next)) {
      out.push(`--execute=${next}`)
      i++
    } else if (arg === "--read-data" && next !== undefined && /^\d+$/.test(next)) {
      out.push(`--read-data=${next}`)
      i++
    } else {
      out.push(arg)
    }
  }
  const command = out.findIndex((a) => commands.has(a))
  const early = command === -1 ? -1 : out.slice(0, command).indexOf("--json")
  if (early !== -1) {
    out.splice(early, 1)
    out.push("--json")
  }
  return [...out, ...tail]
}
