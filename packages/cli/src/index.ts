/**
 * The `vipsec` command line: `vipsec demo` runs a simulated cluster (one primary, two backups,
 * three targets and IPsec peers sending requests), shows a live view, kills the primary, prints
 * the takeover timeline and a summary, and can write the timeline as an HTML page;
 * `vipsec node --config FILE` runs one node of a real cluster (JSON logs, Prometheus `/metrics`);
 * `vipsec status` prints owners, epochs, SAs and connections from a Redis or etcd coupling store.
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
export { writeKeyFile, type KeygenOptions } from './keygen-command.js'
export { main } from './main.js'
export { JsonLogger, logNodeEvents, type LogLevel } from './log.js'
export {
  NodeMetrics,
  renderPrometheus,
  serveMetrics,
  type Family,
  type MetricsServer,
  type Sample
} from './metrics.js'
export { networkFor, startNode, type RunningNode } from './node-command.js'
export {
  checkNodeFile,
  readNodeFile,
  toNodeConfig,
  type AppFileSection,
  type KernelFileSection,
  type CertificateFileEntry,
  type IkeFileSection,
  type InlineClusterKey,
  type MetricsFileSection,
  type NetworkFileSection,
  type NodeFile,
  type PskFileEntry,
  type StoreFileSection
} from './node-file.js'
export { formatStatus, readStatus, type DvipaReport, type StatusSource } from './status-command.js'
export { renderReport, type ReportInput } from './report.js'
