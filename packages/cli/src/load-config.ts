import { createPublicKey, X509Certificate } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os'
import { basename, dirname, resolve } from 'node:path'
import {
  didYouMean,
  parseConfig,
  type ConfigIssue,
  type NodeComponents,
  type NodeConfig,
  type NodeRole
} from '@vipsec/container'
import { checkClusterKeys, decodeKeyFile, type ClusterKey } from '@vipsec/cluster-link-udp'
import { requestResponse, udpEcho, type DvipaConfig } from '@vipsec/core'
import type {
  CertificateCredential,
  IkePeerConfig,
  IkeStartConnection,
  IkeV2ServiceInit,
  PskCredential
} from '@vipsec/ike-v2'
import {
  InvalidConfigError,
  type Endpoint,
  type Identity,
  type KeyExchangeGroup,
  type NetworkAdapter,
  type Phase2Policy,
  type TrafficSelector
} from '@vipsec/interface'
import { kernelDelivery } from '@vipsec/target-tun'
import { parseDocument } from 'yaml'
import type { z } from 'zod'
import {
  clusterFileSchema,
  nodeFileSchema,
  secretsFileSchema,
  type ClusterFile,
  type NodeFile,
  type SecretsFile
} from './config-files.js'
import { espProposals, ikeProposals, inPrefix, trafficSelectors } from './strongswan.js'
import {
  parseSwanctlConf,
  swanctlConnections,
  swanctlSecrets,
  SwanctlConfError,
  type ParsedSwanctl
} from './swanctl-conf.js'

/** Where the entries read from a swanctl.conf came from: its label and each path's line. */
interface SwanctlOrigin {
  label: string
  /** The top-level section they went under (`connections`, `ike`) and their names. */
  under: string
  names: Set<string>
  lines: Map<string, number>
}

/**
 * Reads the swanctl.conf a cluster or secrets file names (its `swanctl` key), and merges its
 * connections or PSKs into the file's value before the schema sees it.
 */
async function mergeSwanctl(
  value: unknown,
  from: string,
  fromLabel: string,
  kind: 'connections' | 'secrets',
  issues: FileIssue[]
): Promise<SwanctlOrigin | undefined> {
  if (value === null || typeof value !== 'object') return undefined
  const file = (value as Record<string, unknown>).swanctl
  if (typeof file !== 'string') return undefined
  const path = resolve(dirname(from), file)
  const label = basename(path)
  let text: string
  try {
    if (kind === 'secrets') {
      const mode = (await stat(path)).mode & 0o777
      if ((mode & 0o077) !== 0)
        issues.push({
          file: label,
          path: '',
          message: `holds PSKs and is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${path}`
        })
    }
    text = await readFile(path, 'utf8')
  } catch (err) {
    issues.push({
      file: fromLabel,
      path: 'swanctl',
      message: `cannot read ${path}: ${(err as Error).message}`
    })
    return undefined
  }
  let parsed: ParsedSwanctl
  let entries: Record<string, unknown>
  let lines: Map<string, number>
  try {
    parsed = parseSwanctlConf(text)
    if (kind === 'connections') ({ connections: entries, lines } = swanctlConnections(parsed))
    else ({ ike: entries, lines } = swanctlSecrets(parsed))
  } catch (err) {
    if (!(err instanceof SwanctlConfError)) throw err
    issues.push({ file: `${label}:${err.line}`, path: '', message: err.message })
    return undefined
  }
  const under = kind === 'connections' ? 'connections' : 'ike'
  const target = value as Record<string, unknown>
  const own = (target[under] ?? {}) as Record<string, unknown>
  for (const name of Object.keys(entries))
    if (name in own)
      issues.push({
        file: `${label}:${lines.get(`${under}.${name}`) ?? 0}`,
        path: `${under}.${name}`,
        message: `also defined in ${fromLabel}`
      })
  target[under] = { ...entries, ...own }
  return { label, under, names: new Set(Object.keys(entries)), lines }
}

/** Points the issues about entries read from a swanctl.conf at its lines. */
function toSwanctlLines(
  issues: FileIssue[],
  fileLabel: string,
  origin: SwanctlOrigin | undefined
): void {
  if (origin === undefined) return
  for (const issue of issues) {
    if (issue.file !== fileLabel) continue
    const parts = issue.path.split('.')
    if (parts[0] !== origin.under || !origin.names.has(parts[1] ?? '')) continue
    let line: number | undefined
    for (let n = parts.length; n >= 2 && line === undefined; n--)
      line = origin.lines.get(
        parts
          .slice(0, n)
          .join('.')
          .replace(/\[\d+\]$/, '')
      )
    issue.file = `${origin.label}:${line ?? 0}`
  }
}

/** A problem in one of the files, with the file it is in. */
export interface FileIssue extends ConfigIssue {
  /** The file, as given or as the node file names it. */
  file: string
}

/** Everything a node reads at start, checked: the three files and what follows from them. */
export interface LoadedConfig {
  /** The node file's path. */
  path: string
  /** The node file. */
  node: NodeFile
  /** The cluster file. */
  cluster: ClusterFile
  /** The secrets file (absent for a target without one). */
  secrets: SecretsFile | undefined
  /** The node's role, from the ranks: `primary` if it is first in a DVIPA's ranks. */
  role: NodeRole
  /** The IKE service's options (credentials and peers), for distribution processors. */
  ike: IkeV2ServiceInit | undefined
  /** The DVIPAs this node serves as a distribution processor. */
  dvipas: DvipaConfig[]
  /**
   * The cluster keys (the secrets file's `cluster_key`, then the node file's
   * `cluster_key_files`); empty when the cluster file says `link.insecure`.
   */
  keys: ClusterKey[]
  /** The link and heartbeats run without keys (the cluster file's `link.insecure`). */
  insecure: boolean
  /** Where a target's packets go that no built-in application takes; absent on a DP. */
  deliver: 'kernel' | 'apps' | undefined
}

/** Options of {@link loadConfig}. */
export interface LoadOptions {
  /**
   * Check the host too: the interface exists, the DVIPAs lie in its subnets, the node's address
   * is on this host. Default true.
   */
  host?: boolean
  /** The host's interfaces (default `os.networkInterfaces()`), for tests. */
  interfaces?: NodeJS.Dict<NetworkInterfaceInfo[]>
}

/** The result of {@link loadConfig}: the configuration, or every problem found. */
export type LoadResult =
  | {
      /** Everything checked out. */
      ok: true
      /** The configuration. */
      config: LoadedConfig
    }
  | {
      /** Something is wrong. */
      ok: false
      /** Every problem, each with its file and field. */
      issues: FileIssue[]
    }

/** A node's endpoints on the cluster network. */
export interface NodeEndpoints {
  /** Its cluster-link endpoint. */
  link: Endpoint
  /** Its heartbeat endpoint. */
  heartbeat: Endpoint
}

async function readYaml(path: string, label: string, issues: FileIssue[]): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    issues.push({
      file: label,
      path: '',
      message: `cannot read ${path}: ${(err as Error).message}`
    })
    return undefined
  }
  const doc = parseDocument(text, { uniqueKeys: true })
  if (doc.errors.length > 0) {
    for (const e of doc.errors)
      issues.push({
        file: label,
        path: '',
        message: `not valid YAML at line ${e.linePos?.[0].line ?? '?'}: ${e.message.split('\n')[0]}`
      })
    return undefined
  }
  return doc.toJS()
}

function checked<S extends z.ZodType>(
  schema: S,
  value: unknown,
  label: string,
  issues: FileIssue[]
): z.output<S> | undefined {
  if (value === undefined) return undefined
  const result = parseConfig(schema, value)
  if (result.ok) return result.value
  issues.push(...result.issues.map((i) => ({ ...i, file: label })))
  return undefined
}

const nodeAddress = (cluster: ClusterFile, node: string): string | undefined => {
  const e = cluster.nodes[node]
  return e === undefined ? undefined : typeof e === 'string' ? e : e.address
}

/**
 * The link and heartbeat endpoints of a node of the cluster file.
 *
 * @param cluster - the cluster file
 * @param node - a node it defines
 */
export function endpointsOf(cluster: ClusterFile, node: string): NodeEndpoints {
  const e = cluster.nodes[node]!
  const address = typeof e === 'string' ? e : e.address
  const entry: { link_port?: number; heartbeat_port?: number } = typeof e === 'string' ? {} : e
  return {
    link: { address, port: entry.link_port ?? cluster.ports?.link ?? 7400 },
    heartbeat: { address, port: entry.heartbeat_port ?? cluster.ports?.heartbeat ?? 7500 }
  }
}

const sameId = (a: Identity, b: Identity): boolean => a.type === b.type && a.value === b.value

/**
 * Reads a node file, the cluster and secrets files it names, and checks everything a start
 * would: each file's schema (unknown fields, with the nearest known one), the names between
 * them (ranks, targets, the node itself), proposals against what the engines can do, selectors,
 * PSKs for each peer identity, the secrets file's permissions, and (unless `host: false`) the
 * interface, its subnets and the node's address on this host. Touches neither store nor network.
 *
 * @param path - the node file
 * @param options - what to check of the host
 */
export async function loadConfig(path: string, options: LoadOptions = {}): Promise<LoadResult> {
  const issues: FileIssue[] = []
  const label = basename(path)
  const node = checked(nodeFileSchema, await readYaml(path, label, issues), label, issues)
  if (node === undefined) return { ok: false, issues }
  const base = dirname(resolve(path))
  const clusterPath = resolve(base, node.cluster)
  const clusterLabel = basename(clusterPath)
  const clusterValue = await readYaml(clusterPath, clusterLabel, issues)
  const swanConnections = await mergeSwanctl(
    clusterValue,
    clusterPath,
    clusterLabel,
    'connections',
    issues
  )
  const cluster = checked(clusterFileSchema, clusterValue, clusterLabel, issues)
  let secrets: SecretsFile | undefined
  let secretsLabel = 'secrets'
  let swanSecrets: SwanctlOrigin | undefined
  const lined = (result: LoadResult): LoadResult => {
    if (!result.ok) {
      toSwanctlLines(result.issues, clusterLabel, swanConnections)
      toSwanctlLines(result.issues, secretsLabel, swanSecrets)
    }
    return result
  }
  const secretsPath = node.secrets === undefined ? base : resolve(base, node.secrets)
  if (node.secrets !== undefined) {
    secretsLabel = basename(secretsPath)
    try {
      const mode = (await stat(secretsPath)).mode & 0o777
      if ((mode & 0o077) !== 0)
        issues.push({
          file: secretsLabel,
          path: '',
          message: `readable by group or others (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${secretsPath}`
        })
    } catch {
      // readYaml says it cannot be read
    }
    const secretsValue = await readYaml(secretsPath, secretsLabel, issues)
    swanSecrets = await mergeSwanctl(secretsValue, secretsPath, secretsLabel, 'secrets', issues)
    secrets = checked(secretsFileSchema, secretsValue, secretsLabel, issues)
  }
  if (cluster === undefined) return lined({ ok: false, issues })

  const add = (file: string, at: string, message: string): void => {
    issues.push({ file, path: at, message })
  }
  const st = cluster.store
  if (st.type === 'redis') {
    if (st.address === undefined && st.sentinels === undefined)
      add(clusterLabel, 'store', 'a Redis store needs address or sentinels')
    if (st.sentinels !== undefined && st.name === undefined)
      add(clusterLabel, 'store.name', 'the master group name is required with sentinels')
  }
  const names = Object.keys(cluster.nodes)
  const unknownNode = (name: string): string => {
    const near = didYouMean(name, names)
    return `'${name}' is not in nodes${near === undefined ? ` (${names.join(', ')})` : `; did you mean '${near}'?`}`
  }
  // names between the files
  if (!(node.node in cluster.nodes)) add(label, 'node', unknownNode(node.node))
  const dvipaNames = Object.keys(cluster.dvipas)
  if (dvipaNames.length === 0) add(clusterLabel, 'dvipas', 'expected at least one DVIPA')
  for (const [dvipa, d] of Object.entries(cluster.dvipas)) {
    d.ranks.forEach((r, i) => {
      if (!(r in cluster.nodes)) {
        const watcher = d.ranks.find((x, j) => j > i && x in cluster.nodes)
        add(
          clusterLabel,
          `dvipas.${dvipa}.ranks[${i}]`,
          `${unknownNode(r)}${watcher === undefined ? '' : `: ${watcher} would watch nobody there`}`
        )
      }
      if (d.ranks.indexOf(r) !== i)
        add(clusterLabel, `dvipas.${dvipa}.ranks[${i}]`, `'${r}' is ranked twice`)
    })
    d.targets.forEach((t, i) => {
      if (!(t in cluster.nodes))
        add(
          clusterLabel,
          `dvipas.${dvipa}.targets[${i}]`,
          `${unknownNode(t)}: it would not be on the cluster link`
        )
    })
  }
  const mine = Object.entries(cluster.dvipas).filter(([, d]) => d.ranks.includes(node.node))
  const targetOf = Object.entries(cluster.dvipas).filter(([, d]) => d.targets.includes(node.node))
  if (node.node in cluster.nodes && mine.length === 0 && targetOf.length === 0)
    add(label, 'node', `'${node.node}' is in no DVIPA's ranks or targets: it would serve nothing`)
  const role: NodeRole = mine.some(([, d]) => d.ranks[0] === node.node)
    ? 'primary'
    : mine.length > 0
      ? 'backup'
      : 'target'

  // connections
  if (role !== 'target' && Object.keys(cluster.connections).length === 0)
    add(
      clusterLabel,
      'connections',
      'expected at least one peer connection (or swanctl: FILE to read them from a swanctl.conf)'
    )
  const peers: IkePeerConfig[] = []
  const connections: IkeStartConnection[] = []
  const psks: PskCredential[] = []
  const certificates: CertificateCredential[] = []
  const trustAnchors: { certificate: string }[] = []
  for (const entry of Object.values(secrets?.ike ?? {})) {
    for (const id of Array.isArray(entry.id) ? entry.id : [entry.id])
      psks.push({ remote: id, secret: entry.secret })
  }
  const keys: { file: string; pem: string }[] = []
  for (const [i, file] of (secrets?.private ?? []).entries()) {
    try {
      keys.push({ file, pem: await readFile(resolve(dirname(secretsPath), file), 'utf8') })
    } catch (err) {
      add(secretsLabel, `private[${i}]`, `cannot read ${file}: ${(err as Error).message}`)
    }
  }
  // cluster keys
  const clusterKeys: ClusterKey[] = []
  const inline = secrets?.cluster_key
  for (const k of inline === undefined ? [] : Array.isArray(inline) ? inline : [inline]) {
    const { id, secret } = typeof k === 'string' ? { id: 1, secret: k } : k
    clusterKeys.push({ id, secret: new Uint8Array(Buffer.from(secret, 'hex')) })
  }
  for (const [i, file] of (node.cluster_key_files ?? []).entries()) {
    const at = `cluster_key_files[${i}]`
    const keyPath = resolve(base, file)
    try {
      const mode = (await stat(keyPath)).mode & 0o777
      if ((mode & 0o077) !== 0) {
        add(
          label,
          at,
          `${file} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${keyPath}`
        )
        continue
      }
      clusterKeys.push(decodeKeyFile(await readFile(keyPath, 'utf8'), at))
    } catch (err) {
      add(label, at, `cannot read ${file}: ${(err as Error).message}`)
    }
  }
  const insecure = cluster.link?.insecure === true
  if (insecure && clusterKeys.length > 0)
    add(clusterLabel, 'link.insecure', 'not with a cluster key: remove one or the other')
  else if (
    !insecure &&
    clusterKeys.length === 0 &&
    !issues.some((i) => i.path.startsWith('cluster_key'))
  )
    add(
      secrets === undefined ? label : secretsLabel,
      secrets === undefined ? 'secrets' : 'cluster_key',
      "a cluster key is required: the secrets file's cluster_key or the node file's cluster_key_files (make one with `vipsec keygen`), or link.insecure: true in the cluster file"
    )
  else if (clusterKeys.length > 0) {
    try {
      checkClusterKeys(clusterKeys, 'cluster_key')
    } catch (err) {
      add(secrets === undefined ? label : secretsLabel, 'cluster_key', (err as Error).message)
    }
  }

  const clusterBase = dirname(clusterPath)
  for (const [name, c] of Object.entries(cluster.connections)) {
    const at = `connections.${name}`
    const dvipa = c.local_addrs ?? (dvipaNames.length === 1 ? dvipaNames[0] : undefined)
    if (dvipa === undefined) {
      add(
        clusterLabel,
        `${at}.local_addrs`,
        `required with more than one DVIPA: one of ${dvipaNames.join(', ')}`
      )
      continue
    }
    if (!(dvipa in cluster.dvipas)) {
      add(
        clusterLabel,
        `${at}.local_addrs`,
        `'${dvipa}' is not one of the DVIPAs (${dvipaNames.join(', ')})`
      )
      continue
    }
    if (c.local.id === undefined)
      add(clusterLabel, `${at}.local.id`, 'required: the identity the cluster proves')
    const children: IkePeerConfig['children'] = []
    for (const [childName, child] of Object.entries(c.children)) {
      const cat = `${at}.children.${childName}`
      let local: TrafficSelector[] = []
      let remote: TrafficSelector[] = []
      try {
        local = trafficSelectors(child.local_ts ?? 'dynamic', dvipa)
      } catch (err) {
        add(clusterLabel, `${cat}.local_ts`, (err as Error).message)
      }
      try {
        remote = trafficSelectors(child.remote_ts)
      } catch (err) {
        add(clusterLabel, `${cat}.remote_ts`, (err as Error).message)
      }
      const soft = child.rekey_time ?? 3600
      const policy: Phase2Policy = {
        proposals: child.esp_proposals ?? espProposals('default'),
        pfsGroup: 'none',
        lifetime: {
          softSeconds: soft,
          hardSeconds: child.life_time ?? Math.round(soft * 1.1),
          softBytes: child.rekey_bytes ?? 0,
          hardBytes: child.life_bytes ?? 0,
          softPackets: child.rekey_packets ?? 0,
          hardPackets: child.life_packets ?? 0
        }
      }
      const pfs = policy.proposals[0]?.keyExchange[0]
      if (pfs !== undefined) policy.pfsGroup = pfs
      children.push({ policy, mode: child.mode ?? 'tunnel', local, remote })
    }
    const auth = c.local.auth ?? 'psk'
    if ((c.remote.auth ?? 'psk') !== auth)
      add(
        clusterLabel,
        `${at}.remote.auth`,
        `vipsec uses one method both ways: '${auth}' as local.auth says`
      )
    if (
      auth === 'psk' &&
      role !== 'target' &&
      c.remote.id !== undefined &&
      !psks.some((p) => sameId(p.remote, c.remote.id!))
    )
      add(
        secretsLabel,
        'ike',
        `no PSK for ${c.remote.id.value}, the remote id of connection '${name}'`
      )
    if (auth === 'pubkey') {
      if (c.local.certs === undefined)
        add(clusterLabel, `${at}.local.certs`, 'required with auth: pubkey')
      else if (c.local.id !== undefined) {
        try {
          const cert = new X509Certificate(await readFile(resolve(clusterBase, c.local.certs)))
          const key = keys.find((k) =>
            createPublicKey(k.pem)
              .export({ format: 'der', type: 'spki' })
              .equals(cert.publicKey.export({ format: 'der', type: 'spki' }))
          )
          if (key === undefined && role !== 'target')
            add(secretsLabel, 'private', `no private key for ${c.local.certs}`)
          else if (key !== undefined)
            certificates.push({
              identity: c.local.id,
              certificate: new Uint8Array(cert.raw),
              privateKey: key.pem
            })
        } catch (err) {
          add(
            clusterLabel,
            `${at}.local.certs`,
            `cannot read ${c.local.certs}: ${(err as Error).message}`
          )
        }
      }
      if (c.remote.cacerts !== undefined) {
        try {
          trustAnchors.push({
            certificate: await readFile(resolve(clusterBase, c.remote.cacerts), 'utf8')
          })
        } catch (err) {
          add(
            clusterLabel,
            `${at}.remote.cacerts`,
            `cannot read ${c.remote.cacerts}: ${(err as Error).message}`
          )
        }
      }
    }
    const phase1 = {
      proposals: c.proposals ?? ikeProposals('default'),
      authMethod: auth === 'psk' ? ('psk' as const) : ('digital-signature' as const),
      lifetime: { rekeySeconds: c.rekey_time ?? 14400, reauthSeconds: c.reauth_time ?? 0 },
      liveness: {
        intervalMs: Math.round((c.dpd_delay ?? 0) * 1000),
        timeoutMs: Math.round((c.dpd_timeout ?? 30) * 1000)
      }
    }
    if (mine.some(([d]) => d === dvipa) && c.local.id !== undefined)
      peers.push({
        localIdentity: c.local.id,
        ...(c.remote.id === undefined ? {} : { remoteIdentity: c.remote.id }),
        phase1,
        children,
        ...(c.fragmentation === undefined ? {} : { fragmentation: c.fragmentation !== 'no' })
      })
    if (c.start_action === 'start') {
      // the owner initiates: it must know where the peer is and whom to expect there
      if (c.remote_addrs === undefined)
        add(clusterLabel, `${at}.remote_addrs`, 'required with start_action: start')
      if (c.remote.id === undefined)
        add(clusterLabel, `${at}.remote.id`, 'required with start_action: start')
      if (
        mine.some(([d]) => d === dvipa) &&
        c.local.id !== undefined &&
        c.remote.id !== undefined &&
        c.remote_addrs !== undefined &&
        children.length > 0
      )
        connections.push({
          name,
          startAction: 'start',
          request: {
            local: { address: dvipa, port: 500 },
            peer: { address: c.remote_addrs, port: 500 },
            localIdentity: c.local.id,
            remoteIdentity: c.remote.id,
            phase1,
            child: children[0]
          }
        })
    }
  }

  // the host
  if (options.host !== false && node.node in cluster.nodes) {
    const interfaces = options.interfaces ?? networkInterfaces()
    const nics = interfaces[node.interface]
    if (nics === undefined) {
      const near = didYouMean(node.interface, Object.keys(interfaces))
      add(
        label,
        'interface',
        `no interface '${node.interface}' on this host${near === undefined ? ` (${Object.keys(interfaces).join(', ')})` : `; did you mean '${near}'?`}`
      )
    } else if (role !== 'target') {
      for (const [dvipa] of mine) {
        if (!nics.some((n) => inPrefix(dvipa, n.cidr ?? `${n.address}/32`)))
          add(
            clusterLabel,
            `dvipas.${dvipa}`,
            `not inside a subnet of ${node.interface} (${nics.map((n) => n.cidr).join(', ')}): no neighbour would reach it there`
          )
      }
    }
    const own = nodeAddress(cluster, node.node)!
    const all = Object.values(interfaces)
      .flat()
      .filter((n) => n !== undefined)
    if (!all.some((n) => n.address === own))
      add(clusterLabel, `nodes.${node.node}`, `${own} is not an address of this host`)
  }
  // delivery
  let deliver: LoadedConfig['deliver']
  if (role === 'target')
    deliver =
      node.deliver ?? (node.kernel === undefined && node.apps !== undefined ? 'apps' : 'kernel')
  else if (node.deliver !== undefined || node.kernel !== undefined)
    add(
      label,
      node.deliver !== undefined ? 'deliver' : 'kernel',
      `only for a target, not a ${role}`
    )
  if (deliver === 'kernel' && node.kernel === undefined)
    add(label, 'kernel', 'expected the service addresses for kernel delivery (or deliver: apps)')

  // warm takeover: a DVIPA of this node with warm: true needs the warm keys in the secrets
  const warmDvipa = mine.find(([, d]) => d.warm === true)
  if (role !== 'target' && warmDvipa !== undefined && secrets?.warm_keys === undefined)
    add(
      secrets === undefined ? label : secretsLabel,
      secrets === undefined ? 'secrets' : 'warm_keys',
      `the cluster file's dvipas.${warmDvipa[0]}.warm is true: warm takeover needs warm_keys (current and keys) in the secrets file`
    )

  if (issues.length > 0) return lined({ ok: false, issues })
  const dvipas: DvipaConfig[] = mine.map(([dvipa, d]) => ({
    dvipa,
    ranks: d.ranks,
    targets: d.targets.map((t) => ({ node: t })),
    ...(d.policy === undefined ? {} : { policy: d.policy }),
    ...(d.warm === true ? { warm: true } : {})
  }))
  const ike: IkeV2ServiceInit | undefined =
    role === 'target'
      ? undefined
      : {
          peers,
          psks,
          certificates,
          trustAnchors,
          ...(connections.length === 0 ? {} : { connections }),
          // the key-exchange values of the first group each peer proposes, made while idle: a
          // takeover's renegotiation then does not pay their generation
          ...keyExchangePool(peers),
          // a warm DVIPA's IKE SAs announce RFC 6311 and keep what an heir needs to adopt them
          ...(dvipas.some((d) => d.warm === true) ? { warm: { enabled: true } } : {}),
          ...(cluster.ike === undefined
            ? {}
            : {
                retransmit: {
                  ...(cluster.ike.retransmit_timeout === undefined
                    ? {}
                    : { timeoutMs: cluster.ike.retransmit_timeout }),
                  ...(cluster.ike.retransmit_base === undefined
                    ? {}
                    : { backoff: cluster.ike.retransmit_base }),
                  ...(cluster.ike.retransmit_tries === undefined
                    ? {}
                    : { tries: cluster.ike.retransmit_tries })
                },
                ...(cluster.ike.fragment_size === undefined
                  ? {}
                  : { fragmentation: { fragmentSize: cluster.ike.fragment_size } })
              })
        }
  return {
    ok: true,
    config: {
      path,
      node,
      cluster,
      secrets,
      role,
      ike,
      dvipas,
      keys: insecure ? [] : clusterKeys,
      insecure,
      deliver
    }
  }
}

const defined = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T

/**
 * Turns a loaded configuration into the container's: the parts of the node's role, wired
 * to the other nodes' endpoints from the cluster file.
 *
 * @param config - from {@link loadConfig}
 * @param network - the network adapter (built by the caller from `interface`)
 */
export function toNodeConfig(config: LoadedConfig, network: NetworkAdapter): NodeConfig {
  const { cluster, node, role } = config
  const me = node.node
  const ends = endpointsOf(cluster, me)
  const dps = [...new Set(Object.values(cluster.dvipas).flatMap((d) => d.ranks))]
  const served = Object.values(cluster.dvipas).filter(
    (d) => d.ranks.includes(me) || d.targets.includes(me)
  )
  const linkPeers =
    role === 'target'
      ? [...new Set(served.flatMap((d) => d.ranks))]
      : [...new Set([...dps, ...served.flatMap((d) => d.targets)])]
  const detector = cluster.detector ?? { type: 'heartbeat' as const }
  const security = config.insecure ? { insecure: true } : { keys: config.keys }
  const components: NodeComponents = {
    networkAdapter: { instance: network },
    clusterLink: {
      type: 'udp',
      init: {
        local: ends.link,
        peers: Object.fromEntries(
          linkPeers.filter((p) => p !== me).map((p) => [p, endpointsOf(cluster, p).link])
        ),
        ...security,
        ...(cluster.link?.encrypt === undefined ? {} : { encrypt: cluster.link.encrypt })
      }
    }
  }
  if (detector.type === 'lease' && role !== 'target') {
    components.failureDetector = {
      type: 'lease',
      init: defined({ intervalMs: detector.interval, ttlMs: detector.ttl })
    }
  } else {
    const hb =
      detector.type === 'heartbeat'
        ? detector
        : {
            type: 'heartbeat' as const,
            interval: undefined,
            multiplier: undefined,
            worker: undefined
          }
    components.failureDetector = {
      type: 'heartbeat',
      init: defined({
        local: ends.heartbeat,
        intervalMs: hb.interval,
        multiplier: hb.multiplier,
        ...security,
        ...(role === 'target'
          ? {
              announceTo: [...new Set(served.flatMap((d) => d.ranks))].map(
                (d) => endpointsOf(cluster, d).heartbeat
              )
            }
          : {})
      }),
      worker: hb.worker ?? true
    }
  }
  if (node.apps !== undefined || role === 'target') {
    components.targetStack = {
      type: 'default',
      apps: (node.apps ?? []).map((a) => ({
        protocol: 17,
        port: a.port,
        handler: a.app === 'echo' ? udpEcho() : requestResponse(me)
      })),
      ...(config.deliver === 'kernel' && node.kernel !== undefined
        ? { delivery: kernelDelivery(defined(node.kernel)) }
        : {})
    }
  }
  if (role !== 'target') {
    const targets = [...new Set(config.dvipas.flatMap((d) => d.targets.map((t) => t.node)))]
    const t = cluster.takeover ?? {}
    const warmKeys = config.secrets?.warm_keys
    const warm = config.dvipas.some((d) => d.warm === true) && warmKeys !== undefined
    const blockSize = cluster.warm?.block_size ?? 2 ** 20
    // warm mode: the engine asks for the next sequence block when half of one is left
    components.espEngine = warm
      ? { type: 'software', init: { sequenceLowWater: Math.floor(blockSize / 2) } }
      : { type: 'software' }
    components.ikeServiceFactory = { type: 'ike-v2', init: config.ike ?? {} }
    components.distributionProcessor = {
      type: 'default',
      init: defined({
        dvipas: config.dvipas,
        heartbeats: Object.fromEntries(dps.map((d) => [d, endpointsOf(cluster, d).heartbeat])),
        targetHeartbeats: Object.fromEntries(
          targets.map((x) => [x, endpointsOf(cluster, x).heartbeat])
        ),
        rankDelayMs: t.rank_delay,
        renegotiationDeadlineMs: t.renegotiation_deadline,
        renegotiationConcurrency: t.renegotiation_concurrency,
        ownershipCheckMs: t.ownership_check,
        selfFenceMs: t.self_fence,
        connectionIdleMs: t.connection_idle,
        warm: warm
          ? {
              keys: {
                current: warmKeys.current,
                keys: Object.fromEntries(
                  Object.entries(warmKeys.keys).map(([id, hex]) => [
                    id,
                    new Uint8Array(Buffer.from(hex, 'hex'))
                  ])
                )
              },
              blockSize
            }
          : undefined
      })
    }
  }
  const store = cluster.store
  return {
    role,
    nodeId: me,
    ...(role === 'target'
      ? {}
      : {
          store:
            store.type === 'memory'
              ? { type: 'memory' }
              : store.type === 'etcd'
                ? {
                    type: 'etcd',
                    init: defined({
                      hosts: store.endpoints,
                      keyPrefix: store.prefix,
                      username: store.username,
                      password: config.secrets?.store?.password
                    })
                  }
                : {
                    type: 'redis',
                    init: defined({
                      host: store.address?.address,
                      port: store.address?.port,
                      sentinels: store.sentinels?.map((e) => ({ host: e.address, port: e.port })),
                      name: store.name,
                      waitForReplicas: store.wait_for_replicas,
                      waitTimeoutMs: store.wait_timeout,
                      keyPrefix: store.prefix,
                      db: store.db,
                      username: store.username,
                      password: config.secrets?.store?.password,
                      ...(store.tls === true ? { tls: {} } : {})
                    })
                  }
        }),
    components
  }
}

/**
 * Formats issues one a line: `file: path: message`.
 *
 * @param issues - from {@link loadConfig}
 */
export function formatIssues(issues: readonly FileIssue[]): string[] {
  return issues.map((i) => `${i.file}: ${i.path === '' ? '' : `${i.path}: `}${i.message}`)
}

/**
 * Loads a configuration as {@link loadConfig} does and throws the first problem.
 *
 * @param path - the node file
 * @param options - what to check of the host
 * @throws InvalidConfigError naming the field (`file: path`), the others in the message
 */
export async function loadConfigOrThrow(
  path: string,
  options: LoadOptions = {}
): Promise<LoadedConfig> {
  const result = await loadConfig(path, options)
  if (result.ok) return result.config
  const [first, ...rest] = result.issues
  throw new InvalidConfigError(
    `${first!.file}: ${first!.path}`,
    `${first!.message}${rest.length === 0 ? '' : `\n${formatIssues(rest).join('\n')}`}`
  )
}

/** A pool of the first key-exchange group of each peer's first IKE proposal, if any. */
function keyExchangePool(peers: IkePeerConfig[]): Pick<IkeV2ServiceInit, 'keyExchangePool'> {
  const groups = new Set<Exclude<KeyExchangeGroup, 'none'>>()
  for (const peer of peers) {
    const group = peer.phase1.proposals[0]?.keyExchange.find((g) => g !== 'none')
    if (group !== undefined) groups.add(group)
  }
  return groups.size === 0 ? {} : { keyExchangePool: { groups: [...groups] } }
}
