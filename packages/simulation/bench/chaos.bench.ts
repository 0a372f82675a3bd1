/**
 * The randomized fault-schedule checker (docs/chaos.md).
 *
 * `npm run bench:chaos`: 10,000 seeded schedules over every family; prints a table (schedules
 * and violations per family and invariant), the shrunk trace of the first violation of each
 * family and invariant, and one JSON line with the count and the violations.
 *
 * `npm run test:chaos`: the same over 500 schedules (every family, as `npm test` runs them);
 * exits 1 on a violation.
 * `npm run test:chaos -- --seed N [--family F] [--faults 1,3] [--shrink]`: replays one schedule
 * (the faults a shrunk trace kept) and prints its whole trace; `--shrink` also shrinks each
 * violation it shows.
 *
 * Options: --count N, --first N (the first seed), --family a,b (families), --seed N,
 * --faults ids, --no-shrink.
 */
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import {
  CHAOS_FAMILIES,
  INVARIANTS,
  formatViolation,
  makeSchedule,
  reproduceCommand,
  runSchedule,
  shrink,
  describeFault,
  type InvariantName,
  type RunResult,
  type Schedule
} from '../src/index.js'

const { values } = parseArgs({
  options: {
    count: { type: 'string' },
    first: { type: 'string' },
    family: { type: 'string' },
    seed: { type: 'string' },
    faults: { type: 'string' },
    'no-shrink': { type: 'boolean' },
    shrink: { type: 'boolean' }
  }
})

if (values.seed !== undefined) await replay(Number(values.seed))
else await sweep()

async function replay(seed: number): Promise<void> {
  let schedule = makeSchedule(seed, values.family)
  if (values.faults !== undefined) {
    const keep = values.faults === 'none' ? [] : values.faults.split(',').map(Number)
    schedule = { ...schedule, faults: schedule.faults.filter((f) => keep.includes(f.id)) }
  }
  console.log(`seed ${seed} family ${schedule.family} ${JSON.stringify(schedule.config)}`)
  for (const f of schedule.faults) console.log(`  ${describeFault(f)}`)
  console.log('trace (ms after the faults began):')
  const result = await runSchedule(schedule, {
    onTrace: (t) => console.log(`  ${t.at.toFixed(1).padStart(8)} ${t.source.padEnd(8)} ${t.text}`)
  })
  for (const v of result.violations)
    console.log(`VIOLATION ${v.invariant} at +${v.at.toFixed(1)}ms: ${v.detail}`)
  console.log(result.violations.length === 0 ? 'ok: every invariant held' : '')
  if (values.shrink === true)
    for (const invariant of new Set(result.violations.map((v) => v.invariant))) {
      console.log()
      console.log(formatViolation(await shrink(result, invariant), schedule))
    }
  process.exitCode = result.violations.length === 0 ? 0 : 1
}

async function sweep(): Promise<void> {
  const families =
    values.family !== undefined ? values.family.split(',') : CHAOS_FAMILIES.map((f) => f.name)
  const count = Number(values.count ?? 10_000)
  const first = Number(values.first ?? 0)
  const table = new Map<string, { schedules: number; failed: number; by: Record<string, number> }>()
  for (const f of families) table.set(f, { schedules: 0, failed: 0, by: {} })
  const firstOf = new Map<string, RunResult>()
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const seed = first + i
    const schedule: Schedule = makeSchedule(seed, families[seed % families.length])
    const result = await runSchedule(schedule)
    const row = table.get(schedule.family)!
    row.schedules++
    if (result.violations.length > 0) row.failed++
    for (const v of new Set(result.violations.map((x) => x.invariant))) {
      row.by[v] = (row.by[v] ?? 0) + 1
      const key = `${schedule.family}/${v}`
      if (!firstOf.has(key)) firstOf.set(key, result)
    }
    if ((i + 1) % 10 === 0)
      process.stderr.write(
        `${i + 1}/${count} schedules, ${((performance.now() - started) / 1000).toFixed(0)} s\n`
      )
  }
  const seconds = (performance.now() - started) / 1000
  for (const [key, result] of firstOf) {
    const invariant = key.split('/')[1] as InvariantName
    if (values['no-shrink'] === true) {
      console.log(
        `VIOLATION ${invariant} seed ${result.schedule.seed}: ${reproduceCommand(result.schedule, false)}`
      )
      continue
    }
    const original = result.schedule
    console.log(formatViolation(await shrink(result, invariant), original))
    console.log()
  }
  const header = ['family', 'schedules', 'failed', ...INVARIANTS]
  const rows = [...table].map(([name, r]) => [
    name,
    String(r.schedules),
    String(r.failed),
    ...INVARIANTS.map((v) => String(r.by[v] ?? 0))
  ])
  const total = [...table.values()]
  rows.push([
    'all',
    String(total.reduce((n, r) => n + r.schedules, 0)),
    String(total.reduce((n, r) => n + r.failed, 0)),
    ...INVARIANTS.map((v) => String(total.reduce((n, r) => n + (r.by[v] ?? 0), 0)))
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ')
  console.log(line(header))
  for (const r of rows) console.log(line(r))
  const violations = total.reduce((n, r) => n + r.failed, 0)
  console.log(
    JSON.stringify({
      bench: 'chaos',
      count,
      firstSeed: first,
      violations,
      byFamily: Object.fromEntries(
        [...table].map(([n, r]) => [n, { schedules: r.schedules, violations: r.failed, ...r.by }])
      ),
      failingFamilies: [...table].filter(([, r]) => r.failed > 0).map(([n]) => n),
      seconds: Number(seconds.toFixed(1))
    })
  )
  process.exitCode = violations === 0 ? 0 : 1
}
