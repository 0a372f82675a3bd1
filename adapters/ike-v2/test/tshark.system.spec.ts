import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { buildIpPacket, buildUdp } from '@vipsec/esp-software'
import type { IkeProposal } from '@vipsec/interface'
import { wire, type IkeV2Service } from '../src/index.js'
import { makePair, phase1 } from './helpers/pair.js'
import { pcapOf } from './helpers/pcap.js'

const run = promisify(execFile)
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

interface SaKeys {
  spiI: Uint8Array
  spiR: Uint8Array
  keys: { skEi: Uint8Array; skEr: Uint8Array; skAi: Uint8Array; skAr: Uint8Array }
}

/** The keys of every IKE SA a service holds (test-only access to its SA table). */
function keysOf(service: IkeV2Service): SaKeys[] {
  return [...(service as unknown as { table: Map<string, SaKeys> }).table.values()]
}

const SUITES: { name: string; proposal: IkeProposal; encr: string; integ: string; nat: boolean }[] =
  [
    {
      name: 'AES-GCM-256 on port 500',
      proposal: {
        encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
        integrity: ['none'],
        prf: ['hmac-sha2-256'],
        keyExchange: ['curve25519']
      },
      encr: 'AES-GCM-256 with 16 octet ICV [RFC5282]',
      integ: 'NONE [RFC4306]',
      nat: false
    },
    {
      name: 'AES-CBC-256 with HMAC-SHA2-256-128 on port 4500 behind a NAT',
      proposal: {
        encryption: [{ algorithm: 'aes-cbc', keyBits: 256 }],
        integrity: ['hmac-sha2-256-128'],
        prf: ['hmac-sha2-384'],
        keyExchange: ['ecp256']
      },
      encr: 'AES-CBC-256 [RFC3602]',
      integ: 'HMAC_SHA2_256_128 [RFC4868]',
      nat: true
    }
  ]

describe('IkeV2Service', () => {
  describe('IKE messages decoded by tshark', function () {
    this.timeout(120_000)
    let dir: string

    before(async () => {
      try {
        await run('tshark', ['-v'])
      } catch {
        throw new Error('tshark is not installed: run npm run test:system, which installs it')
      }
      dir = await mkdtemp(join(tmpdir(), 'vipsec-ike-'))
    })

    after(async () => {
      if (dir !== undefined && process.env.KEEP_PCAP === undefined)
        await rm(dir, { recursive: true, force: true })
    })

    for (const suite of SUITES) {
      describe(`when the IKE SA uses ${suite.name}`, () => {
        it('should let tshark decrypt every encrypted message with the derived keys and find a correct ICV', async () => {
          const pol = phase1({ proposals: [suite.proposal] })
          const p = makePair({ bPhase1: pol })
          if (suite.nat) p.net.nat.set('10.0.0.1', '198.51.100.1')
          await p.start()
          const sas: SaKeys[] = []
          const r = await p.drive(p.a.connect(p.request({ phase1: pol })))
          await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
          sas.push(...keysOf(p.a))
          const next = await p.drive(p.a.rekeyIkeSa(r.phase1.id))
          sas.push(...keysOf(p.a))
          await p.drive(p.a.checkLiveness(next.id))
          await p.drive(p.a.deleteIkeSa(next.id))
          await p.stop()

          const messages = p.net.log.filter((x) => !(x.data.length === 1 && x.data[0] === 0xff))
          // on port 4500 IKE follows the four-zero-byte non-ESP marker (an SPIi is never zero)
          const ike = messages.map((x) =>
            x.data[0] === 0 && x.data[1] === 0 && x.data[2] === 0 && x.data[3] === 0
              ? x.data.subarray(4)
              : x.data
          )
          const encrypted = ike.filter(
            (m) => wire.parseHeader(m).nextPayload === wire.PayloadType.SK
          ).length
          expect(encrypted).to.be.greaterThan(8)
          const packets = messages.map((x) =>
            buildIpPacket({
              source: x.from.address,
              destination: x.to.address,
              protocol: 17,
              payload: buildUdp({
                source: x.from.address,
                destination: x.to.address,
                sourcePort: x.from.port,
                destinationPort: x.to.port,
                payload: x.data
              })
            })
          )
          const file = join(dir, `${suite.nat ? 'nat' : 'plain'}.pcap`)
          await writeFile(file, pcapOf(packets))
          const uat = (s: SaKeys): string[] => [
            '-o',
            `uat:ikev2_decryption_table:${[
              hex(s.spiI),
              hex(s.spiR),
              hex(s.keys.skEi),
              hex(s.keys.skEr),
              JSON.stringify(suite.encr),
              hex(s.keys.skAi),
              hex(s.keys.skAr),
              JSON.stringify(suite.integ)
            ].join(',')}`
          ]
          const unique = sas.filter(
            (s, i) => sas.findIndex((x) => hex(x.spiI) === hex(s.spiI)) === i
          )
          const { stdout } = await run('tshark', ['-r', file, ...unique.flatMap(uat), '-V'], {
            maxBuffer: 64 * 1024 * 1024
          })
          if (process.env.KEEP_PCAP !== undefined) await writeFile(file + '.txt', stdout)
          expect((stdout.match(/Decrypted Data \(/g) ?? []).length).to.equal(encrypted)
          expect(
            (
              stdout.match(/Integrity Checksum Data: [0-9a-f]+ \(\d+ bytes\)[^\n]*\[correct\]/g) ??
              []
            ).length
          ).to.equal(encrypted)
          expect(stdout).to.not.match(/incorrect|Malformed/)
          expect(stdout).to.include('Identification Data:a.example')
          expect(stdout).to.include('Identification Data:b.example')
          expect(stdout).to.include('Traffic Selector Type: TS_IPV4_ADDR_RANGE')
        })
      })
    }
  })
})
