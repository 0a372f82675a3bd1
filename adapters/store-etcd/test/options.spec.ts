import { expect } from 'chai'
import { etcdKeys, resolveInit } from '../src/index.js'
import { prefixEnd, splitRecordName } from '../src/keys.js'

const fieldOf = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    expect((err as Error).name).to.equal('InvalidConfigError')
    return (err as { field: string }).field
  }
  throw new Error('expected InvalidConfigError')
}

describe('resolveInit', () => {
  it('should apply the defaults', () => {
    const init = resolveInit()
    expect(init.hosts).to.deep.equal(['http://127.0.0.1:2379'])
    expect(init).to.include({
      keyPrefix: 'vipsec/',
      operationTimeoutMs: 5000,
      attemptTimeoutMs: 500,
      hedgeMs: 150,
      receiptTtlMs: 300_000
    })
    // a read is sent to the next member after a third of an attempt, at most
    expect(resolveInit({ attemptTimeoutMs: 300 }).hedgeMs).to.equal(100)
  })

  describe('when an option is bad', () => {
    it('should name the field', () => {
      expect(fieldOf(() => resolveInit({ hosts: [] }))).to.equal('hosts')
      expect(fieldOf(() => resolveInit({ hosts: ['nope'] }))).to.equal('hosts[0]')
      expect(fieldOf(() => resolveInit({ hosts: ['redis://a:1'] }))).to.equal('hosts[0]')
      expect(fieldOf(() => resolveInit({ hosts: ['https://a:1'] }))).to.equal('tls')
      expect(fieldOf(() => resolveInit({ username: 'u' }))).to.equal('password')
      expect(fieldOf(() => resolveInit({ tls: { ca: 'x', cert: 'y' } }))).to.equal('tls.key')
      expect(fieldOf(() => resolveInit({ operationTimeoutMs: 0 }))).to.equal('operationTimeoutMs')
      expect(fieldOf(() => resolveInit({ receiptTtlMs: 10 }))).to.equal('receiptTtlMs')
      expect(fieldOf(() => resolveInit({ hedgeMs: 0 }))).to.equal('hedgeMs')
      expect(fieldOf(() => resolveInit({ attemptTimeoutMs: 200, hedgeMs: 300 }))).to.equal(
        'hedgeMs'
      )
      expect(fieldOf(() => resolveInit({ keyPrefix: 'a b' }))).to.equal('keyPrefix')
    })
  })
})

describe('etcdKeys', () => {
  it('should keep node ids with slashes inside their own keys', () => {
    const keys = etcdKeys('p/')
    expect(keys.mailbox('a/b')).to.equal('p/m/a%2Fb/')
    expect(keys.mailbox('a/b').startsWith(keys.mailbox('a'))).to.equal(false)
    expect(keys.owner('10.0.0.1')).to.equal('p/d/10.0.0.1/owner')
  })

  it('should split a record name at the first slash', () => {
    expect(splitRecordName('phase1/ike/1')).to.deep.equal({ kind: 'phase1', id: 'ike/1' })
  })
})

describe('prefixEnd', () => {
  it('should increment the last byte that can be', () => {
    expect(prefixEnd(Buffer.from('ab/'))).to.deep.equal(Buffer.from('ab0'))
    expect(prefixEnd(Buffer.from([0x61, 0xff]))).to.deep.equal(Buffer.from([0x62]))
  })
})
