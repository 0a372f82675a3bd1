/**
 * The interop matrix's results: every cell adds a row; once the whole run is over (a root-level
 * `after` hook, registered once by the first spec file that imports this module) the table is
 * printed and written, as markdown, between the interop markers of the repository's README.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { sh } from '../helpers/netns.js'

/** One cell's outcome. */
export interface Row {
  /** The group of cells (IKE proposals, ESP, authentication, order, NAT, rekey, takeover). */
  group: string
  /** The cell. */
  cell: string
  /** Who initiated: `vipsec → charon` or `charon → vipsec`. */
  direction: string
  /** `pass`, or `FAIL: ` and the first line of the error. */
  result: string
  /** How long the IKE_SA_INIT + IKE_AUTH handshake took, ms (as the initiator saw it). */
  handshakeMs?: number
  /** What charon says was negotiated, and counts (packets sent/received at a rekey...). */
  detail?: string
}

// one table per run even if the module is instantiated once per spec file that imports it
// (mocha loads spec files one by one; the loader may not share module instances between them)
const shared = globalThis as typeof globalThis & {
  [key: symbol]: { rows: Row[]; registered: boolean } | undefined
}
const KEY = Symbol.for('vipsec.interop.table')
const state = (shared[KEY] ??= { rows: [], registered: false })
const rows = state.rows
const README = fileURLToPath(new URL('../../../../README.md', import.meta.url))
const START = '<!-- interop-matrix:start -->'
const END = '<!-- interop-matrix:end -->'

/** Adds a cell's row. */
export function record(row: Row): void {
  rows.push(row)
}

/** Runs `body` as one cell: records pass or FAIL (and rethrows the failure). */
export async function cell(
  row: Omit<Row, 'result'>,
  body: (set: (more: Partial<Row>) => void) => Promise<void>
): Promise<void> {
  const r: Row = { ...row, result: 'pass' }
  try {
    await body((more) => Object.assign(r, more))
  } catch (err) {
    r.result = `FAIL: ${String((err as Error).message)
      .split('\n')[0]!
      .slice(0, 120)}`
    throw err
  } finally {
    record(r)
  }
}

const escape = (s: string): string => s.replace(/\|/g, '\\|')

/** The rows as a markdown table. */
export function markdown(): string {
  const lines = [
    '| group | cell | direction | result | handshake ms | negotiated / counted |',
    '|---|---|---|---|--:|---|'
  ]
  for (const r of rows) {
    lines.push(
      `| ${escape(r.group)} | ${escape(r.cell)} | ${r.direction} | ${escape(r.result)} | ${r.handshakeMs === undefined ? '' : r.handshakeMs.toFixed(0)} | ${escape(r.detail ?? '')} |`
    )
  }
  const pass = rows.filter((r) => r.result === 'pass').length
  lines.push('', `${pass} of ${rows.length} cells passed.`)
  return lines.join('\n')
}

function writeReadme(table: string): void {
  let text: string
  try {
    text = readFileSync(README, 'utf8')
  } catch {
    return
  }
  const a = text.indexOf(START)
  const b = text.indexOf(END)
  if (a < 0 || b < a) return
  const stamp = `strongSwan ${strongSwanVersion()}, ${new Date().toISOString().slice(0, 10)}:`
  writeFileSync(
    README,
    `${text.slice(0, a + START.length)}\n${stamp}\n\n${table}\n${text.slice(b)}`
  )
}

function strongSwanVersion(): string {
  try {
    return sh('dpkg-query', ['-W', '-f=${Version}', 'strongswan-charon']).trim()
  } catch {
    return '?'
  }
}

/** Registers the root `after` hook that prints the table, and writes it into the README when `VIPSEC_INTEROP_README=1`. */
export function registerTable(): void {
  if (state.registered) return
  state.registered = true
  after(function () {
    if (rows.length === 0) return
    const table = markdown()
    console.log(`\n  interop matrix against strongSwan:\n\n${table}\n`)
    // only when asked (a test run leaves the work tree alone), and never from some cells only
    if (process.env.VIPSEC_INTEROP_README === '1' && !process.argv.some((a) => a.includes('grep')))
      writeReadme(table)
  })
}
