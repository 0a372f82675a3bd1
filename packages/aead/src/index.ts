/**
 * AEAD seal and open for the data plane. A key is set up once: with OpenSSL's libcrypto (through
 * koffi) it keeps one cipher context per direction and each message only sets the nonce, so a
 * packet costs five native calls and no JavaScript objects; where libcrypto cannot be loaded, or
 * `VIPSEC_AEAD=node` is set, each message makes a node:crypto cipher, as before. Both give the
 * same bytes (a known-answer check runs before libcrypto is first used).
 *
 * A key belongs to the thread that made it (a worker makes its own from the key bytes).
 *
 * @packageDocumentation
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import { InvalidParametersError } from '@vipsec/wire'
import { CTRL, libcrypto, libcryptoProblem, type Libcrypto } from './libcrypto.js'
import type { AeadBackend, AeadCipher } from './types.js'

export type { AeadBackend, AeadCipher } from './types.js'

/** Bytes of every nonce (RFC 5116 section 3.2: the 96-bit nonce of GCM and ChaCha20-Poly1305). */
export const AEAD_NONCE_LENGTH = 12

/** The key length of each cipher. */
const KEY_LENGTHS: Readonly<Record<AeadCipher, number>> = {
  'aes-128-gcm': 16,
  'aes-192-gcm': 24,
  'aes-256-gcm': 32,
  'chacha20-poly1305': 32
}

/**
 * A key of one AEAD cipher, ready to seal and open messages with any nonce. Never seal two
 * messages under one key with the same nonce: the caller's sequence numbers or counters make the
 * nonces.
 */
export interface AeadKey {
  /** The cipher. */
  readonly cipher: AeadCipher
  /** Bytes of the tag (16; AES-GCM also 8 or 12). */
  readonly tagLength: number
  /** Where it runs. */
  readonly backend: AeadBackend
  /**
   * Encrypts `input` into `output` and writes the tag of (`aad`, ciphertext) into `tag`.
   *
   * @param nonce - {@link AEAD_NONCE_LENGTH} bytes
   * @param aad - authenticated, not encrypted (may be empty)
   * @param input - the plaintext (may be empty: then only `aad` is authenticated)
   * @param output - receives the ciphertext: at least `input.length` bytes; it may be `input`
   *   itself, not an overlapping but different view of it
   * @param tag - receives the tag: exactly {@link AeadKey.tagLength} bytes
   * @throws InvalidParametersError when a length is wrong
   */
  seal(
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    output: Uint8Array,
    tag: Uint8Array
  ): void
  /**
   * Checks `tag` over (`aad`, `input`) and decrypts `input` into `output`.
   *
   * @param nonce - {@link AEAD_NONCE_LENGTH} bytes
   * @param aad - the authenticated data
   * @param input - the ciphertext (may be empty)
   * @param output - receives the plaintext: at least `input.length` bytes (it may be `input`).
   *   When the tag does not verify its contents are undefined: discard them.
   * @param tag - {@link AeadKey.tagLength} bytes
   * @returns whether the tag verified
   * @throws InvalidParametersError when a length is wrong (a forged message never throws: it is
   *   `false`)
   */
  open(
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    output: Uint8Array,
    tag: Uint8Array
  ): boolean
  /**
   * Frees the native contexts now (and wipes the key in them); a key that is only dropped is freed
   * when it is collected. Using it afterwards throws.
   */
  dispose(): void
}

/** Options of {@link aeadKey}. */
export interface AeadKeyOptions {
  /** Bytes of the tag: 16 (the default); AES-GCM also takes 8 or 12 (RFC 4106's ICV sizes). */
  tagLength?: number
  /**
   * Where to run it. Without it: libcrypto when it loads and passed its known-answer check, unless
   * the `VIPSEC_AEAD` environment variable is `node`. Asking for `libcrypto` where it is not
   * available throws.
   */
  backend?: AeadBackend
}

/**
 * Prepares a key.
 *
 * @param cipher - the AEAD cipher
 * @param key - its key: 16, 24 or 32 bytes for AES-GCM, 32 for ChaCha20-Poly1305 (copied)
 * @param options - tag length, backend
 * @throws InvalidParametersError when the key or tag length does not fit the cipher, or the
 *   backend asked for is not available
 */
export function aeadKey(
  cipher: AeadCipher,
  key: Uint8Array,
  options: AeadKeyOptions = {}
): AeadKey {
  const keyLength = KEY_LENGTHS[cipher]
  if (keyLength === undefined) {
    throw new InvalidParametersError(
      'cipher',
      `is not one of ${Object.keys(KEY_LENGTHS).join(', ')}`
    )
  }
  if (!(key instanceof Uint8Array) || key.length !== keyLength) {
    throw new InvalidParametersError('key', `${cipher} takes a ${keyLength}-byte key`)
  }
  const tagLength = options.tagLength ?? 16
  const tagLengths = cipher === 'chacha20-poly1305' ? [16] : [8, 12, 16]
  if (!tagLengths.includes(tagLength)) {
    throw new InvalidParametersError(
      'tagLength',
      `${cipher} takes a ${tagLengths.join(', ')}-byte tag`
    )
  }
  const backend = options.backend ?? aeadBackend()
  if (backend === 'node') return new NodeAeadKey(cipher, key, tagLength)
  const lib = checkedLibcrypto()
  if (lib === undefined) {
    throw new InvalidParametersError(
      'backend',
      `libcrypto is not available here (${aeadBackendProblem() ?? 'unknown'})`
    )
  }
  return new LibcryptoAeadKey(lib, cipher, key, tagLength)
}

/** The backend {@link aeadKey} uses when none is asked for, in this thread. */
export function aeadBackend(): AeadBackend {
  if (process.env.VIPSEC_AEAD === 'node') return 'node'
  return checkedLibcrypto() === undefined ? 'node' : 'libcrypto'
}

/** Why libcrypto is not used here, when it is not (it did not load, or failed its check). */
export function aeadBackendProblem(): string | undefined {
  checkedLibcrypto()
  return problem ?? libcryptoProblem()
}

function checkLengths(
  nonce: Uint8Array,
  input: Uint8Array,
  output: Uint8Array,
  tag: Uint8Array,
  tagLength: number
): void {
  if (nonce.length !== AEAD_NONCE_LENGTH) {
    throw new InvalidParametersError('nonce', `must be ${AEAD_NONCE_LENGTH} bytes`)
  }
  if (output.length < input.length) {
    throw new InvalidParametersError('output', 'is shorter than the input')
  }
  if (tag.length !== tagLength)
    throw new InvalidParametersError('tag', `must be ${tagLength} bytes`)
}

/** A node:crypto cipher object per message. */
class NodeAeadKey implements AeadKey {
  readonly backend = 'node'
  private key: KeyObject | undefined
  private readonly options: { authTagLength: number }

  constructor(
    readonly cipher: AeadCipher,
    key: Uint8Array,
    readonly tagLength: number
  ) {
    this.key = createSecretKey(key)
    this.options = { authTagLength: tagLength }
  }

  seal(
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    output: Uint8Array,
    tag: Uint8Array
  ): void {
    checkLengths(nonce, input, output, tag, this.tagLength)
    const c = createCipheriv(this.cipher as 'aes-256-gcm', this.live(), nonce, this.options)
    if (aad.length > 0) c.setAAD(aad)
    if (input.length > 0) output.set(c.update(input))
    c.final()
    tag.set(c.getAuthTag())
  }

  open(
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    output: Uint8Array,
    tag: Uint8Array
  ): boolean {
    checkLengths(nonce, input, output, tag, this.tagLength)
    const d = createDecipheriv(this.cipher as 'aes-256-gcm', this.live(), nonce, this.options)
    d.setAuthTag(tag)
    if (aad.length > 0) d.setAAD(aad)
    try {
      if (input.length > 0) output.set(d.update(input))
      d.final()
      return true
    } catch {
      return false
    }
  }

  dispose(): void {
    this.key = undefined
  }

  private live(): KeyObject {
    if (this.key === undefined) throw new InvalidParametersError('key', 'was disposed')
    return this.key
  }
}

/** Frees a collected key's contexts. */
const contexts = new FinalizationRegistry<{ lib: Libcrypto; ctx: unknown }>(({ lib, ctx }) =>
  lib.freeContext(ctx)
)

/** One libcrypto context per direction, made on first use; each message sets only the nonce. */
class LibcryptoAeadKey implements AeadKey {
  readonly backend = 'libcrypto'
  private readonly key: Uint8Array
  private sealing: unknown
  private opening: unknown
  private disposed = false
  /** `outl` of the update and final calls (never read: GCM and ChaCha20 output what they take). */
  private readonly outl = new Int32Array(1)

  constructor(
    private readonly lib: Libcrypto,
    readonly cipher: AeadCipher,
    key: Uint8Array,
    readonly tagLength: number
  ) {
    this.key = Uint8Array.from(key)
  }

  seal(
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    output: Uint8Array,
    tag: Uint8Array
  ): void {
    checkLengths(nonce, input, output, tag, this.tagLength)
    const lib = this.lib
    const ctx = (this.sealing ??= this.context(1))
    const outl = this.outl
    let ok = lib.init(ctx, null, null, null, nonce, -1) === 1
    if (ok && aad.length > 0) ok = lib.update(ctx, null, outl, aad, aad.length) === 1
    if (ok && input.length > 0) ok = lib.update(ctx, output, outl, input, input.length) === 1
    ok = ok && lib.final(ctx, output, outl) === 1
    ok = ok && lib.ctrl(ctx, CTRL.getTag, this.tagLength, tag) === 1
    // only a broken library gets here: never hand out a tag it may not have written
    if (!ok) throw new InvalidParametersError('key', `libcrypto failed to seal with ${this.cipher}`)
  }

  open(
    nonce: Uint8Array,
    aad: Uint8Array,
    input: Uint8Array,
    output: Uint8Array,
    tag: Uint8Array
  ): boolean {
    checkLengths(nonce, input, output, tag, this.tagLength)
    const lib = this.lib
    const ctx = (this.opening ??= this.context(0))
    const outl = this.outl
    if (lib.init(ctx, null, null, null, nonce, -1) !== 1) return false
    if (aad.length > 0 && lib.update(ctx, null, outl, aad, aad.length) !== 1) return false
    if (input.length > 0 && lib.update(ctx, output, outl, input, input.length) !== 1) return false
    if (lib.ctrl(ctx, CTRL.setTag, this.tagLength, tag) !== 1) return false
    // EVP_CipherFinal_ex compares the tag (in constant time) and says 1 only when it matched
    return lib.final(ctx, output, outl) === 1
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.key.fill(0)
    contexts.unregister(this)
    for (const ctx of [this.sealing, this.opening]) if (ctx !== undefined) this.lib.freeContext(ctx)
    this.sealing = this.opening = undefined
  }

  private context(encrypt: 0 | 1): unknown {
    if (this.disposed) throw new InvalidParametersError('key', 'was disposed')
    const lib = this.lib
    const ctx = lib.newContext()
    if (ctx === null) throw new InvalidParametersError('key', 'libcrypto could not make a context')
    if (lib.init(ctx, lib.ciphers[this.cipher], null, this.key, null, encrypt) !== 1) {
      lib.freeContext(ctx)
      throw new InvalidParametersError('key', `libcrypto refused the ${this.cipher} key`)
    }
    // unregistered by dispose, which frees the contexts itself
    contexts.register(this, { lib, ctx }, this)
    return ctx
  }
}

let checked: Libcrypto | null | undefined
let problem: string | undefined

/**
 * libcrypto, once it has sealed and opened a fixed message of every cipher to the same bytes as
 * node:crypto, and refused a changed tag.
 */
function checkedLibcrypto(): Libcrypto | undefined {
  if (checked !== undefined) return checked ?? undefined
  checked = null
  const lib = libcrypto()
  if (lib === undefined) return undefined
  try {
    for (const cipher of Object.keys(KEY_LENGTHS) as AeadCipher[]) {
      const key = Uint8Array.from({ length: KEY_LENGTHS[cipher] }, (_, i) => i * 7 + 1)
      const nonce = Uint8Array.from({ length: AEAD_NONCE_LENGTH }, (_, i) => 0xa0 + i)
      const aad = Uint8Array.from({ length: 12 }, (_, i) => 0x50 + i)
      const text = Uint8Array.from({ length: 61 }, (_, i) => (i * 31) & 0xff)
      const expected = new Uint8Array(text.length)
      const expectedTag = new Uint8Array(16)
      new NodeAeadKey(cipher, key, 16).seal(nonce, aad, text, expected, expectedTag)
      const probe = new LibcryptoAeadKey(lib, cipher, key, 16)
      const sealed = new Uint8Array(text.length)
      const tag = new Uint8Array(16)
      probe.seal(nonce, aad, text, sealed, tag)
      const opened = new Uint8Array(text.length)
      const same =
        Buffer.from(sealed).equals(expected) &&
        Buffer.from(tag).equals(expectedTag) &&
        probe.open(nonce, aad, sealed, opened, tag) &&
        Buffer.from(opened).equals(text)
      tag[0] ^= 1
      const refused = !probe.open(nonce, aad, sealed, opened, tag)
      probe.dispose()
      if (!same || !refused) {
        problem = `libcrypto's ${cipher} did not match node:crypto`
        return undefined
      }
    }
  } catch (err) {
    problem = `libcrypto's check failed: ${(err as Error).message}`
    return undefined
  }
  checked = lib
  return lib
}
