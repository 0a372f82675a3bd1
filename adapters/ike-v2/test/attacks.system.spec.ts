/**
 * Attacks on the path against a vipsec IKE responder with a real strongSwan peer: the forged
 * 32-byte INFORMATIONAL (attack 1 of issue 11), the spoofed IKE_SA_INIT lockout (attack 2), the
 * message-ID confusion after a takeover (attack 3), a stateful fuzz of 100,000 forged and
 * mutated messages while traffic flows, and a flood of 20,000 spoofed IKE_SA_INIT requests
 * while charon reconnects. The attacker runs in charon's namespace (on the path: it sees the
 * SPIs and message IDs, it has no keys) and sends from charon's address or from addresses of
 * its own on that link.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { expect } from 'chai'
import type { IkeCounters, IkeSaRecords } from '@vipsec/interface'
import { wire } from '../src/index.js'
import {
  Charon,
  echoServer,
  killProcess,
  requireStrongSwan,
  sh,
  Topology,
  udpRoundTrip as roundTrip,
  until as untilFor,
  VipsecPeer
} from './helpers/netns.js'
import {
  C_HOST,
  C_ID,
  GCM_PHASE1 as PHASE1,
  GCM_PHASE2 as PHASE2,
  V_ID,
  V_NET
} from './helpers/policies.js'
import { swanctlConf as swanctl } from './helpers/swanctl.js'

const run = promisify(execFile)

const PSK = 'attack test key'

/** Extra addresses of the attacker on charon's link (sources of the flood). */
const FLOOD_SOURCES = 200

function swanctlConf(t: Topology): string {
  return swanctl([
    {
      localAddrs: t.cAddr,
      remoteAddrs: t.vAddr,
      proposals: 'aes256gcm16-prfsha256-x25519',
      espProposals: 'aes256gcm16',
      localId: C_ID.value,
      remoteId: V_ID.value,
      auth: { kind: 'psk', secret: PSK },
      localTs: '172.16.2.1/32',
      remoteTs: '172.16.1.0/24',
      dpdDelay: '5s'
    }
  ])
}

interface Window {
  id: string
  initiator: boolean
  spiI: string
  spiR: string
  nextRequestId: number
  expectedRequestId: number
}

interface AttackResult {
  sent: number
  replies: number
  ms: number
  rate: number
}

describe('IkeV2Service under attack on the path, with strongSwan charon as the peer', function () {
  this.timeout(300_000)
  const tag = `ike${process.pid % 10000}a`
  const t = new Topology(tag, 20 + (process.pid % 20))
  const subnet = t.cAddr.split('.').slice(0, 3).join('.')
  const sources = Array.from({ length: FLOOD_SOURCES }, (_, i) => `${subnet}.${10 + i}`)
  let charon: Charon
  let peer: VipsecPeer
  let echo: ChildProcess

  /** The vipsec responder (also the backup that takes over after a stop). */
  async function startPeer(): Promise<VipsecPeer> {
    const p = new VipsecPeer(t.v, {
      address: t.vAddr,
      // the sockets `vipsec node` uses: network-linux's, batched, with its receive buffer
      udp: 'product',
      init: {
        psks: [{ remote: C_ID, secret: PSK }],
        retransmit: { timeoutMs: 1000, backoff: 1.5, tries: 4 },
        peers: [
          {
            localIdentity: V_ID,
            remoteIdentity: C_ID,
            phase1: PHASE1,
            children: [{ policy: PHASE2, mode: 'tunnel', local: [V_NET], remote: [C_HOST] }]
          }
        ]
      }
    })
    await p.start()
    return p
  }

  before(async () => {
    requireStrongSwan()
    t.up()
    sh('ip', ['-n', t.c, 'addr', 'add', '172.16.2.1/32', 'dev', 'lo'])
    for (const a of sources) sh('ip', ['-n', t.c, 'addr', 'add', `${a}/24`, 'dev', t.cDev])
    charon = new Charon(t.c)
    await charon.start(swanctlConf(t))
    peer = await startPeer()
    echo = await echoServer(t.c, '172.16.2.1', 5000)
  })

  after(async () => {
    killProcess(echo)
    await peer?.stop()
    await charon?.stop()
    t.down()
  })

  const list = (): Promise<IkeSaRecords[]> => peer.call<IkeSaRecords[]>('list')
  const windows = (): Promise<Window[]> => peer.call<Window[]>('windows')
  const counters = async (): Promise<IkeCounters> =>
    (await peer.call<{ ike: IkeCounters }>('counters')).ike

  /** Runs the attacker in charon's namespace and returns what it reports. */
  function attack(job: Record<string, unknown>): Promise<AttackResult> {
    const script = new URL('./system/attacker.ts', import.meta.url).pathname
    return new Promise((resolve, reject) => {
      const p = spawn(
        'ip',
        [
          'netns',
          'exec',
          t.c,
          process.execPath,
          '--import',
          'tsx',
          '--conditions=vipsec-source',
          script,
          JSON.stringify({ target: t.vAddr, ...job })
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], cwd: process.cwd() }
      )
      let out = ''
      let err = ''
      p.stdout.on('data', (d) => (out += String(d)))
      p.stderr.on('data', (d) => (err += String(d)))
      p.once('exit', (code) => {
        if (code !== 0) reject(new Error(`attacker exited ${code}: ${err}`))
        else resolve(JSON.parse(out.trim().split('\n').at(-1)!) as AttackResult)
      })
    })
  }

  /**
   * A datagram through the tunnel and its echo back. Under a flood a datagram may be lost (a
   * socket buffer overflows), so it is sent up to five times, two seconds apart.
   */
  const udpRoundTrip = (text: string): Promise<void> =>
    roundTrip(peer, text, {
      tries: 5,
      waitMs: 2000,
      detail: async () =>
        `vipsec: ${JSON.stringify(await list())} ${JSON.stringify(await peer.call('counters'))}; charon: ${charon.swanctl(['--list-sas'])}`
    })

  const until = (fn: () => Promise<boolean>, what: string): Promise<void> =>
    untilFor(fn, what, () => charon.log().slice(-3000))

  /** charon (re)connects to vipsec; returns how long `swanctl --initiate` took, in ms. */
  async function charonConnects(): Promise<number> {
    if (charon.ikeSas().length > 0) {
      charon.swanctl(['--terminate', '--ike', 'vipsec', '--timeout', '30'])
      await until(async () => (await list()).length === 0, 'vipsec to drop the old IKE SA')
    }
    const start = performance.now()
    await run('swanctl', [
      '--initiate',
      '--child',
      'net',
      '--ike',
      'vipsec',
      '--timeout',
      '60',
      '--uri',
      charon.uri
    ])
    const ms = performance.now() - start
    await until(async () => (await list()).length === 1, 'vipsec to hold the IKE SA')
    return ms
  }

  /** Both ends hold exactly one IKE SA with one Child SA, and a datagram goes through. */
  async function tunnelUp(text: string): Promise<void> {
    expect(charon.ikeSas(), 'IKE SAs at charon').to.have.length(1)
    const sas = await list()
    expect(sas, 'IKE SAs at vipsec').to.have.length(1)
    expect(sas[0].phase2).to.have.length(1)
    await udpRoundTrip(text)
  }

  /** Attack 1: the forged 32-byte INFORMATIONAL, with the live SPIs and the next ID. */
  async function forgeAttack1(w: Window): Promise<AttackResult> {
    const data = wire.encodeHeader({
      spiI: Uint8Array.from(Buffer.from(w.spiI, 'hex')),
      spiR: Uint8Array.from(Buffer.from(w.spiR, 'hex')),
      nextPayload: 0,
      version: 0x20,
      exchange: wire.ExchangeType.INFORMATIONAL,
      // a request from the peer: the I flag when the peer is the original initiator
      flags: w.initiator ? 0 : wire.HeaderFlag.INITIATOR,
      messageId: w.expectedRequestId,
      length: 28
    })
    return attack({
      mode: 'packets',
      sources: [t.cAddr],
      packets: [{ data: Buffer.from(data).toString('base64'), port: 4500 }],
      listenMs: 1000
    })
  }

  describe('attack 1: a 32-byte plaintext INFORMATIONAL with the live SPIs and the next message ID', () => {
    it('should be dropped as unprotected, unanswered, with the window unmoved, on a fresh SA and after a takeover', async () => {
      await charonConnects()
      for (const phase of ['fresh', 'renegotiated']) {
        // traffic first: charon's DPD (after 5 s without inbound traffic) stays away meanwhile
        await udpRoundTrip(`before-attack-1-${phase}`)
        const [w] = await windows()
        const before = await counters()
        const r = await forgeAttack1(w)
        expect(r.sent).to.equal(1)
        expect(r.replies, `${phase}: vipsec answered the forgery`).to.equal(0)
        const after = await counters()
        expect(after.dropped.unprotected - before.dropped.unprotected).to.equal(1)
        const [w2] = await windows()
        console.log(
          `      ${phase} SA: 1 forgery sent, ${r.replies} replies, ${after.dropped.unprotected - before.dropped.unprotected} dropped as unprotected; window (expected ${w2.expectedRequestId}, next ${w2.nextRequestId}) was (${w.expectedRequestId}, ${w.nextRequestId})`
        )
        expect(w2.expectedRequestId).to.equal(w.expectedRequestId)
        expect(w2.nextRequestId).to.equal(w.nextRequestId)
        await tunnelUp(`attack-1-${phase}`)
        // both halves still work: a liveness check of vipsec's, and a rekey by charon
        await peer.call('checkLiveness', w2.id)
        if (phase === 'fresh') {
          charon.swanctl(['--rekey', '--ike', 'vipsec'])
          await until(
            async () => (await windows())[0]?.id !== w2.id && charon.ikeSas().length === 1,
            'charon to rekey the IKE SA'
          )
          await tunnelUp(`attack-1-${phase}-after-rekey`)
          // a takeover: the owner dies without a word, a backup on the same address
          // renegotiates from the records, as initiator
          const records = await list()
          await peer.stop()
          peer = await startPeer()
          const [outcome] = await peer.call<{ status: string }[]>('renegotiate', records)
          expect(outcome.status).to.equal('renegotiated')
          await until(async () => charon.ikeSas().length === 1, 'charon to keep one IKE SA')
          await until(async () => (await list()).length === 1, 'vipsec to keep one IKE SA')
        }
      }
    })
  })

  describe('attack 3: vipsec the initiator after a takeover, charon sending DPD', () => {
    it('should keep both halves of the window apart through forgeries and DPDs', async () => {
      const [w] = await windows()
      expect(w.initiator).to.equal(true)
      const logBefore = charon.log().length
      const before = await counters()
      // for ~24 s: charon's DPDs (dpd_delay 5s: sent after 5 s without inbound traffic),
      // vipsec's own liveness checks every 6 s, and a forged request with the next ID of
      // vipsec's responder half before each
      for (let i = 0; i < 4; i++) {
        const [now] = await windows()
        expect((await forgeAttack1(now)).replies).to.equal(0)
        await Promise.all([
          peer.call('checkLiveness', now.id),
          new Promise((r) => setTimeout(r, 6000))
        ])
      }
      await tunnelUp('attack-3')
      const after = await counters()
      const [w2] = await windows()
      expect(w2.id).to.equal(w.id)
      expect(w2.nextRequestId).to.equal(w.nextRequestId + 4)
      // charon's DPDs were answered: its requests moved vipsec's responder half
      expect(w2.expectedRequestId).to.be.greaterThan(w.expectedRequestId)
      // each forgery dropped: as unprotected, or as out of the window when a DPD of charon's
      // moved it between the attacker's look and the forgery
      expect(
        after.dropped.unprotected -
          before.dropped.unprotected +
          after.dropped['invalid-message-id'] -
          before.dropped['invalid-message-id']
      ).to.equal(4)
      expect(after.retransmitted - before.retransmitted).to.equal(0)
      const log = charon.log().slice(logBefore)
      console.log(
        `      4 forgeries, ${after.dropped.unprotected - before.dropped.unprotected} dropped as unprotected and ${after.dropped['invalid-message-id'] - before.dropped['invalid-message-id']} as out of the window; vipsec's requests ${w.nextRequestId} -> ${w2.nextRequestId}, charon's ${w.expectedRequestId} -> ${w2.expectedRequestId}; ${after.retransmitted - before.retransmitted} retransmissions`
      )
      expect(log).to.not.match(/retransmit of request/)
      expect(log).to.not.match(/INVALID_SYNTAX/)
    })
  })

  describe('attack 2: spoofed IKE_SA_INIT requests from the peer’s own address', () => {
    it('should not lock the peer out: it is asked for a COOKIE and connects', async () => {
      const before = await counters()
      const r = await attack({ mode: 'flood', sources: [t.cAddr], count: 12, listenMs: 500 })
      expect(r.sent).to.equal(12)
      const ms = await charonConnects()
      const after = await counters()
      console.log(`      charon reconnected ${ms.toFixed(0)} ms after 12 spoofed requests`)
      expect(after.cookiesSent - before.cookiesSent).to.be.greaterThan(0)
      expect(after.dropped['half-open-limit'] - before.dropped['half-open-limit']).to.equal(0)
      await tunnelUp('attack-2')
    })
  })

  describe('a stateful fuzz of 100,000 forged and mutated messages to ports 500 and 4500', () => {
    it('should drop them all by reason while the tunnel keeps carrying traffic, with bounded memory', async () => {
      const [w] = await windows()
      const sa = {
        spiI: w.spiI,
        spiR: w.spiR,
        toResponder: w.initiator ? w.nextRequestId : w.expectedRequestId,
        toInitiator: w.initiator ? w.expectedRequestId : w.nextRequestId
      }
      type Memory = {
        rss: number
        heapUsed: number
        external: number
        anon: number
        file: number
        newSpace: number
      }
      // a warm-up of 10,000, so that the heap has grown to its working size before the baseline
      // (V8's young generation may go on doubling its semi-spaces up to their limit: that part of
      // the growth is printed on its own)
      const warmup = 10_000
      await attack({ mode: 'fuzz', sources: [t.cAddr], count: warmup, rate: 3000, seed: 7, sa })
      const m0 = await peer.call<Memory>('memory')
      const before = await counters()
      const fuzz = attack({
        mode: 'fuzz',
        sources: [t.cAddr, ...sources.slice(0, 20)],
        count: 100_000,
        rate: 3000,
        seed: 0x1c3,
        sa
      })
      let done = false
      fuzz.finally(() => (done = true)).catch(() => undefined)
      let trips = 0
      while (!done) {
        await udpRoundTrip(`during-fuzz-${trips++}`)
        await new Promise((r) => setTimeout(r, 500))
      }
      const r = await fuzz
      await tunnelUp('after-fuzz')
      const [w2] = await windows()
      expect(w2.id).to.equal(w.id)
      const after = await counters()
      const m1 = await peer.call<Memory>('memory')
      const byReason = Object.fromEntries(
        Object.entries(after.dropped).map(([k, v]) => [k, v - before.dropped[k as 'malformed']])
      )
      console.log(
        `      fuzz: ${r.sent} sent at ${r.rate}/s, ${r.replies} replies, ${trips} round trips during it`
      )
      console.log(`      drops by reason: ${JSON.stringify(byReason)}`)
      const mb = (x: number): string => (x / 1048576).toFixed(1)
      console.log(
        `      after a full GC, over the 100,000 (after a ${warmup} warm-up): RSS growth ${mb(m1.rss - m0.rss)} MB (${mb(m0.rss)} -> ${mb(m1.rss)}), heap used ${mb(m1.heapUsed - m0.heapUsed)} MB, buffers ${mb(m1.external - m0.external)} MB`
      )
      console.log(
        `      the RSS growth split: anonymous ${mb(m1.anon - m0.anon)} MB (of which V8's young generation committed ${mb(m1.newSpace - m0.newSpace)} MB; ${mb(m0.newSpace)} MB at the baseline), file-backed ${mb(m1.file - m0.file)} MB`
      )
      expect(r.sent).to.equal(100_000)
      // what the service keeps is bounded: the heap after a full collection barely grows
      expect(m1.heapUsed - m0.heapUsed).to.be.lessThan(10 * 1048576)
      expect(after.received - before.received).to.be.greaterThan(90_000)
      expect(trips).to.be.greaterThan(3)
    })
  })

  describe('a flood of 20,000 spoofed IKE_SA_INIT requests while charon reconnects', () => {
    it('should let charon in through the COOKIE exchange', async () => {
      const before = await counters()
      const dropsBefore = await peer.call<Record<string, number>>('socketDrops')
      const flood = attack({ mode: 'flood', sources, count: 20_000, listenMs: 100 })
      await new Promise((r) => setTimeout(r, 300))
      const ms = await charonConnects()
      const r = await flood
      const after = await counters()
      const dropsAfter = await peer.call<Record<string, number>>('socketDrops')
      console.log(
        `      flood: ${r.sent} spoofed IKE_SA_INIT at ${r.rate}/s; charon connected in ${ms.toFixed(0)} ms during it`
      )
      console.log(
        `      cookies sent ${after.cookiesSent - before.cookiesSent}, half-open drops ${after.dropped['half-open-limit'] - before.dropped['half-open-limit']}, dropped by the kernel at port 500's receive queue ${(dropsAfter[500] ?? 0) - (dropsBefore[500] ?? 0)}`
      )
      expect(after.cookiesSent - before.cookiesSent).to.be.greaterThan(1000)
      await tunnelUp('after-flood')
    })
  })
})
