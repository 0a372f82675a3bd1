import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import { IpProtocol, type EspIntegrityAlgorithm, type EspSaParams } from '@vipsec/interface'
import {
  buildIcmpEcho,
  buildIpPacket,
  buildTcp,
  buildUdp,
  encapsulateUdp,
  TcpFlags
} from '@vipsec/wire'
import { ESP_INTEGRITY, SoftwareEspEngine } from '../src/index.js'
import { writePcap } from './pcap.js'
import { NO_LIMITS, anyFilter } from './fixtures.js'

/** Debian's interpreter, where scripts/install-system-deps.sh puts python3-cryptography. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

const run = promisify(execFile)
const LOCAL = '192.0.2.1'
const REMOTE = '198.51.100.2'

interface Sent {
  spi: number
  sequence: number
  iv: string
  /** What tshark must find as the ESP contained data: the inner packet, or segment in transport mode. */
  contained: string
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function keyMaterial(seed: number, keyBytes: number): Uint8Array {
  return Uint8Array.from(
    { length: keyBytes + 4 },
    (_, i) => ((seed >> 8) * 11 + seed * 7 + i * 13) & 0xff
  )
}

function udpEncapsulated(
  spi: number,
  mode: 'tunnel' | 'transport',
  keyBytes: number,
  esn = false
): EspSaParams {
  return {
    spi,
    direction: 'outbound',
    mode,
    algorithm: 'aes-gcm-16',
    keyMaterial: keyMaterial(spi, keyBytes),
    extendedSequenceNumbers: esn,
    // with ESN, start just below 2^32 so that the packets cross into the next block
    initialSequence: esn ? 0xfffffffcn : 0n,
    lifetime: NO_LIMITS,
    tunnel: { local: LOCAL, remote: REMOTE },
    udpEncapsulation: {
      local: { address: LOCAL, port: 4500 },
      remote: { address: REMOTE, port: 4500 }
    }
  }
}

function espSaEntry(sa: EspSaParams): string {
  const fields = [
    'IPv4',
    LOCAL,
    REMOTE,
    `0x${sa.spi.toString(16).padStart(8, '0')}`,
    'AES-GCM with 16 octet ICV [RFC4106]',
    `0x${hex(sa.keyMaterial)}`,
    'NULL',
    ''
  ]
  return `uat:esp_sa:${fields.map((f) => JSON.stringify(f)).join(',')}`
}

const TSHARK_INTEGRITY: Record<string, string> = {
  'hmac-sha2-256-128': 'HMAC-SHA-256-128 [RFC4868]',
  'hmac-sha2-384-192': 'HMAC-SHA-384-192 [RFC4868]',
  'hmac-sha2-512-256': 'HMAC-SHA-512-256 [RFC4868]',
  'hmac-sha1-96': 'HMAC-SHA-1-96 [RFC2404]'
}

/** tshark's SA entry for an AES-CBC SA: the keying material split AES key first, then HMAC key. */
function cbcSaEntry(sa: EspSaParams, aesBytes: number): string {
  const fields = [
    'IPv4',
    LOCAL,
    REMOTE,
    `0x${sa.spi.toString(16).padStart(8, '0')}`,
    'AES-CBC [RFC3602]',
    `0x${hex(sa.keyMaterial.subarray(0, aesBytes))}`,
    TSHARK_INTEGRITY[sa.integrity as string],
    `0x${hex(sa.keyMaterial.subarray(aesBytes))}`
  ]
  return `uat:esp_sa:${fields.map((f) => JSON.stringify(f)).join(',')}`
}

/** The ESP-in-UDP frame (an IPv4 packet) of one protected packet. */
function frameOf(out: { packet: Uint8Array; to: { address: string; port: number } }): Uint8Array {
  return buildIpPacket({
    source: LOCAL,
    destination: out.to.address,
    protocol: IpProtocol.UDP,
    payload: encapsulateUdp({
      source: LOCAL,
      destination: out.to.address,
      destinationPort: out.to.port,
      esp: out.packet
    })
  })
}

/** A UDP packet from 10.1.0.5 to `destination` with `length` bytes of data. */
function flowPacket(destination: string, i: number, length: number): Uint8Array {
  return buildIpPacket({
    source: '10.1.0.5',
    destination,
    protocol: IpProtocol.UDP,
    identification: i,
    payload: buildUdp({
      source: '10.1.0.5',
      destination,
      sourcePort: 41000 + i,
      destinationPort: 5001,
      payload: Uint8Array.from({ length }, (_, j) => (i * 3 + j) & 0xff)
    })
  })
}

/**
 * A second, independent ChaCha20-Poly1305 ESP opener (Python's `cryptography`, RFC 7634 section
 * 2.1 read on its own): one JSON line in per packet, one line out (`payload-hex next-header`, or
 * `FAIL`).
 */
const CHACHA_OPENER = `
import json, sys
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
for line in sys.stdin:
    job = json.loads(line)
    material = bytes.fromhex(job['keyMaterial'])
    packet = bytes.fromhex(job['packet'])
    key, salt = material[:32], material[32:]
    aad = packet[0:4] + bytes.fromhex(job['high']) + packet[4:8] if job['esn'] else packet[0:8]
    try:
        text = ChaCha20Poly1305(key).decrypt(salt + packet[8:16], packet[16:], aad)
    except Exception:
        print('FAIL')
        continue
    pad, nh = text[-2], text[-1]
    body = text[:len(text) - 2 - pad]
    ok = text[len(body):len(text) - 2] == bytes(range(1, pad + 1))
    print(body.hex() + ' ' + str(nh) if ok else 'FAIL')
`

describe('SoftwareEspEngine', () => {
  describe('ESP-in-UDP decoded by tshark', function () {
    this.timeout(120_000)
    let dir: string

    before(async function () {
      try {
        await run('tshark', ['-v'])
      } catch {
        throw new Error('tshark is not installed: run npm run test:system, which installs it')
      }
      dir = await mkdtemp(join(tmpdir(), 'vipsec-esp-'))
    })

    after(async () => {
      if (dir != null) await rm(dir, { recursive: true, force: true })
    })

    describe('when the engine protects UDP, TCP, ICMP and IPv6 packets with AES-128 and AES-256, ESN across 2^32 and transport mode', () => {
      it('should let tshark decrypt every packet with the SA keys to the same inner bytes', async () => {
        const engine = new SoftwareEspEngine({ clock: new VirtualClock() })
        await engine.start()
        const sas = [
          udpEncapsulated(0x0000a256, 'tunnel', 32),
          udpEncapsulated(0x0000a128, 'tunnel', 16),
          udpEncapsulated(0x0000b128, 'transport', 16),
          udpEncapsulated(0x0000e256, 'tunnel', 32, true)
        ]
        for (const sa of sas) engine.addSa(sa)
        const v4 = { ...anyFilter().selector, source: '10.1.0.0/16', destination: '10.2.0.0/16' }
        engine.installFilter(anyFilter({ id: 'v4', selector: v4, spi: 0xa256 }))
        engine.installFilter(
          anyFilter({
            id: 'v6',
            selector: { ...v4, source: '2001:db8:1::/48', destination: '::/0' },
            spi: 0xa128
          })
        )
        engine.installFilter(
          anyFilter({
            id: 'host',
            selector: { ...v4, source: `${LOCAL}/32`, destination: `${REMOTE}/32` },
            spi: 0xb128
          })
        )

        engine.installFilter(
          anyFilter({ id: 'esn', selector: { ...v4, destination: '10.3.0.0/16' }, spi: 0xe256 })
        )

        const inner: Uint8Array[] = []
        for (let i = 0; i < 20; i++) {
          const payload = Uint8Array.from({ length: i * 37 }, (_, j) => (i + j) & 0xff)
          inner.push(
            buildIpPacket({
              source: '10.1.0.5',
              destination: '10.2.0.7',
              protocol: IpProtocol.UDP,
              identification: i,
              payload: buildUdp({
                source: '10.1.0.5',
                destination: '10.2.0.7',
                sourcePort: 40000 + i,
                destinationPort: 5001,
                payload
              })
            })
          )
        }
        inner.push(
          buildIpPacket({
            source: '10.1.0.9',
            destination: '10.2.0.9',
            protocol: IpProtocol.TCP,
            payload: buildTcp({
              source: '10.1.0.9',
              destination: '10.2.0.9',
              sourcePort: 33000,
              destinationPort: 443,
              sequence: 1000,
              acknowledgement: 0,
              flags: TcpFlags.SYN
            })
          }),
          buildIpPacket({
            source: '10.1.0.9',
            destination: '10.2.0.1',
            protocol: IpProtocol.ICMP,
            payload: buildIcmpEcho({
              kind: 'request',
              source: '10.1.0.9',
              destination: '10.2.0.1',
              identifier: 7,
              sequence: 1,
              payload: new Uint8Array(56).fill(0x61)
            })
          }),
          buildIpPacket({
            source: '2001:db8:1::5',
            destination: '2001:db8:2::7',
            protocol: IpProtocol.UDP,
            payload: buildUdp({
              source: '2001:db8:1::5',
              destination: '2001:db8:2::7',
              sourcePort: 1234,
              destinationPort: 53,
              payload: new Uint8Array(33).fill(0x33)
            })
          }),
          buildIpPacket({
            source: LOCAL,
            destination: REMOTE,
            protocol: IpProtocol.UDP,
            payload: buildUdp({
              source: LOCAL,
              destination: REMOTE,
              sourcePort: 7000,
              destinationPort: 7001,
              payload: new Uint8Array(21).fill(0x77)
            })
          })
        )

        for (let i = 0; i < 8; i++) {
          inner.push(
            buildIpPacket({
              source: '10.1.0.5',
              destination: '10.3.0.1',
              protocol: IpProtocol.UDP,
              payload: buildUdp({
                source: '10.1.0.5',
                destination: '10.3.0.1',
                sourcePort: 50000 + i,
                destinationPort: 9,
                payload: new Uint8Array(100 + i).fill(i)
              })
            })
          )
        }

        const frames: Uint8Array[] = []
        const sent: Sent[] = []
        for (const packet of inner) {
          const out = engine.protect(packet)
          if (out.action !== 'protect') throw new Error(`not protected: ${JSON.stringify(out)}`)
          expect(out.udp).to.equal(true)
          const view = new DataView(out.packet.buffer, out.packet.byteOffset)
          const transport = out.spi === 0xb128
          sent.push({
            spi: out.spi,
            sequence: view.getUint32(4),
            iv: hex(out.packet.subarray(8, 16)),
            contained: hex(transport ? packet.subarray(20) : packet)
          })
          frames.push(
            buildIpPacket({
              source: LOCAL,
              destination: out.to.address,
              protocol: IpProtocol.UDP,
              payload: encapsulateUdp({
                source: LOCAL,
                destination: out.to.address,
                destinationPort: out.to.port,
                esp: out.packet
              })
            })
          )
        }
        // a NAT keep-alive and an IKE message (non-ESP marker) in between: tshark must not take them for ESP
        frames.splice(
          3,
          0,
          buildIpPacket({
            source: LOCAL,
            destination: REMOTE,
            protocol: 17,
            payload: buildUdp({
              source: LOCAL,
              destination: REMOTE,
              sourcePort: 4500,
              destinationPort: 4500,
              payload: new Uint8Array([0xff])
            })
          })
        )
        await engine.stop()

        const file = join(dir, 'esp-in-udp.pcap')
        await writeFile(file, writePcap(frames))
        const args = ['-r', file, '-o', 'esp.enable_encryption_decode:TRUE']
        for (const sa of sas) args.push('-o', espSaEntry(sa))
        args.push(
          '-Y',
          'esp',
          '-T',
          'fields',
          '-E',
          'separator=;',
          '-e',
          'esp.spi',
          '-e',
          'esp.sequence',
          '-e',
          'esp.iv',
          '-e',
          'esp.contained_data'
        )
        const { stdout } = await run('tshark', args, {
          timeout: 60_000,
          maxBuffer: 16 * 1024 * 1024
        })
        const decoded = stdout
          .trim()
          .split('\n')
          .map((line) => {
            const [spi, sequence, iv, contained] = line.split(';')
            return { spi: parseInt(spi, 16), sequence: Number(sequence), iv, contained }
          })
        expect(decoded).to.have.length(sent.length)
        expect(decoded).to.deep.equal(sent)
        // without the keys tshark sees ESP but cannot find the inner packets
        const blind = await run(
          'tshark',
          ['-r', file, '-Y', 'esp', '-T', 'fields', '-e', 'esp.contained_data'],
          { timeout: 60_000 }
        )
        expect(
          blind.stdout
            .trim()
            .split('\n')
            .filter((l) => l !== '')
        ).to.have.length(0)
      })
    })

    describe('when the engine protects with AES-CBC and each HMAC, ESN across 2^32 and transport mode', () => {
      it('should let tshark decrypt every packet to the same inner bytes and find every ICV good', async () => {
        const engine = new SoftwareEspEngine({ clock: new VirtualClock() })
        await engine.start()
        const cbc = (
          spi: number,
          integrity: EspIntegrityAlgorithm,
          aesBytes: number,
          mode: 'tunnel' | 'transport' = 'tunnel',
          esn = false
        ): EspSaParams => ({
          ...udpEncapsulated(spi, mode, 16, esn),
          algorithm: 'aes-cbc',
          integrity,
          keyMaterial: Uint8Array.from(
            { length: aesBytes + ESP_INTEGRITY[integrity].keyLength },
            (_, i) => ((spi % 251) * 3 + i * 11) & 0xff
          )
        })
        const sas: [EspSaParams, number, string][] = [
          [cbc(0xc256, 'hmac-sha2-256-128', 32), 32, '10.2.0.0/16'],
          [cbc(0xc384, 'hmac-sha2-384-192', 24), 24, '10.4.0.0/16'],
          [cbc(0xc512, 'hmac-sha2-512-256', 32), 32, '10.5.0.0/16'],
          [cbc(0xc001, 'hmac-sha1-96', 16, 'transport'), 16, `${REMOTE}/32`],
          [cbc(0xce56, 'hmac-sha2-256-128', 32, 'tunnel', true), 32, '10.3.0.0/16']
        ]
        for (const [sa, , destination] of sas) {
          engine.addSa(sa)
          const source = destination.startsWith(REMOTE) ? `${LOCAL}/32` : '10.1.0.0/16'
          engine.installFilter(
            anyFilter({
              id: `f${sa.spi}`,
              spi: sa.spi,
              selector: { ...anyFilter().selector, source, destination }
            })
          )
        }
        const inner: Uint8Array[] = []
        for (let i = 0; i < 12; i++) {
          for (const net of ['10.2.0.7', '10.4.0.7', '10.5.0.7', '10.3.0.7']) {
            inner.push(flowPacket(net, i, i * 41))
          }
        }
        inner.push(
          buildIpPacket({
            source: LOCAL,
            destination: REMOTE,
            protocol: IpProtocol.UDP,
            payload: buildUdp({
              source: LOCAL,
              destination: REMOTE,
              sourcePort: 7000,
              destinationPort: 7001,
              payload: new Uint8Array(45).fill(0x77)
            })
          })
        )
        const frames: Uint8Array[] = []
        const sent: (Sent & { icv: string })[] = []
        for (const packet of inner) {
          const out = engine.protect(packet)
          if (out.action !== 'protect') throw new Error(`not protected: ${JSON.stringify(out)}`)
          const view = new DataView(out.packet.buffer, out.packet.byteOffset)
          sent.push({
            spi: out.spi,
            sequence: view.getUint32(4),
            iv: hex(out.packet.subarray(8, 24)),
            contained: hex(out.spi === 0xc001 ? packet.subarray(20) : packet),
            // tshark 4.0 computes the ICV without the ESN high half: it checks the others
            icv: out.spi === 0xce56 ? '' : '1'
          })
          frames.push(frameOf(out))
          if (frames.length === 1) {
            // and a copy with its last ICV byte changed, which tshark must find bad
            const forged = out.packet.slice()
            forged[forged.length - 1] ^= 0x01
            frames.push(frameOf({ ...out, packet: forged }))
            sent.push({ ...sent[0], icv: '0' })
          }
        }
        await engine.stop()
        expect(new Set(sent.map((p) => p.sequence)).has(0)).to.equal(true)

        const file = join(dir, 'esp-cbc.pcap')
        await writeFile(file, writePcap(frames))
        const args = [
          '-r',
          file,
          '-o',
          'esp.enable_encryption_decode:TRUE',
          '-o',
          'esp.enable_authentication_check:TRUE'
        ]
        for (const [sa, aesBytes] of sas) args.push('-o', cbcSaEntry(sa, aesBytes))
        args.push('-Y', 'esp', '-T', 'fields', '-E', 'separator=;')
        for (const field of [
          'esp.spi',
          'esp.sequence',
          'esp.iv',
          'esp.contained_data',
          'esp.icv_good'
        ]) {
          args.push('-e', field)
        }
        const { stdout } = await run('tshark', args, {
          timeout: 60_000,
          maxBuffer: 16 * 1024 * 1024
        })
        const decoded = stdout
          .trim()
          .split('\n')
          .map((line) => {
            const [spi, sequence, iv, contained, icv] = line.split(';')
            return { spi: parseInt(spi, 16), sequence: Number(sequence), iv, contained, icv }
          })
        for (const d of decoded) if (d.spi === 0xce56) d.icv = ''
        expect(decoded).to.deep.equal(sent)
      })
    })

    describe('when the engine protects with ChaCha20-Poly1305, ESN across 2^32 included', () => {
      it('should let tshark find the ESP packets and a second implementation open each one to the same inner bytes', async function () {
        try {
          await run(PYTHON, ['-c', 'import cryptography.hazmat.primitives.ciphers.aead'])
        } catch {
          throw new Error(
            'python3 with cryptography is missing: run scripts/install-system-deps.sh'
          )
        }
        const engine = new SoftwareEspEngine({ clock: new VirtualClock() })
        await engine.start()
        const chacha = (spi: number, esn: boolean): EspSaParams => ({
          ...udpEncapsulated(spi, 'tunnel', 32, esn),
          algorithm: 'chacha20-poly1305'
        })
        const sas = [chacha(0xcc20, false), chacha(0xce20, true)]
        engine.addSa(sas[0])
        engine.addSa(sas[1])
        const selector = { ...anyFilter().selector, source: '10.1.0.0/16' }
        engine.installFilter(
          anyFilter({ id: 'a', spi: 0xcc20, selector: { ...selector, destination: '10.2.0.0/16' } })
        )
        engine.installFilter(
          anyFilter({ id: 'b', spi: 0xce20, selector: { ...selector, destination: '10.3.0.0/16' } })
        )
        const inner: Uint8Array[] = []
        for (let i = 0; i < 10; i++) {
          inner.push(flowPacket('10.2.0.7', i, i * 97), flowPacket('10.3.0.7', i, 1 + i * 13))
        }
        const frames: Uint8Array[] = []
        const jobs: string[] = []
        const sent: { spi: number; sequence: number }[] = []
        for (const packet of inner) {
          const out = engine.protect(packet)
          if (out.action !== 'protect') throw new Error(`not protected: ${JSON.stringify(out)}`)
          const sa = out.spi === 0xcc20 ? sas[0] : sas[1]
          const sequence = new DataView(out.packet.buffer, out.packet.byteOffset).getUint32(4)
          // the ESN SA starts at 0xfffffffc: numbers that wrapped are in the next high half
          const high = sa.extendedSequenceNumbers && sequence < 0x80000000 ? 1 : 0
          sent.push({ spi: out.spi, sequence })
          jobs.push(
            JSON.stringify({
              keyMaterial: hex(sa.keyMaterial),
              packet: hex(out.packet),
              esn: sa.extendedSequenceNumbers,
              high: high.toString(16).padStart(8, '0')
            })
          )
          frames.push(frameOf(out))
        }
        await engine.stop()

        const file = join(dir, 'esp-chacha.pcap')
        await writeFile(file, writePcap(frames))
        const { stdout } = await run(
          'tshark',
          [
            '-r',
            file,
            '-Y',
            'esp',
            '-T',
            'fields',
            '-E',
            'separator=;',
            '-e',
            'esp.spi',
            '-e',
            'esp.sequence'
          ],
          { timeout: 60_000 }
        )
        expect(
          stdout
            .trim()
            .split('\n')
            .map((line) => {
              const [spi, sequence] = line.split(';')
              return { spi: parseInt(spi, 16), sequence: Number(sequence) }
            })
        ).to.deep.equal(sent)

        const opened = await new Promise<string[]>((resolve, reject) => {
          const child = execFile(PYTHON, ['-c', CHACHA_OPENER], { timeout: 60_000 }, (err, out) =>
            err != null ? reject(err) : resolve(out.trim().split('\n'))
          )
          child.stdin?.end(jobs.join('\n') + '\n')
        })
        expect(opened).to.deep.equal(inner.map((p) => `${hex(p)} 4`))
        // and a packet with its last byte changed is refused by the other implementation too
        const forged = JSON.parse(jobs[0]) as { packet: string }
        forged.packet = forged.packet.slice(0, -2) + (forged.packet.endsWith('00') ? '01' : '00')
        const refused = await new Promise<string>((resolve, reject) => {
          const child = execFile(PYTHON, ['-c', CHACHA_OPENER], { timeout: 60_000 }, (err, out) =>
            err != null ? reject(err) : resolve(out.trim())
          )
          child.stdin?.end(JSON.stringify({ ...JSON.parse(jobs[0]), packet: forged.packet }) + '\n')
        })
        expect(refused).to.equal('FAIL')
      })
    })
  })
})
