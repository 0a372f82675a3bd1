import { type ChildProcess } from 'node:child_process'
import { expect } from 'chai'
import type {
  IkeSaRecords,
  Phase1Policy,
  Phase2Policy,
  RenegotiationOutcome
} from '@vipsec/interface'
import { join } from 'node:path'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { makePki, type KeyKind, type TestPki } from './helpers/certs.js'
import { Charon, sh, startEcho, Topology, VipsecPeer } from './helpers/netns.js'

const V_ID = { type: 'fqdn' as const, value: 'vipsec.example' }
const C_ID = { type: 'fqdn' as const, value: 'charon.example' }
const V_NET = {
  startAddress: '172.16.1.0',
  endAddress: '172.16.1.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}
const C_HOST = {
  startAddress: '172.16.2.1',
  endAddress: '172.16.2.1',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}
const PSK = 'interop test key'

const BASE_PHASE1: Phase1Policy = {
  proposals: [
    {
      encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
      integrity: ['none'],
      prf: ['hmac-sha2-256'],
      keyExchange: ['curve25519']
    },
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

function phase2(pfs: 'none' | 'curve25519'): Phase2Policy {
  return {
    proposals: [
      {
        protocol: 'esp',
        encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
        integrity: ['none'],
        keyExchange: pfs === 'none' ? ['none'] : ['curve25519'],
        extendedSequenceNumbers: [false]
      }
    ],
    pfsGroup: pfs,
    lifetime: {
      softSeconds: 0,
      hardSeconds: 0,
      softBytes: 0,
      hardBytes: 0,
      softPackets: 0,
      hardPackets: 0
    }
  }
}

interface CertFiles {
  ca: string
  cert: string
  key: string
}

function swanctlConf(
  t: Topology,
  ikeProposals: string,
  espProposals: string,
  certs?: CertFiles
): string {
  const local = certs === undefined ? 'auth = psk' : `auth = pubkey\n      certs = ${certs.cert}`
  const remote = certs === undefined ? 'auth = psk' : `auth = pubkey\n      cacerts = ${certs.ca}`
  const secret =
    certs === undefined
      ? `ike-vipsec {\n    id-1 = charon.example\n    id-2 = vipsec.example\n    secret = "${PSK}"\n  }`
      : ''
  return `connections {
  vipsec {
    version = 2
    local_addrs = ${t.cAddr}
    remote_addrs = ${t.vAddr}
    proposals = ${ikeProposals}
    encap = yes
    rekey_time = 0
    local {
      ${local}
      id = charon.example
    }
    remote {
      ${remote}
      id = vipsec.example
    }
    children {
      net {
        local_ts = 172.16.2.1/32
        remote_ts = 172.16.1.0/24
        esp_proposals = ${espProposals}
        mode = tunnel
        rekey_time = 0
        start_action = none
      }
    }
  }
}
secrets {
  ${secret}
}
`
}

/** charon's Child SAs as { spiIn, spiOut } from `--list-sas --raw`. */
function charonChildren(c: Charon): { in: string; out: string }[] {
  const raw = c.swanctl(['--list-sas', '--raw'])
  const out: { in: string; out: string }[] = []
  const re = /spi-in=([0-9a-f]+) spi-out=([0-9a-f]+)/g
  for (let m = re.exec(raw); m !== null; m = re.exec(raw)) out.push({ in: m[1], out: m[2] })
  return out
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
      if (!existsSync('/usr/lib/ipsec/plugins/libstrongswan-openssl.so')) {
        throw new Error(
          "strongSwan's openssl plugin (AES-GCM, X25519 for charon) is missing: " +
            'apt-get install libstrongswan-standard-plugins (scripts/install-system-deps.sh should)'
        )
      }
      t.up()
      sh('ip', ['-n', t.c, 'addr', 'add', '172.16.2.1/32', 'dev', 'lo'])
      charon = new Charon(t.c)
      let certs: CertFiles | undefined
      let creds = {}
      if (auth !== 'psk') {
        pki = makePki(auth)
        const c = pki.issue('charon', '/C=CH/O=vipsec test/CN=charon.example', 'DNS:charon.example')
        const v = pki.issue('vipsec', '/C=CH/O=vipsec test/CN=vipsec.example', 'DNS:vipsec.example')
        // swanctl loads credentials from folders next to the swanctl.conf it is given
        for (const dir of ['x509', 'x509ca', 'private']) mkdirSync(join(charon.run, dir))
        certs = {
          ca: join(charon.run, 'x509ca', 'ca.pem'),
          cert: join(charon.run, 'x509', 'charon.pem'),
          key: join(charon.run, 'private', 'charon.key')
        }
        writeFileSync(certs.ca, pki.caPem)
        writeFileSync(certs.cert, c.pem)
        writeFileSync(certs.key, c.privateKey)
        creds = {
          certificates: [{ identity: V_ID, certificate: v.certificate, privateKey: v.privateKey }],
          trustAnchors: [{ certificate: pki.ca }]
        }
      }
      await charon.start(
        swanctlConf(
          t,
          'aes256gcm16-prfsha256-x25519,aes256-sha256-x25519',
          'aes256gcm16-x25519,aes256gcm16',
          certs
        )
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
      echo = startEcho(t.c, '172.16.2.1', 5000)
      await new Promise<void>((resolve) => echo.stdout!.once('data', () => resolve()))
    })

    after(async () => {
      if (echo?.pid !== undefined) {
        try {
          process.kill(echo.pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
      await peer?.stop()
      await charon?.stop()
      pki?.dispose()
      t.down()
    })

    const list = (): Promise<IkeSaRecords[]> => peer.call<IkeSaRecords[]>('list')

    async function udpRoundTrip(text: string): Promise<void> {
      await peer.call('received')
      await peer.call('sendUdp', {
        from: '172.16.1.1',
        to: '172.16.2.1',
        sourcePort: 4000,
        destinationPort: 5000,
        text
      })
      const end = Date.now() + 10_000
      for (;;) {
        const r = await peer.call<{ from: string; text: string }[]>('received')
        const hit = r.find((x) => x.text === `echo:${text}`)
        if (hit !== undefined) {
          expect(hit.from).to.equal('172.16.2.1')
          return
        }
        if (Date.now() > end)
          throw new Error(`no echo for ${text}; charon log: ${charon.log().slice(-3000)}`)
        await new Promise((r2) => setTimeout(r2, 100))
      }
    }

    async function until(fn: () => Promise<boolean>, what: string): Promise<void> {
      const end = Date.now() + 20_000
      while (!(await fn())) {
        if (Date.now() > end)
          throw new Error(`timed out: ${what}; charon log: ${charon.log().slice(-3000)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }

    describe('when charon initiates to vipsec', () => {
      it('should establish, carry a UDP datagram both ways, and be deleted by charon', async () => {
        charon.swanctl(['--initiate', '--child', 'net', '--ike', 'vipsec', '--timeout', '30'])
        const sas = await list()
        expect(sas).to.have.length(1)
        expect(sas[0].phase1.remoteIdentity).to.deep.equal(C_ID)
        expect(sas[0].phase1.role).to.equal('responder')
        expect(sas[0].phase2).to.have.length(1)
        expect(charon.ikeSas()).to.have.length(1)
        const [child] = charonChildren(charon)
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
            const c = charonChildren(charon)
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
            const c = charonChildren(charon)
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
          expect(charonChildren(charon)).to.have.length(1)
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
          await until(
            async () => charonChildren(charon).length === 0,
            'charon to drop the Child SA'
          )
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
