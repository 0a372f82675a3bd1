import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import { InvalidConfigError } from '@vipsec/interface'
import { SeededRandomSource } from '@vipsec/random'
import { type IkeV2Service, KeyExchangePool, ikeV2ServiceFactory } from '../src/index.js'
import { B_ID, makePair } from './helpers/pair.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('KeyExchangePool', () => {
  const make = (options: ConstructorParameters<typeof KeyExchangePool>[1]) => {
    const clock = new VirtualClock()
    const pool = new KeyExchangePool(
      { clock, random: new SeededRandomSource({ seed: 'p' }) },
      options
    )
    return { clock, pool }
  }

  it('should fill in batches while idle, up to its size', async () => {
    const { clock, pool } = make({ size: 40, batch: 16 })
    expect(pool.available('curve25519')).to.equal(0)
    await clock.advance(0)
    expect(pool.available('curve25519')).to.be.within(16, 40)
    await clock.advance(10)
    expect(pool.available('curve25519')).to.equal(40)
    expect(pool.stats.made).to.equal(40)
    pool.stop()
  })

  it('should hand out every value once, and make one on demand when empty', async () => {
    const { clock, pool } = make({ size: 8, idleMs: 1000 })
    await clock.advance(10)
    const taken = Array.from({ length: 20 }, () => pool.take('curve25519'))
    expect(new Set(taken.map((k) => hex(k.publicValue))).size).to.equal(20)
    expect(new Set(taken).size).to.equal(20)
    expect(pool.stats).to.include({ taken: 8, missed: 12 })
    // a shared secret computed with a pooled value is the peer's too
    const [x, y] = [taken[0]!, taken[9]!]
    expect(hex(x.computeSharedSecret(y.publicValue))).to.equal(
      hex(y.computeSharedSecret(x.publicValue))
    )
    pool.stop()
  })

  it('should not fill again before no value was taken for idleMs', async () => {
    const { clock, pool } = make({ size: 4, idleMs: 500 })
    await clock.advance(10)
    pool.take('curve25519')
    await clock.advance(300)
    pool.take('curve25519')
    await clock.advance(300)
    expect(pool.available('curve25519')).to.equal(2)
    await clock.advance(300)
    expect(pool.available('curve25519')).to.equal(4)
    pool.stop()
  })

  it('should wait 2 s without a take before it fills again, by default', async () => {
    const { clock, pool } = make({ size: 4 })
    await clock.advance(10)
    pool.take('curve25519')
    await clock.advance(1900)
    expect(pool.available('curve25519')).to.equal(3)
    await clock.advance(200)
    expect(pool.available('curve25519')).to.equal(4)
    pool.stop()
  })

  it('should keep no values of other groups, and none at all with size 0', async () => {
    const { clock, pool } = make({ size: 0 })
    await clock.advance(1000)
    expect(pool.available('curve25519')).to.equal(0)
    expect(pool.take('ecp256').group).to.equal('ecp256')
    expect(pool.stats).to.include({ taken: 0, missed: 0, made: 0 })
  })

  it('should be refused by the service options when malformed', () => {
    const factory = (init: object) => () => ikeV2ServiceFactory({} as never, init)
    expect(factory({ keyExchangePool: { size: -1 } })).to.throw(InvalidConfigError)
    expect(factory({ keyExchangePool: { batch: 0 } })).to.throw(InvalidConfigError)
    expect(factory({ keyExchangePool: { groups: ['x9'] } })).to.throw(InvalidConfigError)
  })

  describe('in the IKE services of one factory', () => {
    it('should be shared by them, and feed the IKE_SA_INIT of a takeover renegotiation', async () => {
      const p = makePair()
      await p.start()
      await p.drive(p.a.connect(p.request()))
      await p.settle()
      const records = p.a.list()
      p.net.filter = () => 'drop'
      await p.a.stop()
      p.net.filter = () => 'deliver'
      const engine = new SoftwareEspEngine({ clock: p.clock })
      const factory = ikeV2ServiceFactory(
        { clock: p.clock, random: new SeededRandomSource({ seed: 'backup' }), espEngine: engine },
        {
          psks: [{ remote: B_ID, secret: 'shared secret' }],
          keyExchangePool: { size: 4, groups: ['curve25519'] }
        }
      )
      const other = factory({
        udp500: p.net.bind('10.0.9.9', 500),
        udp4500: p.net.bind('10.0.9.9', 4500)
      }) as IkeV2Service
      // the standby fills the pool before it has the DVIPA's service
      await p.clock.advance(10)
      const c = factory({
        udp500: p.net.bind('10.0.0.1', 500),
        udp4500: p.net.bind('10.0.0.1', 4500)
      }) as IkeV2Service
      const pool = c.keyExchanges!
      expect(other.keyExchanges).to.equal(pool)
      expect(pool.available('curve25519')).to.equal(4)
      await engine.start()
      await c.start()
      const [outcome] = await p.drive(c.renegotiate(records))
      if (outcome!.status !== 'renegotiated') throw new Error(outcome!.message)
      expect(pool.stats.taken).to.equal(1)
      expect(pool.stats.missed).to.equal(0)
      await c.stop()
      pool.stop()
      await engine.stop()
      await p.stop()
    })
  })
})
