import { expect } from 'chai'
import { defaultReconnectDelayMs, RedisCouplingStore, resolveInit } from '../src/index.js'
import { toRedisOptions } from '../src/options.js'
import { freePort } from './redis-server.js'

/** Returns what `fn` threw. */
function thrown(fn: () => unknown): Error & Record<string, unknown> {
  try {
    fn()
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected a throw')
}

describe('resolveInit', () => {
  describe('when nothing is given', () => {
    it('should apply the documented defaults', () => {
      const init = resolveInit()
      expect(init).to.include({
        host: '127.0.0.1',
        port: 6379,
        db: 0,
        keyPrefix: 'vipsec:',
        operationTimeoutMs: 5000,
        connectTimeoutMs: 2000,
        receiptTtlMs: 300_000,
        acceptNonDurableServer: false,
        waitForReplicas: 0,
        waitTimeoutMs: 1000
      })
      expect(init.username).to.equal(undefined)
      expect(init.tls).to.equal(undefined)
      expect(init.sentinels).to.equal(undefined)
      expect(init.reconnectDelayMs).to.equal(defaultReconnectDelayMs)
    })
  })

  describe('when a URL is given', () => {
    it('should take host, port, credentials and database from it', () => {
      const init = resolveInit({ url: 'redis://alice:s%40cret@redis.example.test:7000/3' })
      expect(init).to.include({
        host: 'redis.example.test',
        port: 7000,
        username: 'alice',
        password: 's@cret',
        db: 3
      })
      expect(init.tls).to.equal(undefined)
    })

    it('should turn TLS on for rediss: and let separate fields override the URL', () => {
      const init = resolveInit({ url: 'rediss://redis.example.test', port: 6380, password: 'x' })
      expect(init.tls).to.deep.equal({})
      expect(init).to.include({ host: 'redis.example.test', port: 6380, password: 'x' })
    })

    it('should reject another scheme naming url', () => {
      expect(thrown(() => resolveInit({ url: 'http://example.test' }))).to.include({
        name: 'InvalidConfigError',
        field: 'url'
      })
    })
  })

  describe('when a field is invalid', () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['port', { port: 0 }],
      ['port', { port: 70000 }],
      ['db', { db: -1 }],
      ['keyPrefix', { keyPrefix: '' }],
      ['keyPrefix', { keyPrefix: 'a{b}:' }],
      ['keyPrefix', { keyPrefix: 'a*' }],
      ['operationTimeoutMs', { operationTimeoutMs: 0 }],
      ['connectTimeoutMs', { connectTimeoutMs: 1.5 }],
      ['receiptTtlMs', { receiptTtlMs: 100 }],
      ['reconnectDelayMs', { reconnectDelayMs: 5 }],
      ['sentinels', { sentinels: [] }],
      ['sentinels[0].port', { sentinels: [{ host: 'a', port: 'x' }], name: 'm' }],
      ['name', { sentinels: [{ host: 'a', port: 26379 }] }],
      ['username', { username: 5 }],
      ['waitForReplicas', { waitForReplicas: -1 }],
      ['waitForReplicas', { waitForReplicas: 1.5 }],
      ['waitTimeoutMs', { waitTimeoutMs: 0 }],
      ['acceptNonDurableServer', { acceptNonDurableServer: 'yes' }]
    ]
    for (const [field, init] of cases) {
      it(`should reject ${JSON.stringify(init)} with InvalidConfigError naming ${field}`, () => {
        const err = thrown(() => resolveInit(init as never))
        expect(err.name).to.equal('InvalidConfigError')
        expect(err.field).to.equal(field)
      })
    }
  })
})

describe('defaultReconnectDelayMs', () => {
  it('should start at 50 ms, double, and stay at 1 s', () => {
    expect([1, 2, 3, 4, 5, 6, 100].map(defaultReconnectDelayMs)).to.deep.equal([
      50, 100, 200, 400, 800, 1000, 1000
    ])
  })
})

describe('toRedisOptions', () => {
  it('should neither queue commands while disconnected nor re-send them after a reconnect', () => {
    const options = toRedisOptions(resolveInit({ port: 7000 }))
    expect(options).to.include({
      host: '127.0.0.1',
      port: 7000,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      lazyConnect: true
    })
    expect(options.retryStrategy?.(3)).to.equal(200)
  })

  it('should pass credentials, TLS and Sentinels through', () => {
    const options = toRedisOptions(
      resolveInit({
        username: 'u',
        password: 'p',
        tls: { servername: 'redis.example.test' },
        sentinels: [{ host: '127.0.0.1', port: 26379 }],
        name: 'mymaster',
        sentinelPassword: 'sp'
      })
    )
    expect(options).to.include({
      username: 'u',
      password: 'p',
      name: 'mymaster',
      sentinelPassword: 'sp',
      enableTLSForSentinelMode: true
    })
    expect(options.tls).to.deep.equal({ servername: 'redis.example.test' })
    expect(options.sentinels).to.deep.equal([{ host: '127.0.0.1', port: 26379 }])
  })
})

describe('RedisCouplingStore', () => {
  describe('.constructor', () => {
    it('should reject invalid options with InvalidConfigError', () => {
      const err = thrown(() => new RedisCouplingStore({}, { keyPrefix: 'x y' }))
      expect(err).to.include({ name: 'InvalidConfigError', field: 'keyPrefix' })
    })
  })

  describe('.start', () => {
    describe('when nothing listens on the port', () => {
      it('should reject with StoreUnavailableError naming the address, and stay stopped', async () => {
        const port = await freePort()
        const store = new RedisCouplingStore(
          {},
          { port, operationTimeoutMs: 300, receiptTtlMs: 1000 }
        )
        let err: (Error & { name: string }) | undefined
        try {
          await store.start()
        } catch (e) {
          err = e as Error
        }
        expect(err?.name).to.equal('StoreUnavailableError')
        expect(err?.message).to.include(`127.0.0.1:${port}`)
        expect(store.isStarted()).to.equal(false)
        await store.stop()
      })
    })
  })

  describe('.getOwnership', () => {
    describe('when not started', () => {
      it('should reject with NotStartedError', async () => {
        const store = new RedisCouplingStore()
        const err = await store.getOwnership('10.0.0.100').then(
          () => undefined,
          (e: Error) => e
        )
        expect(err?.name).to.equal('NotStartedError')
      })
    })
  })
})
