/**
 * One IKE SA: its state, keys and Child SAs, and its {@link TaskManager}, which owns the
 * message-ID window of both roles (our requests and the peer's).
 *
 * @module
 */
import {
  type ChildLifetime,
  type Endpoint,
  type DynamicFilter,
  type Identity,
  type Phase1Policy,
  type Phase1Record,
  type Phase2Policy,
  type Phase2Record,
  type TimerHandle,
  type TrafficSelector
} from '@vipsec/interface'
import { IDLE, type ChildRekey, type IkeRekey } from './collision.js'
import { writeU32 } from '@vipsec/wire'
import { HeaderFlag } from './constants.js'
import { encryptMessage, toHex, type ChildKeys, type IkeKeys, type SkKeys } from './crypto.js'
import { maxIkeLength, protect } from './fragments.js'
import { encodeMessage, type IkeHeader, type Payload, type WireTrafficSelector } from './message.js'
import { TaskManager, type TaskManagerSa } from './task-manager.js'
import type { ChosenChild, ChosenIke } from './proposals.js'
import type { IkeContext } from './context.js'
import type { ChildRequest } from './tasks/child.js'
import { fromWireSelector } from './selectors.js'
import { spiKey } from './sa-table.js'

/** A Child SA of an IKE SA. */
export interface ChildSa {
  /** The phase 2 record id. */
  id: string
  /** Our inbound SPI. */
  inboundSpi: number
  /** The peer's inbound SPI (our outbound). */
  outboundSpi: number
  /** The chosen transforms. */
  chosen: ChosenChild
  /** The policy it was made from. */
  policy: Phase2Policy
  /** The mode. */
  mode: 'tunnel' | 'transport'
  /** Our selectors. */
  local: WireTrafficSelector[]
  /** The peer's selectors. */
  remote: WireTrafficSelector[]
  /** Whether ESP is carried in UDP. */
  encapsulated: boolean
  /** The keys (empty once installed: the ESP engine holds them). */
  keys: ChildKeys
  /** Whether we initiated the exchange that created it. */
  initiator: boolean
  /** The nonces of that exchange (for rekey collisions). */
  nonces: Uint8Array[]
  /** When it was established (wall ms). */
  establishedAt: number
  /** The ESP engine filters made for it, inbound ones pinned to its SPI. */
  filters: DynamicFilter[]
  /** Where a rekey of this Child SA stands (collisions included). */
  rekey: ChildRekey
  /** A redundant Child SA of a rekey collision: never announced, so its deletion is not either. */
  silent?: boolean
  /** The selectors in text form, computed once for the records. */
  selectors?: { local: TrafficSelector[]; remote: TrafficSelector[] }
  /**
   * Warm mode: where the ESP sequence numbers go on (an adopted Child SA) and the outbound
   * limit the state sink gave, passed to the engine when it is installed.
   */
  sequences?: { outbound?: bigint; inbound?: bigint; limit?: bigint }
}

/** No bytes (shared: nothing writes into an empty array). */
const NO_BYTES = new Uint8Array(0)

/** Where an IKE SA stands. */
export type IkeSaState = 'init' | 'auth' | 'established' | 'rekeyed' | 'deleting' | 'deleted'

/** The options of an IKE SA's peer and policy, fixed when it is created. */
export interface IkeSaParams {
  /** Whether this side is the original initiator. */
  initiator: boolean
  /** Our SPI. */
  localSpi: Uint8Array
  /** The local endpoint (port 500; 4500 once switched). */
  local: Endpoint
  /** The peer's endpoint. */
  remote: Endpoint
  /** The phase 1 policy. */
  policy: Phase1Policy
  /** Our identity (undefined on a responder until IKE_AUTH). */
  localIdentity?: Identity
  /** The peer's expected identity. */
  remoteIdentity?: Identity
}

/** One IKE SA; it is also what its task manager knows of it. */
export class IkeSa implements TaskManagerSa {
  /** Whether we are the original initiator. */
  readonly initiator: boolean
  /** SPIi. */
  spiI: Uint8Array
  /** SPIr (zero until known). */
  spiR: Uint8Array
  /** State. */
  state: IkeSaState = 'init'
  /** The local endpoint messages go out of. */
  local: Endpoint
  /** The peer's endpoint. */
  remote: Endpoint
  /** The phase 1 policy. */
  policy: Phase1Policy
  /** Our identity. */
  localIdentity?: Identity
  /** The peer's identity. */
  remoteIdentity?: Identity
  /** The chosen IKE transforms. */
  chosen?: ChosenIke
  /** The keys. */
  keys?: IkeKeys
  /** Ni and Nr of IKE_SA_INIT (or of the rekey). */
  ni: Uint8Array = NO_BYTES
  /** Nr. */
  nr: Uint8Array = NO_BYTES
  /** Our IKE_SA_INIT message as sent, and the peer's as received (for AUTH). */
  ourInit: Uint8Array = NO_BYTES
  /** The peer's IKE_SA_INIT message. */
  peerInit: Uint8Array = NO_BYTES
  /**
   * The hash algorithms the peer's SIGNATURE_HASH_ALGORITHMS notify named (RFC 7427 section 4,
   * IANA numbers: 2 SHA2-256, 3 SHA2-384, 4 SHA2-512); undefined when it sent none.
   */
  peerSignatureHashes?: number[]
  /** NAT state. */
  nat = { localBehindNat: false, remoteBehindNat: false, encapsulated: false }
  /** Whether IKE is carried on port 4500 with the non-ESP marker. */
  natT = false
  /**
   * IKE fragmentation (RFC 7383): whether we announced IKEV2_FRAGMENTATION_SUPPORTED (and so
   * take the peer's fragments), whether the peer did, and whether local configuration lets us
   * fragment what we send to this peer. We fragment only when all three hold.
   */
  fragmentation = { announced: false, peer: false, send: false }
  /**
   * RFC 6311: whether we announced IKEV2_MESSAGE_ID_SYNC_SUPPORTED in IKE_AUTH, and whether the
   * peer did. A message ID sync is sent or answered only when both did.
   */
  midSync = { announced: false, peer: false }
  /** Child SAs by record id. */
  readonly children = new Map<string, ChildSa>()
  /** The Child SAs local policy accepts when the peer asks for one with CREATE_CHILD_SA. */
  childConfigs: ChildRequest[] = []
  /** When established (wall ms). */
  establishedAt = 0
  /** Monotonic ms at which this SA's authentication is renewed (kept across IKE rekeys). */
  reauthAt?: number
  /** Monotonic ms of the last message received from the peer. */
  lastReceived = 0
  /** The message-ID window of both roles: our requests and the peer's. */
  readonly tasks: TaskManager
  private ivCounter = 0
  /**
   * The high 32 bits of the counter IVs (AES-GCM, ChaCha20-Poly1305): 0 on the SA's maker, a
   * random value on an heir that adopted it, which cannot know how many IVs the maker used.
   */
  ivHigh = 0
  /** Timers owned by this SA (keep-alive, liveness). */
  readonly timers: TimerHandle[] = []
  /** A responder's timer that destroys the SA if it is still half-open (cleared when it settles). */
  halfOpenTimer?: TimerHandle
  /** Where a rekey of this IKE SA stands (collisions included, RFC 7296 section 2.8.2). */
  rekey: IkeRekey = IDLE

  /**
   * @param ctx - the service context
   * @param params - role, SPI, endpoints, policy
   */
  constructor(
    private readonly ctx: IkeContext,
    params: IkeSaParams
  ) {
    this.initiator = params.initiator
    this.spiI = params.initiator ? params.localSpi : new Uint8Array(8)
    this.spiR = params.initiator ? new Uint8Array(8) : params.localSpi
    this.local = params.local
    this.remote = params.remote
    this.policy = params.policy
    this.localIdentity = params.localIdentity
    this.remoteIdentity = params.remoteIdentity
    this.tasks = new TaskManager(ctx, this)
  }

  /** Whether SK keys exist (false before IKE_SA_INIT completes). */
  hasKeys(): boolean {
    return this.keys !== undefined && this.chosen !== undefined
  }

  /** Sends a message of this SA to the peer. */
  send(packet: Uint8Array): void {
    this.ctx.send(this, packet)
  }

  /** Notes that an authenticated message came from the peer (liveness). */
  touch(): void {
    this.lastReceived = this.ctx.clock.monotonic()
  }

  /** Whether we announced IKEV2_FRAGMENTATION_SUPPORTED (and so take the peer's fragments). */
  acceptsFragments(): boolean {
    return this.fragmentation.announced
  }

  /** Whether a peer's RFC 6311 message ID sync may be answered: both announced it, established. */
  acceptsMidSync(): boolean {
    return this.midSync.announced && this.midSync.peer && this.state === 'established'
  }

  /** Our SPI. */
  get localSpi(): Uint8Array {
    return this.initiator ? this.spiI : this.spiR
  }

  /** Our SPI's key in the SA table ({@link spiKey}; made again only when the SPI is replaced). */
  get key(): string {
    const spi = this.localSpi
    if (this.keyOf !== spi || this.keyText === undefined) {
      this.keyOf = spi
      this.keyText = spiKey(spi)
    }
    return this.keyText
  }
  private keyOf: Uint8Array | undefined
  private keyText: string | undefined

  /** The phase 1 record id (formatted again only when an SPI array is replaced). */
  get id(): string {
    if (this.idOf[0] !== this.spiI || this.idOf[1] !== this.spiR || this.idText === undefined) {
      this.idOf[0] = this.spiI
      this.idOf[1] = this.spiR
      this.idText = `ike-${toHex(this.spiI)}-${toHex(this.spiR)}`
    }
    return this.idText
  }
  private readonly idOf: [Uint8Array | undefined, Uint8Array | undefined] = [undefined, undefined]
  private idText: string | undefined

  /** The SK keys we send with. */
  outKeys(): SkKeys {
    const k = this.keys!
    const c = this.chosen!
    return {
      encryption: c.encryption,
      integrity: c.integrity,
      encryptionKey: this.initiator ? k.skEi : k.skEr,
      integrityKey: this.initiator ? k.skAi : k.skAr
    }
  }

  /** The SK keys the peer sends with. */
  inKeys(): SkKeys {
    const k = this.keys!
    const c = this.chosen!
    return {
      encryption: c.encryption,
      integrity: c.integrity,
      encryptionKey: this.initiator ? k.skEr : k.skEi,
      integrityKey: this.initiator ? k.skAr : k.skAi
    }
  }

  private nextIv(): Uint8Array {
    const algorithm = this.chosen!.encryption.algorithm
    if (algorithm === 'aes-gcm-16' || algorithm === 'chacha20-poly1305') {
      // RFC 5282, RFC 7634: the IV must never repeat under a key; a counter guarantees it (a
      // number: exact to 2^53, far beyond the messages an IKE SA sends before it is rekeyed)
      const n = ++this.ivCounter
      const high = Math.floor(n / 0x1_0000_0000)
      const iv = new Uint8Array(8)
      writeU32(iv, 0, (this.ivHigh + high) >>> 0)
      writeU32(iv, 4, n - high * 0x1_0000_0000)
      return iv
    }
    return this.ctx.random.randomBytes(16)
  }

  /** The header of a message of this SA (IKEv2, the initiator and response flags set as due). */
  private header(
    exchange: number,
    messageId: number,
    response: boolean
  ): Omit<IkeHeader, 'nextPayload' | 'length'> {
    return {
      spiI: this.spiI,
      spiR: this.spiR,
      version: 0x20,
      exchange,
      flags: (this.initiator ? HeaderFlag.INITIATOR : 0) | (response ? HeaderFlag.RESPONSE : 0),
      messageId
    }
  }

  /** Builds an encrypted message of this SA. */
  encrypt(exchange: number, messageId: number, response: boolean, payloads: Payload[]): Uint8Array {
    return encryptMessage(
      this.header(exchange, messageId, response),
      payloads,
      this.outKeys(),
      this.nextIv()
    )
  }

  /**
   * Builds an encrypted message of this SA, as fragments (RFC 7383) when it is larger than the
   * fragment size and fragmentation was negotiated and is allowed for this peer.
   */
  protect(
    exchange: number,
    messageId: number,
    response: boolean,
    payloads: Payload[]
  ): Uint8Array[] {
    const f = this.fragmentation
    const max =
      f.announced && f.peer && f.send
        ? maxIkeLength(
            this.ctx.init.fragmentation.fragmentSize,
            this.remote.address.includes(':'),
            this.natT
          )
        : undefined
    return protect(
      this.header(exchange, messageId, response),
      payloads,
      this.outKeys(),
      () => this.nextIv(),
      max
    )
  }

  /** Builds an unencrypted message of this SA. */
  plain(exchange: number, messageId: number, response: boolean, payloads: Payload[]): Uint8Array {
    return encodeMessage(this.header(exchange, messageId, response), payloads)
  }

  /** Fails the outstanding request and cancels every timer. */
  close(reason: Error): void {
    this.state = 'deleted'
    this.tasks.close(reason)
    for (const t of this.timers) this.ctx.clock.clearTimeout(t)
    this.timers.length = 0
    this.settled()
  }

  /**
   * IKE_AUTH is over (or the SA is closed): the half-open timer is cleared, and the IKE_SA_INIT
   * messages, which only the AUTH payloads sign, are let go with the keys that only served
   * AUTH.
   */
  settled(): void {
    if (this.halfOpenTimer !== undefined) {
      this.ctx.clock.clearTimeout(this.halfOpenTimer)
      this.halfOpenTimer = undefined
    }
    this.ourInit = NO_BYTES
    this.peerInit = NO_BYTES
    // SKEYSEED and the AUTH keys have done their work (SK_d, SK_a and SK_e are kept)
    const keys = this.keys
    if (keys !== undefined) {
      keys.skeyseed = NO_BYTES
      keys.skPi = NO_BYTES
      keys.skPr = NO_BYTES
    }
  }

  /** The phase 1 record of this SA. */
  record(): Phase1Record {
    const id = this.id
    return {
      v: 1,
      kind: 'phase1',
      id,
      dvipa: this.local.address,
      ikeSaId: {
        // the two SPIs as the record id spells them ("ike-<SPIi>-<SPIr>")
        initiatorSpi: id.slice(4, 20),
        responderSpi: id.slice(21)
      },
      role: this.initiator ? 'initiator' : 'responder',
      localIdentity: this.localIdentity!,
      remoteIdentity: this.remoteIdentity!,
      local: { ...this.local },
      peer: { ...this.remote },
      nat: { ...this.nat },
      policy: this.policy,
      establishedAt: this.establishedAt
    }
  }
}

/** The default Child SA lifetime when a policy has none. */
export const NO_LIFETIME: ChildLifetime = {
  softSeconds: 0,
  hardSeconds: 0,
  softBytes: 0,
  hardBytes: 0,
  softPackets: 0,
  hardPackets: 0
}

/** Formats an SPI as 8 hex digits. */
export function spiHex(spi: number): string {
  return (
    HEX[(spi >>> 24) & 0xff]! +
    HEX[(spi >>> 16) & 0xff]! +
    HEX[(spi >>> 8) & 0xff]! +
    HEX[spi & 0xff]!
  )
}

/** Two hexadecimal digits for each byte value. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/** The phase 2 record of a Child SA. */
export function childRecord(sa: IkeSa, child: ChildSa): Phase2Record {
  return {
    v: 1,
    kind: 'phase2',
    id: child.id,
    dvipa: sa.local.address,
    protocol: 'esp',
    inboundSpi: spiHex(child.inboundSpi),
    outboundSpi: spiHex(child.outboundSpi),
    mode: child.mode,
    policy: child.policy,
    selectors: {
      local: (child.selectors ??= {
        local: child.local.map(fromWireSelector),
        remote: child.remote.map(fromWireSelector)
      }).local.map((t) => ({ ...t })),
      remote: child.selectors.remote.map((t) => ({ ...t }))
    },
    encapsulation: child.encapsulated ? 'udp' : 'none',
    establishedAt: child.establishedAt
  }
}

/** The identities an `ike:failed` event names: their values, where the IKE SA knows them. */
export interface IdentityFields {
  /** This end's identity. */
  localId?: string
  /** The peer's identity (expected, or authenticated). */
  remoteId?: string
}

/**
 * The identities of an IKE SA for an `ike:failed` event (none that it does not know yet).
 *
 * @param sa - the IKE SA
 */
export function identityFields(
  sa: Pick<IkeSa, 'localIdentity' | 'remoteIdentity'>
): IdentityFields {
  return {
    ...(sa.localIdentity === undefined ? {} : { localId: sa.localIdentity.value }),
    ...(sa.remoteIdentity === undefined ? {} : { remoteId: sa.remoteIdentity.value })
  }
}
