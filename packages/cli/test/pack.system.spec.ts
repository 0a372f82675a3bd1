// The CLI as a user installs it: `npm pack` of @vipsec/cli and every workspace package it
// depends on (each built by its prepack script), installed from the tarballs alone into an
// empty folder, then `vipsec --version` and `vipsec check` run from node_modules/.bin.
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'

const root = fileURLToPath(new URL('../../..', import.meta.url))

/** Workspace folders by package name. */
function workspaces(): Map<string, string> {
  const map = new Map<string, string>()
  for (const group of ['packages', 'adapters']) {
    for (const dir of readdirSync(join(root, group))) {
      const pkg = JSON.parse(readFileSync(join(root, group, dir, 'package.json'), 'utf8')) as {
        name: string
      }
      map.set(pkg.name, `${group}/${dir}`)
    }
  }
  return map
}

/** @vipsec/cli and the workspace packages it needs, transitively (not its dev dependencies). */
function closure(all: Map<string, string>): string[] {
  const seen = new Set<string>()
  const visit = (name: string): void => {
    if (seen.has(name)) return
    seen.add(name)
    const pkg = JSON.parse(readFileSync(join(root, all.get(name)!, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>
    }
    for (const dep of Object.keys(pkg.dependencies ?? {})) if (all.has(dep)) visit(dep)
  }
  visit('@vipsec/cli')
  return [...seen].map((n) => all.get(n)!)
}

describe('the packed vipsec command', function () {
  this.timeout(300_000)
  const dir = mkdtempSync(join(tmpdir(), 'vipsec-ops-pack-'))

  after(() => rmSync(dir, { recursive: true, force: true }))

  it('should install from its tarballs in an empty folder and run vipsec --version and check', () => {
    const folders = closure(workspaces())
    const packs = join(dir, 'packs')
    mkdirSync(packs)
    execFileSync(
      'npm',
      ['pack', '--pack-destination', packs, ...folders.flatMap((f) => ['-w', f])],
      {
        cwd: root,
        stdio: 'ignore'
      }
    )
    const tarballs = readdirSync(packs).map((f) => join(packs, f))
    expect(tarballs).to.have.length(folders.length)
    const app = join(dir, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true }\n')
    execFileSync('npm', ['install', '--no-audit', '--no-fund', ...tarballs], {
      cwd: app,
      stdio: 'ignore'
    })
    const bin = join(app, 'node_modules/.bin/vipsec')
    const cli = JSON.parse(readFileSync(join(root, 'packages/cli/package.json'), 'utf8')) as {
      version: string
    }
    expect(execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()).to.equal(cli.version)
    expect(execFileSync(bin, ['node', '--help'], { encoding: 'utf8' })).to.include('--config FILE')
    const fixtures = join(root, 'packages/cli/test/fixtures')
    let out = ''
    try {
      execFileSync(bin, ['check', '--config', join(fixtures, 'dp-1.yaml')], { encoding: 'utf8' })
    } catch (err) {
      out = String((err as { stdout: string }).stdout)
    }
    // the fixture's secrets file is checked in as 0644, and this host has no 10.9.0.1: both named
    expect(out).to.match(/secrets\.yaml: readable by group or others/)
  })
})
