import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import { IpProtocol, type EspSaParams } from '@vipsec/interface'
import {
  SoftwareEspEngine,
  buildIcmpEcho,
  buildIpPacket,
  buildTcp,
  buildUdp,
  encapsulateUdp,
  TcpFlags
} from '../src/index.js'
import { writePcap } from './pcap.js'
import { NO_LIMITS, anyFilter } from './fixtures.js'

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
  })
})
