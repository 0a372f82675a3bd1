import { expect } from 'chai'
import type { IkeConnectRequest, IkeEvent, IkeService } from '@vipsec/interface'
import type { TestSetup } from '../test-setup.js'

/** Two connected IKE services, as a compliance suite uses them. */
export interface IkeServicePair {
  /** The service that initiates. */
  initiator: IkeService
  /** The service that answers; configured to accept `request`. */
  responder: IkeService
  /** What the initiator passes to `connect()`. */
  request: IkeConnectRequest
  /** Starts both services and whatever they depend on (ESP engines...). */
  start(): Promise<void>
  /** Stops both services and whatever they depend on. */
  stop(): Promise<void>
  /**
   * Runs until `promise` settles: lets messages flow and, with a virtual clock, moves time.
   *
   * @param promise - an operation of either service
   */
  run<T>(promise: Promise<T>): Promise<T>
  /** Lets messages in flight be delivered (both sides see the outcome of a finished exchange). */
  settle(): Promise<void>
  /** Makes the network lose every message from now on. */
  cut(): void
}

/** Options of {@link ikeServiceSuite}. */
export type IkeServiceSuiteOptions = TestSetup<IkeServicePair>

function aborted(): { signal: AbortSignal } {
  const controller = new AbortController()
  controller.abort()
  return { signal: controller.signal }
}

async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected the promise to reject, but it fulfilled')
}

/**
 * Declares the mocha tests every {@link IkeService} must pass over a connected pair: lifecycle,
 * abort signals, connect (both sides agree on SPIs and selectors), Child SA and IKE SA rekeys,
 * deletes started by either side, liveness, renegotiation with INITIAL_CONTACT (the responder
 * keeps exactly one IKE SA) with per-peer outcomes, and the events of each step.
 *
 * @param options - how to make and dispose of a pair
 */
export function ikeServiceSuite(options: IkeServiceSuiteOptions): void {
  describe('IkeService compliance', function () {
    this.timeout(60_000)
    let pair: IkeServicePair
    let iEvents: IkeEvent[]
    let rEvents: IkeEvent[]

    beforeEach(async () => {
      pair = await options.setup()
      iEvents = []
      rEvents = []
      pair.initiator.events$.subscribe((e) => iEvents.push(e))
      pair.responder.events$.subscribe((e) => rEvents.push(e))
    })

    afterEach(async () => {
      await pair.stop()
      await options.teardown?.(pair)
    })

    describe('lifecycle', () => {
      it('should treat a second start and a second stop as no-ops and complete events$ on stop', async () => {
        await pair.start()
        await pair.initiator.start()
        expect(pair.initiator.isStarted()).to.equal(true)
        let completed = false
        pair.initiator.events$.subscribe({ complete: () => (completed = true) })
        await pair.initiator.stop()
        await pair.initiator.stop()
        expect(pair.initiator.isStarted()).to.equal(false)
        expect(completed).to.equal(true)
      })

      it('should reject connect with NotStartedError before start', async () => {
        const err = await rejection(pair.initiator.connect(pair.request))
        expect(err.name).to.equal('NotStartedError')
      })

      it('should reject every method with AbortError when the signal is already aborted', async () => {
        await pair.start()
        const s = pair.initiator
        for (const p of [
          s.connect(pair.request, aborted()),
          s.renegotiate([], aborted()),
          s.rekeyChildSa('x', aborted()),
          s.rekeyIkeSa('x', aborted()),
          s.deleteChildSa('x', aborted()),
          s.deleteIkeSa('x', aborted()),
          s.checkLiveness('x', aborted())
        ]) {
          expect((await rejection(p)).name).to.equal('AbortError')
        }
      })

      it('should reject unknown ids with NotFoundError', async () => {
        await pair.start()
        const s = pair.initiator
        for (const p of [
          s.rekeyChildSa('nope'),
          s.rekeyIkeSa('nope'),
          s.deleteChildSa('nope'),
          s.deleteIkeSa('nope'),
          s.checkLiveness('nope')
        ]) {
          expect((await rejection(p)).name).to.equal('NotFoundError')
        }
      })
    })

    describe('.connect', () => {
      it('should give both sides the same IKE SA and mirrored Child SA SPIs, with events', async () => {
        await pair.start()
        const r = await pair.run(pair.initiator.connect(pair.request))
        await pair.settle()
        const mine = pair.initiator.list()
        const theirs = pair.responder.list()
        expect(mine).to.have.length(1)
        expect(theirs).to.have.length(1)
        expect(theirs[0].phase1.ikeSaId).to.deep.equal(r.phase1.ikeSaId)
        expect(r.phase1.role).to.equal('initiator')
        expect(theirs[0].phase1.role).to.equal('responder')
        expect(theirs[0].phase2[0].inboundSpi).to.equal(r.phase2[0].outboundSpi)
        expect(theirs[0].phase2[0].outboundSpi).to.equal(r.phase2[0].inboundSpi)
        expect(theirs[0].phase2[0].selectors.local).to.deep.equal(r.phase2[0].selectors.remote)
        for (const events of [iEvents, rEvents]) {
          expect(events.map((e) => e.type)).to.include.members([
            'ike:established',
            'sa:established'
          ])
        }
        const counters = pair.initiator.counters()
        expect(counters.sent).to.be.greaterThan(0)
        expect(counters.received).to.be.greaterThan(0)
      })
    })

    describe('.rekeyChildSa', () => {
      it('should replace the Child SA on both sides', async () => {
        await pair.start()
        const r = await pair.run(pair.initiator.connect(pair.request))
        const next = await pair.run(pair.initiator.rekeyChildSa(r.phase2[0].id))
        await pair.settle()
        expect(next.id).to.not.equal(r.phase2[0].id)
        expect(pair.initiator.list()[0].phase2.map((c) => c.id)).to.deep.equal([next.id])
        expect(pair.responder.list()[0].phase2.map((c) => c.outboundSpi)).to.deep.equal([
          next.inboundSpi
        ])
        expect(
          iEvents.some((e) => e.type === 'sa:rekeyed' && e.previousId === r.phase2[0].id)
        ).to.equal(true)
      })
    })

    describe('.rekeyIkeSa', () => {
      it('should replace the IKE SA on both sides and keep its Child SAs', async () => {
        await pair.start()
        const r = await pair.run(pair.initiator.connect(pair.request))
        const next = await pair.run(pair.initiator.rekeyIkeSa(r.phase1.id))
        await pair.settle()
        expect(next.ikeSaId).to.not.deep.equal(r.phase1.ikeSaId)
        expect(pair.responder.list().map((x) => x.phase1.ikeSaId)).to.deep.equal([next.ikeSaId])
        expect(pair.responder.list()[0].phase2).to.have.length(1)
        expect(iEvents.some((e) => e.type === 'ike:rekeyed')).to.equal(true)
      })
    })

    describe('.deleteChildSa', () => {
      it('should remove the Child SA on both sides when either side deletes it', async () => {
        await pair.start()
        await pair.run(pair.initiator.connect(pair.request))
        await pair.settle()
        const id = pair.responder.list()[0].phase2[0].id
        await pair.run(pair.responder.deleteChildSa(id))
        await pair.settle()
        expect(pair.initiator.list()[0].phase2).to.have.length(0)
        expect(pair.responder.list()[0].phase2).to.have.length(0)
        expect(iEvents.some((e) => e.type === 'sa:deleted' && e.reason === 'remote')).to.equal(true)
      })
    })

    describe('.deleteIkeSa', () => {
      it('should remove the IKE SA and its Child SAs on both sides', async () => {
        await pair.start()
        const r = await pair.run(pair.initiator.connect(pair.request))
        await pair.run(pair.initiator.deleteIkeSa(r.phase1.id))
        await pair.settle()
        expect(pair.initiator.list()).to.have.length(0)
        expect(pair.responder.list()).to.have.length(0)
        expect(rEvents.some((e) => e.type === 'ike:deleted' && e.reason === 'remote')).to.equal(
          true
        )
        expect(
          rEvents.some((e) => e.type === 'sa:deleted' && e.reason === 'parent-deleted')
        ).to.equal(true)
      })
    })

    describe('.checkLiveness', () => {
      it('should resolve while the peer answers, and delete the SA as dead-peer once it does not', async () => {
        await pair.start()
        const r = await pair.run(pair.initiator.connect(pair.request))
        await pair.run(pair.initiator.checkLiveness(r.phase1.id))
        pair.cut()
        const err = await rejection(pair.run(pair.initiator.checkLiveness(r.phase1.id)))
        expect(err.kind).to.equal('TIMEOUT')
        expect(pair.initiator.list()).to.have.length(0)
        expect(iEvents.some((e) => e.type === 'ike:deleted' && e.reason === 'dead-peer')).to.equal(
          true
        )
      })
    })

    describe('.renegotiate', () => {
      it('should set up new SAs with INITIAL_CONTACT so that the responder keeps exactly one IKE SA', async () => {
        await pair.start()
        const old = await pair.run(pair.initiator.connect(pair.request))
        await pair.settle()
        const outcomes = await pair.run(pair.initiator.renegotiate([old]))
        await pair.settle()
        expect(outcomes).to.have.length(1)
        const [o] = outcomes
        if (o.status !== 'renegotiated') throw new Error(`failed: ${o.message}`)
        expect(o.previous).to.deep.equal(old)
        expect(o.current.phase1.ikeSaId).to.not.deep.equal(old.phase1.ikeSaId)
        expect(o.current.phase2[0].selectors).to.deep.equal(old.phase2[0].selectors)
        expect(pair.responder.list().map((x) => x.phase1.ikeSaId)).to.deep.equal([
          o.current.phase1.ikeSaId
        ])
        expect(
          rEvents.some((e) => e.type === 'ike:deleted' && e.reason === 'initial-contact')
        ).to.equal(true)
      })

      it('should give each peer an outcome and not reject when one fails', async () => {
        await pair.start()
        const old = await pair.run(pair.initiator.connect(pair.request))
        const broken = {
          phase1: {
            ...old.phase1,
            remoteIdentity: { type: 'fqdn' as const, value: 'nobody.invalid' }
          },
          phase2: old.phase2
        }
        const outcomes = await pair.run(pair.initiator.renegotiate([broken, old]))
        expect(outcomes.map((o) => o.status)).to.deep.equal(['failed', 'renegotiated'])
      })
    })
  })
}
