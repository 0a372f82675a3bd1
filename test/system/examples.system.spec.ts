// Runs the examples that need root, network namespaces, Redis and strongSwan (examples/system/),
// and checks what they print. The plain examples test (test/examples.spec.ts) runs the others.
import { execFile } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../..', import.meta.url))
const examples = fileURLToPath(new URL('../../examples/system', import.meta.url))

/** What each system example must print, beyond exiting with 0. */
const expectations: Record<string, RegExp[]> = {
  'strongswan-interop.sh': [
    /dp-1 owns 10\.88\.0\.50/,
    /charon: dvipa: #1, ESTABLISHED with 10\.88\.0\.50/,
    /client: \d+ answers so far, from target-/,
    /dp-1 killed with SIGKILL/,
    /dp-2 took over: epoch 2, 1 IKE SA renegotiated/,
    /renegotiate\t[\d.]+ ms/,
    /client: answers resumed from target-.*; longest silence \d+ ms/,
    /charon: dvipa: #2, ESTABLISHED \(a new IKE SA, negotiated by dp-2\)/,
    /interop OK/
  ]
}

describe('system examples', function () {
  this.timeout(240_000)
  const files = readdirSync(examples).filter((f) => f.endsWith('.sh'))

  it('should have an expectation for every system example', () => {
    expect(files.sort()).to.deep.equal(Object.keys(expectations).sort())
  })

  for (const file of files) {
    describe(file, () => {
      it('should run to completion and print what it shows', async () => {
        // on a timeout the script gets SIGTERM, and its trap stops what it started
        const { stdout } = await run('bash', [`examples/system/${file}`], {
          cwd: root,
          timeout: 200_000
        })
        for (const pattern of expectations[file] ?? []) expect(stdout).to.match(pattern)
      })
    })
  }
})
