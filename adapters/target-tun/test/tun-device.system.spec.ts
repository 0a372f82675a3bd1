// A real TUN device in a namespace of its own: packets delivered to a UDP socket on the service
// address, and the socket's answers read back out of the device.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'

const fixture = fileURLToPath(new URL('./fixtures/tun-roundtrip.ts', import.meta.url))
const root = fileURLToPath(new URL('../../..', import.meta.url))
const ns = `tun-dev-${process.pid % 10000}`

describe('TunDevice and KernelDelivery in a network namespace', function () {
  this.timeout(30_000)
  before(() => {
    execFileSync('ip', ['netns', 'add', ns])
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  })
  after(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns])
    } catch {
      // already gone
    }
  })

  it('should hand delivered packets to a socket on the service address and read its answers back', () => {
    const out = execFileSync(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        '--import',
        'tsx',
        '--conditions=vipsec-source',
        fixture
      ],
      { cwd: root, encoding: 'utf8', timeout: 20_000 }
    )
    const result = JSON.parse(out) as {
      flows: { sourceAddress: string; sourcePort: number; destinationPort: number }[]
      texts: string[]
      counters: { received: number; sent: number; writeErrors: number }
      ticks: number
    }
    expect(result.flows).to.have.length(50)
    expect(new Set(result.flows.map((f) => f.destinationPort)).size).to.equal(50)
    for (const f of result.flows) {
      expect(f.sourceAddress).to.equal('10.99.0.1')
      expect(f.sourcePort).to.equal(5353)
    }
    expect([...result.texts].sort()).to.deep.equal(
      Array.from({ length: 50 }, (_, i) => `re:hello ${i}`).sort()
    )
    expect(result.counters).to.include({ sent: 50, writeErrors: 0 })
    // and perhaps the kernel's own IPv6 router solicitations on the new link
    expect(result.counters.received).to.be.at.least(50)
    // the event loop kept turning while the reader waited for packets
    expect(result.ticks).to.be.greaterThan(0)
    // stop() removed the device and the rules
    expect(execFileSync('ip', ['-n', ns, 'link', 'show'], { encoding: 'utf8' })).to.not.include(
      'tuntest0'
    )
    expect(execFileSync('ip', ['-n', ns, 'rule', 'show'], { encoding: 'utf8' })).to.not.include(
      '7700'
    )
  })
})
