/**
 * The `vipsec` command line: `vipsec demo` runs a simulated cluster (one primary, two backups,
 * three targets and IPsec peers sending requests), shows a live view, kills the primary, prints
 * the takeover timeline and a summary, and can write the timeline as an HTML page;
 * `vipsec check --config FILE` checks a node's cluster, node and secrets files as a start would;
 * `vipsec node --config FILE` runs one node of a real cluster (pino JSON logs, Prometheus
 * `/metrics`, `/healthz`, `/readyz`);
 * `vipsec status` prints owners, epochs, SAs and connections from a Redis or etcd coupling store;
 * `vipsec reload --config FILE` makes a running node apply changed peers, secrets, cluster keys
 * and targets without a failover (or refuse, with the reason); `vipsec switchover --dvipa A
 * [--to NODE]` hands a DVIPA over, planned, as `SIGTERM` on its owner does; a node's admin
 * endpoint serves a live status page; `Type=notify` for systemd; connections may come from an
 * existing swanctl.conf;
 * `vipsec keygen --out FILE` writes a new cluster key file.
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
export { main, version } from './main.js'
export { HOOK_EVENTS, runHooks, type HookOptions } from './hooks.js'
export { checkConfig, runCheck } from './check-command.js'
export {
  clusterFileSchema,
  nodeFileSchema,
  secretsFileSchema,
  type ClusterFile,
  type NodeFile,
  type SecretsFile
} from './config-files.js'
export {
  endpointsOf,
  formatIssues,
  loadConfig,
  loadConfigOrThrow,
  toNodeConfig,
  type FileIssue,
  type LoadedConfig,
  type LoadOptions,
  type LoadResult,
  type NodeEndpoints
} from './load-config.js'
export { writeKeyFile, type KeygenOptions } from './keygen-command.js'
export { addClusterNetworkMetrics } from './link-metrics.js'
export {
  addPartMetrics,
  fromThisHost,
  isReady,
  nodeRegistry,
  type NodeRegistryOptions,
  serveAdmin,
  type AdminHandlers,
  type AdminServer
} from './metrics.js'
export {
  applyReload,
  type AppliedReload,
  canonical,
  planReload,
  reloadNode,
  type Reloadable,
  type ReloadChange,
  type ReloadPlan,
  type ReloadReason,
  type ReloadRefusal,
  type ReloadResult
} from './reload.js'
export {
  adminUrl,
  runReload,
  runSwitchover,
  switchover,
  type OwnerAtEpoch,
  type SwitchoverOptions,
  type SwitchoverResult
} from './operator-commands.js'
export {
  STATUS_PAGE,
  StatusTracker,
  type ChildView,
  type DvipaView,
  type EventView,
  type HealthView,
  type InOut,
  type TargetView,
  type NodeView,
  type PeerView,
  type TakeoverView
} from './status-page.js'
export {
  notifyLifecycle,
  statusLine,
  SystemdNotifier,
  systemdNotifier,
  type NotifyVia
} from './sd-notify.js'
export {
  IGNORED_KEYS,
  parseSwanctlConf,
  swanctlConnections,
  swanctlSecrets,
  SwanctlConfError,
  type ParsedSwanctl,
  type SwanctlConnections,
  type SwanctlPsk,
  type SwanctlSection,
  type SwanctlSecrets
} from './swanctl-conf.js'
export { networkFor, startNode, type RunningNode, type StartOptions } from './node-command.js'
export {
  ConfigSyntaxError,
  type AddressRange,
  DEFAULT_IKE_PROPOSALS,
  count,
  espProposals,
  identity,
  ikeProposals,
  inPrefix,
  prefixRange,
  proposalName,
  selectorName,
  seconds,
  trafficSelectors
} from './strongswan.js'
export {
  formatStatus,
  isEmpty,
  prefixOf,
  readStatus,
  statusTarget,
  type ChildReport,
  type DvipaReport,
  type PeerReport,
  type StatusSource,
  type StatusTarget
} from './status-command.js'
export { renderReport, type ReportInput } from './report.js'
