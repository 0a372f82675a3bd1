/**
 * The `vipsec` command line. Today: `vipsec demo`, which runs a simulated cluster (one primary,
 * two backups, three targets and IPsec peers sending requests), shows a live view, kills the
 * primary, prints the takeover timeline and a summary, and can write the timeline as an HTML page.
 *
 * @example Running the demo from code
 * ```ts
 * import { runDemo } from '@vipsec/cli'
 *
 * const summary = await runDemo({ peers: 10, speed: 0, report: 'takeover.html' })
 * console.log(summary.detectionMs, summary.firstAnswerMs, summary.lost)
 * ```
 *
 * @packageDocumentation
 */
export { runDemo, type DemoOptions, type DemoSummary } from './demo.js'
export { main } from './main.js'
export { renderReport, type ReportInput } from './report.js'
