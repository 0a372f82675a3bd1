import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { TAKEOVER_STEPS } from '@vipsec/interface'
import { main, runDemo } from '../src/index.js'

describe('vipsec demo', function () {
  this.timeout(60_000)
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-demo-'))
  })

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  describe('when the primary is killed', () => {
    it('should exit 0 after a takeover to dp-2, print the timeline and summary, and write the report', async () => {
      const lines: string[] = []
      const report = join(dir, 'takeover.html')
      const code = await main(
        [
          'demo',
          '--speed',
          '0',
          '--peers',
          '4',
          '--before',
          '1000',
          '--after',
          '2000',
          '--report',
          report
        ],
        (l) => lines.push(l)
      )
      const out = lines.join('\n')
      expect(code).to.equal(0)
      expect(out).to.match(/killing dp-1/)
      expect(out).to.match(/owner now\s+dp-2 \(epoch 2\)/)
      expect(out).to.match(/same targets\s+yes/)
      const order = TAKEOVER_STEPS.map((s) => out.indexOf(`  ${s} `))
      expect(order.every((i) => i > 0)).to.equal(true)
      expect([...order].sort((a, b) => a - b)).to.deep.equal(order)
      const html = readFileSync(report, 'utf8')
      expect(html).to.match(/^<!doctype html>/)
      expect(html).to.include('<svg')
      for (const step of TAKEOVER_STEPS) expect(html).to.include(step)
      expect(html).to.not.match(/<script|https?:\/\//)
    })
  })

  describe('when the owner is partitioned from the backups', () => {
    it('should still end with one owner, dp-2, and traffic on the same targets', async () => {
      const summary = await runDemo({
        speed: 0,
        peers: 3,
        before: 1000,
        after: 2000,
        failure: 'partition',
        print: () => {}
      })
      expect(summary.ok).to.equal(true)
      expect(summary.owner).to.equal('dp-2')
      expect(summary.sameTargets).to.equal(true)
    })
  })

  describe('when nothing fails', () => {
    it('should keep dp-1 as the owner and lose nothing', async () => {
      const summary = await runDemo({
        speed: 0,
        peers: 3,
        before: 500,
        after: 500,
        failure: 'none',
        print: () => {}
      })
      expect(summary.ok).to.equal(true)
      expect(summary.owner).to.equal('dp-1')
      expect(summary.lost).to.equal(0)
      expect(summary.report).to.equal(undefined)
    })
  })

  describe('when an option is bad', () => {
    it('should exit 2 naming it', async () => {
      const lines: string[] = []
      expect(await main(['demo', '--peers', '0'], (l) => lines.push(l))).to.equal(2)
      expect(lines.join('\n')).to.match(/InvalidConfigError: peers/)
      expect(await main(['demo', '--failure', 'meteor'], (l) => lines.push(l))).to.equal(2)
      expect(await main(['demo', '--nope'], (l) => lines.push(l))).to.equal(2)
      expect(await main(['frobnicate'], (l) => lines.push(l))).to.equal(2)
    })
  })
})
