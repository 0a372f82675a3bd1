import { dirname, resolve } from 'node:path'
import { aeadBackend, aeadBackendProblem } from '@vipsec/aead'
import { createNode, pinoLogger, type VipsecNode } from '@vipsec/container'
import { InvalidConfigError, type NetworkAdapter } from '@vipsec/interface'
import type { DestinationStream, Level } from 'pino'
import {
  loadConfigOrThrow,
  toNodeConfig,
  type LoadedConfig,
  type LoadOptions
} from './load-config.js'
import { runHooks } from './hooks.js'
import { notifyLifecycle, systemdNotifier } from './sd-notify.js'
import { addPartMetrics, nodeRegistry, serveAdmin, type AdminServer } from './metrics.js'
import { reloadNode, type ReloadResult } from './reload.js'
import { STATUS_PAGE, StatusTracker } from './status-page.js'
import {
  releaseForSwitchover,
  type DefaultDistributionProcessor,
  type ReleasedDvipa
} from '@vipsec/core'
import { TOKENS } from '@vipsec/interface'
import { Counter } from 'prom-client'

/** A running `vipsec node`. */
export interface RunningNode {
  /** The node. */
  node: VipsecNode
  /** The configuration it runs (replaced by a reload that applied). */
  config: LoadedConfig
  /** The port `/metrics`, `/healthz` and `/readyz` are served on, if any. */
  adminPort: number | undefined
  /**
   * Reads the files again and applies what changed without a failover, or refuses all of it
   * with the reason (see `reloadNode`); counted in `vipsec_reloads_total{outcome}`. Reloads run
   * one at a time.
   */
  reload(): Promise<ReloadResult>
  /**
   * Stops the node and the admin server. With `switchover`, first hands every DVIPA it owns to
   * the best live backup (`releaseForSwitchover`: records flushed, DVIPA released, so the backup
   * claims at once) and logs `switchover:released` for each.
   */
  stop(options?: { switchover?: boolean }): Promise<void>
}

/**
 * Builds the Linux network adapter for the node file's interface. It is loaded when asked for,
 * so that the rest of the command line works where it is not installed.
 *
 * @param config - the loaded configuration
 */
export async function networkFor(config: LoadedConfig): Promise<NetworkAdapter> {
  const name = '@vipsec/network-linux'
  let mod: Record<string, unknown>
  try {
    mod = (await import(name)) as Record<string, unknown>
  } catch (err) {
    throw new InvalidConfigError('interface', `needs ${name}: ${(err as Error).message}`)
  }
  const Adapter = mod.LinuxNetworkAdapter as new (
    components: object,
    init: object
  ) => NetworkAdapter
  return new Adapter(
    {},
    { interface: config.node.interface, holdAddresses: config.node.hold_addresses ?? 'process' }
  )
}

/** Options of {@link startNode}. */
export interface StartOptions extends LoadOptions {
  /** The most verbose log level. Default `info`. */
  level?: Level
  /** Where log lines go (default stdout). */
  destination?: DestinationStream
  /** A network adapter to use instead of the Linux one (tests, simulations). */
  network?: NetworkAdapter
  /**
   * Called with the admin endpoint's port once it listens, before the node starts: a
   * distribution processor's start lasts its join window (about one detection time), during
   * which `/healthz` answers and `/readyz` says "not ready".
   */
  onAdmin?: (port: number) => void
  /**
   * Aborts the start: the node stops, its admin endpoint closes and {@link startNode} rejects
   * with the signal's reason. After the start it has no effect (use {@link RunningNode.stop}).
   */
  signal?: AbortSignal
}

/**
 * Starts a node from its node file: checks the node, cluster and secrets files as
 * `vipsec check` does (nothing starts if anything is wrong), builds the node through the
 * container with a pino logger and a prom-client registry, and serves the admin endpoint.
 *
 * @param path - the node file
 * @param options - log level and destination, host checks, a network adapter
 * @throws InvalidConfigError naming the file and field when anything is wrong
 */
export async function startNode(path: string, options: StartOptions = {}): Promise<RunningNode> {
  const config = await loadConfigOrThrow(path, options)
  const network = options.network ?? (await networkFor(config))
  const logger = pinoLogger({
    node: config.node.node,
    level: options.level ?? 'info',
    ...(options.destination === undefined ? {} : { destination: options.destination })
  })
  // nothing scrapes a node without an admin endpoint (adding one takes a restart)
  const registry = nodeRegistry({ processMetrics: config.node.admin !== undefined })
  const node = createNode({ ...toNodeConfig(config, network), logger, metrics: { registry } })
  addPartMetrics(registry, node)
  const log = logger.forComponent('node')
  const hooks =
    config.node.hook === undefined
      ? undefined
      : runHooks(node, {
          command: resolve(dirname(resolve(path)), config.node.hook.command),
          log: logger.forComponent('hook'),
          ...(config.node.hook.timeout === undefined ? {} : { timeoutMs: config.node.hook.timeout })
        })
  if (config.insecure)
    log.warn(
      { type: 'node:insecure' },
      'cluster link and heartbeats run without keys: anyone on the cluster network can forge them'
    )
  const tracker = new StatusTracker(node, () => running.config)
  const reloads = new Counter({
    name: 'vipsec_reloads_total',
    help: 'Reloads (SIGHUP, vipsec reload), by outcome: applied, unchanged, refused, invalid',
    labelNames: ['outcome'],
    registers: [registry]
  })
  for (const outcome of ['applied', 'unchanged', 'refused', 'invalid']) reloads.inc({ outcome }, 0)
  let reloading: Promise<unknown> = Promise.resolve()
  let admin: AdminServer | undefined
  const running: RunningNode = {
    node,
    config,
    adminPort: undefined,
    reload() {
      const run = async (): Promise<ReloadResult> => {
        const result = await reloadNode(running, { host: options.host ?? true })
        reloads.inc({ outcome: result.outcome })
        return result
      }
      const done = reloading.then(run, run)
      reloading = done.catch(() => undefined)
      return done
    },
    async stop(stopOptions = {}) {
      if (stopOptions.switchover === true && node.has(TOKENS.DistributionProcessor)) {
        let released: ReleasedDvipa[] = []
        try {
          released = await releaseForSwitchover(
            node.get(TOKENS.DistributionProcessor) as DefaultDistributionProcessor
          )
        } catch (err) {
          log.error(
            { type: 'switchover:failed', error: (err as Error).message },
            'could not release the DVIPAs: the backups take over when they detect the exit'
          )
        }
        for (const r of released)
          log.info(
            {
              type: 'switchover:released',
              dvipa: r.dvipa,
              epoch: r.epoch,
              durationMs: r.durationMs
            },
            `released ${r.dvipa} (epoch ${r.epoch}) for the best live backup`
          )
      }
      await node.stop()
      await hooks?.()
      await closeAdmin(admin)
      log.info({ type: 'node:stopped' }, 'node stopped')
    }
  }
  // The admin endpoint comes up before the node starts, so that /healthz answers and /readyz says
  // "not ready" while a distribution processor waits out its join window; a reload waits for the
  // start. A start that fails closes it again (a start is all or nothing).
  let started: Promise<void> = Promise.resolve()
  let starting = true
  if (config.node.admin !== undefined)
    admin = await serveAdmin(registry, node, config.node.admin.address, config.node.admin.port, {
      reload: () => started.then(() => running.reload()),
      status: () => tracker.view(),
      page: STATUS_PAGE,
      starting: () => starting
    })
  running.adminPort = admin?.port
  if (admin !== undefined) options.onAdmin?.(admin.port)
  const abort = (): void => void node.stop().catch(() => undefined)
  options.signal?.addEventListener('abort', abort, { once: true })
  started = options.signal?.aborted === true ? Promise.resolve() : node.start()
  try {
    await started
    options.signal?.throwIfAborted()
  } catch (err) {
    await node.stop().catch(() => undefined)
    await closeAdmin(admin)
    throw err
  } finally {
    starting = false
    options.signal?.removeEventListener('abort', abort)
  }
  const aeadProblem = aeadBackendProblem()
  log.info(
    {
      type: 'node:started',
      role: config.role,
      adminPort: admin?.port,
      // where ESP and the cluster link's AEAD run (libcrypto, or node:crypto and why)
      aead: aeadBackend(),
      ...(aeadProblem === undefined ? {} : { aeadProblem })
    },
    'node started'
  )
  return running
}

/** Closes an admin server and its open connections (nothing without one). */
function closeAdmin(admin: AdminServer | undefined): Promise<void> {
  return new Promise<void>((done) =>
    admin === undefined
      ? done()
      : (admin.server.close(() => done()), admin.server.closeAllConnections())
  )
}

/** The signals `vipsec node` obeys: the process itself, or a test's emitter. */
export interface SignalSource {
  on(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', listener: () => void): unknown
  once(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', listener: () => void): unknown
  off(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', listener: () => void): unknown
}

/**
 * `vipsec node` after its options: starts the node and runs it until SIGTERM or SIGINT, then hands
 * its DVIPAs over (a planned switchover) and stops; SIGHUP reloads the files. A start lasts the
 * join window (about one detection time): SIGTERM or SIGINT during it stops the node cleanly (the
 * parts it began are stopped, exit status 0), and a SIGHUP during it reloads once the start is
 * over. With systemd (`NOTIFY_SOCKET`), it sends READY, RELOADING, STATUS, STOPPING and WATCHDOG.
 *
 * @param start - starts the node; aborting its signal stops the start
 * @param signals - where the signals come from (default: the process)
 * @returns the exit status
 */
export async function runUntilSignalled(
  start: (signal: AbortSignal) => Promise<RunningNode>,
  signals: SignalSource = process
): Promise<number> {
  const abort = new AbortController()
  let hupDuringStart = false
  const onStop = (): void => abort.abort(new Error('stopped by a signal during the start'))
  const onEarlyHup = (): void => void (hupDuringStart = true)
  signals.once('SIGTERM', onStop)
  signals.once('SIGINT', onStop)
  signals.on('SIGHUP', onEarlyHup)
  let running: RunningNode
  try {
    running = await start(abort.signal)
  } catch (err) {
    if (abort.signal.aborted) return 0
    throw err
  } finally {
    signals.off('SIGTERM', onStop)
    signals.off('SIGINT', onStop)
    signals.off('SIGHUP', onEarlyHup)
  }
  // systemd Type=notify: READY=1 once owning or backing up with a confirmed epoch
  const sd = systemdNotifier()
  const watchdogPid = process.env.WATCHDOG_PID
  const endNotify =
    sd === undefined
      ? undefined
      : notifyLifecycle(running.node, sd, {
          watchdogUsec:
            watchdogPid === undefined || Number(watchdogPid) === process.pid
              ? Number(process.env.WATCHDOG_USEC ?? 0)
              : 0
        })
  const onHup = (): void => {
    sd?.send({ RELOADING: 1 })
    void running.reload().then(
      (r) => sd?.send({ READY: 1, STATUS: `reload ${r.outcome}` }),
      () => sd?.send({ READY: 1 })
    )
  }
  signals.on('SIGHUP', onHup)
  if (hupDuringStart) onHup()
  let stop!: () => void
  await new Promise<void>((resolve) => {
    stop = resolve
    signals.once('SIGTERM', stop)
    signals.once('SIGINT', stop)
  })
  signals.off('SIGTERM', stop)
  signals.off('SIGINT', stop)
  signals.off('SIGHUP', onHup)
  await endNotify?.()
  await running.stop({ switchover: true })
  await sd?.close()
  return 0
}
