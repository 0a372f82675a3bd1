import { expect } from 'chai'
import { ExecFileCommandRunner } from '../src/index.js'

describe(ExecFileCommandRunner.name, () => {
  const runner = new ExecFileCommandRunner()
  const node = process.execPath

  describe('.run', () => {
    describe('when the program exits 0', () => {
      it('should resolve with its output', async () => {
        const result = await runner.run(node, ['-e', 'process.stdout.write("out")'])
        expect(result).to.deep.equal({ exitCode: 0, stdout: 'out', stderr: '' })
      })
    })

    describe('when the program exits with an error status', () => {
      it('should resolve with the status and what it printed on stderr', async () => {
        const result = await runner.run(node, [
          '-e',
          'process.stderr.write("Error: ipv4: Address already assigned."); process.exit(2)'
        ])
        expect(result).to.deep.equal({
          exitCode: 2,
          stdout: '',
          stderr: 'Error: ipv4: Address already assigned.'
        })
      })
    })

    describe('when the program does not exist', () => {
      it('should reject with ENOENT', async () => {
        const err = await runner.run('/nonexistent/vipsec-ip', []).then(
          () => undefined,
          (e: NodeJS.ErrnoException) => e
        )
        expect(err?.code).to.equal('ENOENT')
      })
    })

    describe('when the signal aborts it', () => {
      it('should kill the program and reject', async () => {
        const controller = new AbortController()
        const running = runner.run(node, ['-e', 'setTimeout(() => {}, 60000)'], {
          signal: controller.signal
        })
        controller.abort()
        const err = await running.then(
          () => undefined,
          (e: Error) => e
        )
        expect(err?.name).to.equal('AbortError')
      })
    })
  })
})
