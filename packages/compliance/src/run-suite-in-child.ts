import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** What a mocha run in a child process reported. */
export interface ChildSuiteResult {
  /** The full titles of the tests that failed. */
  failed: string[]
  /** How many passed. */
  passed: number
}

/**
 * Runs a mocha spec file in a child process (TypeScript through tsx, workspace packages from
 * source) and returns which tests failed. For proving that a compliance suite catches broken
 * implementations: the fixture runs the suite against adapters broken on purpose, and the
 * caller checks that each defect fails the test meant to catch it.
 *
 * @param fixture - absolute path of the spec file
 * @param options - the working directory (default: the current one) and the per-test timeout
 */
export async function runSuiteInChild(
  fixture: string,
  options: { cwd?: string; timeoutMs?: number } = {}
): Promise<ChildSuiteResult> {
  const mocha = createRequire(import.meta.url).resolve('mocha/bin/mocha.js')
  const args = [
    mocha,
    '--no-config',
    '--node-option',
    'import=tsx',
    '--node-option',
    'conditions=vipsec-source'
  ]
  args.push('--reporter', 'json', '--timeout', String(options.timeoutMs ?? 20_000), fixture)
  let stdout: string
  try {
    ;({ stdout } = await run(process.execPath, args, {
      cwd: options.cwd ?? process.cwd(),
      maxBuffer: 64 * 1024 * 1024
    }))
  } catch (err) {
    // mocha exits non-zero when tests fail, which is the point of a fixture
    stdout = (err as { stdout?: string }).stdout ?? ''
  }
  const start = stdout.indexOf('{')
  if (start < 0) throw new Error(`mocha printed no report for ${fixture}`)
  const report = JSON.parse(stdout.slice(start)) as {
    failures: { fullTitle: string }[]
    stats: { passes: number }
  }
  return { failed: report.failures.map((t) => t.fullTitle), passed: report.stats.passes }
}
