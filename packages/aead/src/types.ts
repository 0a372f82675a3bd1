/** The AEAD ciphers a context can hold: AES-GCM (RFC 5116, 4106) and ChaCha20-Poly1305 (RFC 8439, 7634). */
export type AeadCipher = 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' | 'chacha20-poly1305'

/**
 * Where the cipher runs: `libcrypto`, one OpenSSL context per key and direction, set up once and
 * given only a new nonce per message; `node`, a node:crypto cipher object per message.
 */
export type AeadBackend = 'libcrypto' | 'node'
