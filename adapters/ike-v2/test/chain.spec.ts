import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { caConstraints, verifyChain } from '../src/chain.js'
import { makePair, phase1 } from './helpers/pair.js'

const DAY = 86_400_000

/** A root, intermediates and end entities made with the openssl CLI, in a temporary folder. */
function makeChains() {
  const dir = mkdtempSync(join(tmpdir(), 'vipsec-chain-'))
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  }
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  const root = (name: string, pathLen?: number): void =>
    run([
      'req',
      '-x509',
      ...key,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-subj',
      `/O=vipsec test/CN=${name}`,
      '-days',
      '10',
      '-addext',
      `basicConstraints=critical,CA:TRUE${pathLen === undefined ? '' : `,pathlen:${pathLen}`}`,
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign'
    ])
  const issue = (name: string, issuer: string, ext: string, days = 5): void => {
    writeFileSync(join(dir, `${name}.ext`), ext)
    run([
      'req',
      ...key,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/O=vipsec test/CN=${name}`
    ])
    run([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${issuer}.pem`,
      '-CAkey',
      `${issuer}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      String(days),
      '-extfile',
      `${name}.ext`
    ])
  }
  const CA = 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n'
  root('root')
  root('root0', 0)
  issue('int', 'root', CA)
  issue('int2', 'int', CA)
  issue('intshort', 'root', CA, 1)
  issue('notca', 'root', 'basicConstraints=critical,CA:FALSE\n')
  issue('nosign', 'root', 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n')
  issue('int0', 'root0', CA)
  const EE = 'subjectAltName=DNS:a.example\n'
  for (const issuer of ['int', 'int2', 'intshort', 'notca', 'nosign', 'int0']) {
    issue(`ee-${issuer}`, issuer, EE)
  }
  issue('ee-b', 'root', 'subjectAltName=DNS:b.example\n')
  const der = (name: string): Uint8Array =>
    new Uint8Array(new X509Certificate(readFileSync(join(dir, `${name}.pem`))).raw)
  const x509 = (name: string): X509Certificate => new X509Certificate(der(name))
  const pem = (name: string): string => readFileSync(join(dir, `${name}.key`), 'utf8')
  return { dir, der, x509, pem, dispose: () => rmSync(dir, { recursive: true, force: true }) }
}

describe('certificate chains', function () {
  this.timeout(60_000)
  let c: ReturnType<typeof makeChains>
  before(() => {
    c = makeChains()
  })
  after(() => c.dispose())

  describe('caConstraints', () => {
    it('should read cA, pathLenConstraint and keyCertSign as openssl wrote them', () => {
      expect(caConstraints(c.der('root'))).to.deep.equal({ ca: true, keyCertSign: true })
      expect(caConstraints(c.der('root0'))).to.deep.equal({
        ca: true,
        pathLen: 0,
        keyCertSign: true
      })
      expect(caConstraints(c.der('notca'))).to.deep.equal({ ca: false })
      expect(caConstraints(c.der('nosign'))).to.deep.equal({ ca: true, keyCertSign: false })
      expect(caConstraints(c.der('ee-int'))?.ca).to.equal(false)
      expect(caConstraints(new Uint8Array([0x30, 0x03, 1, 2]))).to.equal(undefined)
    })
  })

  describe('verifyChain', () => {
    let now: number
    beforeEach(() => {
      now = Date.now()
    })
    it('should follow one and two intermediates to the root, sent in any order', () => {
      const root = [c.x509('root')]
      expect(verifyChain(c.x509('ee-int'), [c.x509('int')], root, now)).to.equal(true)
      expect(verifyChain(c.x509('ee-int2'), [c.x509('int'), c.x509('int2')], root, now)).to.equal(
        true
      )
    })
    it('should refuse a missing intermediate, a non-CA, a CA without keyCertSign', () => {
      const root = [c.x509('root')]
      expect(verifyChain(c.x509('ee-int2'), [c.x509('int2')], root, now)).to.include(
        'not issued by a trust anchor'
      )
      expect(verifyChain(c.x509('ee-notca'), [c.x509('notca')], root, now)).to.include('not a CA')
      // OpenSSL's issuer check (X509_check_issued) already refuses a CA without keyCertSign
      expect(verifyChain(c.x509('ee-nosign'), [c.x509('nosign')], root, now)).to.be.a('string')
    })
    it('should refuse an intermediate below a root with pathLenConstraint 0', () => {
      expect(verifyChain(c.x509('ee-int0'), [c.x509('int0')], [c.x509('root0')], now)).to.include(
        'pathLenConstraint'
      )
    })
    it('should refuse an intermediate that has expired though the end entity has not', () => {
      const root = [c.x509('root')]
      const ee = c.x509('ee-intshort')
      expect(verifyChain(ee, [c.x509('intshort')], root, now)).to.equal(true)
      expect(verifyChain(ee, [c.x509('intshort')], root, now + 2 * DAY)).to.include('not valid now')
    })
  })

  describe('IkeV2Service with an intermediate CA', () => {
    const A = { type: 'fqdn' as const, value: 'a.example' }
    const B = { type: 'fqdn' as const, value: 'b.example' }
    function pair(intermediates: Uint8Array[]) {
      const pol = phase1({ authMethod: 'digital-signature' })
      // B's certificate comes from the root itself: only A's path has intermediates
      const p = makePair({
        startTime: Date.now(),
        aId: A,
        bId: B,
        bPhase1: pol,
        a: {
          certificates: [
            {
              identity: A,
              certificate: c.der('ee-int2'),
              privateKey: c.pem('ee-int2'),
              intermediates
            }
          ],
          trustAnchors: [{ certificate: c.der('root') }]
        },
        b: {
          certificates: [{ identity: B, certificate: c.der('ee-b'), privateKey: c.pem('ee-b') }],
          trustAnchors: [{ certificate: c.der('root') }]
        }
      })
      return { p, pol }
    }
    it('should establish when the initiator sends its two intermediates', async () => {
      const { p, pol } = pair([c.der('int2'), c.der('int')])
      await p.start()
      const r = await p.drive(
        p.a.connect(p.request({ phase1: pol, localIdentity: A, remoteIdentity: B }))
      )
      expect(r.phase2).to.have.length(1)
      await p.settle()
      expect(p.b.list()).to.have.length(1)
      await p.stop()
    })
    it('should refuse the initiator when it leaves one out', async () => {
      const { p, pol } = pair([c.der('int2')])
      await p.start()
      const err = await p
        .drive(p.a.connect(p.request({ phase1: pol, localIdentity: A, remoteIdentity: B })))
        .catch((e) => e)
      expect(err.kind).to.equal('AUTHENTICATION_FAILED')
      expect(p.b.list()).to.have.length(0)
      await p.stop()
    })
  })
})
