/**
 * Directories: `mkdir -p` that always ends. Node's `fs.mkdir(dir, {
 * recursive: true })` loops forever where a parent exists but the child can
 * never be created and the error is ENOENT (a path under /proc or /sys): it
 * creates the levels one at a time here instead, so such a path fails with
 * ENOENT like any other missing parent.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"

const codeOf = (cause: unknown): string | undefined => (cause as { code?: unknown } | null)?.code as string | undefined

/**
 * Creates `dir` and its missing parents; returns the first (outermost)
 * directory it created, or undefined when `dir` already existed (as
 * `fs.mkdir` with `recursive` does). A file in the way fails with ENOTDIR.
 */
export const makeDirectoryTree = async (dir: string): Promise<string | undefined> => {
  const missing: Array<string> = []
  for (let current = path.resolve(dir); ; ) {
    const stats = await fs.stat(current).catch((cause: unknown) => {
      // ENOTDIR: a parent is a file; going up finds it.
      if (codeOf(cause) === "ENOENT" || codeOf(cause) === "ENOTDIR") return undefined
      throw cause
    })
    if (stats !== undefined) {
      if (!stats.isDirectory())
        throw Object.assign(new Error(`${current} exists and is not a directory`), { code: "ENOTDIR", path: current })
      break
    }
    missing.push(current)
    const parent = path.dirname(current)
    if (parent === current) break
    current = parent
  }
  missing.reverse()
  for (const level of missing) {
    await fs.mkdir(level).catch(async (cause: unknown) => {
      // Created meanwhile by someone else: fine if it is a directory.
      if (codeOf(cause) !== "EEXIST") throw cause
      if (!(await fs.stat(level)).isDirectory())
        throw Object.assign(new Error(`${level} exists and is not a directory`), { code: "ENOTDIR", path: level })
    })
  }
  return missing[0]
}
