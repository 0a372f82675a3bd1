import {
  runSchedule,
  type InvariantName,
  type RunOptions,
  type RunResult,
  type Violation
} from './runner.js'
import { describeFault, type Schedule } from './schedule.js'

/** A violation with the smallest schedule found that still shows it. */
export interface ShrunkViolation {
  /** The violation, as the smallest schedule shows it. */
  violation: Violation
  /** The run of the smallest schedule. */
  result: RunResult
  /** Runs tried while shrinking. */
  runs: number
}

/**
 * Shrinks a failing schedule: drops one fault at a time, keeping each drop after which the same
 * invariant is still broken, until no single fault can go.
 *
 * @param failing - a run that broke `invariant`
 * @param invariant - the invariant to keep broken
 * @param options - the run options the failing run had
 */
export async function shrink(
  failing: RunResult,
  invariant: InvariantName,
  options: RunOptions = {}
): Promise<ShrunkViolation> {
  let best = failing
  let runs = 0
  let progress = true
  while (progress && best.schedule.faults.length > 0) {
    progress = false
    for (const fault of best.schedule.faults) {
      const candidate: Schedule = {
        ...best.schedule,
        faults: best.schedule.faults.filter((f) => f !== fault)
      }
      runs++
      const result = await runSchedule(candidate, options)
      if (result.violations.some((v) => v.invariant === invariant)) {
        best = result
        progress = true
        break
      }
    }
  }
  return { violation: best.violations.find((v) => v.invariant === invariant)!, result: best, runs }
}

/**
 * The command that replays a schedule: its seed and family, and the ids of the faults it kept
 * when it was shrunk.
 *
 * @param schedule - the schedule
 * @param shrunk - whether to name the kept faults
 */
export function reproduceCommand(schedule: Schedule, shrunk = true): string {
  const ids = schedule.faults.map((f) => f.id).join(',')
  return (
    `npm run test:chaos -- --seed ${schedule.seed} --family ${schedule.family}` +
    (shrunk ? ` --faults ${ids === '' ? 'none' : ids}` : '')
  )
}

/**
 * A violation as text: seed, family, how to replay it, the faults of the (shrunk) schedule and
 * the trace up to the violation.
 *
 * @param shrunk - the shrunk violation
 * @param original - the faults the seed's schedule had before shrinking
 */
export function formatViolation(shrunk: ShrunkViolation, original?: Schedule): string {
  const { violation, result } = shrunk
  const s = result.schedule
  const lines = [
    `VIOLATION ${violation.invariant} seed ${s.seed} family ${s.family}`,
    `  ${violation.detail}`,
    `  reproduce: ${reproduceCommand(s)}`,
    `  settings: ${JSON.stringify(s.config)}`,
    `  faults kept by shrinking (${s.faults.length} of ${original?.faults.length ?? s.faults.length}):`,
    ...s.faults.map((f) => `    ${describeFault(f)}`),
    `  trace (ms after the faults began):`,
    ...result.trace
      .filter((t) => t.at <= violation.at + 1)
      .map((t) => `    ${t.at.toFixed(1).padStart(8)} ${t.source.padEnd(6)} ${t.text}`),
    `    ${violation.at.toFixed(1).padStart(8)} CHECK  ${violation.invariant}: ${violation.detail}`
  ]
  return lines.join('\n')
}
