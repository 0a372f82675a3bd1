import { createNode, type VipsecNode } from '@vipsec/container'
import { InvalidConfigError, type NetworkAdapter } from '@vipsec/interface'
import { JsonLogger, logNodeEvents, type LogLevel } from './log.js'
import { NodeMetrics, serveMetrics } from './metrics.js'
import { readNodeFile, toNodeConfig, type NodeFile } from './node-file.js'

/** A running `vipsec node`. */
export interface RunningNode {
  /** The node. */
  node: VipsecNode
  /** The port `/metrics` is served on, if any. */
  metricsPort: number | undefined
  /** Stops the node and the metrics server. */
  stop(): Promise<void>
}

/**
 * Builds the network adapter a node file asks for. The Linux adapter is loaded when asked for,
 * so that the rest of the command line works where it is not installed.
 *
 * @param file - the node file
 */
export async function networkFor(file: NodeFile): Promise<NetworkAdapter> {
  const name = '@vipsec/network-linux'
  let mod: Record<string, unknown>
  try {
    mod = (await import(name)) as Record<string, unknown>
  } catch (err) {
    throw new InvalidConfigError('network.type', `'linux' needs ${name}: ${(err as Error).message}`)
  }
  const Adapter = mod.LinuxNetworkAdapter as new (
    components: object,
    init: object
  ) => NetworkAdapter
  return new Adapter({}, file.network.init ?? {})
}

/**
 * Starts a node from a node file: builds it through the container, logs its events as JSON
 * lines and serves `/metrics` if asked.
 *
 * @param path - the node file
 * @param options - the log level and writer, and a network adapter to use instead of the file's
 * @throws InvalidConfigError naming the field when the file or an adapter's option is bad
 */
export async function startNode(
  path: string,
  options: { level?: LogLevel; write?: (line: string) => void; network?: NetworkAdapter } = {}
): Promise<RunningNode> {
  const file = await readNodeFile(path)
  const network = options.network ?? (await networkFor(file))
  const node = createNode(await toNodeConfig(file, path, network))
  const logger = new JsonLogger(file.nodeId, options.level ?? 'info', options.write)
  logNodeEvents(node, logger)
  if (file.insecure === true) {
    logger.log('warn', {
      type: 'node:insecure',
      message:
        'cluster link and heartbeats run without keys: anyone on the cluster network can forge them'
    })
  }
  const metrics = new NodeMetrics(node)
  await node.start()
  let server: Awaited<ReturnType<typeof serveMetrics>> | undefined
  if (file.metrics !== undefined)
    server = await serveMetrics(metrics, file.metrics.address ?? '127.0.0.1', file.metrics.port)
  logger.log('info', { type: 'node:started', role: file.role, metricsPort: server?.port })
  return {
    node,
    metricsPort: server?.port,
    async stop() {
      await node.stop()
      await new Promise<void>((resolve) =>
        server === undefined ? resolve() : server.server.close(() => resolve())
      )
      logger.log('info', { type: 'node:stopped' })
    }
  }
}
