import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'

const run = promisify(execFile)
const fixture = fileURLToPath(new URL('./broken-engines.fixture.ts', import.meta.url))
const root = fileURLToPath(new URL('../../..', import.meta.url))

/** Runs the compliance suite over the broken engines in a child mocha; returns what failed. */
async function failedTitles(): Promise<{ failed: string[]; passed: number }> {
  const mocha = fileURLToPath(new URL('../../../node_modules/mocha/bin/mocha.js', import.meta.url))
  const args = [
    mocha,
    '--no-config',
    '--node-option',
    'import=tsx',
    '--node-option',
    'conditions=vipsec-source',
    '--reporter',
    'json',
    '--timeout',
    '20000',
    fixture
  ]
  let stdout: string
  try {
    ;({ stdout } = await run(process.execPath, args, { cwd: root, maxBuffer: 64 * 1024 * 1024 }))
  } catch (err) {
    // mocha exits non-zero when tests fail, which is the point here
    stdout = (err as { stdout: string }).stdout
  }
  const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as {
    failures: { fullTitle: string }[]
    stats: { passes: number }
  }
  return { failed: report.failures.map((t) => t.fullTitle), passed: report.stats.passes }
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
