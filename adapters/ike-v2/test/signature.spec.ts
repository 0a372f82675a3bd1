import { execFileSync } from 'node:child_process'
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { chooseScheme, signWithScheme, verifyWithScheme } from '../src/signature.js'
import { encodeScheme, parseScheme, type SignatureScheme } from '../src/signature-scheme.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** The DER TLVs of a SEQUENCE's content (lengths below 64 KiB). */
function tlvs(der: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = []
  const content = (b: Uint8Array): [number, number] => {
    const n = b[1]
    if (n < 0x80) return [2, n]
    const k = n & 0x7f
    let len = 0
    for (let i = 0; i < k; i++) len = (len << 8) | b[2 + i]
    return [2 + k, len]
  }
  const [h] = content(der)
  for (let o = h; o < der.length;) {
    const [hh, n] = content(der.subarray(o))
    out.push(der.subarray(o, o + hh + n))
    o += hh + n
  }
  return out
}

describe('RFC 7427 signature schemes', () => {
  describe('encodeScheme', () => {
    it('should give the AlgorithmIdentifiers of RFC 7427 appendix A', () => {
      // A.1.2-A.1.4: sha256/384/512WithRSAEncryption with NULL parameters
      expect(hex(encodeScheme({ kind: 'pkcs1', hash: 'sha256' }))).to.equal(
        '300d06092a864886f70d01010b0500'
      )
      expect(hex(encodeScheme({ kind: 'pkcs1', hash: 'sha384' }))).to.equal(
        '300d06092a864886f70d01010c0500'
      )
      expect(hex(encodeScheme({ kind: 'pkcs1', hash: 'sha512' }))).to.equal(
        '300d06092a864886f70d01010d0500'
      )
      // A.3: ecdsa-with-SHA256/384/512, no parameters
      expect(hex(encodeScheme({ kind: 'ecdsa', hash: 'sha256' }))).to.equal(
        '300a06082a8648ce3d040302'
      )
      expect(hex(encodeScheme({ kind: 'ecdsa', hash: 'sha384' }))).to.equal(
        '300a06082a8648ce3d040303'
      )
      expect(hex(encodeScheme({ kind: 'ecdsa', hash: 'sha512' }))).to.equal(
        '300a06082a8648ce3d040304'
      )
    })

    it('should read back what it writes, and refuse PSS with SHA-1 defaults or a foreign MGF hash', () => {
      for (const s of [
        { kind: 'ecdsa', hash: 'sha384' },
        { kind: 'pkcs1', hash: 'sha512' },
        { kind: 'pss', hash: 'sha256', saltLength: 32 },
        { kind: 'pss', hash: 'sha512', saltLength: 64 }
      ] as SignatureScheme[]) {
        expect(parseScheme(encodeScheme(s))).to.deep.equal(s)
      }
      // RSASSA-PSS with every parameter at its default: SHA-1
      expect(parseScheme(Buffer.from('300d06092a864886f70d01010a3000', 'hex'))).to.equal(undefined)
      const pss = encodeScheme({ kind: 'pss', hash: 'sha256', saltLength: 32 })
      const mixed = Buffer.from(pss)
      // the MGF1 hash (the second sha256 OID's last byte) becomes sha384
      const at = mixed.lastIndexOf(Buffer.from('0609608648016503040201', 'hex'))
      mixed[at + 10] = 2
      expect(parseScheme(mixed)).to.equal(undefined)
      expect(parseScheme(pss.subarray(0, pss.length - 1))).to.equal(undefined)
      expect(parseScheme(new Uint8Array(0))).to.equal(undefined)
    })
  })

  describe('with certificates signed by the openssl CLI with RSASSA-PSS', function () {
    this.timeout(60_000)
    let dir: string
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'vipsec-pss-'))
      const run = (args: string[]): void => {
        execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
      }
      run(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'k.pem'])
      for (const h of ['sha256', 'sha384', 'sha512']) {
        run([
          'req',
          '-x509',
          '-key',
          'k.pem',
          '-subj',
          '/CN=pss',
          '-days',
          '1',
          `-${h}`,
          '-sigopt',
          'rsa_padding_mode:pss',
          '-sigopt',
          'rsa_pss_saltlen:digest',
          '-out',
          `${h}.pem`
        ])
      }
    })
    after(() => rmSync(dir, { recursive: true, force: true }))

    for (const hash of ['sha256', 'sha384', 'sha512'] as const) {
      it(`should encode PSS with ${hash} as OpenSSL does, and verify OpenSSL's signature`, () => {
        const cert = new X509Certificate(readFileSync(join(dir, `${hash}.pem`)))
        const [tbs, algorithm, bits] = tlvs(new Uint8Array(cert.raw))
        const scheme = parseScheme(algorithm)
        expect(scheme).to.deep.equal({
          kind: 'pss',
          hash,
          saltLength: { sha256: 32, sha384: 48, sha512: 64 }[hash]
        })
        expect(hex(encodeScheme(scheme!))).to.equal(hex(algorithm))
        const signature = bits.subarray(bits[1] < 0x80 ? 3 : 3 + (bits[1] & 0x7f))
        expect(verifyWithScheme(cert.publicKey, scheme!, tbs, signature)).to.equal(true)
        const bad = tbs.slice()
        bad[10] ^= 1
        expect(verifyWithScheme(cert.publicKey, scheme!, bad, signature)).to.equal(false)
        // PKCS#1 v1.5 with the same hash does not verify a PSS signature
        expect(verifyWithScheme(cert.publicKey, { kind: 'pkcs1', hash }, tbs, signature)).to.equal(
          false
        )
      })
    }

    it('should sign with PSS what OpenSSL verifies, and nothing else', () => {
      const key = createPrivateKey(readFileSync(join(dir, 'k.pem')))
      const scheme: SignatureScheme = { kind: 'pss', hash: 'sha384', saltLength: 48 }
      const data = new TextEncoder().encode('signed octets')
      const sig = signWithScheme(key, scheme, data)
      writeFileSync(join(dir, 'data'), data)
      writeFileSync(join(dir, 'sig'), sig)
      writeFileSync(
        join(dir, 'pub.pem'),
        createPublicKey(key).export({ type: 'spki', format: 'pem' })
      )
      const verify = (file: string): string =>
        execFileSync(
          'openssl',
          [
            'dgst',
            '-sha384',
            '-sigopt',
            'rsa_padding_mode:pss',
            '-sigopt',
            'rsa_pss_saltlen:48',
            '-verify',
            'pub.pem',
            '-signature',
            'sig',
            file
          ],
          { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }
        )
      expect(verify('data')).to.include('Verified OK')
      writeFileSync(join(dir, 'other'), 'other octets')
      expect(() => verify('other')).to.throw()
    })
  })

  describe('chooseScheme', () => {
    const ec = (curve: string) =>
      createPrivateKey(
        execFileSync('openssl', [
          'genpkey',
          '-algorithm',
          'EC',
          '-pkeyopt',
          `ec_paramgen_curve:${curve}`
        ])
      )
    it('should take the hash of the curve, or the first the peer named, or SHA-256 without a notify', () => {
      expect(chooseScheme(ec('P-384'), [2, 3, 4], false)).to.deep.equal({
        kind: 'ecdsa',
        hash: 'sha384'
      })
      expect(chooseScheme(ec('P-256'), [4], false)).to.deep.equal({
        kind: 'ecdsa',
        hash: 'sha512'
      })
      expect(chooseScheme(ec('P-521'), undefined, false)).to.deep.equal({
        kind: 'ecdsa',
        hash: 'sha512'
      })
      const rsa = createPrivateKey(
        execFileSync('openssl', [
          'genpkey',
          '-algorithm',
          'RSA',
          '-pkeyopt',
          'rsa_keygen_bits:1024'
        ])
      )
      expect(chooseScheme(rsa, [3], true)).to.deep.equal({ kind: 'pss', hash: 'sha384' })
      expect(chooseScheme(rsa, undefined, false)).to.deep.equal({ kind: 'pkcs1', hash: 'sha256' })
    })
  })
})
