import { expect } from 'chai'
import type { RandomSource } from '@vipsec/interface'
import type { TestSetup } from '../test-setup.js'

/**
 * Declares the mocha tests every {@link RandomSource} must pass: lengths, no repeated output,
 * integers in range covering the range, and argument errors that name the argument.
 *
 * @param options - how to make a source
 */
export function randomSourceSuite(options: TestSetup<RandomSource>): void {
  describe('RandomSource compliance', () => {
    let random: RandomSource

    beforeEach(async () => {
      random = await options.setup()
    })

    afterEach(async () => {
      await options.teardown?.(random)
    })

    describe('.randomBytes', () => {
      it('should return exactly the length asked for', () => {
        for (const length of [0, 1, 12, 32, 5000]) {
          const bytes = random.randomBytes(length)
          expect(bytes).to.be.instanceOf(Uint8Array)
          expect(bytes.length).to.equal(length)
        }
      })

      it('should not repeat itself', () => {
        const seen = new Set<string>()
        for (let i = 0; i < 200; i++) seen.add(Buffer.from(random.randomBytes(16)).toString('hex'))
        expect(seen.size).to.equal(200)
      })

      it('should reject a negative or fractional length naming the argument', () => {
        for (const bad of [-1, 1.5, Number.NaN]) {
          expect(() => random.randomBytes(bad))
            .to.throw()
            .with.property('name', 'InvalidParametersError')
          expect(() => random.randomBytes(bad))
            .to.throw()
            .with.property('argument', 'length')
        }
      })
    })

    describe('.randomInt', () => {
      it('should stay in [0, max) and reach every value', () => {
        const counts = [0, 0, 0, 0, 0]
        for (let i = 0; i < 2000; i++) {
          const n = random.randomInt(5)
          expect(Number.isInteger(n)).to.equal(true)
          counts[n]!++
        }
        for (const count of counts) expect(count).to.be.greaterThan(250)
        expect(random.randomInt(1)).to.equal(0)
        const big = random.randomInt(2 ** 32)
        expect(big).to.be.within(0, 2 ** 32 - 1)
      })

      it('should reject a bound outside 1 to 2^32 naming the argument', () => {
        for (const bad of [0, -3, 2 ** 32 + 1, 2.5]) {
          expect(() => random.randomInt(bad))
            .to.throw()
            .with.property('argument', 'max')
        }
      })
    })
  })
}
