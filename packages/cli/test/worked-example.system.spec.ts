// docs/guides/worked-example.md is copy-paste runnable: its bash block, run as it stands (with
// the checkout's vipsec command), builds the cluster in namespaces, brings strongSwan's tunnel
// up, answers through it, switches over to dp-2 and answers again.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'

const root = fileURLToPath(new URL('../../..', import.meta.url))

describe('the worked example of docs/guides/worked-example.md', function () {
  this.timeout(300_000)

  it('should run as written: tunnel up, status, answers before and after vipsec switchover --to', () => {
    const doc = readFileSync(join(root, 'docs/guides/worked-example.md'), 'utf8')
    const blocks = [...doc.matchAll(/```bash\n([\s\S]*?)```/g)].map((m) => m[1]!)
    expect(blocks).to.have.length(1)
    const dir = mkdtempSync(join(tmpdir(), 'vipsec-cl-example-'))
    try {
      const script = join(dir, 'worked-example.sh')
      writeFileSync(script, blocks[0]!)
      const vipsec = `${process.execPath} --import ${join(root, 'node_modules/tsx/dist/loader.mjs')} --conditions=vipsec-source ${join(root, 'packages/cli/src/bin.ts')}`
      const r = spawnSync('bash', [script, `we${process.pid % 10000}`], {
        cwd: root,
        encoding: 'utf8',
        timeout: 240_000,
        env: { ...process.env, VIPSEC: vipsec }
      })
      const out = `${r.stdout}${r.stderr}`
      if (r.status !== 0) console.log(out)
      expect(r.status, 'the script exits 0').to.equal(0)
      expect(out.match(/answer from target-\d/g), 'an answer before and after').to.have.length(2)
      const owner = /^10\.88\.0\.50\s+(dp-\d)\s+\d+\s/m.exec(out)?.[1]
      expect(owner, 'vipsec status names the owner').to.match(/^dp-\d$/)
      const to = owner === 'dp-2' ? 'dp-3' : 'dp-2'
      expect(out).to.match(
        new RegExp(`10\\.88\\.0\\.50: ${owner} \\(epoch \\d+\\) -> ${to} \\(epoch \\d+\\)`)
      )
      // vipsec status lists the peer's SAs, in swanctl's words
      expect(out).to.include('vpn.cluster.test === peer.example.test')
      // charon's last listing: one IKE SA, established
      const last = out.slice(out.lastIndexOf(`-> ${to}`))
      expect(last.match(/ESTABLISHED/g)).to.have.length(1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
