import { InvalidConfigError } from '@vipsec/interface'
import type * as z from 'zod'

/** One problem found in a configuration: where, and what was expected there. */
export interface ConfigIssue {
  /** The dotted path of the field, e.g. `connections.peer.proposals` (`''` for the whole file). */
  path: string
  /** What is wrong and the expected form, e.g. `unknown field 'detecter'; did you mean 'detector'?`. */
  message: string
}

/**
 * The candidate nearest to a word by edit distance, if it is near enough to be a likely typo
 * (at most a third of the word's length, and at least 1, in edits).
 *
 * @param word - what was written
 * @param candidates - what would have been accepted
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase())
    if (d < bestDistance) {
      best = c
      bestDistance = d
    }
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)
      )
    }
    previous = current
  }
  return previous[b.length]!
}

/** Joins a path the way messages show it: `a.b[0].c`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else out += out === '' ? String(p) : `.${String(p)}`
  }
  return out
}

const quote = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : String(v))

function describeInput(input: unknown): string {
  if (input === undefined) return 'nothing'
  if (input === null) return 'null'
  if (Array.isArray(input)) return 'a list'
  if (typeof input === 'object') return 'an object'
  if (typeof input === 'string') return `the string ${JSON.stringify(input)}`
  return `${typeof input} ${String(input)}`
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  function: 'a function'
}

function shapeKeys(inst: unknown): string[] {
  const def = (inst as { _zod?: { def?: { shape?: Record<string, unknown> } } })?._zod?.def
  return Object.keys(def?.shape ?? {})
}

/**
 * The error map every vipsec schema is parsed with: messages that say the expected form, and
 * unknown fields with the nearest known one.
 */
export const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = shapeKeys(issue.inst)
      return issue.keys
        .map((k) => {
          const near = didYouMean(k, known)
          return `unknown field '${k}'${near === undefined ? `; expected one of ${known.map(quote).join(', ')}` : `; did you mean '${near}'?`}`
        })
        .join('; ')
    }
    case 'invalid_type':
      if (issue.input === undefined)
        return `required: expected ${EXPECTED[issue.expected] ?? issue.expected}`
      return `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeInput(issue.input)}`
    case 'invalid_value': {
      const near =
        typeof issue.input === 'string'
          ? didYouMean(
              issue.input,
              issue.values.filter((v): v is string => typeof v === 'string')
            )
          : undefined
      return `expected ${issue.values.length === 1 ? quote(issue.values[0]) : `one of ${issue.values.map(quote).join(', ')}`}, got ${describeInput(issue.input)}${near === undefined ? '' : `; did you mean '${near}'?`}`
    }
    case 'too_small':
      if (issue.origin === 'array') return `expected at least ${String(issue.minimum)} entries`
      if (issue.origin === 'string') return `expected at least ${String(issue.minimum)} characters`
      return `expected ${issue.inclusive === false ? 'more than' : 'at least'} ${String(issue.minimum)}`
    case 'too_big':
      if (issue.origin === 'array') return `expected at most ${String(issue.maximum)} entries`
      return `expected ${issue.inclusive === false ? 'less than' : 'at most'} ${String(issue.maximum)}`
    default:
      return undefined
  }
}

function flatten(
  issues: readonly z.core.$ZodIssue[],
  base: PropertyKey[],
  out: ConfigIssue[]
): void {
  for (const issue of issues) {
    const path = [...base, ...issue.path]
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // the branch that got furthest: the fewest issues at the union's own level
      const score = (branch: readonly z.core.$ZodIssue[]): number =>
        branch.reduce((n, i) => n + (i.path.length === 0 ? 10 : 1), 0)
      const best = [...issue.errors].sort((a, b) => score(a) - score(b))[0]!
      flatten(best, path, out)
      continue
    }
    if (issue.code === 'unrecognized_keys' && issue.keys.length === 1) {
      out.push({ path: formatPath([...path, issue.keys[0]!]), message: issue.message })
      continue
    }
    out.push({ path: formatPath(path), message: issue.message })
  }
}

/** What {@link parseConfig} found: the parsed value, or every problem. */
export type ParseResult<T> =
  | {
      /** The value is valid. */
      ok: true
      /** The parsed value (durations, proposals and the like already read). */
      value: T
    }
  | {
      /** The value is not valid. */
      ok: false
      /** Every problem, in the order found. */
      issues: ConfigIssue[]
    }

/**
 * Parses a value with a schema and returns every problem found, each with its path.
 *
 * @param schema - a zod schema
 * @param value - the value to check
 * @param prefix - a path to put before every issue's own (e.g. the file it came from)
 */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  value: unknown,
  prefix: PropertyKey[] = []
): ParseResult<z.output<S>> {
  const result = schema.safeParse(value, { error: configErrorMap })
  if (result.success) return { ok: true, value: result.data }
  const issues: ConfigIssue[] = []
  flatten(result.error.issues, prefix, issues)
  return { ok: false, issues }
}

/**
 * Throws an {@link InvalidConfigError} for the first issue (naming its field), with the others
 * counted in the message. Does nothing when there are none.
 *
 * @param issues - the problems found
 */
export function throwIssues(issues: readonly ConfigIssue[]): void {
  const [first, ...rest] = issues
  if (first === undefined) return
  const more =
    rest.length === 0
      ? ''
      : ` (and ${rest.length} more: ${rest.map((i) => i.path || '(file)').join(', ')})`
  throw new InvalidConfigError(first.path || 'config', `${first.message}${more}`)
}
