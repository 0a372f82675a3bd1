import { readFile, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { NodeComponents, NodeConfig, NodeRole } from '@vipsec/container'
import type { DvipaConfig } from '@vipsec/core'
import { requestResponse, udpEcho } from '@vipsec/core'
import type { IkePeerConfig, IkeV2ServiceInit, RetransmitOptions } from '@vipsec/ike-v2'
import {
  InvalidConfigError,
  type AppHandler,
  type Endpoint,
  type Identity,
  type NetworkAdapter
} from '@vipsec/interface'
import type { EtcdCouplingStoreInit } from '@vipsec/store-etcd'
import type { RedisCouplingStoreInit } from '@vipsec/store-redis'
import { kernelDelivery } from '@vipsec/target-tun'
import { checkClusterKeys, decodeKeyFile, type ClusterKey } from '@vipsec/cluster-link-udp'

/**
 * The configuration file of `vipsec node`: JSON, everything a node needs from local
 * configuration (credentials included, which never go to the coupling store). File paths are
 * relative to the file.
 */
export interface NodeFile {
  /** `primary`, `backup` or `target`. */
  role: NodeRole
  /** The node's id. */
  nodeId: string
  /** The coupling store (primary and backup). Default: `{ "type": "memory" }` (one process only). */
  store?: StoreFileSection
  /** The network adapter. */
  network: NetworkFileSection
  /** IKE: credentials, the peers answered as responder, timing (primary and backup). */
  ike?: IkeFileSection
  /** The failure detector. */
  detector?: {
    /**
     * `heartbeat` (UDP, the default) or `lease` (leases in the coupling store, renewed every
     * `intervalMs` and lasting `ttlMs`; pair it with `processor.selfFenceMs` below `ttlMs`).
     */
    type?: 'heartbeat' | 'lease'
    /** For `lease`: the lease lifetime in ms (default 3 intervals). */
    ttlMs?: number
    /** For `heartbeat` (required there): where heartbeats are sent from and received. */
    local?: Endpoint
    /** Interval in ms (default 100). */
    intervalMs?: number
    /** Intervals of silence that fail a node (default 3). */
    multiplier?: number
    /** Where a target sends its heartbeats (the distribution processors). */
    announceTo?: Endpoint[]
    /** Run heartbeats on a worker thread, off the data plane's event loop. Default true. */
    worker?: boolean
  }
  /** The cluster link. */
  link: {
    /** Where the link listens. */
    local: Endpoint
    /** The other nodes' link endpoints. */
    peers: Record<string, Endpoint>
    /** Encrypt the frames' payload (the cleartext between DPs and targets). Default false. */
    encrypt?: boolean
  }
  /**
   * The cluster keys that authenticate the link and the heartbeats: one, or two while rotating
   * (the first sends). Each a key file made by `vipsec keygen` (a path relative to this file) or
   * `{ "id": N, "secret": "<64 hex digits>" }`. Required unless `insecure` is true.
   */
  clusterKeys?: (string | InlineClusterKey)[]
  /** Run the link and the heartbeats without keys (a warning is logged at start). Default false. */
  insecure?: boolean
  /** The distribution processor (primary and backup). */
  processor?: {
    /** The DVIPAs it owns or backs up. */
    dvipas: DvipaConfig[]
    /** Heartbeat endpoints of the distribution processors. */
    heartbeats: Record<string, Endpoint>
    /** Heartbeat endpoints of the targets. */
    targetHeartbeats?: Record<string, Endpoint>
    /** See `DefaultDistributionProcessorInit`. */
    rankDelayMs?: number
    /** See `DefaultDistributionProcessorInit`. */
    connectionIdleMs?: number
    /** See `DefaultDistributionProcessorInit`. */
    renegotiationDeadlineMs?: number
    /** See `DefaultDistributionProcessorInit`. */
    renegotiationConcurrency?: number
    /** See `DefaultDistributionProcessorInit`. */
    ownershipCheckMs?: number
    /** See `DefaultDistributionProcessorInit` (use with the lease detector). */
    selfFenceMs?: number
  }
  /** Built-in applications served (targets, and DPs that are targets too), on their UDP ports. */
  apps?: AppFileSection[]
  /**
   * What serves the packets no built-in application takes: `kernel` hands them to this host's
   * kernel through a TUN device holding the service addresses (see {@link KernelFileSection}),
   * so that any application listening there serves; `apps` drops them. Default: `kernel`,
   * unless the file lists `apps` and has no `kernel` section.
   */
  deliver?: 'kernel' | 'apps'
  /** Kernel delivery (`deliver: kernel`): the service addresses and the TUN device. */
  kernel?: KernelFileSection
  /** The Prometheus endpoint. Default: none. */
  metrics?: MetricsFileSection
}

/** Kernel delivery of a {@link NodeFile}: see `KernelDeliveryInit` in `@vipsec/target-tun`. */
export interface KernelFileSection {
  /** The service addresses this host serves behind the DVIPA, put on the TUN device. */
  addresses: string[]
  /** The TUN device's name. Default `vipsec0`. */
  device?: string
  /** Its MTU. Default 1400. */
  mtu?: number
  /** The routing table for replies from the service addresses. Default 7700. */
  table?: number
  /** Destinations routed back through vipsec (the peers' inner prefixes). Default all. */
  routes?: string[]
  /** The metric of their main-table routes. Default 7700. */
  metric?: number
}

/** A cluster key written into a {@link NodeFile} instead of a key file. */
export interface InlineClusterKey {
  /** The key id, 1 to 2^32 - 1 (frames carry it). */
  id: number
  /** The secret: 64 hex digits (32 bytes). */
  secret: string
}

/** The coupling store of a {@link NodeFile}. */
export type StoreFileSection =
  | {
      /** `memory` (this process only) or `redis`. */
      type: 'memory' | 'redis'
      /** For `redis`: URL or host and port, credentials, TLS, key prefix, Sentinel, timeouts. */
      init?: RedisCouplingStoreInit
    }
  | {
      /** `etcd`: an etcd cluster, for nodes on several machines. */
      type: 'etcd'
      /** Member URLs (`hosts`), credentials, TLS, key prefix, timeouts. */
      init?: EtcdCouplingStoreInit
    }

/** The network adapter of a {@link NodeFile}. */
export interface NetworkFileSection {
  /** `linux`: addresses with `ip`, gratuitous ARP, UDP sockets (`@vipsec/network-linux`). */
  type: 'linux'
  /** The adapter's options (interface, prefix length, ...). */
  init?: Record<string, unknown>
}

/** An application of a {@link NodeFile}. */
export interface AppFileSection {
  /** IP protocol number; default 17 (UDP). */
  protocol?: number
  /** The destination port it serves. */
  port: number
  /** Which built-in application. */
  app: 'echo' | 'request-response'
}

/** Where `/metrics` is served. */
export interface MetricsFileSection {
  /** Listen address; default 127.0.0.1. */
  address?: string
  /** Port; 0 picks a free one. */
  port: number
}

/** A pre-shared key of a {@link NodeFile}. */
export interface PskFileEntry {
  /** The peer identity it is shared with. */
  remote: Identity
  /** This side's identity it applies to; default any. */
  local?: Identity
  /** The secret. */
  secret: string
}

/** A certificate of this node, in a {@link NodeFile}. */
export interface CertificateFileEntry {
  /** The identity it stands for. */
  identity: Identity
  /** PEM certificate file. */
  certificateFile: string
  /** PEM PKCS#8 private key file. */
  privateKeyFile: string
}

/** The IKE part of a {@link NodeFile}. */
export interface IkeFileSection {
  /** Pre-shared keys. */
  psks?: PskFileEntry[]
  /** This node's certificates. */
  certificates?: CertificateFileEntry[]
  /** Trusted CA certificate files (PEM). */
  trustAnchors?: string[]
  /** The peers answered as responder. */
  peers?: IkePeerConfig[]
  /** Retransmission timing. */
  retransmit?: RetransmitOptions
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function endpoint(v: unknown, field: string): Endpoint {
  if (!isObject(v) || typeof v.address !== 'string' || typeof v.port !== 'number') {
    throw new InvalidConfigError(field, 'expected { "address": string, "port": number }')
  }
  return { address: v.address, port: v.port }
}

function checkClusterKeysField(value: Record<string, unknown>): void {
  const keys = value.clusterKeys
  if (keys === undefined) {
    if (value.insecure !== true) {
      throw new InvalidConfigError(
        'clusterKeys',
        'a cluster key is required (make one with `vipsec keygen`), or set "insecure": true'
      )
    }
    return
  }
  if (value.insecure === true) throw new InvalidConfigError('insecure', 'not with clusterKeys')
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > 2) {
    throw new InvalidConfigError('clusterKeys', 'expected a list of one or two keys')
  }
  for (const [i, k] of keys.entries()) {
    if (typeof k === 'string') continue
    if (!isObject(k) || typeof k.id !== 'number' || typeof k.secret !== 'string') {
      throw new InvalidConfigError(
        `clusterKeys[${i}]`,
        'expected a key file or { "id": number, "secret": hex }'
      )
    }
  }
}

async function readClusterKeys(file: NodeFile, base: string): Promise<ClusterKey[]> {
  const keys = await Promise.all(
    (file.clusterKeys ?? []).map(async (k, i) => {
      const field = `clusterKeys[${i}]`
      try {
        if (typeof k !== 'string') {
          return decodeKeyFile(JSON.stringify({ type: 'vipsec-cluster-key', ...k }), field)
        }
        let text: string
        let mode: number
        try {
          text = await readFile(resolve(base, k), 'utf8')
          mode = (await stat(resolve(base, k))).mode
        } catch (err) {
          throw new InvalidConfigError(field, `cannot read ${k}: ${(err as Error).message}`)
        }
        if ((mode & 0o007) !== 0) {
          throw new InvalidConfigError(
            field,
            `${k} is accessible to every user (mode ${(mode & 0o777).toString(8)}): chmod 600 it`
          )
        }
        return decodeKeyFile(text, field)
      } catch (err) {
        if ((err as Error).name === 'InvalidConfigError') throw err
        throw new InvalidConfigError(field, (err as Error).message)
      }
    })
  )
  try {
    if (keys.length > 0) checkClusterKeys(keys, 'clusterKeys')
  } catch (err) {
    throw new InvalidConfigError('clusterKeys', (err as Error).message)
  }
  return keys
}

/**
 * Reads and checks a node file. Errors name the field (`link.local.port`), or the line and
 * column of a JSON syntax error.
 *
 * @param path - the file
 * @throws InvalidConfigError
 */
export async function readNodeFile(path: string): Promise<NodeFile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new InvalidConfigError('config', `cannot read ${path}: ${(err as Error).message}`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new InvalidConfigError('config', `${path} is not valid JSON: ${(err as Error).message}`)
  }
  return checkNodeFile(value)
}

/**
 * Checks the shape of a parsed node file; the adapters check their own options when built.
 *
 * @param value - the parsed JSON
 * @throws InvalidConfigError naming the first bad field
 */
export function checkNodeFile(value: unknown): NodeFile {
  if (!isObject(value)) throw new InvalidConfigError('config', 'expected a JSON object')
  const role = value.role
  if (role !== 'primary' && role !== 'backup' && role !== 'target') {
    throw new InvalidConfigError('role', "expected 'primary', 'backup' or 'target'")
  }
  if (typeof value.nodeId !== 'string') throw new InvalidConfigError('nodeId', 'expected a string')
  if (!isObject(value.network) || value.network.type !== 'linux') {
    throw new InvalidConfigError('network.type', "expected 'linux'")
  }
  if (!isObject(value.link)) throw new InvalidConfigError('link', 'expected an object')
  endpoint(value.link.local, 'link.local')
  if (!isObject(value.link.peers)) throw new InvalidConfigError('link.peers', 'expected an object')
  for (const [node, e] of Object.entries(value.link.peers)) endpoint(e, `link.peers.${node}`)
  checkClusterKeysField(value)
  if (value.detector !== undefined) {
    if (!isObject(value.detector)) throw new InvalidConfigError('detector', 'expected an object')
    const type = value.detector.type ?? 'heartbeat'
    if (type !== 'heartbeat' && type !== 'lease') {
      throw new InvalidConfigError('detector.type', "expected 'heartbeat' or 'lease'")
    }
    if (type === 'heartbeat') endpoint(value.detector.local, 'detector.local')
  }
  if (role !== 'target') {
    if (!isObject(value.processor))
      throw new InvalidConfigError('processor', `required for the ${role} role`)
    if (!Array.isArray(value.processor.dvipas) || value.processor.dvipas.length === 0) {
      throw new InvalidConfigError('processor.dvipas', 'expected a non-empty list')
    }
    if (!isObject(value.processor.heartbeats)) {
      throw new InvalidConfigError('processor.heartbeats', 'expected an object')
    }
    if (value.detector === undefined)
      throw new InvalidConfigError('detector', `required for the ${role} role`)
    if (value.ike === undefined)
      throw new InvalidConfigError('ike', `required for the ${role} role`)
  }
  if (value.store !== undefined) {
    if (
      !isObject(value.store) ||
      (value.store.type !== 'memory' && value.store.type !== 'redis' && value.store.type !== 'etcd')
    ) {
      throw new InvalidConfigError('store.type', "expected 'memory', 'redis' or 'etcd'")
    }
  }
  for (const [i, app] of ((value.apps as unknown[]) ?? []).entries()) {
    if (
      !isObject(app) ||
      typeof app.port !== 'number' ||
      (app.app !== 'echo' && app.app !== 'request-response')
    ) {
      throw new InvalidConfigError(
        `apps[${i}]`,
        'expected { "port": number, "app": \'echo\' | \'request-response\' }'
      )
    }
  }
  if (value.deliver !== undefined && value.deliver !== 'kernel' && value.deliver !== 'apps')
    throw new InvalidConfigError('deliver', "expected 'kernel' or 'apps'")
  if (deliveryOf(value as unknown as NodeFile) === 'kernel') {
    const kernel = value.kernel
    if (
      !isObject(kernel) ||
      !Array.isArray(kernel.addresses) ||
      kernel.addresses.length === 0 ||
      !kernel.addresses.every((a) => typeof a === 'string')
    ) {
      throw new InvalidConfigError(
        'kernel.addresses',
        'expected the service addresses for kernel delivery (or "deliver": "apps")'
      )
    }
  }
  if (
    value.metrics !== undefined &&
    (!isObject(value.metrics) || typeof value.metrics.port !== 'number')
  ) {
    throw new InvalidConfigError('metrics.port', 'expected a number')
  }
  return value as unknown as NodeFile
}

/** Whether a node file's target delivers to the kernel, the built-in apps only, or has no target. */
function deliveryOf(file: NodeFile): 'kernel' | 'apps' | undefined {
  if (file.deliver !== undefined) return file.deliver
  if (file.kernel !== undefined) return 'kernel'
  if (file.apps !== undefined) return 'apps'
  return file.role === 'target' ? 'kernel' : undefined
}

function app(kind: 'echo' | 'request-response', node: string): AppHandler {
  return kind === 'echo' ? udpEcho() : requestResponse(node)
}

async function ikeInit(section: IkeFileSection, base: string): Promise<IkeV2ServiceInit> {
  const read = async (file: string, field: string): Promise<string> => {
    try {
      return await readFile(resolve(base, file), 'utf8')
    } catch (err) {
      throw new InvalidConfigError(field, `cannot read ${file}: ${(err as Error).message}`)
    }
  }
  const { X509Certificate } = await import('node:crypto')
  const certificates = await Promise.all(
    (section.certificates ?? []).map(async (c, i) => ({
      identity: c.identity,
      certificate: new Uint8Array(
        new X509Certificate(await read(c.certificateFile, `ike.certificates[${i}].certificateFile`))
          .raw
      ),
      privateKey: await read(c.privateKeyFile, `ike.certificates[${i}].privateKeyFile`)
    }))
  )
  const trustAnchors = await Promise.all(
    (section.trustAnchors ?? []).map(async (file, i) => ({
      certificate: await read(file, `ike.trustAnchors[${i}]`)
    }))
  )
  return {
    ...(section.psks === undefined ? {} : { psks: section.psks }),
    ...(section.peers === undefined ? {} : { peers: section.peers }),
    ...(section.retransmit === undefined ? {} : { retransmit: section.retransmit }),
    certificates,
    trustAnchors
  }
}

/**
 * Turns a node file into the container's configuration.
 *
 * @param file - the checked node file
 * @param path - where it was read from (for relative paths)
 * @param network - the network adapter (built by the caller from `file.network`)
 */
export async function toNodeConfig(
  file: NodeFile,
  path: string,
  network: NetworkAdapter
): Promise<NodeConfig> {
  const base = dirname(resolve(path))
  const keys = await readClusterKeys(file, base)
  const security = keys.length > 0 ? { keys } : { insecure: true }
  const components: NodeComponents = {
    networkAdapter: { instance: network },
    clusterLink: {
      type: 'udp',
      init: {
        local: file.link.local,
        peers: file.link.peers,
        ...security,
        ...(file.link.encrypt === undefined ? {} : { encrypt: file.link.encrypt })
      }
    }
  }
  if (file.detector?.type === 'lease') {
    components.failureDetector = {
      type: 'lease',
      init: {
        ...(file.detector.intervalMs === undefined ? {} : { intervalMs: file.detector.intervalMs }),
        ...(file.detector.ttlMs === undefined ? {} : { ttlMs: file.detector.ttlMs })
      }
    }
  } else if (file.detector !== undefined) {
    components.failureDetector = {
      type: 'heartbeat',
      init: {
        local: file.detector.local!,
        ...(file.detector.intervalMs === undefined ? {} : { intervalMs: file.detector.intervalMs }),
        ...(file.detector.multiplier === undefined ? {} : { multiplier: file.detector.multiplier }),
        ...(file.detector.announceTo === undefined ? {} : { announceTo: file.detector.announceTo }),
        ...security
      },
      worker: file.detector.worker ?? true
    }
  }
  const deliver = deliveryOf(file)
  if (deliver !== undefined) {
    components.targetStack = {
      type: 'default',
      apps: (file.apps ?? []).map((a) => ({
        protocol: a.protocol ?? 17,
        port: a.port,
        handler: app(a.app, file.nodeId)
      })),
      ...(deliver === 'kernel' ? { delivery: kernelDelivery(file.kernel!) } : {})
    }
  }
  if (file.role !== 'target') {
    components.espEngine = { type: 'software' }
    components.ikeServiceFactory = { type: 'ike-v2', init: await ikeInit(file.ike ?? {}, base) }
    const { dvipas, heartbeats, ...rest } = file.processor!
    components.distributionProcessor = { type: 'default', init: { dvipas, heartbeats, ...rest } }
  }
  return {
    role: file.role,
    nodeId: file.nodeId,
    ...(file.role === 'target' ? {} : { store: file.store ?? { type: 'memory' } }),
    components
  }
}
