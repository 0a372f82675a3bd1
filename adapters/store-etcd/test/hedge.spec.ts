import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import { hedged, type HedgeOptions } from '../src/hedge.js'

/** A member that answers only when told to. */
interface Pending {
  member: number
  resolve: (value: string) => void
  reject: (err: Error) => void
}

function harness(clock: VirtualClock, overrides: Partial<HedgeOptions> = {}) {
  const asked: Pending[] = []
  const call = hedged<string>(
    { count: 3, first: 1, hedgeMs: 150, timers: clock, final: () => false, ...overrides },
    async (member) =>
      new Promise<string>((resolve, reject) => asked.push({ member, resolve, reject }))
  )
  let outcome: { value: string; member: number } | Error | undefined
  call.then(
    (v) => (outcome = v),
    (err: Error) => (outcome = err)
  )
  return { asked, outcome: () => outcome }
}

describe('hedged reads', () => {
  it('should ask the next member only when the clock passes hedgeMs', async () => {
    const clock = new VirtualClock()
    const h = harness(clock)
    await clock.advance(0)
    expect(h.asked.map((a) => a.member)).to.deep.equal([1])
    await clock.advance(149)
    expect(h.asked.map((a) => a.member)).to.deep.equal([1])
    await clock.advance(1)
    expect(h.asked.map((a) => a.member)).to.deep.equal([1, 2])
    await clock.advance(150)
    expect(h.asked.map((a) => a.member)).to.deep.equal([1, 2, 0])
    // every member asked: no timer left behind
    expect(clock.pending()).to.equal(0)
    h.asked[2]!.resolve('from 0')
    await clock.advance(0)
    expect(h.outcome()).to.deep.equal({ value: 'from 0', member: 0 })
    // a late answer of another member changes nothing
    h.asked[0]!.resolve('from 1')
    await clock.advance(0)
    expect(h.outcome()).to.deep.equal({ value: 'from 0', member: 0 })
  })

  it('should cancel its timer when the first member answers in time', async () => {
    const clock = new VirtualClock()
    const h = harness(clock)
    await clock.advance(100)
    h.asked[0]!.resolve('quick')
    await clock.advance(0)
    expect(h.outcome()).to.deep.equal({ value: 'quick', member: 1 })
    expect(clock.pending()).to.equal(0)
    await clock.advance(1000)
    expect(h.asked).to.have.length(1)
  })

  it('should ask the next member at once when every member asked so far failed', async () => {
    const clock = new VirtualClock()
    const h = harness(clock)
    await clock.advance(0)
    h.asked[0]!.reject(new Error('connection refused'))
    await clock.advance(0)
    expect(h.asked.map((a) => a.member)).to.deep.equal([1, 2])
    h.asked[1]!.reject(new Error('connection refused'))
    await clock.advance(0)
    expect(h.asked.map((a) => a.member)).to.deep.equal([1, 2, 0])
    h.asked[2]!.reject(new Error('down too'))
    await clock.advance(0)
    expect((h.outcome() as Error).message).to.equal('down too')
  })

  it('should reject at once, asking nobody else, on an error every member would give', async () => {
    const clock = new VirtualClock()
    const h = harness(clock, { final: (err) => (err as Error).message === 'refused user' })
    await clock.advance(0)
    h.asked[0]!.reject(new Error('refused user'))
    await clock.advance(1000)
    expect((h.outcome() as Error).message).to.equal('refused user')
    expect(h.asked).to.have.length(1)
    expect(clock.pending()).to.equal(0)
  })
})
