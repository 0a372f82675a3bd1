/**
 * The load generator of `npm run bench:scale`: one process in the peer namespace holding many
 * remote IPsec peers, each a vipsec IKEv2 initiator (`IkeV2Service`) with an ESP engine of its
 * own, its own outer address (UDP 500 and 4500 bound to it) and its own inner address, with one
 * Child SA to the DVIPA. Peer `k` (1-based, {@link peerAddresses}) has the identity
 * `peerK.scale.test`. The bench gives each process a range of peers.
 *
 * Driven by lines on stdin, answered by JSON lines on stdout:
 * - `connect C`: every peer connects (at most C handshakes at a time); `{ type: 'connected', ok, failed, ms }`
 * - `traffic MS`: every peer sends a request through its tunnel every MS (staggered) from now on
 * - `mark T`: from time T (ms since the epoch) on, each peer's first answer to a request sent at
 *   or after T is remembered
 * - `report`: `{ type: 'report', answered, sent, replies, firsts, espDropped }` (`firsts`: the
 *   first answer after the mark of every peer that had one, ms since the epoch, sorted;
 *   `espDropped`: the peers' ESP engines' drops by reason, summed)
 * - `spis`: `{ type: 'spis', spis }`, the SPIs (`initiator/responder`) of each peer's
 *   established IKE SAs, by peer number
 * - `exit`: stops every peer and exits.
 *
 * Options: `--from K --count N` (peers K..K+N-1), `--dvipa A`, `--psk S`, `--cluster-id ID`,
 * `--warm` (warm mode of `@vipsec/ike-v2`: announce IKEV2_MESSAGE_ID_SYNC_SUPPORTED and answer an
 * heir's RFC 6311 message ID sync, so that a warm takeover can adopt the peer's IKE SA).
 */
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { SystemClock } from '@vipsec/clock'
import { buildIpPacket, buildUdp, parseIpPacket, SoftwareEspEngine } from '@vipsec/esp-software'
import { IkeV2Service } from '@vipsec/ike-v2'
import {
  type ChildProposal,
  type Endpoint,
  type IkeProposal,
  type Phase1Policy,
  type Phase2Policy,
  type TrafficSelector,
  type UdpEndpoint
} from '@vipsec/interface'
import { DgramUdpEndpoint, type UdpCounters } from '@vipsec/network-linux'
import { CryptoRandomSource } from '@vipsec/random'
import { peerAddresses, SERVICE, SERVICE_PORT } from './topology.js'

const { values } = parseArgs({
  options: {
    from: { type: 'string' },
    count: { type: 'string' },
    dvipa: { type: 'string' },
    psk: { type: 'string' },
    'cluster-id': { type: 'string' },
    warm: { type: 'boolean' }
  }
})
const FROM = Number(values.from ?? 1)
const COUNT = Number(values.count ?? 1)
const DVIPA = values.dvipa ?? '10.88.0.50'
const PSK = values.psk ?? 'scale bench key'
const CLUSTER_ID = { type: 'fqdn' as const, value: values['cluster-id'] ?? 'vpn.cluster.test' }
const WARM = values.warm === true

const IKE_PROPOSAL: IkeProposal = {
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  prf: ['hmac-sha2-256'],
  keyExchange: ['curve25519']
}
const ESP_PROPOSAL: ChildProposal = {
  protocol: 'esp',
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  keyExchange: ['none'],
  extendedSequenceNumbers: [false]
}
const PHASE1: Phase1Policy = {
  proposals: [IKE_PROPOSAL],
  authMethod: 'psk',
  lifetime: { rekeySeconds: 0, reauthSeconds: 0 },
  liveness: { intervalMs: 0, timeoutMs: 0 }
}
const PHASE2: Phase2Policy = {
  proposals: [ESP_PROPOSAL],
  pfsGroup: 'none',
  lifetime: {
    softSeconds: 0,
    hardSeconds: 0,
    softBytes: 0,
    hardBytes: 0,
    softPackets: 0,
    hardPackets: 0
  }
}
const SERVICE_TS: TrafficSelector = {
  startAddress: '10.77.0.0',
  endAddress: '10.77.0.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}

const noCounters: UdpCounters = {
  sent: () => undefined,
  sendFailed: () => undefined,
  sendQueueFull: () => undefined,
  segmentationRefused: () => undefined,
  receiveTruncated: () => undefined,
  received: () => undefined,
  socketFailed: () => undefined,
  closed: () => undefined
}

interface Peer {
  k: number
  outer: string
  inner: string
  ike: IkeV2Service
  esp: SoftwareEspEngine
  udp500: UdpEndpoint
  udp4500: UdpEndpoint
  sent: number
  replies: number
  /** The first answer after the mark, ms since the epoch (0: none yet). */
  first: number
}

const clock = new SystemClock()
const random = new CryptoRandomSource()
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const peers: Peer[] = []
let mark = Number.POSITIVE_INFINITY
let seq = 0
const timers: NodeJS.Timeout[] = []

function print(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

async function makePeer(k: number): Promise<Peer> {
  const { outer, inner } = peerAddresses(k)
  const esp = new SoftwareEspEngine({ clock, random })
  await esp.start()
  const udp500 = await DgramUdpEndpoint.bind({ address: outer, port: 500 }, noCounters)
  const udp4500 = await DgramUdpEndpoint.bind({ address: outer, port: 4500 }, noCounters)
  const identity = { type: 'fqdn' as const, value: `peer${k}.scale.test` }
  const selector: TrafficSelector = {
    startAddress: inner,
    endAddress: inner,
    protocol: 0,
    startPort: 0,
    endPort: 65535
  }
  const ike = new IkeV2Service(
    { clock, random, espEngine: esp, udp500, udp4500 },
    {
      psks: [{ remote: CLUSTER_ID, secret: PSK }],
      peers: [
        {
          localIdentity: identity,
          remoteIdentity: CLUSTER_ID,
          phase1: PHASE1,
          children: [{ policy: PHASE2, mode: 'tunnel', local: [selector], remote: [SERVICE_TS] }]
        }
      ],
      ...(WARM ? { warm: { enabled: true } } : {})
    }
  )
  await ike.start()
  const peer: Peer = { k, outer, inner, ike, esp, udp500, udp4500, sent: 0, replies: 0, first: 0 }
  ike.espDatagrams$.subscribe(({ data }) => onDatagram(peer, data))
  return peer
}

async function connect(peer: Peer): Promise<boolean> {
  const selector: TrafficSelector = {
    startAddress: peer.inner,
    endAddress: peer.inner,
    protocol: 0,
    startPort: 0,
    endPort: 65535
  }
  try {
    await peer.ike.connect({
      local: { address: peer.outer, port: 500 },
      peer: { address: DVIPA, port: 500 },
      localIdentity: { type: 'fqdn', value: `peer${peer.k}.scale.test` },
      remoteIdentity: CLUSTER_ID,
      phase1: PHASE1,
      child: { policy: PHASE2, mode: 'tunnel', local: [selector], remote: [SERVICE_TS] },
      forceEncapsulation: true
    })
    return true
  } catch {
    return false
  }
}

function send(peer: Peer): void {
  // the send time rides along, so that an answer counts only for a request sent after the mark
  const payload = encoder.encode(`req ${peer.k} ${seq++} ${Date.now()} `)
  const sourcePort = 20000 + (peer.k % 40000)
  const packet = buildIpPacket({
    source: peer.inner,
    destination: SERVICE,
    protocol: 17,
    payload: buildUdp({
      source: peer.inner,
      destination: SERVICE,
      sourcePort,
      destinationPort: SERVICE_PORT,
      payload
    })
  })
  const result = peer.esp.protect(packet)
  if (result.action === 'protect' && result.udp) {
    peer.sent++
    peer.udp4500.send(result.packet, result.to as Endpoint)
  }
}

function onDatagram(peer: Peer, data: Uint8Array): void {
  const result = peer.esp.unprotectUdp(data)
  if (result.action !== 'accept') return
  const info = parseIpPacket(result.packet)
  if (info === undefined || info.protocol !== 17) return
  const text = decoder.decode(result.packet.subarray(info.payloadOffset + 8, info.totalLength))
  const match = new RegExp(`req ${peer.k} \\d+ (\\d+) `).exec(text)
  if (match === null) return
  peer.replies++
  // a reply to a request sent before the mark (one the old owner had carried) is not an answer
  // of the new one
  if (Number(match[1]) >= mark && peer.first === 0) peer.first = Date.now()
}

async function connectAll(concurrency: number): Promise<void> {
  const t0 = Date.now()
  let next = 0
  let ok = 0
  let failed = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, peers.length) }, async () => {
      while (next < peers.length) {
        const peer = peers[next++]!
        if (await connect(peer)) ok++
        else failed++
      }
    })
  )
  print({ type: 'connected', ok, failed, ms: Date.now() - t0 })
}

function startTraffic(everyMs: number): void {
  for (const t of timers) clearInterval(t)
  timers.length = 0
  peers.forEach((peer, i) => {
    const start = setTimeout(
      () => {
        send(peer)
        timers.push(setInterval(() => send(peer), everyMs))
      },
      Math.floor((i * everyMs) / peers.length)
    )
    timers.push(start)
  })
}

/** The drops of every peer's ESP engine by reason, summed (reasons with none left out). */
function espDropped(): Record<string, number> {
  const sum: Record<string, number> = {}
  for (const p of peers)
    for (const [reason, count] of Object.entries(p.esp.counters().dropped))
      if (count > 0) sum[reason] = (sum[reason] ?? 0) + count
  return sum
}

async function main(): Promise<void> {
  for (let k = FROM; k < FROM + COUNT; k++) peers.push(await makePeer(k))
  print({ type: 'ready', peers: peers.length })
  const rl = createInterface({ input: process.stdin })
  for await (const line of rl) {
    const [cmd, arg] = line.trim().split(/\s+/)
    if (cmd === 'connect') await connectAll(Number(arg ?? 32))
    else if (cmd === 'traffic') startTraffic(Number(arg ?? 500))
    else if (cmd === 'mark') {
      mark = Number(arg)
      for (const p of peers) p.first = 0
      print({ type: 'marked', at: mark })
    } else if (cmd === 'report') {
      const firsts = peers
        .filter((p) => p.first !== 0)
        .map((p) => p.first)
        .sort((a, b) => a - b)
      print({
        type: 'report',
        answered: firsts.length,
        sent: peers.reduce((n, p) => n + p.sent, 0),
        replies: peers.reduce((n, p) => n + p.replies, 0),
        firsts,
        espDropped: espDropped()
      })
    } else if (cmd === 'spis') {
      print({
        type: 'spis',
        spis: Object.fromEntries(
          peers.map((p) => [
            p.k,
            p.ike
              .list()
              .map((sa) => `${sa.phase1.ikeSaId.initiatorSpi}/${sa.phase1.ikeSaId.responderSpi}`)
          ])
        )
      })
    } else if (cmd === 'exit') break
  }
  for (const t of timers) clearInterval(t)
  for (const p of peers) {
    await p.ike.stop()
    await p.esp.stop()
    await p.udp500.close()
    await p.udp4500.close()
  }
  process.exit(0)
}

// the bench kills this process by pid if it hangs; stdin closing (the bench died) ends it too
setTimeout(() => process.exit(3), 60 * 60_000).unref()
await main()
