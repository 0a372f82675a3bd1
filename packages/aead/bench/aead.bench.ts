/**
 * `npm run bench:aead`: AEAD seals and opens per second with each backend, at
 * ESP's small and large packet sizes, rounds interleaved so that both see the same machine.
 * Prints a table, then one JSON line.
 */
import { loadavg } from 'node:os'
import { aeadBackendProblem, aeadKey, type AeadBackend, type AeadCipher } from '../src/index.js'

const ROUNDS = 7
const MESSAGES = 50_000
const SIZES = [64, 1400]
const CIPHERS: AeadCipher[] = ['aes-256-gcm', 'chacha20-poly1305']
const BACKENDS: AeadBackend[] = ['libcrypto', 'node']

/** Nanoseconds per seal and per open of one round. */
function round(cipher: AeadCipher, backend: AeadBackend, size: number): [number, number] {
  const key = aeadKey(cipher, new Uint8Array(32).fill(7), { backend })
  const nonce = new Uint8Array(12)
  const aad = new Uint8Array(8).fill(1)
  const text = new Uint8Array(size).fill(2)
  const out = new Uint8Array(size)
  const back = new Uint8Array(size)
  const tag = new Uint8Array(16)
  let t = process.hrtime.bigint()
  for (let i = 0; i < MESSAGES; i++) {
    nonce[11] = i
    nonce[10] = i >>> 8
    key.seal(nonce, aad, text, out, tag)
  }
  const seal = Number(process.hrtime.bigint() - t) / MESSAGES
  t = process.hrtime.bigint()
  for (let i = 0; i < MESSAGES; i++) {
    if (!key.open(nonce, aad, out, back, tag)) throw new Error('did not open')
  }
  const open = Number(process.hrtime.bigint() - t) / MESSAGES
  key.dispose()
  return [seal, open]
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
const load = loadavg()[0]!
const samples = new Map<string, { seal: number[]; open: number[] }>()
const id = (c: AeadCipher, b: AeadBackend, s: number): string => `${c} ${b} ${s}`
for (let r = 0; r < ROUNDS + 1; r++) {
  for (const cipher of CIPHERS)
    for (const size of SIZES)
      for (const backend of BACKENDS) {
        const [seal, open] = round(cipher, backend, size)
        if (r === 0) continue // warm-up
        const entry = samples.get(id(cipher, backend, size)) ?? { seal: [], open: [] }
        entry.seal.push(seal)
        entry.open.push(open)
        samples.set(id(cipher, backend, size), entry)
      }
}
const problem = aeadBackendProblem()
console.log(
  `AEAD per message, ns (median of ${ROUNDS} interleaved rounds of ${MESSAGES}); load ${load.toFixed(2)} -> ${loadavg()[0]!.toFixed(2)}` +
    (problem === undefined ? '' : `; libcrypto: ${problem}`)
)
console.log(
  '| cipher | bytes | libcrypto seal | node seal | ratio | libcrypto open | node open | ratio |'
)
console.log('|---|---:|---:|---:|---:|---:|---:|---:|')
const json: Record<string, number> = {}
for (const cipher of CIPHERS)
  for (const size of SIZES) {
    const l = samples.get(id(cipher, 'libcrypto', size))!
    const n = samples.get(id(cipher, 'node', size))!
    const [ls, ns, lo, no] = [median(l.seal), median(n.seal), median(l.open), median(n.open)]
    console.log(
      `| ${cipher} | ${size} | ${ls.toFixed(0)} | ${ns.toFixed(0)} | ${(ls / ns).toFixed(2)} | ${lo.toFixed(0)} | ${no.toFixed(0)} | ${(lo / no).toFixed(2)} |`
    )
    json[`${cipher}-${size}-seal-ratio`] = Number((ls / ns).toFixed(3))
    json[`${cipher}-${size}-open-ratio`] = Number((lo / no).toFixed(3))
    json[`${cipher}-${size}-seal-ns`] = Math.round(ls)
  }
console.log(JSON.stringify({ bench: 'aead', ...json, loadAverage: load }))
