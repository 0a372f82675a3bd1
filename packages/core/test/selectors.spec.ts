import { expect } from 'chai'
import type { TrafficSelector } from '@vipsec/interface'
import { sameChildSelectors, sameSelectorSet, sameTrafficSelector } from '../src/index.js'

const ts = (start: string, end: string, protocol = 0, ports: [number, number] = [0, 65535]) =>
  ({
    startAddress: start,
    endAddress: end,
    protocol,
    startPort: ports[0],
    endPort: ports[1]
  }) satisfies TrafficSelector

describe('Child SA selector equality', () => {
  it('should hold selectors equal however their addresses are written', () => {
    expect(
      sameTrafficSelector(
        ts('2001:db8::1', '2001:db8::ff'),
        ts('2001:0db8:0:0::1', '2001:db8:0::00ff')
      )
    ).to.equal(true)
    expect(
      sameTrafficSelector(ts('10.0.0.0', '10.0.0.255'), ts('10.0.0.0', '10.0.0.254'))
    ).to.equal(false)
    expect(
      sameTrafficSelector(ts('10.0.0.0', '10.0.0.255', 6), ts('10.0.0.0', '10.0.0.255', 17))
    ).to.equal(false)
    expect(
      sameTrafficSelector(
        ts('10.0.0.0', '10.0.0.255', 6, [80, 80]),
        ts('10.0.0.0', '10.0.0.255', 6, [80, 81])
      )
    ).to.equal(false)
  })

  it('should compare selector lists as sets, in any order', () => {
    const a = [ts('10.0.0.0', '10.0.0.255'), ts('10.1.0.0', '10.1.0.255')]
    expect(sameSelectorSet(a, [a[1]!, a[0]!])).to.equal(true)
    expect(sameSelectorSet(a, [a[0]!])).to.equal(false)
    expect(sameSelectorSet([a[0]!], a)).to.equal(false)
  })

  it('should need both sides equal for a Child SA, whatever the key order of the record', () => {
    const local = [ts('10.0.0.0', '10.0.0.255')]
    const remote = [ts('192.168.1.1', '192.168.1.1')]
    // the same selectors, fields in another order (as a record read back from JSON may have them)
    const reordered = remote.map((r) => ({
      endPort: r.endPort,
      startPort: r.startPort,
      protocol: r.protocol,
      endAddress: r.endAddress,
      startAddress: r.startAddress
    }))
    expect(sameChildSelectors({ local, remote }, { local, remote: reordered })).to.equal(true)
    expect(sameChildSelectors({ local, remote }, { local: remote, remote: local })).to.equal(false)
  })
})
