/**
 * One interop cell against charon: configure both ends from the cell (charon by reloading its
 * connection with swanctl, vipsec by restarting its peer process only when its configuration
 * changed), connect from the side the cell names, carry a datagram through the tunnel and back,
 * optionally rekey the Child SA (which exercises the PFS group), read what charon negotiated,
 * and tear down again so that the next cell starts from nothing.
 */
import { expect } from 'chai'
import type { IkeSaRecords, Phase1Policy } from '@vipsec/interface'
import type { IkeConnectRequest } from '@vipsec/interface'
import type {
  FragmentationOptions,
  IkeChildConfig,
  IkeV2Counters,
  IkeV2ServiceInit
} from '../../src/index.js'
import { type Charon, udpRoundTrip, until, VipsecPeer } from '../helpers/netns.js'
import { C_HOST, C_ID, NO_CHILD_LIFETIME, V_ID, V_NET } from '../helpers/policies.js'
import { swanctlConf, type SwanctlAuth } from '../helpers/swanctl.js'
import { espProposals, ikeProposals, pfsGroup } from './names.js'
import { makeChainPki, type ChainKeyKind, type ChainPki } from './pki.js'

/**
 * How a cell authenticates both ends: a PSK, or certificates (`rsa-pss`: RSA keys, vipsec
 * signing with RSASSA-PSS; charon does when started with `rsa_pss = yes`).
 */
export type CellAuth = 'psk' | 'ecdsa' | 'rsa' | 'rsa-pss'

/** One cell of the matrix. */
export interface Cell {
  /** Who initiates the IKE SA. */
  initiator: 'vipsec' | 'charon'
  /** charon's IKE proposals, strongSwan syntax, its order. */
  charonIke: string
  /** charon's ESP proposals. */
  charonEsp: string
  /** vipsec's IKE proposals (default: charon's). */
  vipsecIke?: string
  /** vipsec's ESP proposals (default: charon's). */
  vipsecEsp?: string
  /** Default `psk`. */
  auth?: CellAuth
  /** With certificates: leaves issued by an intermediate CA (2, the default) or the root (1). */
  caDepth?: 1 | 2
  /** Rekey the Child SA once up, started by this side (with the PFS group, if any). */
  rekeyChild?: 'vipsec' | 'charon'
  /** What charon must report for the IKE SA, e.g. `AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519`. */
  expectIke?: string
  /** What charon must report for the Child SA (after the rekey if any), e.g. `AES_GCM_16-256`. */
  expectEsp?: string
  /**
   * IKE fragmentation (RFC 7383): vipsec's options and charon's `fragmentation`. Default:
   * neither is configured (both defaults: on).
   */
  fragmentation?: { vipsec: FragmentationOptions; charon: 'yes' | 'accept' | 'force' | 'no' }
  /**
   * With `initiator: 'vipsec'`: vipsec is not asked to connect, the connection is in its
   * configuration (`connections`, strongSwan's `start_action = start`) and it initiates it when
   * it starts, from a fresh process.
   */
  startAction?: boolean
}

/** What a cell measured. */
export interface CellResult {
  /** Handshake time as the initiator saw it, ms. */
  handshakeMs: number
  /** What charon negotiated: `IKE ...; ESP ...`. */
  negotiated: string
}

/** Where charon and vipsec are and how they reach each other. */
export interface Placement {
  /** vipsec's namespace. */
  vNs: string
  /** vipsec's own address (bound). */
  vAddr: string
  /** vipsec's address as charon sees it (the NAT's outer address behind a NAT). */
  vSeen: string
  /** charon's address. */
  cAddr: string
  /** Whether vipsec forces UDP encapsulation (no NAT between them: kernel-libipsec wants it). */
  forceEncapsulation: boolean
}

const PSK = 'interop matrix key'

/** The PKI a cell's authentication uses (`psk`: none). */
function keyKind(auth: CellAuth): ChainKeyKind | 'psk' {
  return auth === 'rsa-pss' ? 'rsa' : auth
}

/** charon's IKE and Child SA algorithms, from `swanctl --list-sas` (its words). */
export function negotiated(charon: Charon): { ike: string[]; esp: string[] } {
  const text = charon.swanctl(['--list-sas'])
  const ike = [...text.matchAll(/^ {2}([A-Z][A-Z0-9_]*(?:-\d+)?(?:\/[A-Z0-9_-]+)+)$/gm)].map(
    (m) => m[1]!
  )
  const esp = [...text.matchAll(/ESP:(\S+)/g)].map((m) => m[1]!.replace(/,$/, ''))
  return { ike, esp }
}

/** Runs cells against one charon, keeping one vipsec peer process while its config holds. */
export class Harness {
  private peer?: VipsecPeer
  private peerKey = ''
  private logFrom = 0
  private readonly pkis = new Map<ChainKeyKind, ChainPki>()

  /**
   * @param charon - the charon the cells run against (started, with any connection)
   * @param at - where both ends are
   */
  constructor(
    readonly charon: Charon,
    readonly at: Placement
  ) {}

  /** The PKI of `kind`, made once, with leaves for both ends at both depths. */
  private pki(kind: ChainKeyKind): ChainPki {
    let pki = this.pkis.get(kind)
    if (pki === undefined) {
      pki = makeChainPki(kind)
      this.pkis.set(kind, pki)
      this.charon.credential('x509ca', `root-${kind}.pem`, pki.root.pem)
      this.charon.credential('x509ca', `intermediate-${kind}.pem`, pki.intermediate.pem)
      for (const depth of [1, 2] as const) {
        const c = pki.issue(`charon-${depth}`, C_ID.value, depth === 1)
        this.charon.credential('x509', `charon-${kind}-${depth}.pem`, c.pem)
        this.charon.credential('private', `charon-${kind}-${depth}.key`, c.key)
        this.leaves.set(`${kind}-${depth}`, pki.issue(`vipsec-${depth}`, V_ID.value, depth === 1))
      }
    }
    return pki
  }

  private readonly leaves = new Map<string, { der: Uint8Array; key: string }>()

  /** charon's side of the cell. */
  private charonAuth(cell: Cell): SwanctlAuth {
    const auth = keyKind(cell.auth ?? 'psk')
    if (auth === 'psk') return { kind: 'psk', secret: PSK }
    this.pki(auth)
    return {
      kind: 'pubkey',
      cert: `${this.charon.run}/x509/charon-${auth}-${cell.caDepth ?? 2}.pem`,
      cacerts: [`${this.charon.run}/x509ca/root-${auth}.pem`]
    }
  }

  private phase1(cell: Cell): Phase1Policy {
    return {
      proposals: ikeProposals(cell.vipsecIke ?? cell.charonIke),
      authMethod: (cell.auth ?? 'psk') === 'psk' ? 'psk' : 'digital-signature',
      lifetime: { rekeySeconds: 0, reauthSeconds: 0 },
      liveness: { intervalMs: 0, timeoutMs: 0 }
    }
  }

  private child(cell: Cell): IkeChildConfig {
    const esp = cell.vipsecEsp ?? cell.charonEsp
    return {
      policy: {
        proposals: espProposals(esp),
        pfsGroup: pfsGroup(esp),
        lifetime: NO_CHILD_LIFETIME
      },
      mode: 'tunnel',
      local: [V_NET],
      remote: [C_HOST]
    }
  }

  /** The vipsec peer for this cell: the running one if its configuration is the same. */
  private async vipsec(cell: Cell): Promise<VipsecPeer> {
    const auth = keyKind(cell.auth ?? 'psk')
    let creds: Partial<IkeV2ServiceInit> = { psks: [{ remote: C_ID, secret: PSK }] }
    if (auth !== 'psk') {
      const pki = this.pki(auth)
      const leaf = this.leaves.get(`${auth}-${cell.caDepth ?? 2}`)!
      creds = {
        certificates: [
          {
            identity: V_ID,
            certificate: leaf.der,
            privateKey: leaf.key,
            intermediates: (cell.caDepth ?? 2) === 2 ? [pki.intermediate.der] : []
          }
        ],
        trustAnchors: [{ certificate: pki.root.der }],
        rsaPss: cell.auth === 'rsa-pss'
      }
    }
    const init: IkeV2ServiceInit = {
      ...creds,
      ...(cell.fragmentation === undefined ? {} : { fragmentation: cell.fragmentation.vipsec }),
      ...(cell.startAction === true
        ? { connections: [{ name: 'charon', request: this.request(cell), retryDelayMs: 1000 }] }
        : {}),
      retransmit: { timeoutMs: 1000, backoff: 1.5, tries: 3 },
      peers: [
        {
          localIdentity: V_ID,
          remoteIdentity: C_ID,
          phase1: this.phase1(cell),
          children: [this.child(cell)]
        }
      ]
    }
    const key = JSON.stringify(init, (_k, x: unknown) =>
      x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x
    )
    // a connection started at start needs a fresh process (and leaves none to reuse)
    if (this.peer !== undefined && key === this.peerKey && cell.startAction !== true)
      return this.peer
    await this.peer?.stop()
    this.peer = new VipsecPeer(this.at.vNs, { address: this.at.vAddr, init })
    await this.peer.start()
    this.peerKey = cell.startAction === true ? '' : key
    return this.peer
  }

  /** What vipsec initiates for a cell. */
  private request(cell: Cell): IkeConnectRequest {
    return {
      local: { address: this.at.vAddr, port: 500 },
      peer: { address: this.at.cAddr, port: 500 },
      localIdentity: V_ID,
      remoteIdentity: C_ID,
      phase1: this.phase1(cell),
      child: this.child(cell),
      forceEncapsulation: this.at.forceEncapsulation
    }
  }

  /** vipsec's counters (IKE, with fragments; ESP). */
  async counters(): Promise<{ ike: IkeV2Counters }> {
    return this.current.call<{ ike: IkeV2Counters }>('counters')
  }

  /** charon's log lines that say why something failed (the last few). */
  why(): string {
    const lines = this.charon
      .log(this.logFrom)
      .split('\n')
      .filter((l) =>
        /^(?!.*\[LIB\]).*(fail|error|NO_PROPOSAL|AUTHENTICATION|no acceptable|not acceptable|unable|invalid|TS_UNACCEPTABLE|constraint)/i.test(
          l
        )
      )
    return `charon: ${lines.slice(-6).join(' / ')}`
  }

  /** The vipsec peer of the last cell (e.g. for a stream under traffic). */
  get current(): VipsecPeer {
    if (this.peer === undefined) throw new Error('no cell ran yet')
    return this.peer
  }

  /** Runs a cell up to a working tunnel (left up: call {@link down} after). */
  async up(cell: Cell): Promise<CellResult & { sa: IkeSaRecords }> {
    this.logFrom = this.charon.logLength()
    this.charon.load(
      swanctlConf([
        {
          localAddrs: this.at.cAddr,
          remoteAddrs: this.at.vSeen,
          proposals: cell.charonIke,
          espProposals: cell.charonEsp,
          localId: C_ID.value,
          remoteId: V_ID.value,
          auth: this.charonAuth(cell),
          localTs: '172.16.2.1/32',
          remoteTs: '172.16.1.0/24',
          ...(cell.fragmentation === undefined ? {} : { fragmentation: cell.fragmentation.charon })
        }
      ])
    )
    const started = performance.now()
    const peer = await this.vipsec(cell)
    const list = (): Promise<IkeSaRecords[]> => peer.call<IkeSaRecords[]>('list')
    // a connection started at start: from the process's start to the IKE SA at vipsec
    const t0 = cell.startAction === true ? started : performance.now()
    if (cell.initiator === 'vipsec' && cell.startAction === true) {
      // nothing to ask: the process initiates its configured connection once started
    } else if (cell.initiator === 'vipsec') {
      try {
        await peer.call<IkeSaRecords>('connect', this.request(cell))
      } catch (err) {
        throw new Error(`vipsec connect: ${(err as Error).message}; ${this.why()}`, { cause: err })
      }
    } else {
      try {
        this.charon.swanctl(['--initiate', '--child', 'net', '--ike', 'vipsec', '--timeout', '20'])
      } catch (err) {
        throw new Error(`charon could not initiate; ${this.why()}`, { cause: err })
      }
    }
    let handshakeMs = performance.now() - t0
    await until(
      async () => (await list()).length === 1,
      'vipsec to hold the IKE SA',
      () => this.why()
    )
    if (cell.startAction === true) handshakeMs = performance.now() - t0
    expect(this.charon.ikeSas(), 'IKE SAs at charon').to.have.length(1)
    const detail = (): string => this.why()
    await udpRoundTrip(peer, `cell-${Date.now()}`, { detail })
    if (cell.rekeyChild !== undefined) {
      const before = (await list())[0]!.phase2[0]!
      if (cell.rekeyChild === 'vipsec') await peer.call('rekeyChildSa', before.id)
      else this.charon.swanctl(['--rekey', '--child', 'net'])
      await until(
        async () => {
          const l = await list()
          const c = this.charon.children()
          return (
            l[0]?.phase2.length === 1 &&
            l[0].phase2[0]!.id !== before.id &&
            c.length === 1 &&
            c[0]!.out === l[0].phase2[0]!.inboundSpi
          )
        },
        'both ends to hold only the rekeyed Child SA',
        detail
      )
      await udpRoundTrip(peer, `cell-rekeyed-${Date.now()}`, { detail })
    }
    if (keyKind(cell.auth ?? 'psk') !== 'psk' && (cell.caDepth ?? 2) === 2) {
      // vipsec sent its intermediate in a second CERT payload
      expect(this.charon.log(this.logFrom), 'charon received vipsec’s intermediate').to.match(
        /received issuer cert .*CN=Intermediate CA/
      )
    }
    const n = negotiated(this.charon)
    if (cell.expectIke !== undefined) expect(n.ike, 'charon IKE SA').to.deep.equal([cell.expectIke])
    if (cell.expectEsp !== undefined)
      expect(n.esp, 'charon Child SA').to.deep.equal([cell.expectEsp])
    return {
      handshakeMs,
      negotiated: `IKE ${n.ike.join(' ')}; ESP ${n.esp.join(' ')}`,
      sa: (await list())[0]!
    }
  }

  /** Tears the cell's SAs down at both ends (charon deletes; vipsec must follow). */
  async down(): Promise<void> {
    await this.charon.terminateAll()
    const peer = this.peer
    if (peer === undefined) return
    try {
      await until(
        async () => (await peer.call<unknown[]>('list')).length === 0,
        'vipsec to drop its SAs',
        () => '',
        5000
      )
    } catch {
      for (const sa of await peer.call<IkeSaRecords[]>('list'))
        await peer.call('deleteIkeSa', sa.phase1.id).catch(() => undefined)
    }
  }

  /** Stops the vipsec peer and removes the PKIs' temp dirs. */
  async dispose(): Promise<void> {
    await this.peer?.stop()
    for (const pki of this.pkis.values()) pki.dispose()
  }
}
