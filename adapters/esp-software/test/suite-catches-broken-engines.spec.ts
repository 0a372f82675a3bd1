import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { runSuiteInChild, type ChildSuiteResult } from '@vipsec/compliance'

const fixture = fileURLToPath(new URL('./broken-engines.fixture.ts', import.meta.url))

/** Runs the compliance suite over the broken engines in a child mocha; returns what failed. */
async function failedTitles(): Promise<ChildSuiteResult> {
  return runSuiteInChild(fixture)
}

describe('espEngineSuite', () => {
  describe('when run against engines broken on purpose', function () {
    this.timeout(120_000)
    let failed: string[]
    let passed: number

    before(async () => {
      ;({ failed, passed } = await failedTitles())
    })

    const expectFailure = (engine: string, title: string): void => {
      const hit = failed.filter((t) => t.startsWith(engine) && t.includes(title))
      expect(hit, `${engine} should fail "${title}"; failures were:\n${failed.join('\n')}`).to.not
        .be.empty
    }

    it('should catch an engine without anti-replay', () => {
      expectFailure('ReplayBlindEngine', 'should drop a replayed packet')
    })

    it('should catch an engine that repeats IVs', () => {
      expectFailure('FixedIvEngine', 'never repeat an IV')
    })

    it('should catch an engine that keeps duplicate filters', () => {
      expectFailure('DuplicateKeepingEngine', 'should remove an active duplicate')
    })

    it('should catch an engine that throws on malformed input', () => {
      expectFailure('ThrowingEngine', 'never thrown')
    })

    it('should catch an engine whose events$ does not complete on stop', () => {
      expectFailure('OpenStreamEngine', 'should complete events$ on stop')
    })

    it('should fail only the tests that concern each defect', () => {
      const concerns: Record<string, string> = {
        ReplayBlindEngine: 'replayed packet',
        FixedIvEngine: 'never repeat an IV',
        DuplicateKeepingEngine: 'duplicate',
        ThrowingEngine: 'never thrown',
        OpenStreamEngine: 'complete events$'
      }
      const unrelated = failed.filter((t) => {
        const engine = t.split(' ')[0]
        return !t.includes(concerns[engine])
      })
      expect(unrelated).to.deep.equal([])
      expect(failed).to.have.length(Object.keys(concerns).length)
      expect(passed).to.be.greaterThan(100)
    })
  })
})
