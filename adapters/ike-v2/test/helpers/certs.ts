/** Test certificates made at test time with the openssl CLI: a CA and end entities. */
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export type KeyKind = 'ecdsa' | 'rsa'

export interface EndEntity {
  /** DER certificate. */
  certificate: Uint8Array
  /** PKCS#8 PEM private key. */
  privateKey: string
  /** PEM certificate (for charon). */
  pem: string
}

export interface TestPki {
  /** The CA certificate, DER. */
  ca: Uint8Array
  /** The CA certificate, PEM. */
  caPem: string
  /** Issues an end-entity certificate. */
  issue(name: string, subject: string, subjectAltName: string, kind?: KeyKind): EndEntity
  /** Removes the temporary files. */
  dispose(): void
}

function keyArgs(kind: KeyKind): string[] {
  return kind === 'ecdsa'
    ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
    : ['-newkey', 'rsa:2048']
}

export function makePki(kind: KeyKind = 'ecdsa'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'vipsec-pki-'))
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  }
  run([
    'req',
    '-x509',
    ...keyArgs(kind),
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-subj',
    '/C=CH/O=vipsec test/CN=Test CA',
    '-days',
    '3'
  ])
  const caPem = readFileSync(join(dir, 'ca.pem'), 'utf8')
  return {
    ca: new Uint8Array(new X509Certificate(caPem).raw),
    caPem,
    issue(name, subject, subjectAltName, eeKind = kind) {
      writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${subjectAltName}\n`)
      run([
        'req',
        ...keyArgs(eeKind),
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        subject
      ])
      run([
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`
      ])
      const pem = readFileSync(join(dir, `${name}.pem`), 'utf8')
      return {
        certificate: new Uint8Array(new X509Certificate(pem).raw),
        privateKey: readFileSync(join(dir, `${name}.key`), 'utf8'),
        pem
      }
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
