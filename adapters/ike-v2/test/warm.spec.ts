import { expect } from 'chai'
import fc from 'fast-check'
import {
  CorruptRecordError,
  UnsupportedRecordVersionError,
  type AdoptionRequest,
  type EspSaParams,
  type IkeSaRecords,
  type IkeSaState
} from '@vipsec/interface'
import { SoftwareEspEngine, buildIpPacket, buildUdp } from '@vipsec/esp-software'
import { SeededRandomSource } from '@vipsec/random'
import { IkeV2Service, type IkeV2ServiceInit } from '../src/index.js'
import { decodeWarmState, encodeWarmState, type WarmState } from '../src/warm-state.js'
import { encryptMessage } from '../src/crypto.js'
import { notify } from '../src/message.js'
import { ExchangeType, HeaderFlag, NotifyType } from '../src/constants.js'
import { A_ID, A_NET, B_ID, B_NET, makePair, phase1, phase2 } from './helpers/pair.js'

const WARM: IkeV2ServiceInit = { warm: { enabled: true } }

function packet(from: string, to: string): Uint8Array {
  return buildIpPacket({
    source: from,
    destination: to,
    protocol: 17,
    payload: buildUdp({
      source: from,
      destination: to,
      sourcePort: 1000,
      destinationPort: 2000,
      payload: new Uint8Array(16)
    })
  })
}

/** One packet each way between two engines; what each receiver did with it. */
function traffic(a: SoftwareEspEngine, b: SoftwareEspEngine): [string, string] {
  const out = a.protect(packet('172.16.1.5', '172.16.2.7'))
  const back = b.protect(packet('172.16.2.7', '172.16.1.5'))
  if (out.action !== 'protect' || back.action !== 'protect') return [out.action, back.action]
  return [b.unprotect(out.packet).action, a.unprotect(back.packet).action]
}

type Pair = ReturnType<typeof makePair>

/** An heir of B: a fresh service and engine on B's address, B's configuration. */
async function heirOfB(p: Pair, seed: string, init: IkeV2ServiceInit = WARM) {
  const engine = new SoftwareEspEngine({ clock: p.clock })
  const service = new IkeV2Service(
    {
      clock: p.clock,
      random: new SeededRandomSource({ seed }),
      espEngine: engine,
      udp500: p.net.bind('10.0.0.2', 500),
      udp4500: p.net.bind('10.0.0.2', 4500)
    },
    {
      psks: [{ remote: A_ID, secret: 'shared secret' }],
      retransmit: { timeoutMs: 1000, backoff: 2, tries: 4 },
      peers: [
        {
          localIdentity: B_ID,
          remoteIdentity: A_ID,
          phase1: phase1(),
          children: [{ policy: phase2(), mode: 'tunnel', local: [B_NET], remote: [A_NET] }]
        }
      ],
      ...init
    }
  )
  await engine.start()
  await service.start()
  return { engine, service }
}

/** The adoption request of a state, with sequences read off the engine that held it. */
function requestFrom(state: IkeSaState, engine: SoftwareEspEngine, margin = 64n): AdoptionRequest {
  const sequences: AdoptionRequest['sequences'] = {}
  const sas = engine.listSas()
  for (const c of state.records.phase2) {
    const out = sas.find((s) => s.direction === 'outbound' && s.spi === parseInt(c.outboundSpi, 16))
    const inb = sas.find((s) => s.direction === 'inbound' && s.spi === parseInt(c.inboundSpi, 16))
    sequences[c.id] = {
      outbound: (out?.sequence ?? 0n) + margin,
      inbound: inb?.sequence ?? 0n
    }
  }
  return { state, sequences }
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64')

/** A state in the first encoding: version byte 1, JSON with the records and base64 keys. */
function version1(state: WarmState): Uint8Array {
  const json = {
    phase1: state.phase1,
    chosen: state.chosen,
    keys: Object.fromEntries(Object.entries(state.keys).map(([k, v]) => [k, b64(v)])),
    messageIds: state.messageIds,
    natT: state.natT,
    fragmentation: state.fragmentation,
    midSync: state.midSync,
    recordedAt: state.recordedAt,
    ...(state.reauthAt === undefined ? {} : { reauthAt: state.reauthAt }),
    children: state.children.map((c) => ({
      record: c.record,
      chosen: c.chosen,
      initiator: c.initiator,
      keys: Object.fromEntries(Object.entries(c.keys).map(([k, v]) => [k, b64(v)])),
      nonces: [b64(c.nonces[0]), b64(c.nonces[1])]
    }))
  }
  return new TextEncoder().encode('\u0001' + JSON.stringify(json))
}

/** Version 2 bytes of a JSON part and a key tail. */
function version2(json: unknown, tail: Uint8Array): Uint8Array {
  const text = new TextEncoder().encode(JSON.stringify(json) ?? 'null')
  const out = new Uint8Array(5 + text.length + tail.length)
  out[0] = 2
  new DataView(out.buffer).setUint32(1, text.length)
  out.set(text, 5)
  out.set(tail, 5 + text.length)
  return out
}

/** A, B established (both warm unless told), some traffic; B's state exported, B stopped. */
async function deadResponder(opts: { a?: IkeV2ServiceInit; b?: IkeV2ServiceInit } = {}) {
  const p = makePair({ a: opts.a ?? WARM, b: opts.b ?? WARM })
  await p.start()
  const r = await p.drive(p.a.connect(p.request()))
  await p.settle()
  for (let i = 0; i < 3; i++)
    expect(traffic(p.aEngine, p.bEngine)).to.deep.equal(['accept', 'accept'])
  const state = p.b.exportState(p.b.list()[0].phase1.id)
  const request = requestFrom(state, p.bEngine)
  // the owner dies: nothing more from it
  await p.b.stop()
  await p.bEngine.stop()
  return { p, r, state, request }
}

describe('IkeV2Service warm mode (RFC 6311)', () => {
  describe('announcing support', () => {
    it('should send IKEV2_MESSAGE_ID_SYNC_SUPPORTED in IKE_AUTH both ways and record the peer', async () => {
      const p = makePair({ a: WARM, b: WARM })
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      expect(p.a.exportState(r.phase1.id).midSync).to.equal(true)
      expect(p.b.exportState(r.phase1.id).midSync).to.equal(true)
      await p.stop()
    })

    it('should record that a peer without warm mode did not announce it', async () => {
      const p = makePair({ a: {}, b: WARM })
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      expect(p.b.exportState(r.phase1.id).midSync).to.equal(false)
      expect(() => p.a.exportState(r.phase1.id))
        .to.throw()
        .with.property('name', 'InvalidConfigError')
      await p.stop()
    })
  })

  describe('.adopt', () => {
    it('should carry the IKE SA on in an heir: same SPIs, MID sync answered, traffic, DPD, rekeys', async () => {
      const { p, r, state, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1')
      const sentBefore = p.net.log.length
      const [outcome] = await p.drive(c.service.adopt([request]))
      if (outcome.status !== 'synced') throw new Error(outcome.message)
      expect(outcome.records.phase1.ikeSaId).to.deep.equal(r.phase1.ikeSaId)
      expect(outcome.records.phase2.map((x) => [x.inboundSpi, x.outboundSpi])).to.deep.equal(
        state.records.phase2.map((x) => [x.inboundSpi, x.outboundSpi])
      )
      expect(outcome.failedChildren).to.deep.equal([])
      // one sync request from the heir (MID 0, INFORMATIONAL), answered by the peer
      const exchanged = p.net.log.slice(sentBefore)
      expect(exchanged.filter((x) => x.from.address === '10.0.0.2')).to.have.length(1)
      expect(exchanged.filter((x) => x.from.address === '10.0.0.1')).to.have.length(1)
      for (const x of exchanged) {
        expect(x.data[18]).to.equal(ExchangeType.INFORMATIONAL)
        expect(x.data.subarray(20, 24)).to.deep.equal(new Uint8Array(4))
      }
      expect(c.service.counters().warm).to.include({ syncsSent: 1, synced: 1 })
      expect(p.a.counters().warm.syncRequestsAnswered).to.equal(1)
      // the heir sends with the margin above the recorded ID, and the peer agreed
      // B never sent a request (0, plus the margin); A's next is 2 (after IKE_AUTH)
      expect(outcome.messageIds.initiating).to.equal(0 + 16)
      expect(outcome.messageIds.responding).to.equal(2)
      // ESP goes on with the adopted keys, both ways, beyond the recorded sequence numbers
      for (let i = 0; i < 3; i++) {
        expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      }
      // DPD both ways
      await p.drive(c.service.checkLiveness(r.phase1.id))
      await p.drive(p.a.checkLiveness(r.phase1.id))
      // a Child SA rekey from each side
      const byHeir = await p.drive(c.service.rekeyChildSa(outcome.records.phase2[0].id))
      await p.settle()
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      const byPeer = await p.drive(p.a.rekeyChildSa(p.a.list()[0].phase2[0].id))
      await p.settle()
      expect(byPeer.id).to.not.equal(byHeir.id)
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      // an IKE rekey
      const rekeyed = await p.drive(c.service.rekeyIkeSa(r.phase1.id))
      await p.settle()
      expect(rekeyed.ikeSaId).to.not.deep.equal(r.phase1.ikeSaId)
      expect(p.a.list().map((x) => x.phase1.ikeSaId)).to.deep.equal([rekeyed.ikeSaId])
      await p.drive(p.a.checkLiveness(rekeyed.id))
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should adopt an IKE SA the dead owner initiated, and rekey it from both sides', async () => {
      const p = makePair({ a: WARM, b: WARM })
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      expect(traffic(p.aEngine, p.bEngine)).to.deep.equal(['accept', 'accept'])
      const request = requestFrom(p.a.exportState(r.phase1.id), p.aEngine)
      await p.a.stop()
      await p.aEngine.stop()
      const engine = new SoftwareEspEngine({ clock: p.clock })
      const heir = new IkeV2Service(
        {
          clock: p.clock,
          random: new SeededRandomSource({ seed: 'heir-of-a' }),
          espEngine: engine,
          udp500: p.net.bind('10.0.0.1', 500),
          udp4500: p.net.bind('10.0.0.1', 4500)
        },
        {
          psks: [{ remote: B_ID, secret: 'shared secret' }],
          retransmit: { timeoutMs: 1000, backoff: 2, tries: 4 },
          ...WARM
        }
      )
      await engine.start()
      await heir.start()
      const [outcome] = await p.drive(heir.adopt([request]))
      if (outcome.status !== 'synced') throw new Error(outcome.message)
      expect(outcome.records.phase1.role).to.equal('initiator')
      expect(outcome.records.phase1.ikeSaId).to.deep.equal(r.phase1.ikeSaId)
      // A sent IKE_SA_INIT and IKE_AUTH (next 2, plus the margin); B never sent a request
      expect(outcome.messageIds).to.deep.equal({ initiating: 2 + 16, responding: 0 })
      // the heir is the old initiator: traffic from its side is A's (172.16.1.0/24)
      expect(traffic(engine, p.bEngine)).to.deep.equal(['accept', 'accept'])
      await p.drive(p.b.checkLiveness(r.phase1.id))
      await p.drive(heir.rekeyChildSa(outcome.records.phase2[0].id))
      await p.settle()
      await p.drive(p.b.rekeyChildSa(p.b.list()[0].phase2[0].id))
      await p.settle()
      expect(traffic(engine, p.bEngine)).to.deep.equal(['accept', 'accept'])
      const next = await p.drive(p.b.rekeyIkeSa(r.phase1.id))
      await p.settle()
      expect(heir.list().map((x) => x.phase1.id)).to.deep.equal([next.id])
      await p.drive(heir.checkLiveness(next.id))
      expect(traffic(engine, p.bEngine)).to.deep.equal(['accept', 'accept'])
      await heir.stop()
      await engine.stop()
      await p.stop()
    })

    it('should let a second heir adopt what the first heir exported', async () => {
      const { p, r, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1')
      const [first] = await p.drive(c.service.adopt([request]))
      expect(first.status).to.equal('synced')
      await p.drive(p.a.checkLiveness(r.phase1.id))
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      const again = requestFrom(c.service.exportState(r.phase1.id), c.engine)
      await c.service.stop()
      await c.engine.stop()
      const d = await heirOfB(p, 'heir-2')
      const [second] = await p.drive(d.service.adopt([again]))
      if (second.status !== 'synced') throw new Error(second.message)
      expect(second.records.phase1.ikeSaId).to.deep.equal(r.phase1.ikeSaId)
      expect(traffic(p.aEngine, d.engine)).to.deep.equal(['accept', 'accept'])
      await p.drive(d.service.checkLiveness(r.phase1.id))
      await p.drive(p.a.checkLiveness(r.phase1.id))
      expect(p.a.counters().warm.syncRequestsAnswered).to.equal(2)
      await d.service.stop()
      await d.engine.stop()
      await p.stop()
    })

    it('should add one message ID per liveness interval since the state was recorded to the sync', async () => {
      const p = makePair({
        a: WARM,
        b: WARM,
        bPhase1: phase1({ liveness: { intervalMs: 10_000, timeoutMs: 60_000 } })
      })
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      const state = p.b.exportState(r.phase1.id)
      const recorded = decodeWarmState(state.secret, state.records).messageIds.next
      const request = requestFrom(state, p.bEngine)
      // the owner goes on probing its idle peer, changing no keys, then dies
      await p.drive(new Promise<void>((resolve) => p.clock.setTimeout(() => resolve(), 35_000)))
      const now = p.b.exportState(r.phase1.id)
      const sent = decodeWarmState(now.secret, now.records).messageIds.next
      expect(sent).to.be.greaterThan(recorded + 2)
      await p.b.stop()
      await p.bEngine.stop()
      const c = await heirOfB(p, 'heir-1', { warm: { enabled: true, midSyncMargin: 0 } })
      const [outcome] = await p.drive(c.service.adopt([request]))
      if (outcome.status !== 'synced') throw new Error(outcome.message)
      expect(outcome.messageIds.initiating).to.be.at.least(sent)
      await p.drive(c.service.checkLiveness(r.phase1.id))
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should adopt many IKE SAs with at most adoptConcurrency syncs in flight', async () => {
      const p = makePair({ a: WARM, b: WARM })
      await p.start()
      for (let i = 0; i < 5; i++) await p.drive(p.a.connect(p.request()))
      await p.settle()
      const requests = p.b.list().map((x) => requestFrom(p.b.exportState(x.phase1.id), p.bEngine))
      await p.b.stop()
      await p.bEngine.stop()
      const c = await heirOfB(p, 'heir-1', { warm: { enabled: true, adoptConcurrency: 2 } })
      let inFlight = 0
      let most = 0
      p.net.filter = (x) => {
        const mid0 =
          x.data[18] === ExchangeType.INFORMATIONAL && x.data[20] === 0 && x.data[23] === 0
        if (mid0 && x.from.address === '10.0.0.2') most = Math.max(most, ++inFlight)
        if (mid0 && x.from.address === '10.0.0.1') inFlight--
        return 'deliver'
      }
      const outcomes = await p.drive(c.service.adopt(requests))
      expect(outcomes.map((o) => o.status)).to.deep.equal(Array(5).fill('synced'))
      expect(outcomes.map((o) => (o.status === 'synced' ? o.records.phase1.id : ''))).to.deep.equal(
        requests.map((r) => r.state.records.phase1.id)
      )
      expect(most).to.equal(2)
      for (const o of outcomes)
        if (o.status === 'synced') await p.drive(p.a.checkLiveness(o.records.phase1.id))
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should install every IKE SA before the first sync goes out', async () => {
      const p = makePair({ a: WARM, b: WARM })
      await p.start()
      for (let i = 0; i < 5; i++) await p.drive(p.a.connect(p.request()))
      await p.settle()
      const requests = p.b.list().map((x) => requestFrom(p.b.exportState(x.phase1.id), p.bEngine))
      await p.b.stop()
      await p.bEngine.stop()
      const c = await heirOfB(p, 'heir-1', { warm: { enabled: true, adoptConcurrency: 2 } })
      const installedAtSync: number[] = []
      p.net.filter = (x) => {
        const mid0 =
          x.data[18] === ExchangeType.INFORMATIONAL && x.data[20] === 0 && x.data[23] === 0
        if (mid0 && x.from.address === '10.0.0.2') installedAtSync.push(c.engine.listSas().length)
        return 'deliver'
      }
      const outcomes = await p.drive(c.service.adopt(requests))
      expect(outcomes.map((o) => o.status)).to.deep.equal(Array(5).fill('synced'))
      // an inbound and an outbound ESP SA per Child SA, all in before any sync was sent
      expect(installedAtSync).to.deep.equal(Array(5).fill(10))
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should carry traffic on an adopted Child SA before its sync is answered', async () => {
      const { p, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1')
      // the peer's answers to the sync are held back until the traffic was checked
      let hold = true
      p.net.filter = (x) =>
        hold && x.from.address === '10.0.0.1' && x.data[20] === 0 && x.data[23] === 0
          ? 'drop'
          : 'deliver'
      let done = false
      const adoption = c.service.adopt([request]).finally(() => (done = true))
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
      expect(c.service.counters().warm.syncsSent).to.equal(1)
      for (let i = 0; i < 3; i++)
        expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      expect(done).to.equal(false)
      hold = false
      const [outcome] = await p.drive(adoption)
      expect(outcome.status).to.equal('synced')
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should fail the syncs under way with TIMEOUT when aborted, removing what it installed', async () => {
      const { p, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1')
      p.net.filter = (x) => (x.from.address === '10.0.0.1' ? 'drop' : 'deliver')
      const controller = new AbortController()
      const adoption = c.service.adopt([request], { signal: controller.signal })
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
      expect(c.engine.listSas()).to.have.length(2)
      controller.abort()
      const [outcome] = await adoption
      expect(outcome).to.deep.include({ status: 'failed', reason: 'TIMEOUT', installed: true })
      expect(c.engine.listSas()).to.deep.equal([])
      expect(c.engine.listFilters()).to.deep.equal([])
      expect(c.service.list()).to.deep.equal([])
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should refuse an IKE SA whose peer did not announce RFC 6311 (UNSUPPORTED), installing nothing', async () => {
      const { p, request } = await deadResponder({ a: {} })
      expect(request.state.midSync).to.equal(false)
      const c = await heirOfB(p, 'heir-1')
      const sentBefore = p.net.log.length
      const [outcome] = await p.drive(c.service.adopt([request]))
      expect(outcome.status).to.equal('failed')
      if (outcome.status === 'failed') expect(outcome.reason).to.equal('UNSUPPORTED')
      expect(outcome).to.not.have.property('installed')
      expect(c.engine.listSas()).to.deep.equal([])
      expect(c.engine.listFilters()).to.deep.equal([])
      expect(c.service.list()).to.deep.equal([])
      expect(p.net.log.length).to.equal(sentBefore)
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should fail with TIMEOUT and remove everything when the peer does not answer the sync', async () => {
      const { p, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1')
      // the heir's syncs never reach the peer (ESP still does, until the SA is removed)
      p.net.filter = (x) =>
        x.from.address === '10.0.0.2' && x.data[20] === 0 && x.data[23] === 0 ? 'drop' : 'deliver'
      const adoption = c.service.adopt([request])
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      const [outcome] = await p.drive(adoption)
      expect(outcome).to.deep.include({ status: 'failed', reason: 'TIMEOUT', installed: true })
      expect(c.engine.listSas()).to.deep.equal([])
      expect(traffic(p.aEngine, c.engine)[1]).to.not.equal('protect')
      expect(c.engine.listFilters()).to.deep.equal([])
      expect(c.service.list()).to.deep.equal([])
      expect(c.service.counters().retransmitted).to.equal(4)
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should drop forged, unauthenticated and nonce-mismatched MID-0 responses, and count them', async () => {
      const { p, request } = await deadResponder()
      const secret = decodeWarmState(request.state.secret, request.state.records)
      const c = await heirOfB(p, 'heir-1')
      // hold the peer's real answer back; forge answers in its place
      let hold = true
      p.net.filter = (x) => (hold && x.from.address === '10.0.0.1' ? 'drop' : 'deliver')
      const adoption = c.service.adopt([request])
      await p.settle()
      const spiI = Buffer.from(secret.phase1.ikeSaId.initiatorSpi, 'hex')
      const spiR = Buffer.from(secret.phase1.ikeSaId.responderSpi, 'hex')
      const header = {
        spiI: new Uint8Array(spiI),
        spiR: new Uint8Array(spiR),
        version: 0x20,
        exchange: ExchangeType.INFORMATIONAL,
        flags: HeaderFlag.INITIATOR | HeaderFlag.RESPONSE,
        messageId: 0
      }
      const sock = (
        c.service as unknown as { components: { udp500: { deliver(d: unknown): void } } }
      ).components.udp500
      const from = { address: '10.0.0.1', port: 500 }
      // under the peer's real keys (A is the original initiator: SK_ei, SK_ai)
      const peerKeys = {
        encryption: secret.chosen.encryption,
        integrity: secret.chosen.integrity,
        encryptionKey: secret.keys.skEi,
        integrityKey: secret.keys.skAi
      }
      const wrongNonce = new Uint8Array(12)
      wrongNonce.set([1, 2, 3, 4], 0)
      wrongNonce[7] = 99
      sock.deliver({
        data: encryptMessage(
          header,
          [notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, wrongNonce)],
          peerKeys,
          new Uint8Array(8).fill(7)
        ),
        from
      })
      // under a key that is not the SA's (an attacker's)
      sock.deliver({
        data: encryptMessage(
          header,
          [notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, wrongNonce)],
          { ...peerKeys, encryptionKey: new Uint8Array(peerKeys.encryptionKey.length).fill(9) },
          new Uint8Array(8).fill(8)
        ),
        from
      })
      await p.settle()
      const during = c.service.counters()
      expect(during.warm.syncResponsesDropped).to.equal(2)
      expect(during.dropped['icv-failure']).to.equal(1)
      expect(during.warm.synced).to.equal(0)
      // the real answer, to the retransmission, completes it
      hold = false
      const [outcome] = await p.drive(adoption)
      if (outcome.status !== 'synced') throw new Error(outcome.message)
      expect(outcome.messageIds.initiating).to.equal(16)
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      // a MID-0 INFORMATIONAL response now, with no sync outstanding: dropped and counted
      const before = c.service.counters()
      sock.deliver({
        data: encryptMessage(
          header,
          [notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, wrongNonce)],
          peerKeys,
          new Uint8Array(8).fill(6)
        ),
        from
      })
      await p.settle()
      const after = c.service.counters()
      expect(after.warm.syncResponsesDropped).to.equal(before.warm.syncResponsesDropped + 1)
      expect(after.dropped['invalid-message-id']).to.equal(before.dropped['invalid-message-id'] + 1)
      await p.drive(c.service.checkLiveness(outcome.records.phase1.id))
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should not answer a peer sync it did not announce RFC 6311 for, and count it', async () => {
      // A did not announce; an authenticated sync request under B's keys reaches A
      const p = makePair({ a: {}, b: WARM })
      await p.start()
      await p.drive(p.a.connect(p.request()))
      await p.settle()
      const exported = p.b.exportState(p.b.list()[0].phase1.id)
      const secret = decodeWarmState(exported.secret, exported.records)
      const data = new Uint8Array(12)
      data.set([5, 6, 7, 8], 0)
      data[7] = 16
      data[11] = 2
      const request = encryptMessage(
        {
          spiI: new Uint8Array(Buffer.from(secret.phase1.ikeSaId.initiatorSpi, 'hex')),
          spiR: new Uint8Array(Buffer.from(secret.phase1.ikeSaId.responderSpi, 'hex')),
          version: 0x20,
          exchange: ExchangeType.INFORMATIONAL,
          flags: 0,
          messageId: 0
        },
        [notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, data)],
        {
          encryption: secret.chosen.encryption,
          integrity: secret.chosen.integrity,
          encryptionKey: secret.keys.skEr,
          integrityKey: secret.keys.skAr
        },
        new Uint8Array(8).fill(3)
      )
      const sentBefore = p.net.log.length
      const sock = (p.a as unknown as { components: { udp500: { deliver(d: unknown): void } } })
        .components.udp500
      sock.deliver({ data: request, from: { address: '10.0.0.2', port: 500 } })
      await p.settle()
      expect(p.a.counters().warm.syncRequestsDropped).to.equal(1)
      expect(p.a.counters().warm.syncRequestsAnswered).to.equal(0)
      expect(p.net.log.length).to.equal(sentBefore)
      // the window is intact: the next request of each side goes through
      await p.drive(p.b.checkLiveness(p.b.list()[0].phase1.id))
      await p.drive(p.a.checkLiveness(p.a.list()[0].phase1.id))
      await p.stop()
    })

    it('should give INVALID_STATE for malformed, truncated and wrong-version secrets, installing nothing', async () => {
      const { p, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1')
      const good = request.state.secret
      const bad: Uint8Array[] = [
        new Uint8Array(0),
        Uint8Array.of(3, ...good.subarray(1)),
        good.subarray(0, good.length - 1),
        good.subarray(0, 40),
        Uint8Array.of(1, 0xff, 0xfe),
        new TextEncoder().encode('\u0001{}'),
        new TextEncoder().encode('\u0001[1,2,3]')
      ]
      const outcomes = await p.drive(
        c.service.adopt(bad.map((secret) => ({ ...request, state: { ...request.state, secret } })))
      )
      for (const o of outcomes) {
        expect(o.status).to.equal('failed')
        if (o.status === 'failed') expect(o.reason).to.equal('INVALID_STATE')
      }
      expect(c.service.counters().warm.invalidStates).to.equal(bad.length)
      expect(c.engine.listSas()).to.deep.equal([])
      expect(c.service.list()).to.deep.equal([])
      // and the good one still adopts afterwards
      const [ok] = await p.drive(c.service.adopt([request]))
      expect(ok.status).to.equal('synced')
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })
  })

  describe('the IKE rekey after adoption (warm.rekeyAfterAdoptMs)', () => {
    const isRequest = (x: { data: Uint8Array }, type: number): boolean =>
      x.data[18] === type && (x.data[19] & HeaderFlag.RESPONSE) === 0
    const spisOf = (x: { data: Uint8Array }): string =>
      Buffer.from(x.data.subarray(0, 16)).toString('hex')
    const wait = (p: Pair, ms: number): Promise<void> =>
      p.drive(new Promise<void>((resolve) => p.clock.setTimeout(() => resolve(), ms)))

    it('should rekey an adopted IKE SA once within the window, through the sink, for a next heir', async () => {
      const { p, r, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1', { warm: { enabled: true, rekeyAfterAdoptMs: 3000 } })
      const rekeysAt: number[] = []
      p.net.filter = (x) => {
        if (x.from.address === '10.0.0.2' && isRequest(x, ExchangeType.CREATE_CHILD_SA))
          rekeysAt.push(p.clock.now())
        return 'deliver'
      }
      const sentByHeir = () => p.net.log.filter((x) => x.from.address === '10.0.0.2')
      const sunk: { spis: string; underIt: number; after: number }[] = []
      /** What the heir sent under `spis`, and after its last CREATE_CHILD_SA request. */
      const sentSince = (spis: string) => {
        const all = sentByHeir()
        const at = all.findLastIndex((x) => isRequest(x, ExchangeType.CREATE_CHILD_SA))
        return {
          spis,
          underIt: all.filter((x) => spisOf(x) === spis).length,
          after: all.length - 1 - at
        }
      }
      c.service.setStateSink(async (state) => {
        const id = state.records.phase1.ikeSaId
        const spis = id.initiatorSpi + id.responderSpi
        sunk.push(sentSince(spis))
        // held: neither the new IKE SA nor the deletion of the old goes out meanwhile
        await new Promise<void>((resolve) => p.clock.setTimeout(() => resolve(), 500))
        sunk.push(sentSince(spis))
      })
      const [outcome] = await p.drive(c.service.adopt([request]))
      const t0 = p.clock.now()
      if (outcome.status !== 'synced') throw new Error(outcome.message)
      // adopt does not wait for the rekey
      expect(outcome.records.phase1.ikeSaId).to.deep.equal(r.phase1.ikeSaId)
      expect(rekeysAt).to.deep.equal([])
      await wait(p, 10_000)
      expect(rekeysAt).to.have.length(1)
      expect(rekeysAt[0] - t0).to.be.within(0, 3000)
      expect(c.service.counters().warm).to.include({
        rekeysAfterAdopt: 1,
        rekeysAfterAdoptFailed: 0,
        rekeysAfterAdoptSkipped: 0
      })
      // the sink had the new IKE SA before anything was sent under it or after the request
      const [now] = c.service.list()
      expect(now.phase1.ikeSaId).to.not.deep.equal(r.phase1.ikeSaId)
      const spis = now.phase1.ikeSaId.initiatorSpi + now.phase1.ikeSaId.responderSpi
      expect(sunk).to.deep.equal([
        { spis, underIt: 0, after: 0 },
        { spis, underIt: 0, after: 0 }
      ])
      expect(p.a.list().map((x) => x.phase1.ikeSaId)).to.deep.equal([now.phase1.ikeSaId])
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      await p.drive(p.a.checkLiveness(now.phase1.id))
      // a next heir adopts what the first exported after its rekey, and syncs
      const again = requestFrom(c.service.exportState(now.phase1.id), c.engine)
      await c.service.stop()
      await c.engine.stop()
      const d = await heirOfB(p, 'heir-2', { warm: { enabled: true, rekeyAfterAdoptMs: 3000 } })
      const [second] = await p.drive(d.service.adopt([again]))
      if (second.status !== 'synced') throw new Error(second.message)
      expect(second.records.phase1.ikeSaId).to.deep.equal(now.phase1.ikeSaId)
      expect(p.a.counters().warm.syncRequestsAnswered).to.equal(2)
      expect(traffic(p.aEngine, d.engine)).to.deep.equal(['accept', 'accept'])
      await wait(p, 10_000)
      expect(rekeysAt).to.have.length(2)
      expect(d.service.counters().warm.rekeysAfterAdopt).to.equal(1)
      expect(traffic(p.aEngine, d.engine)).to.deep.equal(['accept', 'accept'])
      await d.service.stop()
      await d.engine.stop()
      await p.stop()
    })

    it('should not rekey when the window is 0', async () => {
      const { p, r, request } = await deadResponder()
      const c = await heirOfB(p, 'heir-1', { warm: { enabled: true, rekeyAfterAdoptMs: 0 } })
      const sentBefore = p.net.log.length
      const [outcome] = await p.drive(c.service.adopt([request]))
      expect(outcome.status).to.equal('synced')
      await wait(p, 30_000)
      const rekeys = p.net.log
        .slice(sentBefore)
        .filter((x) => isRequest(x, ExchangeType.CREATE_CHILD_SA))
      expect(rekeys).to.deep.equal([])
      expect(c.service.counters().warm.rekeysAfterAdopt).to.equal(0)
      expect(p.a.list().map((x) => x.phase1.ikeSaId)).to.deep.equal([r.phase1.ikeSaId])
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should refuse a negative window (InvalidConfigError)', async () => {
      const p = makePair({ a: WARM, b: WARM })
      for (const bad of [-1, 0.5, Number.NaN, Infinity]) {
        const err = await heirOfB(p, 'heir-1', {
          warm: { enabled: true, rekeyAfterAdoptMs: bad }
        }).then(
          () => undefined,
          (e: Error) => e
        )
        expect(err?.name).to.equal('InvalidConfigError')
      }
    })

    it('should count a failed rekey and go on with the adopted keys', async () => {
      const { p, r, request } = await deadResponder()
      // the heir's recorded policy offers only what the peer refuses: NO_PROPOSAL_CHOSEN
      const state = decodeWarmState(request.state.secret, request.state.records)
      state.phase1.policy = {
        ...state.phase1.policy,
        proposals: [
          {
            encryption: [{ algorithm: 'aes-cbc', keyBits: 128 }],
            integrity: ['hmac-sha2-256-128'],
            prf: ['hmac-sha2-256'],
            keyExchange: ['curve25519']
          }
        ]
      }
      // the policy is in the records (a version 2 secret does not repeat them)
      const records = { ...request.state.records, phase1: state.phase1 }
      const changed = {
        ...request,
        state: { ...request.state, records, secret: encodeWarmState(state) }
      }
      const c = await heirOfB(p, 'heir-1', { warm: { enabled: true, rekeyAfterAdoptMs: 1000 } })
      const sentBefore = p.net.log.length
      const [outcome] = await p.drive(c.service.adopt([changed]))
      if (outcome.status !== 'synced') throw new Error(outcome.message)
      await wait(p, 5000)
      const rekeys = p.net.log
        .slice(sentBefore)
        .filter((x) => isRequest(x, ExchangeType.CREATE_CHILD_SA))
      expect(rekeys).to.have.length(1)
      expect(c.service.counters().warm).to.include({
        rekeysAfterAdopt: 0,
        rekeysAfterAdoptFailed: 1
      })
      expect(c.service.list().map((x) => x.phase1.ikeSaId)).to.deep.equal([r.phase1.ikeSaId])
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      await p.drive(p.a.checkLiveness(r.phase1.id))
      await p.drive(c.service.checkLiveness(r.phase1.id))
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should start the rekey windows only once no adoption is under way', async () => {
      const p = makePair({ a: WARM, b: WARM })
      await p.start()
      for (let i = 0; i < 3; i++) await p.drive(p.a.connect(p.request()))
      await p.settle()
      const requests = p.b.list().map((x) => requestFrom(p.b.exportState(x.phase1.id), p.bEngine))
      await p.b.stop()
      await p.bEngine.stop()
      const c = await heirOfB(p, 'heir-1', { warm: { enabled: true, rekeyAfterAdoptMs: 1 } })
      const last = requests[2]!.state.records.phase1.ikeSaId
      const lastSpis = last.initiatorSpi + last.responderSpi
      const events: string[] = []
      let dropped = false
      p.net.filter = (x) => {
        const fromHeir = x.from.address === '10.0.0.2'
        if (fromHeir && isRequest(x, ExchangeType.CREATE_CHILD_SA)) events.push('rekey')
        if (x.data[18] === ExchangeType.INFORMATIONAL && spisOf(x) === lastSpis) {
          // the last IKE SA's first sync is lost: its adoption waits for the retransmission
          if (fromHeir && !dropped) {
            dropped = true
            return 'drop'
          }
          // (its first answer; the next is to the deletion of the old IKE SA after the rekey)
          if (!fromHeir && !events.includes('last synced')) events.push('last synced')
        }
        return 'deliver'
      }
      // one IKE SA per call, as a takeover adopts them, the calls overlapping
      const outcomes = await p.drive(Promise.all(requests.map((r) => c.service.adopt([r]))))
      expect(outcomes.flat().map((o) => o.status)).to.deep.equal(Array(3).fill('synced'))
      await wait(p, 10_000)
      expect(dropped).to.equal(true)
      expect(events).to.deep.equal(['last synced', 'rekey', 'rekey', 'rekey'])
      expect(c.service.counters().warm.rekeysAfterAdopt).to.equal(3)
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should spread the rekeys of many adopted IKE SAs, at most adoptConcurrency at once', async () => {
      const p = makePair({ a: WARM, b: WARM })
      await p.start()
      for (let i = 0; i < 6; i++) await p.drive(p.a.connect(p.request()))
      await p.settle()
      const requests = p.b.list().map((x) => requestFrom(p.b.exportState(x.phase1.id), p.bEngine))
      await p.b.stop()
      await p.bEngine.stop()
      const c = await heirOfB(p, 'heir-1', {
        warm: { enabled: true, adoptConcurrency: 2, rekeyAfterAdoptMs: 1 }
      })
      let inFlight = 0
      let most = 0
      let rekeys = 0
      p.net.filter = (x) => {
        if (x.data[18] === ExchangeType.CREATE_CHILD_SA) {
          if (x.from.address === '10.0.0.2' && isRequest(x, ExchangeType.CREATE_CHILD_SA)) {
            rekeys++
            most = Math.max(most, ++inFlight)
          }
          if (x.from.address === '10.0.0.1') inFlight--
        }
        return 'deliver'
      }
      // the peer's answer to each waits on its sink, so that rekeys would overlap
      p.a.setStateSink(
        () => new Promise((resolve) => p.clock.setTimeout(() => resolve(undefined), 300))
      )
      const outcomes = await p.drive(c.service.adopt(requests))
      expect(outcomes.map((o) => o.status)).to.deep.equal(Array(6).fill('synced'))
      await wait(p, 10_000)
      expect(rekeys).to.equal(6)
      expect(most).to.equal(2)
      expect(c.service.counters().warm.rekeysAfterAdopt).to.equal(6)
      const before = new Set(requests.map((x) => JSON.stringify(x.state.records.phase1.ikeSaId)))
      for (const x of p.a.list())
        expect(before.has(JSON.stringify(x.phase1.ikeSaId))).to.equal(false)
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })
  })

  describe('the secret decoder', () => {
    it('should round-trip an exported state, without repeating its records', async () => {
      const { p, state } = await deadResponder()
      const decoded = decodeWarmState(state.secret, state.records)
      expect(encodeWarmState(decoded)).to.deep.equal(state.secret)
      expect(decoded.phase1).to.deep.equal(state.records.phase1)
      expect(decoded.children.map((c) => c.record)).to.deep.equal(state.records.phase2)
      expect(decoded.children).to.have.length(1)
      expect(decoded.children[0].keys.encrI.length).to.equal(36)
      expect(state.secret[0]).to.equal(2)
      // the records are beside the secret, not in it
      const text = Buffer.from(state.secret).toString('latin1')
      expect(text).to.not.include(B_ID.value)
      expect(text).to.not.include(state.records.phase2[0].outboundSpi)
      await p.stop()
    })

    it('should read a version 1 secret (records inside), and an heir should adopt it', async () => {
      const { p, state, request } = await deadResponder()
      const v1 = version1(decodeWarmState(state.secret, state.records))
      // the records given beside a version 1 secret are not needed
      expect(decodeWarmState(v1)).to.deep.equal(decodeWarmState(state.secret, state.records))
      const c = await heirOfB(p, 'heir-1')
      const [outcome] = await p.drive(
        c.service.adopt([{ ...request, state: { ...request.state, secret: v1 } }])
      )
      expect(outcome.status).to.equal('synced')
      expect(traffic(p.aEngine, c.engine)).to.deep.equal(['accept', 'accept'])
      await c.service.stop()
      await c.engine.stop()
      await p.stop()
    })

    it('should refuse a version 2 secret without its records or with records of other SAs', async () => {
      const { p, state } = await deadResponder()
      const corrupt = (records: unknown): string => {
        try {
          decodeWarmState(state.secret, records as IkeSaRecords)
          return 'decoded'
        } catch (err) {
          expect(err).to.be.instanceOf(CorruptRecordError)
          return (err as CorruptRecordError).path ?? ''
        }
      }
      const child = state.records.phase2[0]
      expect(corrupt(undefined)).to.equal('secret.records')
      expect(corrupt({ ...state.records, phase2: [] })).to.equal('secret.children')
      expect(corrupt({ ...state.records, phase2: [child, child] })).to.match(
        /^secret.records.phase2/
      )
      expect(corrupt({ ...state.records, phase2: [{ ...child, id: 'another' }] })).to.equal(
        'secret.children[0].id'
      )
      expect(corrupt({ ...state.records, phase1: { ...state.records.phase1, v: 'x' } })).to.match(
        /^secret.records.phase1/
      )
      await p.stop()
    })

    it('should throw only typed errors for any bytes, truncations and mutations (property)', async () => {
      const { p, state } = await deadResponder()
      const records = state.records
      const good = state.secret
      const old = version1(decodeWarmState(good, records))
      const typed = (bytes: Uint8Array): boolean => {
        try {
          decodeWarmState(bytes, records)
          return true
        } catch (err) {
          return err instanceof CorruptRecordError || err instanceof UnsupportedRecordVersionError
        }
      }
      fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), typed), { numRuns: 2000 })
      // with each version byte: random bytes, and random JSON values
      for (const version of [1, 2]) {
        fc.assert(
          fc.property(fc.uint8Array({ maxLength: 512 }), (b) =>
            typed(Uint8Array.of(version, ...b))
          ),
          { numRuns: 2000 }
        )
      }
      fc.assert(
        fc.property(fc.jsonValue(), (v) =>
          typed(new TextEncoder().encode('\u0001' + JSON.stringify(v)))
        ),
        { numRuns: 2000 }
      )
      fc.assert(
        fc.property(fc.jsonValue(), fc.uint8Array({ maxLength: 300 }), (v, tail) =>
          typed(version2(v, tail))
        ),
        { numRuns: 2000 }
      )
      for (const secret of [good, old]) {
        for (let n = 0; n < secret.length; n++) {
          expect(() => decodeWarmState(secret.subarray(0, n), records)).to.throw(CorruptRecordError)
        }
        fc.assert(
          fc.property(
            fc.array(fc.tuple(fc.nat(secret.length - 1), fc.integer({ min: 0, max: 255 })), {
              minLength: 1,
              maxLength: 4
            }),
            (edits) => {
              const b = secret.slice()
              for (const [i, v] of edits) b[i] = v
              return typed(b)
            }
          ),
          { numRuns: 2000 }
        )
      }
      // a JSON-level mutation: every field replaced by a wrong type, in both versions
      const jsonLength = new DataView(good.buffer, good.byteOffset).getUint32(1)
      const meta = JSON.parse(new TextDecoder().decode(good.subarray(5, 5 + jsonLength)))
      const tail = good.subarray(5 + jsonLength)
      const whole = JSON.parse(new TextDecoder().decode(old.subarray(1)))
      for (const [json, encode] of [
        [meta, (v: unknown) => version2(v, tail)],
        [whole, (v: unknown) => new TextEncoder().encode('\u0001' + JSON.stringify(v))]
      ] as const) {
        const paths: string[][] = []
        const walk = (o: unknown, path: string[]): void => {
          if (typeof o !== 'object' || o === null) return
          for (const [k, v] of Object.entries(o)) {
            paths.push([...path, k])
            walk(v, [...path, k])
          }
        }
        walk(json, [])
        for (const path of paths) {
          for (const wrong of [null, 'x', -1, {}, []]) {
            const copy = JSON.parse(JSON.stringify(json))
            let o = copy
            for (const k of path.slice(0, -1)) o = o[k]
            o[path.at(-1)!] = wrong
            expect(typed(encode(copy)), path.join('.')).to.equal(true)
          }
        }
      }
      await p.stop()
    })
  })

  describe('.setStateSink', () => {
    it('should await the sink before installing new Child SAs and before the responder answers', async () => {
      const p = makePair({ a: WARM, b: WARM })
      const timeline: string[] = []
      const spy = (name: string, engine: SoftwareEspEngine): EspSaParams[] => {
        const calls: EspSaParams[] = []
        const add = engine.addSa.bind(engine)
        engine.addSa = (params: EspSaParams) => {
          calls.push(params)
          timeline.push(`${name}:addSa:${params.direction}`)
          return add(params)
        }
        return calls
      }
      const bCalls = spy('b', p.bEngine)
      spy('a', p.aEngine)
      let release: (() => void) | undefined
      const sentByB = (): number => p.net.log.filter((x) => x.from.address === '10.0.0.2').length
      const held: { atSink?: number; atRelease?: number } = {}
      p.b.setStateSink(async (state) => {
        timeline.push(`b:sink:${state.records.phase2.length}`)
        if (release === undefined) {
          const next = state.records.phase2.at(-1)!
          return { sequenceLimits: { [next.id]: 1000n } }
        }
        // held: nothing answered meanwhile
        held.atSink = sentByB()
        await new Promise<void>((resolve) => {
          const go = release!
          release = () => {
            go()
            resolve()
          }
        })
        held.atRelease = sentByB()
        return { sequenceLimits: { [state.records.phase2.at(-1)!.id]: 2000n } }
      })
      p.a.setStateSink(async (state) => {
        timeline.push(`a:sink:${state.records.phase2.length}`)
      })
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      // IKE_AUTH: B's sink before B's installs and before its answer; A's before A's installs
      expect(timeline.slice(0, 6)).to.deep.equal([
        'b:sink:1',
        'b:addSa:inbound',
        'b:addSa:outbound',
        'a:sink:1',
        'a:addSa:inbound',
        'a:addSa:outbound'
      ])
      expect(bCalls.find((c) => c.direction === 'outbound')!.sequenceLimit).to.equal(1000n)
      expect(bCalls.find((c) => c.direction === 'inbound')!.sequenceLimit).to.equal(undefined)
      // a CREATE_CHILD_SA answered by B: the sink holds the response
      timeline.length = 0
      let released = false
      release = () => {
        released = true
      }
      const rekey = p.a.rekeyChildSa(r.phase2[0].id)
      await p.settle()
      await p.clock.advance(1500) // A retransmits meanwhile
      await p.settle()
      expect(timeline).to.deep.equal(['b:sink:2'])
      expect(p.b.counters().warm.requestsWhileSinking).to.equal(1)
      release()
      expect(released).to.equal(true)
      const next = await p.drive(rekey)
      await p.settle()
      expect(timeline.slice(0, 3)).to.deep.equal([
        'b:sink:2',
        'b:addSa:inbound',
        'b:addSa:outbound'
      ])
      expect(held.atSink).to.be.a('number')
      expect(held.atRelease).to.equal(held.atSink)
      expect(bCalls.at(-1)!.sequenceLimit).to.equal(2000n)
      expect(bCalls.at(-1)!.spi).to.equal(parseInt(next.inboundSpi, 16))
      await p.stop()
    })

    it('should hand the sink the new IKE SA of a rekey it answers before it answers', async () => {
      const p = makePair({ a: WARM, b: WARM })
      const seen: { id: string; children: number; sentByB: number }[] = []
      const sentByB = (): number => p.net.log.filter((x) => x.from.address === '10.0.0.2').length
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      p.b.setStateSink(async (state) => {
        seen.push({
          id: state.records.phase1.id,
          children: state.records.phase2.length,
          sentByB: sentByB()
        })
        await new Promise<void>((resolve) => p.clock.setTimeout(() => resolve(), 500))
      })
      const before = sentByB()
      const next = await p.drive(p.a.rekeyIkeSa(r.phase1.id))
      await p.settle()
      expect(seen).to.have.length(1)
      expect(seen[0]).to.deep.equal({ id: next.id, children: 1, sentByB: before })
      // and what it was given is the IKE SA that goes on: an heir could adopt it
      expect(p.b.list().map((x) => x.phase1.id)).to.deep.equal([next.id])
      await p.drive(p.a.checkLiveness(next.id))
      await p.stop()
    })

    it('should count a sink that rejects and go on without limits', async () => {
      const p = makePair({ a: WARM, b: WARM })
      const limits: (bigint | undefined)[] = []
      const add = p.bEngine.addSa.bind(p.bEngine)
      p.bEngine.addSa = (params: EspSaParams) => {
        limits.push(params.sequenceLimit)
        return add(params)
      }
      p.b.setStateSink(async () => {
        throw new Error('store down')
      })
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
      await p.drive(p.b.rekeyIkeSa(r.phase1.id))
      await p.settle()
      expect(p.b.counters().warm.sinkFailures).to.equal(3)
      expect(limits.every((l) => l === undefined)).to.equal(true)
      expect(traffic(p.aEngine, p.bEngine)).to.deep.equal(['accept', 'accept'])
      await p.stop()
    })
  })
})
