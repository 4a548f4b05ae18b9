/**
 * Suggest: "did you mean" for misspelt keywords, option names and cluster
 * names. Distance is the optimal-string-alignment edit distance (insert,
 * delete, substitute, swap two neighbours), compared case-insensitively.
 */

export const editDistance = (a: string, b: string): number => {
  const rows = a.length + 1
  const cols = b.length + 1
  const d: Array<Array<number>> = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  )
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/**
 * The candidate closest to `word`, when it is close enough to be a likely
 * typo: at most 1 edit for words up to 4 characters, else at most 2 (or a
 * third of the word's length, for long words).
 */
export const closest = (word: string, candidates: Iterable<string>): string | undefined => {
  const w = word.toUpperCase()
  const limit = w.length <= 4 ? 1 : Math.max(2, Math.floor(w.length / 3))
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const candidate of candidates) {
    const distance = editDistance(w, candidate.toUpperCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return bestDistance <= limit ? best : undefined
}
