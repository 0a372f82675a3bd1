/**
 * Warm-mode test harness: a fake IKE service that exports, adopts and renegotiates, installing
 * real ESP SAs in a software engine, and the parts a takeover needs over a memory store.
 */
import { NEVER } from 'rxjs'
import { type VirtualClock } from '@vipsec/clock'
import { samplePhase1, samplePhase2 } from '@vipsec/compliance/coupling-store'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import { type MemoryCouplingStore } from '@vipsec/store-memory'
import {
  type AdoptionOutcome,
  type AdoptionRequest,
  type DistributionEvent,
  type DvipaRecord,
  type Fence,
  type IkeSaRecords,
  type IkeSaState,
  type IkeService,
  type IkeStateSink,
  type Phase1Record,
  type Phase2Record,
  type RenegotiationOutcome,
  type TakeoverReport
} from '@vipsec/interface'
import {
  ConnectionTable,
  WarmKeySet,
  WarmRecorder,
  runTakeover,
  type TakeoverParts
} from '../../src/index.js'

export const DVIPA = '10.0.0.100'

/** A 32-byte secret made of one repeated byte. */
export const secret = (byte: number): Uint8Array => new Uint8Array(32).fill(byte)

/** A key set with keys k1 and k2, sealing under `current`. */
export function keySet(current = 'k1'): WarmKeySet {
  return new WarmKeySet({ keys: { k1: secret(1), k2: secret(2) }, current })
}

/** IKE SA n with its Child SA n. */
export function sa(n: number): IkeSaRecords {
  return { phase1: samplePhase1(DVIPA, n), phase2: [samplePhase2(DVIPA, n)] }
}

/** A state of IKE SA n as a warm engine would export it. */
export function stateOf(records: IkeSaRecords, midSync = true): IkeSaState {
  return { records, secret: new TextEncoder().encode(`keys of ${records.phase1.id}`), midSync }
}

/** The ESP key of a Child SA (the same on owner and heir: the key carries over). */
export function childKey(child: Phase2Record): Uint8Array {
  const key = new Uint8Array(36)
  const spi = Number.parseInt(child.outboundSpi, 16)
  for (let i = 0; i < key.length; i++) key[i] = ((spi >>> (8 * (i % 4))) & 0xff) ^ i
  return key
}

/** The outbound ESP SA a Child SA installs (real software engine). */
export function installChild(
  esp: SoftwareEspEngine,
  child: Phase2Record,
  initialSequence = 0n,
  sequenceLimit?: bigint
): void {
  const spi = Number.parseInt(child.outboundSpi, 16)
  esp.addSa({
    spi,
    direction: 'outbound',
    mode: 'tunnel',
    algorithm: 'aes-gcm-16',
    keyMaterial: childKey(child),
    extendedSequenceNumbers: false,
    lifetime: {
      softSeconds: 0,
      hardSeconds: 0,
      softBytes: 0,
      hardBytes: 0,
      softPackets: 0,
      hardPackets: 0
    },
    tunnel: { local: DVIPA, remote: '198.51.100.2' },
    initialSequence,
    ...(sequenceLimit !== undefined ? { sequenceLimit } : {}),
    tag: child.id
  })
  esp.installFilter({
    id: `${child.id}/out`,
    direction: 'outbound',
    selector: {
      source: '0.0.0.0/0',
      destination: '0.0.0.0/0',
      protocol: 0,
      sourcePorts: [0, 65535],
      destinationPorts: [0, 65535]
    },
    action: 'protect',
    priority: 100,
    spi
  })
}

/** What the fake IKE service was asked. */
export interface FakeIkeLog {
  adopted: AdoptionRequest[]
  /** How many requests each `adopt` call had. */
  adoptCalls: number[]
  renegotiated: string[]
}

/**
 * A fake warm IKE service: `adopt` installs the outbound SAs of peers that announced RFC 6311
 * from the sequences given (unless `failSync` names the IKE SA; `failAfterInstall` installs and
 * removes them again, as a sync that failed), `renegotiate` makes new SAs.
 */
export function fakeIke(
  esp: SoftwareEspEngine | undefined,
  options: { failSync?: Set<string>; failAfterInstall?: Set<string>; noAdopt?: boolean } = {}
): IkeService & { log: FakeIkeLog; sink: IkeStateSink | undefined } {
  const log: FakeIkeLog = { adopted: [], adoptCalls: [], renegotiated: [] }
  const states = new Map<string, IkeSaState>()
  const service = {
    log,
    sink: undefined as IkeStateSink | undefined,
    events$: NEVER,
    start: async () => undefined,
    stop: async () => undefined,
    isStarted: () => true,
    list: () => [],
    setStateSink(sink: IkeStateSink | undefined) {
      service.sink = sink
    },
    exportState(phase1Id: string): IkeSaState {
      const state = states.get(phase1Id)
      if (state === undefined) throw new Error(`no ${phase1Id}`)
      return state
    },
    async adopt(requests: AdoptionRequest[]): Promise<AdoptionOutcome[]> {
      log.adoptCalls.push(requests.length)
      return requests.map((request) => {
        log.adopted.push(request)
        const records = request.state.records
        if (!request.state.midSync || options.failSync?.has(records.phase1.id))
          return {
            status: 'failed',
            previous: records,
            reason: request.state.midSync ? 'TIMEOUT' : 'UNSUPPORTED',
            message: 'no sync'
          }
        for (const child of records.phase2) {
          const seq = request.sequences[child.id]!
          if (esp !== undefined) installChild(esp, child, seq.outbound, seq.limit)
        }
        if (options.failAfterInstall?.has(records.phase1.id)) {
          for (const child of records.phase2) {
            esp?.removeFilter(`${child.id}/out`)
            esp?.removeSa(Number.parseInt(child.outboundSpi, 16), 'outbound')
          }
          return {
            status: 'failed',
            previous: records,
            reason: 'TIMEOUT',
            message: 'no answer to the sync',
            installed: true
          }
        }
        states.set(records.phase1.id, request.state)
        return {
          status: 'synced',
          records,
          messageIds: { initiating: 5, responding: 5 },
          failedChildren: []
        }
      })
    },
    async renegotiate(previous: IkeSaRecords[]): Promise<RenegotiationOutcome[]> {
      return previous.map((p) => {
        log.renegotiated.push(p.phase1.id)
        const current: IkeSaRecords = {
          phase1: { ...p.phase1, id: `${p.phase1.id}-new` },
          phase2: p.phase2.map((c) => ({ ...c, id: `${c.id}-new` }))
        }
        return { status: 'renegotiated', previous: p, current, failedChildren: [] }
      })
    }
  }
  if (options.noAdopt === true) {
    delete (service as Partial<typeof service>).adopt
  }
  return service as unknown as IkeService & { log: FakeIkeLog; sink: IkeStateSink | undefined }
}

/** One node's side of a warm takeover test: store, engine, recorder and takeover parts. */
export interface WarmNode {
  node: string
  esp: SoftwareEspEngine
  recorder: WarmRecorder
  fence: () => Fence | undefined
  setFence(fence: Fence): void
  /** Kills the node: its engine stops and its writes in flight never land. */
  kill(): Promise<void>
  events: DistributionEvent[]
  tracked: Map<string, { phase1: Phase1Record; phase2: Phase2Record[] }>
  parts(ike: IkeService): TakeoverParts
}

/** Makes a node over `store` with a started software ESP engine. */
export async function warmNode(
  node: string,
  store: MemoryCouplingStore,
  clock: VirtualClock,
  keys: WarmKeySet,
  blockSize: bigint,
  lowWater: number
): Promise<WarmNode> {
  const esp = new SoftwareEspEngine({ clock }, { sequenceLowWater: lowWater })
  await esp.start()
  let fence: Fence | undefined
  let dead = false
  const events: DistributionEvent[] = []
  const tracked = new Map<string, { phase1: Phase1Record; phase2: Phase2Record[] }>()
  const table = new ConnectionTable(DVIPA, [{ node: 'target-1' }])
  const recorder = new WarmRecorder({
    dvipa: DVIPA,
    keys,
    blockSize,
    esp,
    epoch: () => fence?.epoch,
    write: async (put, remove) => {
      // a store round trip: a node killed meanwhile never gets its write to the store
      await new Promise((resolve) => setImmediate(resolve))
      if (dead) throw new Error('killed before the write reached the store')
      if (fence === undefined) throw new Error('not owner')
      if (remove !== undefined && remove.length > 0) await store.deleteRecords(DVIPA, remove, fence)
      if (put.length > 0) await store.putRecords(DVIPA, put, fence)
    }
  })
  esp.events$.subscribe((e) => void recorder.onEspEvent(e))
  return {
    node,
    esp,
    recorder,
    fence: () => fence,
    setFence: (f) => {
      fence = f
    },
    kill: async () => {
      dead = true
      await esp.stop()
    },
    events,
    tracked,
    parts: (ike) => ({
      node,
      dvipa: DVIPA,
      clock,
      store,
      esp,
      table,
      renegotiationConcurrency: 4,
      renegotiationDeadlineMs: 10_000,
      retry: { initialMs: 1000, maxMs: 1000, attempts: 0 },
      emit: (e) => void events.push(e),
      changed: () => undefined,
      open: async () => ike,
      close: async () => undefined,
      track: (phase1, phase2) => void tracked.set(phase1.id, { phase1, phase2 }),
      ownRecords: (): DvipaRecord[] => [
        ...[...tracked.values()].flatMap((t) => [t.phase1, ...t.phase2]),
        ...recorder.records()
      ],
      startRecording: () => undefined,
      notifyTargets: async () => [],
      serving: () => true,
      ike: () => ike,
      keepTimer: () => undefined,
      forgetTimer: () => undefined,
      warm: { keys, blockSize, recorder }
    })
  }
}

/** Claims the DVIPA for `node` and runs its takeover from `from`. */
export async function takeOver(
  store: MemoryCouplingStore,
  heir: WarmNode,
  ike: IkeService,
  from: string
): Promise<TakeoverReport> {
  const current = await store.getOwnership(DVIPA)
  const claimed = await store.claimOwnership(DVIPA, {
    owner: heir.node,
    ranks: [],
    expectedEpoch: current.epoch
  })
  const fence = { owner: heir.node, epoch: claimed.epoch }
  heir.setFence(fence)
  return runTakeover(heir.parts(ike), {
    previousOwner: from,
    fence,
    signal: new AbortController().signal,
    detectedAt: 0,
    silentMs: 0,
    claim: { startedAt: 0, durationMs: 0 }
  })
}

/** The sequence number of an ESP packet (bytes 4 to 7). */
export function espSequence(packet: Uint8Array): number {
  return ((packet[4]! << 24) | (packet[5]! << 16) | (packet[6]! << 8) | packet[7]!) >>> 0
}
