import { expect } from 'chai'
import { makePair } from './helpers/pair.js'

describe('IkeV2Service connections (start_action = start)', () => {
  function pair(startAction?: 'start' | 'none') {
    // the request of a pair is the same for every pair: take it from a first one
    const request = makePair().request()
    // A initiates the connection to B itself when it starts
    const connection = { name: 'to-b', request, startAction, retryDelayMs: 2000 }
    return makePair({ a: { connections: [connection] } })
  }

  it('should initiate the connection when the service starts', async () => {
    const p = pair()
    await p.start()
    for (let i = 0; i < 10 && p.a.list().length === 0; i++) await p.clock.advance(250)
    await p.settle()
    expect(p.a.list()).to.have.length(1)
    expect(p.a.list()[0].phase2).to.have.length(1)
    expect(p.b.list()).to.have.length(1)
    expect(p.a.connectionAttempts()).to.deep.equal({ 'to-b': 1 })
    await p.stop()
  })

  it('should initiate it again after the peer deletes the IKE SA, and after dead peer detection', async () => {
    const p = pair()
    await p.start()
    for (let i = 0; i < 10 && p.b.list().length === 0; i++) await p.clock.advance(250)
    await p.settle()
    const first = p.a.list()[0].phase1.id
    await p.drive(p.b.deleteIkeSa(p.b.list()[0].phase1.id))
    await p.settle()
    expect(p.a.list()).to.have.length(0)
    await p.clock.advance(2500)
    for (let i = 0; i < 10 && p.a.list().length === 0; i++) await p.clock.advance(250)
    await p.settle()
    expect(p.a.list()).to.have.length(1)
    expect(p.a.list()[0].phase1.id).to.not.equal(first)
    // the peer goes silent: DPD deletes the SA, and the connection is initiated again
    p.net.filter = () => 'drop'
    const second = p.a.list()[0].phase1.id
    await p.drive(p.a.checkLiveness(second).catch(() => undefined))
    expect(p.a.list()).to.have.length(0)
    p.net.filter = () => 'deliver'
    for (let i = 0; i < 40 && p.a.list().length === 0; i++) await p.clock.advance(250)
    await p.settle()
    expect(p.a.list()).to.have.length(1)
    expect(p.a.connectionAttempts()['to-b']).to.be.greaterThanOrEqual(3)
    await p.stop()
  })

  it('should retry a failed attempt after the delay, and stop retrying when stopped', async () => {
    const p = pair()
    // B refuses everything at first: it is not started
    await p.aEngine.start()
    await p.bEngine.start()
    await p.a.start()
    await p.clock.advance(60_000)
    await p.settle()
    const failed = p.a.connectionAttempts()['to-b']
    expect(failed).to.be.greaterThanOrEqual(2)
    await p.b.start()
    for (let i = 0; i < 200 && p.a.list().length === 0; i++) await p.clock.advance(250)
    await p.settle()
    expect(p.a.list()).to.have.length(1)
    await p.a.stop()
    const stopped = p.a.connectionAttempts()['to-b']
    await p.clock.advance(60_000)
    expect(p.a.connectionAttempts()['to-b']).to.equal(stopped)
    await p.b.stop()
  })

  it('should not initiate a connection whose start action is none', async () => {
    const p = pair('none')
    await p.start()
    await p.clock.advance(10_000)
    await p.settle()
    expect(p.a.list()).to.have.length(0)
    expect(p.a.connectionAttempts()).to.deep.equal({})
    await p.stop()
  })
})
