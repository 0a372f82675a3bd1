import { type ChildProcess } from 'node:child_process'
import { expect } from 'chai'
import type { IkeSaRecords, Phase1Policy, RenegotiationOutcome } from '@vipsec/interface'
import { makePki, type KeyKind, type TestPki } from './helpers/certs.js'
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
import { C_HOST, C_ID, GCM_IKE_PROPOSAL, phase2, V_ID, V_NET } from './helpers/policies.js'
import { swanctlConf, type SwanctlAuth } from './helpers/swanctl.js'

const PSK = 'interop test key'

const BASE_PHASE1: Phase1Policy = {
  proposals: [
    GCM_IKE_PROPOSAL,
    {
      encryption: [{ algorithm: 'aes-cbc', keyBits: 256 }],
      integrity: ['hmac-sha2-256-128'],
      prf: ['hmac-sha2-256'],
      keyExchange: ['curve25519']
    }
  ],
  authMethod: 'psk',
  lifetime: { rekeySeconds: 0, reauthSeconds: 0 },
  liveness: { intervalMs: 0, timeoutMs: 0 }
}

function interop(auth: 'psk' | KeyKind, subnet: number): void {
  describe(`IkeV2Service against strongSwan charon (${auth === 'psk' ? 'PSK' : auth === 'ecdsa' ? 'ECDSA P-256 certificates' : 'RSA certificates'})`, function () {
    this.timeout(120_000)
    const tag = `${process.pid % 10000}p`
    const t = new Topology(tag, subnet)
    let charon: Charon
    let peer: VipsecPeer
    let echo: ChildProcess
    let pki: TestPki | undefined
    const PHASE1: Phase1Policy = {
      ...BASE_PHASE1,
      authMethod: auth === 'psk' ? 'psk' : 'digital-signature'
    }

    before(async () => {
      requireStrongSwan()
      t.up()
      sh('ip', ['-n', t.c, 'addr', 'add', '172.16.2.1/32', 'dev', 'lo'])
      charon = new Charon(t.c)
      let chAuth: SwanctlAuth = { kind: 'psk', secret: PSK }
      let creds = {}
      if (auth !== 'psk') {
        pki = makePki(auth)
        const c = pki.issue('charon', '/C=CH/O=vipsec test/CN=charon.example', 'DNS:charon.example')
        const v = pki.issue('vipsec', '/C=CH/O=vipsec test/CN=vipsec.example', 'DNS:vipsec.example')
        chAuth = {
          kind: 'pubkey',
          cert: charon.credential('x509', 'charon.pem', c.pem),
          cacerts: [charon.credential('x509ca', 'ca.pem', pki.caPem)]
        }
        charon.credential('private', 'charon.key', c.privateKey)
        creds = {
          certificates: [{ identity: V_ID, certificate: v.certificate, privateKey: v.privateKey }],
          trustAnchors: [{ certificate: pki.ca }]
        }
      }
      await charon.start(
        swanctlConf([
          {
            localAddrs: t.cAddr,
            remoteAddrs: t.vAddr,
            proposals: 'aes256gcm16-prfsha256-x25519,aes256-sha256-x25519',
            espProposals: 'aes256gcm16-x25519,aes256gcm16',
            localId: C_ID.value,
            remoteId: V_ID.value,
            auth: chAuth,
            localTs: '172.16.2.1/32',
            remoteTs: '172.16.1.0/24'
          }
        ])
      )
      peer = new VipsecPeer(t.v, {
        address: t.vAddr,
        init: {
          ...creds,
          psks: [{ remote: C_ID, secret: PSK }],
          retransmit: { timeoutMs: 1000, backoff: 1.5, tries: 4 },
          peers: [
            {
              localIdentity: V_ID,
              remoteIdentity: C_ID,
              phase1: PHASE1,
              children: [
                { policy: phase2('none'), mode: 'tunnel', local: [V_NET], remote: [C_HOST] }
              ]
            }
          ]
        }
      })
      await peer.start()
      echo = await echoServer(t.c, '172.16.2.1', 5000)
    })

    after(async () => {
      killProcess(echo)
      await peer?.stop()
      await charon?.stop()
      pki?.dispose()
      t.down()
    })

    const list = (): Promise<IkeSaRecords[]> => peer.call<IkeSaRecords[]>('list')

    const charonLog = (): string => `charon log: ${charon.log().slice(-3000)}`
    const udpRoundTrip = (text: string): Promise<void> =>
      roundTrip(peer, text, { detail: charonLog })
    const until = (fn: () => Promise<boolean>, what: string): Promise<void> =>
      untilFor(fn, what, charonLog)

    describe('when charon initiates to vipsec', () => {
      it('should establish, carry a UDP datagram both ways, and be deleted by charon', async () => {
        charon.swanctl(['--initiate', '--child', 'net', '--ike', 'vipsec', '--timeout', '30'])
        const sas = await list()
        expect(sas).to.have.length(1)
        expect(sas[0].phase1.remoteIdentity).to.deep.equal(C_ID)
        expect(sas[0].phase1.role).to.equal('responder')
        expect(sas[0].phase2).to.have.length(1)
        expect(charon.ikeSas()).to.have.length(1)
        const [child] = charon.children()
        expect(child.out).to.equal(sas[0].phase2[0].inboundSpi)
        await udpRoundTrip('from-vipsec-as-responder')
        charon.swanctl(['--terminate', '--ike', 'vipsec', '--timeout', '30'])
        await until(async () => (await list()).length === 0, 'vipsec to drop the IKE SA')
        expect(charon.ikeSas()).to.have.length(0)
      })
    })

    describe('when vipsec initiates to charon', () => {
      it(
        auth === 'psk'
          ? 'should establish, carry a UDP datagram both ways, rekey the Child SA and the IKE SA from each side, answer a liveness check, and delete from each side'
          : 'should establish, carry a UDP datagram both ways, and be deleted by vipsec',
        async () => {
          const r = await peer.call<IkeSaRecords>('connect', {
            local: { address: t.vAddr, port: 500 },
            peer: { address: t.cAddr, port: 500 },
            localIdentity: V_ID,
            remoteIdentity: C_ID,
            phase1: PHASE1,
            child: {
              policy: phase2('curve25519'),
              mode: 'tunnel',
              local: [V_NET],
              remote: [C_HOST]
            },
            forceEncapsulation: true
          })
          expect(r.phase2[0].encapsulation).to.equal('udp')
          expect(charon.ikeSas()).to.have.length(1)
          await udpRoundTrip('from-vipsec-as-initiator')
          if (auth !== 'psk') {
            await peer.call('deleteIkeSa', r.phase1.id)
            await until(async () => charon.ikeSas().length === 0, 'charon to drop the IKE SA')
            return
          }

          // Child SA rekey started by vipsec (with PFS, Curve25519)
          const next = await peer.call<{ id: string; inboundSpi: string; outboundSpi: string }>(
            'rekeyChildSa',
            r.phase2[0].id
          )
          await until(async () => {
            const c = charon.children()
            return c.length === 1 && c[0].out === next.inboundSpi
          }, 'charon to hold only the rekeyed Child SA')
          await udpRoundTrip('after-vipsec-rekey')

          // Child SA rekey started by charon
          const before = (await list())[0].phase2[0].id
          charon.swanctl(['--rekey', '--child', 'net'])
          await until(async () => {
            const l = await list()
            return l[0]?.phase2.length === 1 && l[0].phase2[0].id !== before
          }, 'vipsec to see the Child SA rekeyed by charon')
          const after = (await list())[0].phase2[0]
          await until(async () => {
            const c = charon.children()
            return c.length === 1 && c[0].out === after.inboundSpi
          }, 'charon to finish its rekey')
          await udpRoundTrip('after-charon-rekey')

          // IKE SA rekey started by vipsec, then by charon; liveness check answered by charon
          const ike1 = await peer.call<{ id: string; ikeSaId: { initiatorSpi: string } }>(
            'rekeyIkeSa',
            (await list())[0].phase1.id
          )
          await until(async () => {
            const raw = charon.swanctl(['--list-sas', '--raw'])
            return (
              charon.ikeSas().length === 1 &&
              raw.includes(`initiator-spi=${ike1.ikeSaId.initiatorSpi}`)
            )
          }, 'charon to hold only the IKE SA rekeyed by vipsec')
          expect(charon.children()).to.have.length(1)
          charon.swanctl(['--rekey', '--ike', 'vipsec'])
          await until(async () => {
            const l = await list()
            return l.length === 1 && l[0].phase1.id !== ike1.id && l[0].phase2.length === 1
          }, 'vipsec to see the IKE SA rekeyed by charon')
          await until(async () => charon.ikeSas().length === 1, 'charon to drop its old IKE SA')
          await peer.call('checkLiveness', (await list())[0].phase1.id)
          await udpRoundTrip('after-ike-rekeys')

          // Child SA delete started by vipsec, then a new Child SA started by charon, deleted by charon
          await peer.call('deleteChildSa', after.id)
          await until(async () => charon.children().length === 0, 'charon to drop the Child SA')
          charon.swanctl(['--initiate', '--child', 'net', '--ike', 'vipsec', '--timeout', '30'])
          await until(
            async () => (await list())[0]?.phase2.length === 1,
            'vipsec to get the Child SA charon made'
          )
          expect(charon.ikeSas()).to.have.length(1)
          await udpRoundTrip('in-charon-child')
          charon.swanctl(['--terminate', '--child', 'net', '--timeout', '30'])
          await until(
            async () => (await list())[0]?.phase2.length === 0,
            'vipsec to drop the Child SA charon deleted'
          )

          // IKE SA delete started by vipsec
          await peer.call('deleteIkeSa', (await list())[0].phase1.id)
          await until(async () => charon.ikeSas().length === 0, 'charon to drop the IKE SA')
          expect(await list()).to.have.length(0)
        }
      )
    })

    describe('when vipsec renegotiates from records with INITIAL_CONTACT', () => {
      it('should leave charon with exactly one IKE SA for the identity: the new one', async () => {
        const r = await peer.call<IkeSaRecords>('connect', {
          local: { address: t.vAddr, port: 500 },
          peer: { address: t.cAddr, port: 500 },
          localIdentity: V_ID,
          remoteIdentity: C_ID,
          phase1: PHASE1,
          child: { policy: phase2('none'), mode: 'tunnel', local: [V_NET], remote: [C_HOST] },
          forceEncapsulation: true
        })
        expect(charon.ikeSas()).to.have.length(1)
        const [outcome] = await peer.call<RenegotiationOutcome[]>('renegotiate', [r])
        expect(outcome.status).to.equal('renegotiated')
        if (outcome.status !== 'renegotiated') return
        await until(async () => charon.ikeSas().length === 1, 'charon to keep one IKE SA')
        const raw = charon.swanctl(['--list-sas', '--raw'])
        expect(raw).to.include(`initiator-spi=${outcome.current.phase1.ikeSaId.initiatorSpi}`)
        expect(raw).to.not.include(`initiator-spi=${r.phase1.ikeSaId.initiatorSpi}`)
        expect((raw.match(/remote-id=vipsec.example/g) ?? []).length).to.equal(1)
        await udpRoundTrip('after-renegotiation')
        await peer.call('deleteIkeSa', outcome.current.phase1.id)
      })
    })
  })
}

interop('psk', 40 + (process.pid % 60))
interop('ecdsa', 110 + (process.pid % 60))
interop('rsa', 180 + (process.pid % 60))
