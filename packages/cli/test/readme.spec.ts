import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { parse } from 'yaml'
import { checkConfig, loadConfig, parseSwanctlConf, swanctlConnections } from '../src/index.js'

const root = fileURLToPath(new URL('../../..', import.meta.url))
const peerConf = fileURLToPath(new URL('./fixtures/peer-swanctl.conf', import.meta.url))

/** The README's cluster example: the blocks of "Configuring a cluster", as files. */
function readmeExample(): {
  files: Record<string, string[]>
  said: Record<string, number>
  text: string
} {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const section = readme.split('## Configuring a cluster')[1]!.split('\n## ')[0]!
  const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!.split('\n'))
  const [cluster, nodeAndSecrets] = blocks as [string[], string[]]
  const files: Record<string, string[]> = {}
  const said: Record<string, number> = {}
  const header = (line: string): void => {
    for (const m of line.matchAll(/# (\S+\.yaml) \((\d+) lines/g)) said[m[1]!] = Number(m[2])
  }
  header(cluster[0]!)
  files['cluster.yaml'] = cluster.slice(1).filter((l) => l !== '')
  // two files side by side: the right one starts where its header does
  header(nodeAndSecrets[0]!)
  const column = nodeAndSecrets[0]!.indexOf('# secrets.yaml')
  const rows = nodeAndSecrets.slice(1).filter((l) => l !== '')
  files['dp-1.yaml'] = rows.map((l) => l.slice(0, column).trimEnd()).filter((l) => l !== '')
  files['secrets.yaml'] = rows.map((l) => l.slice(column).trimEnd()).filter((l) => l !== '')
  return { files, said, text: section }
}

// The README's claim: the cluster example costs fewer lines than the peer's swanctl.conf, and
// it is a configuration `vipsec check` accepts.
describe("the README's cluster example", () => {
  const { files, said, text } = readmeExample()
  const swanctl = readFileSync(peerConf, 'utf8').trimEnd().split('\n')

  it('should have as many lines as its headers and its text say, no more than the swanctl.conf', () => {
    for (const [name, lines] of Object.entries(files))
      expect(lines.length, name).to.equal(said[name])
    const dp = files['cluster.yaml']!.length + files['dp-1.yaml']!.length
    const perDp = dp + files['secrets.yaml']!.length
    const nodes = Object.keys(
      (parse(files['cluster.yaml']!.join('\n')) as { nodes: object }).nodes
    ).length
    const cluster =
      files['cluster.yaml']!.length +
      nodes * files['dp-1.yaml']!.length +
      files['secrets.yaml']!.length
    expect(text).to.include(`That is ${perDp} lines for a DP`)
    expect(text).to.include(`and ${cluster} for the whole\nfive-node cluster`)
    expect(text).to.include(`against the ${swanctl.length} lines of the`)
    expect(perDp).to.be.at.most(swanctl.length)
  })

  it('should describe the same tunnel as the peer’s swanctl.conf, from the other side', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vipsec-cl-readme-'))
    try {
      for (const [name, lines] of Object.entries(files))
        writeFileSync(join(dir, name), `${lines.join('\n')}\n`)
      // the key a `vipsec keygen` would print, in place of the README's placeholder
      const secrets = join(dir, 'secrets.yaml')
      writeFileSync(
        secrets,
        readFileSync(secrets, 'utf8').replace(/"64 hex digits[^"]*"/, `"${'ab'.repeat(32)}"`)
      )
      chmodSync(secrets, 0o600)
      const path = join(dir, 'dp-1.yaml')
      expect(await checkConfig(path, { host: false })).to.deep.equal([])
      const loaded = await loadConfig(path, { host: false })
      expect(loaded.ok).to.equal(true)
      const mine = (parse(files['cluster.yaml']!.join('\n')) as { connections: { peer: Peer } })
        .connections.peer
      const peer = Object.values(
        swanctlConnections(parseSwanctlConf(readFileSync(peerConf, 'utf8'))).connections
      )[0] as Peer
      expect(peer.proposals).to.equal(mine.proposals)
      expect(peer.local.id).to.equal(mine.remote.id)
      expect(peer.remote.id).to.equal(mine.local.id)
      const [ours, theirs] = [mine.children.net, Object.values(peer.children)[0]!]
      expect([theirs.local_ts, theirs.remote_ts].map(String)).to.deep.equal(
        [ours.remote_ts, ours.local_ts].map(String)
      )
      expect(theirs.esp_proposals).to.equal(ours.esp_proposals)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

interface Peer {
  proposals: string
  local: { id: string }
  remote: { id: string }
  children: Record<string, { local_ts: unknown; remote_ts: unknown; esp_proposals: string }>
}
