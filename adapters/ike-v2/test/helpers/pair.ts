/** Two IkeV2Services over a MemoryNetwork with a shared virtual clock and seeded randomness. */
import type {
  ChildProposal,
  Identity,
  TrafficSelector,
  IkeConnectRequest,
  IkeEvent,
  IkeProposal,
  Phase1Policy,
  Phase2Policy
} from '@vipsec/interface'
import { IkeV2Service, type IkeV2ServiceInit } from '../../src/index.js'
import { VirtualClock } from '@vipsec/clock'
import { SeededRandomSource } from '@vipsec/random'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import { MemoryNetwork } from './network.js'

export const IKE_PROPOSAL: IkeProposal = {
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  prf: ['hmac-sha2-256'],
  keyExchange: ['curve25519']
}

export const ESP_PROPOSAL: ChildProposal = {
  protocol: 'esp',
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  keyExchange: ['none', 'curve25519', 'ecp256', 'modp2048'],
  extendedSequenceNumbers: [false]
}

export function phase1(overrides: Partial<Phase1Policy> = {}): Phase1Policy {
  return {
    proposals: [IKE_PROPOSAL],
    authMethod: 'psk',
    lifetime: { rekeySeconds: 0, reauthSeconds: 0 },
    liveness: { intervalMs: 0, timeoutMs: 0 },
    ...overrides
  }
}

export function phase2(overrides: Partial<Phase2Policy> = {}): Phase2Policy {
  return {
    proposals: [ESP_PROPOSAL],
    pfsGroup: 'none',
    lifetime: {
      softSeconds: 0,
      hardSeconds: 0,
      softBytes: 0,
      hardBytes: 0,
      softPackets: 0,
      hardPackets: 0
    },
    ...overrides
  }
}

export const A_ID = { type: 'fqdn' as const, value: 'a.example' }
export const B_ID = { type: 'fqdn' as const, value: 'b.example' }
export const A_NET = {
  startAddress: '172.16.1.0',
  endAddress: '172.16.1.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}
export const B_NET = {
  startAddress: '172.16.2.0',
  endAddress: '172.16.2.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}

export interface PairOptions {
  /** Init of A (the initiator). */
  a?: IkeV2ServiceInit
  /** Init of B (the responder). */
  b?: IkeV2ServiceInit
  /** Phase 1 policy of B's peer config. */
  bPhase1?: Phase1Policy
  /** Phase 2 policy of B's peer config. */
  bPhase2?: Phase2Policy
  /** Seed. */
  seed?: string
  /** Wall time the virtual clock starts at (certificates need the real date). */
  startTime?: number
  /** A's identity (default a.example). */
  aId?: Identity
  /** B's identity (default b.example). */
  bId?: Identity
  /** The outer addresses of A and B (default 10.0.0.1 and 10.0.0.2). */
  addresses?: { a: string; b: string }
  /** The inner networks of A and B (default A_NET and B_NET). */
  nets?: { a: TrafficSelector; b: TrafficSelector }
}

export function makePair(opts: PairOptions = {}) {
  const net = new MemoryNetwork()
  const clock = new VirtualClock({ startTime: opts.startTime })
  const aAddr = opts.addresses?.a ?? '10.0.0.1'
  const bAddr = opts.addresses?.b ?? '10.0.0.2'
  const aNet = opts.nets?.a ?? A_NET
  const bNet = opts.nets?.b ?? B_NET
  const aId = opts.aId ?? A_ID
  const bId = opts.bId ?? B_ID
  const aEngine = new SoftwareEspEngine({ clock })
  const bEngine = new SoftwareEspEngine({ clock })
  const seed = opts.seed ?? 'pair'
  const psks = [
    { remote: bId, secret: 'shared secret' },
    { remote: aId, secret: 'shared secret' }
  ]
  const a = new IkeV2Service(
    {
      clock,
      random: new SeededRandomSource({ seed: `${seed}-a` }),
      espEngine: aEngine,
      udp500: net.bind(aAddr, 500),
      udp4500: net.bind(aAddr, 4500)
    },
    { psks, retransmit: { timeoutMs: 1000, backoff: 2, tries: 4 }, ...opts.a }
  )
  const b = new IkeV2Service(
    {
      clock,
      random: new SeededRandomSource({ seed: `${seed}-b` }),
      espEngine: bEngine,
      udp500: net.bind(bAddr, 500),
      udp4500: net.bind(bAddr, 4500)
    },
    {
      psks,
      retransmit: { timeoutMs: 1000, backoff: 2, tries: 4 },
      peers: [
        {
          localIdentity: bId,
          remoteIdentity: aId,
          phase1: opts.bPhase1 ?? phase1(),
          children: [
            { policy: opts.bPhase2 ?? phase2(), mode: 'tunnel', local: [bNet], remote: [aNet] }
          ]
        }
      ],
      ...opts.b
    }
  )
  const aEvents: IkeEvent[] = []
  const bEvents: IkeEvent[] = []
  a.events$.subscribe((e) => aEvents.push(e))
  b.events$.subscribe((e) => bEvents.push(e))

  const request = (overrides: Partial<IkeConnectRequest> = {}): IkeConnectRequest => ({
    local: { address: aAddr, port: 500 },
    peer: { address: bAddr, port: 500 },
    localIdentity: aId,
    remoteIdentity: bId,
    phase1: phase1(),
    child: { policy: phase2(), mode: 'tunnel', local: [aNet], remote: [bNet] },
    ...overrides
  })

  /** Runs the event loop, advancing the virtual clock when idle, until `p` settles. */
  async function drive<T>(p: Promise<T>, maxMs = 120_000): Promise<T> {
    let settled = false
    const q = p.finally(() => {
      settled = true
    })
    q.catch(() => undefined)
    for (let t = 0; !settled && t <= maxMs; t += 250) {
      for (let i = 0; i < 20 && !settled; i++) await new Promise((r) => setImmediate(r))
      if (!settled) await clock.advance(250)
    }
    return q
  }

  /** Lets queued datagrams be delivered without moving time. */
  async function settle(): Promise<void> {
    for (let i = 0; i < 40; i++) await new Promise((r) => setImmediate(r))
  }

  async function start(): Promise<void> {
    await aEngine.start()
    await bEngine.start()
    await a.start()
    await b.start()
  }

  async function stop(): Promise<void> {
    await a.stop()
    await b.stop()
    await aEngine.stop()
    await bEngine.stop()
  }

  return {
    net,
    clock,
    a,
    b,
    aEngine,
    bEngine,
    aEvents,
    bEvents,
    request,
    drive,
    settle,
    start,
    stop
  }
}
