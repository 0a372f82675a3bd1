import { expect } from 'chai'
import { buildIpPacket, buildUdp, type SoftwareEspEngine } from '@vipsec/esp-software'
import type { ChildProposal, IkeProposal } from '@vipsec/interface'
import { ESP_PROPOSAL, IKE_PROPOSAL, makePair, phase1, phase2 } from './helpers/pair.js'

/** Sends one datagram through `sender`'s ESP engine into `receiver`'s; what arrived. */
function cross(sender: SoftwareEspEngine, receiver: SoftwareEspEngine, from: string, to: string) {
  const inner = buildIpPacket({
    source: from,
    destination: to,
    protocol: 17,
    payload: buildUdp({
      source: from,
      destination: to,
      sourcePort: 4000,
      destinationPort: 5000,
      payload: new TextEncoder().encode('through')
    })
  })
  const out = sender.protect(inner)
  if (out.action !== 'protect') return out.action
  return receiver.unprotect(out.packet).action
}

const IKE: [string, IkeProposal][] = [
  [
    'chacha20poly1305-prfsha256-curve448',
    {
      encryption: [{ algorithm: 'chacha20-poly1305', keyBits: 256 }],
      integrity: ['none'],
      prf: ['hmac-sha2-256'],
      keyExchange: ['curve448']
    }
  ],
  [
    'aes128-sha1-prfsha1-modp3072',
    {
      encryption: [{ algorithm: 'aes-cbc', keyBits: 128 }],
      integrity: ['hmac-sha1-96'],
      prf: ['hmac-sha1'],
      keyExchange: ['modp3072']
    }
  ],
  [
    'aes192-sha384-prfsha384-ecp384',
    {
      encryption: [{ algorithm: 'aes-cbc', keyBits: 192 }],
      integrity: ['hmac-sha2-384-192'],
      prf: ['hmac-sha2-384'],
      keyExchange: ['ecp384']
    }
  ],
  [
    'aes256-sha512-prfsha512-ecp521',
    {
      encryption: [{ algorithm: 'aes-cbc', keyBits: 256 }],
      integrity: ['hmac-sha2-512-256'],
      prf: ['hmac-sha2-512'],
      keyExchange: ['ecp521']
    }
  ],
  ['aes256gcm16-prfsha256-modp4096', { ...IKE_PROPOSAL, keyExchange: ['modp4096'] }]
]

const ESP: [string, ChildProposal][] = [
  [
    'chacha20poly1305',
    { ...ESP_PROPOSAL, encryption: [{ algorithm: 'chacha20-poly1305', keyBits: 256 }] }
  ],
  [
    'aes128-sha256',
    {
      ...ESP_PROPOSAL,
      encryption: [{ algorithm: 'aes-cbc', keyBits: 128 }],
      integrity: ['hmac-sha2-256-128']
    }
  ],
  [
    'aes256-sha1',
    {
      ...ESP_PROPOSAL,
      encryption: [{ algorithm: 'aes-cbc', keyBits: 256 }],
      integrity: ['hmac-sha1-96']
    }
  ]
]

describe('IKE and ESP algorithms end to end', () => {
  for (const [name, ike] of IKE) {
    describe(`when the IKE proposal is ${name}`, () => {
      it('should establish, rekey the IKE SA and carry traffic', async () => {
        const pol = phase1({ proposals: [ike] })
        const p = makePair({ bPhase1: pol })
        await p.start()
        const r = await p.drive(p.a.connect(p.request({ phase1: pol })))
        await p.drive(p.a.rekeyIkeSa(r.phase1.id))
        await p.settle()
        expect(p.a.list()).to.have.length(1)
        expect(p.b.list()).to.have.length(1)
        expect(cross(p.aEngine, p.bEngine, '172.16.1.5', '172.16.2.7')).to.equal('accept')
        await p.stop()
      })
    })
  }
  for (const [name, esp] of ESP) {
    for (const pfs of ['none', 'curve448'] as const) {
      describe(`when the ESP proposal is ${name}, PFS ${pfs}`, () => {
        it('should install it in the ESP engines, carry traffic both ways, and rekey', async () => {
          const pol = phase2({ proposals: [esp], pfsGroup: pfs })
          const p = makePair({
            bPhase2: phase2({ proposals: [{ ...esp, keyExchange: ['none', 'curve448'] }] })
          })
          await p.start()
          const r = await p.drive(
            p.a.connect(p.request({ child: { ...p.request().child, policy: pol } }))
          )
          expect(cross(p.aEngine, p.bEngine, '172.16.1.5', '172.16.2.7')).to.equal('accept')
          expect(cross(p.bEngine, p.aEngine, '172.16.2.7', '172.16.1.5')).to.equal('accept')
          const sas = p.aEngine.listSas()
          expect(sas.map((s) => s.algorithm)).to.deep.equal([
            esp.encryption[0].algorithm,
            esp.encryption[0].algorithm
          ])
          await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
          await p.settle()
          expect(cross(p.aEngine, p.bEngine, '172.16.1.5', '172.16.2.7')).to.equal('accept')
          await p.stop()
        })
      })
    }
  }
})
