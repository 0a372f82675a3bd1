/**
 * A three-level test PKI made with the openssl CLI in a temp dir: a root CA, an intermediate CA
 * (basicConstraints CA:TRUE, pathlen 0, keyCertSign) and end-entity certificates issued by the
 * intermediate, with ECDSA P-256 or RSA-2048 keys.
 */
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The key type of a PKI's certificates. */
export type ChainKeyKind = 'ecdsa' | 'rsa'

/** One certificate with its key. */
export interface ChainCert {
  /** DER. */
  der: Uint8Array
  /** PEM. */
  pem: string
  /** The private key, PKCS#8 PEM. */
  key: string
}

/** A root, an intermediate and a way to issue leaves under the intermediate. */
export interface ChainPki {
  /** The root CA (the trust anchor). */
  root: ChainCert
  /** The intermediate CA, issued by the root. */
  intermediate: ChainCert
  /**
   * Issues an end-entity certificate with a DNS subjectAltName: under the intermediate, or
   * directly under the root with `byRoot`.
   */
  issue(name: string, dns: string, byRoot?: boolean): ChainCert
  /** Removes the temp dir. */
  dispose(): void
}

function keyArgs(kind: ChainKeyKind): string[] {
  return kind === 'ecdsa'
    ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
    : ['-newkey', 'rsa:2048']
}

/** Makes a root and an intermediate CA of `kind`. */
export function makeChainPki(kind: ChainKeyKind): ChainPki {
  const dir = mkdtempSync(join(tmpdir(), 'vipsec-chain-'))
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  }
  const read = (name: string): ChainCert => {
    const pem = readFileSync(join(dir, `${name}.pem`), 'utf8')
    return {
      der: new Uint8Array(new X509Certificate(pem).raw),
      pem,
      key: readFileSync(join(dir, `${name}.key`), 'utf8')
    }
  }
  const subject = (cn: string): string => `/C=CH/O=vipsec interop/CN=${cn}`
  /** A new key and a certificate for it, `cn`, issued by `ca` with the extensions `ext`. */
  const signed = (name: string, cn: string, ca: string, ext: string): void => {
    writeFileSync(join(dir, `${name}.ext`), ext)
    openssl([
      'req',
      ...keyArgs(kind),
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      subject(cn)
    ])
    openssl([
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`
    ])
  }
  openssl([
    'req',
    '-x509',
    ...keyArgs(kind),
    '-nodes',
    '-keyout',
    'root.key',
    '-out',
    'root.pem',
    '-subj',
    subject(`Root CA ${kind}`),
    '-days',
    '3',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign'
  ])
  signed(
    'intermediate',
    `Intermediate CA ${kind}`,
    'root',
    'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n'
  )
  return {
    root: read('root'),
    intermediate: read('intermediate'),
    issue(name, dns, byRoot = false) {
      signed(
        name,
        dns,
        byRoot ? 'root' : 'intermediate',
        `subjectAltName=DNS:${dns}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n`
      )
      return read(name)
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
