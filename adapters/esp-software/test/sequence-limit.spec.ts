import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { EspEvent, EspSaParams } from '@vipsec/interface'
import { SoftwareEspEngine } from '../src/index.js'
import { anyFilter, saParams, udpPacket } from './fixtures.js'

describe('SoftwareEspEngine sequence limits (warm mode)', () => {
  let engine: SoftwareEspEngine
  let events: EspEvent[]

  beforeEach(async () => {
    engine = new SoftwareEspEngine({ clock: new VirtualClock() }, { sequenceLowWater: 2 })
    await engine.start()
    events = []
    engine.events$.subscribe((e) => events.push(e))
  })

  afterEach(async () => {
    await engine.stop()
  })

  function outbound(overrides: Partial<EspSaParams>): EspSaParams {
    const params = saParams(overrides)
    engine.addSa(params)
    engine.installFilter(anyFilter({ id: 'out', spi: params.spi }))
    return params
  }

  const low = (): EspEvent[] => events.filter((e) => e.type === 'sa:sequence-low')

  describe('when an outbound SA has a sequence limit', () => {
    it('should seal up to the limit and drop past it as sequence-unreserved', () => {
      outbound({ sequenceLimit: 5n })
      const actions = Array.from({ length: 7 }, () => engine.protect(udpPacket()).action)
      expect(actions).to.deep.equal([
        'protect',
        'protect',
        'protect',
        'protect',
        'protect',
        'drop',
        'drop'
      ])
      expect(engine.counters().dropped['sequence-unreserved']).to.equal(2)
      expect(engine.listSas()[0]).to.include({ sequence: 5n, sequenceLimit: 5n })
    })

    it('should emit sa:sequence-low once per limit, within the low water', () => {
      const { spi } = outbound({ sequenceLimit: 5n, tag: 'p2' })
      engine.protect(udpPacket()) // 1: 4 left
      engine.protect(udpPacket()) // 2: 3 left
      expect(low()).to.have.length(0)
      engine.protect(udpPacket()) // 3: 2 left
      engine.protect(udpPacket()) // 4: 1 left
      expect(low()).to.deep.equal([
        {
          type: 'sa:sequence-low',
          spi,
          direction: 'outbound',
          tag: 'p2',
          sequence: 3n,
          limit: 5n
        }
      ])
      expect(engine.setSequenceLimit(spi, 10n)).to.equal(true)
      for (let i = 0; i < 6; i++) expect(engine.protect(udpPacket()).action).to.equal('protect')
      expect(low()).to.have.length(2)
      expect(engine.protect(udpPacket()).action).to.equal('drop')
    })

    it('should go on from initialSequence and stop at once when the limit is below it', () => {
      const { spi } = outbound({ initialSequence: 100n, sequenceLimit: 101n })
      expect(engine.protect(udpPacket()).action).to.equal('protect')
      expect(engine.protect(udpPacket())).to.deep.equal({
        action: 'drop',
        reason: 'sequence-unreserved'
      })
      expect(engine.setSequenceLimit(spi, undefined)).to.equal(true)
      expect(engine.protect(udpPacket()).action).to.equal('protect')
      expect(engine.listSas()[0]!.sequenceLimit).to.equal(undefined)
    })
  })

  describe('when a limit is out of range or the SA is unknown', () => {
    it('should throw InvalidParametersError, or return false', () => {
      expect(() => outbound({ sequenceLimit: 2n ** 32n }))
        .to.throw()
        .with.property('argument', 'params.sequenceLimit')
      const { spi } = outbound({ spi: 0x2002, sequenceLimit: 1n })
      expect(() => engine.setSequenceLimit(spi, -1n))
        .to.throw()
        .with.property('argument', 'limit')
      expect(engine.setSequenceLimit(0x9999, 1n)).to.equal(false)
    })
  })

  describe('when an SA has no limit', () => {
    it('should never drop as sequence-unreserved nor emit sa:sequence-low', () => {
      outbound({})
      for (let i = 0; i < 20; i++) expect(engine.protect(udpPacket()).action).to.equal('protect')
      expect(low()).to.have.length(0)
    })
  })
})
