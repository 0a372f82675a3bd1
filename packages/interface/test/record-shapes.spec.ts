import { expect } from 'chai'
import fc from 'fast-check'
import { sampleDeleteMessage, sampleRecords } from '@vipsec/compliance/coupling-store'
import type { DvipaRecord, Ownership } from '../src/index.js'
import {
  deleteMessageShape,
  ownershipShape,
  recordShapes,
  type Check
} from '../src/record-shapes.js'

const samples: { name: string; shape: Check; value: unknown }[] = [
  ...sampleRecords('10.0.0.1', 3).map((r: DvipaRecord) => ({
    name: r.kind,
    shape: recordShapes[r.kind],
    value: r
  })),
  ...sampleRecords('2001:db8::1', 4).map((r: DvipaRecord) => ({
    name: `${r.kind} (IPv6)`,
    shape: recordShapes[r.kind],
    value: r
  })),
  {
    name: 'warm',
    shape: recordShapes.warm,
    value: {
      v: 1,
      kind: 'warm',
      id: 'ike-1',
      dvipa: '10.0.0.1',
      phase1Id: 'ike-1',
      keyId: 'k1',
      version: 3,
      epoch: 2,
      nonce: Buffer.alloc(12, 7).toString('base64'),
      sealed: Buffer.alloc(40, 9).toString('base64')
    }
  },
  {
    name: 'sequence',
    shape: recordShapes.sequence,
    value: {
      v: 1,
      kind: 'sequence',
      id: 'child-1',
      dvipa: '10.0.0.1',
      phase2Id: 'child-1',
      outboundSpi: 'c0000001',
      reservedEnd: '18446744073709551615',
      inbound: '0',
      keyId: 'k1',
      mac: Buffer.alloc(16, 5).toString('base64')
    }
  },
  {
    name: 'ownership',
    shape: ownershipShape,
    value: {
      v: 1,
      dvipa: '10.0.0.1',
      owner: 'dp-1',
      epoch: 3,
      ranks: ['dp-1', 'dp-2'],
      claimedAt: 5,
      previousOwner: 'dp-2'
    } satisfies Ownership
  },
  { name: 'mailbox', shape: deleteMessageShape, value: sampleDeleteMessage('dp-1', 2) }
]

/** Every path to a value inside `value` (objects' keys, arrays' indexes), the root first. */
function paths(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at]
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...at, i])))
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...at, k]))
  return out
}

/** Values close to `v`: the edge cases of each check (case, length, bounds, prefix lengths). */
function variants(v: unknown): unknown[] {
  if (typeof v === 'string')
    return [
      v.toUpperCase(),
      `${v}0`,
      `${v}=`,
      v.slice(1),
      v.slice(0, -1),
      v.replace(/\d+$/, '33'),
      v.replace(/\d+$/, '129'),
      v.replace(/\d+$/, '032'),
      v.replace(/^\d+/, '256'),
      v.replace(/=+$/, ''),
      ''
    ]
  if (typeof v === 'number') return [v + 1, v - 1, -1, v + 0.5, 65536, 2 ** 32, 2 ** 53, NaN]
  if (typeof v === 'boolean') return [!v, 0, 'true']
  if (Array.isArray(v)) return [[], [...v, v[0]], v.slice(1), {}]
  return [null, [], 'x']
}

/**
 * A deep copy of `value` with the value at `path` replaced (by `other`, or by one of its
 * {@link variants}), removed, or given an extra key.
 */
function mutate(
  value: unknown,
  path: (string | number)[],
  how: 'replace' | 'tweak' | 'remove' | 'add',
  other: unknown,
  pick: number
): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>
  if (path.length === 0) return how === 'replace' ? other : copy
  let parent = copy
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>
  const last = path[path.length - 1]!
  if (how === 'replace') parent[last] = other
  else if (how === 'tweak') {
    const near = variants(parent[last])
    parent[last] = near[pick % near.length]
  } else if (how === 'remove') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1)
    else delete parent[last]
  } else {
    const target = parent[last]
    if (target !== null && typeof target === 'object' && !Array.isArray(target))
      // a key of its own (other may be any JSON value, even one whose toString is not a function)
      (target as Record<string, unknown>)[`extra${pick}`] = other
    else parent[last] = [target, other]
  }
  return copy
}

function throws(shape: Check, value: unknown): boolean {
  try {
    shape(value, 'x')
    return false
  } catch (err) {
    expect((err as Error).name).to.equal('CorruptRecordError')
    return true
  }
}

// values near the valid ones: other hex, addresses, prefixes, numbers at the bounds
const nearValues = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(
    '',
    'c0000001',
    'C0000001',
    '0123456789abcdef',
    '10.0.0.1',
    '2001:db8::1',
    '10.0.0.0/33',
    '10.0.0.0/24',
    '2001:db8::/129',
    '18446744073709551616',
    '007',
    'AAAAAAAAAAAAAAAAAAAAAA==',
    -1,
    0,
    65536,
    4294967296,
    1.5,
    null,
    true,
    [],
    {},
    'tunnel',
    'esp'
  )
)

describe('record shapes', () => {
  it('should pass every sample', () => {
    for (const { name, shape, value } of samples) {
      expect(shape.ok(value), name).to.equal(true)
      expect(throws(shape, value), name).to.equal(false)
    }
  })

  it('should say ok exactly when the check that names the field does not throw', function () {
    this.timeout(120_000)
    fc.assert(
      fc.property(
        fc.nat(samples.length - 1),
        fc.nat(),
        fc.constantFrom('replace' as const, 'tweak' as const, 'remove' as const, 'add' as const),
        nearValues,
        fc.nat(),
        (which, where, how, other, pick) => {
          const { shape, value } = samples[which]!
          const all = paths(value)
          const changed = mutate(value, all[where % all.length]!, how, other, pick)
          expect(shape.ok(changed)).to.equal(!throws(shape, changed))
        }
      ),
      { numRuns: 20_000 }
    )
  })
})
