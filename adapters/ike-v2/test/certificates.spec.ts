import { expect } from 'chai'
import type { Identity } from '@vipsec/interface'
import { makePki, type KeyKind, type TestPki } from './helpers/certs.js'
import { makePair, phase1 } from './helpers/pair.js'

const CASES: { name: string; a: Identity; b: Identity }[] = [
  {
    name: 'FQDN',
    a: { type: 'fqdn', value: 'a.example' },
    b: { type: 'fqdn', value: 'b.example' }
  },
  {
    name: 'RFC822',
    a: { type: 'rfc822', value: 'a@example.org' },
    b: { type: 'rfc822', value: 'b@example.org' }
  },
  { name: 'IPv4', a: { type: 'ipv4', value: '10.0.0.1' }, b: { type: 'ipv4', value: '10.0.0.2' } },
  { name: 'IPv6', a: { type: 'ipv6', value: 'fd00::1' }, b: { type: 'ipv6', value: 'fd00::2' } },
  {
    name: 'DER DN',
    a: { type: 'der-dn', value: 'C=CH, O=vipsec test, CN=a.example' },
    b: { type: 'der-dn', value: 'C=CH, O=vipsec test, CN=b.example' }
  }
]

describe('IkeV2Service', () => {
  describe('.connect', () => {
    for (const kind of ['ecdsa', 'rsa'] as KeyKind[]) {
      describe(`when both sides authenticate with ${kind === 'ecdsa' ? 'ECDSA P-256' : 'RSA'} certificates (RFC 7427)`, function () {
        this.timeout(60_000)
        let pki: TestPki
        let certs: Record<string, ReturnType<TestPki['issue']>>
        before(() => {
          pki = makePki(kind)
          certs = {
            a: pki.issue(
              'a',
              '/C=CH/O=vipsec test/CN=a.example',
              'DNS:a.example,email:a@example.org,IP:10.0.0.1,IP:fd00::1'
            ),
            b: pki.issue(
              'b',
              '/C=CH/O=vipsec test/CN=b.example',
              'DNS:b.example,email:b@example.org,IP:10.0.0.2,IP:fd00::2'
            ),
            mallory: pki.issue('m', '/C=CH/O=vipsec test/CN=mallory.example', 'DNS:mallory.example')
          }
        })
        after(() => pki.dispose())

        function pair(
          aId: Identity,
          bId: Identity,
          aCert = certs.a,
          trust = pki.ca,
          rsaPss = { a: false, b: false }
        ) {
          const pol = phase1({ authMethod: 'digital-signature' })
          const p = makePair({
            startTime: Date.now(),
            aId,
            bId,
            bPhase1: pol,
            a: {
              certificates: [{ identity: aId, ...aCert }],
              trustAnchors: [{ certificate: trust }],
              rsaPss: rsaPss.a
            },
            b: {
              certificates: [{ identity: bId, ...certs.b }],
              trustAnchors: [{ certificate: pki.ca }],
              rsaPss: rsaPss.b
            }
          })
          return { p, pol }
        }

        if (kind === 'rsa') {
          for (const rsaPss of [
            { a: true, b: true },
            { a: true, b: false }
          ]) {
            it(`should establish with RSASSA-PSS (rsa_pss = yes) on ${rsaPss.b ? 'both sides' : 'one side'}`, async () => {
              const { p, pol } = pair(
                { type: 'fqdn', value: 'a.example' },
                { type: 'fqdn', value: 'b.example' },
                certs.a,
                pki.ca,
                rsaPss
              )
              await p.start()
              const r = await p.drive(p.a.connect(p.request({ phase1: pol })))
              expect(r.phase2).to.have.length(1)
              await p.settle()
              expect(p.b.list()).to.have.length(1)
              await p.stop()
            })
          }
        }

        for (const c of kind === 'ecdsa' ? CASES : CASES.slice(0, 1)) {
          it(`should establish with ${c.name} identities`, async () => {
            const { p, pol } = pair(c.a, c.b)
            await p.start()
            const r = await p.drive(p.a.connect(p.request({ phase1: pol })))
            expect(r.phase1.remoteIdentity).to.deep.equal(c.b)
            await p.settle()
            expect(p.b.list()[0].phase1.remoteIdentity).to.deep.equal(c.a)
            await p.stop()
          })
        }

        it('should refuse a certificate that does not name the claimed identity', async () => {
          const { p, pol } = pair(
            { type: 'fqdn', value: 'a.example' },
            { type: 'fqdn', value: 'b.example' },
            certs.mallory
          )
          await p.start()
          const err = await p.drive(p.a.connect(p.request({ phase1: pol }))).catch((e) => e)
          expect(err.kind).to.equal('AUTHENTICATION_FAILED')
          await p.stop()
        })

        it('should refuse a peer whose CA it does not trust', async () => {
          const other = makePki(kind)
          try {
            const { p, pol } = pair(
              { type: 'fqdn', value: 'a.example' },
              { type: 'fqdn', value: 'b.example' },
              certs.a,
              other.ca
            )
            await p.start()
            const err = await p.drive(p.a.connect(p.request({ phase1: pol }))).catch((e) => e)
            expect(err.kind).to.equal('AUTHENTICATION_FAILED')
            expect(err.message).to.include('not issued by a trust anchor')
            // B had accepted A; A's AUTHENTICATION_FAILED notify makes B drop the IKE SA
            await p.settle()
            expect(p.bEvents.map((e) => e.type)).to.include('ike:established')
            expect(p.b.list()).to.have.length(0)
            await p.stop()
          } finally {
            other.dispose()
          }
        })
      })
    }
  })
})
