import { createRequire } from 'node:module'
import type Koffi from 'koffi'
import type { AeadCipher } from './types.js'

/** An OpenSSL function bound through koffi. */
type Native = (...args: unknown[]) => unknown

/** `EVP_CIPHER_CTX_ctrl` types (OpenSSL's `evp.h`: the AEAD aliases of the GCM ones). */
const EVP_CTRL_AEAD_GET_TAG = 0x10
const EVP_CTRL_AEAD_SET_TAG = 0x11

/** The libcrypto functions an AEAD context needs. */
export interface Libcrypto {
  /** `EVP_CIPHER_CTX_new()`. */
  readonly newContext: () => unknown
  /** `EVP_CIPHER_CTX_free(ctx)`. */
  readonly freeContext: (ctx: unknown) => void
  /** `EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, enc)`. */
  readonly init: Native
  /** `EVP_CipherUpdate(ctx, out, &outl, in, inl)`. */
  readonly update: Native
  /** `EVP_CipherFinal_ex(ctx, out, &outl)`. */
  readonly final: Native
  /** `EVP_CIPHER_CTX_ctrl(ctx, type, arg, ptr)`. */
  readonly ctrl: Native
  /** The `EVP_CIPHER` of each cipher name. */
  readonly ciphers: Readonly<Record<AeadCipher, unknown>>
}

let bound: Libcrypto | null | undefined
let why: string | undefined

/** The file names tried, newest ABI first. */
const NAMES = ['libcrypto.so.3', 'libcrypto.so.1.1', 'libcrypto.so']

/**
 * OpenSSL's libcrypto through koffi, bound on first use in this thread; `undefined` where koffi or
 * the library cannot be loaded (then {@link libcryptoProblem} says why).
 */
export function libcrypto(): Libcrypto | undefined {
  if (bound !== undefined) return bound ?? undefined
  bound = null
  let koffi: typeof Koffi
  try {
    koffi = createRequire(import.meta.url)('koffi') as typeof Koffi
  } catch (err) {
    why = `koffi did not load: ${(err as Error).message}`
    return undefined
  }
  let lib: ReturnType<typeof koffi.load> | undefined
  for (const name of NAMES) {
    try {
      lib = koffi.load(name)
      break
    } catch (err) {
      why = `${name}: ${(err as Error).message}`
    }
  }
  if (lib === undefined) return undefined
  try {
    // one pointer type per process: koffi keeps type names global, across threads too
    const ctx = koffi.pointer(koffi.opaque())
    const cipher = koffi.pointer(koffi.opaque())
    const byName = (name: string): unknown => (lib.func(name, cipher, []) as () => unknown)()
    bound = {
      newContext: lib.func('EVP_CIPHER_CTX_new', ctx, []) as () => unknown,
      freeContext: lib.func('EVP_CIPHER_CTX_free', 'void', [ctx]) as (ctx: unknown) => void,
      init: lib.func('EVP_CipherInit_ex', 'int', [
        ctx,
        cipher,
        'void *',
        'uint8_t *',
        'uint8_t *',
        'int'
      ]) as Native,
      update: lib.func('EVP_CipherUpdate', 'int', [
        ctx,
        'uint8_t *',
        'int32_t *',
        'uint8_t *',
        'int'
      ]) as Native,
      final: lib.func('EVP_CipherFinal_ex', 'int', [ctx, 'uint8_t *', 'int32_t *']) as Native,
      ctrl: lib.func('EVP_CIPHER_CTX_ctrl', 'int', [ctx, 'int', 'int', 'uint8_t *']) as Native,
      ciphers: {
        'aes-128-gcm': byName('EVP_aes_128_gcm'),
        'aes-192-gcm': byName('EVP_aes_192_gcm'),
        'aes-256-gcm': byName('EVP_aes_256_gcm'),
        'chacha20-poly1305': byName('EVP_chacha20_poly1305')
      }
    }
    why = undefined
  } catch (err) {
    bound = null
    why = `libcrypto's EVP functions did not bind: ${(err as Error).message}`
  }
  return bound ?? undefined
}

/** Why {@link libcrypto} gave nothing, when it did. */
export function libcryptoProblem(): string | undefined {
  return why
}

/** The `ctrl` types, for the contexts. */
export const CTRL = { getTag: EVP_CTRL_AEAD_GET_TAG, setTag: EVP_CTRL_AEAD_SET_TAG } as const
