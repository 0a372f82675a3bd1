import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import { countRecords, type DvipaRecord } from '@vipsec/interface'
import { sampleRecords } from '@vipsec/compliance/coupling-store'
import { RedisCouplingStore } from '../src/index.js'
import { RedisServer } from './redis-server.js'

const DVIPA = '10.0.0.100'

describe('RedisCouplingStore with Sentinel', function () {
  this.timeout(120_000)
  let master: RedisServer
  let replica: RedisServer
  let sentinel: RedisServer
  let store: RedisCouplingStore | undefined

  before(async () => {
    // the replica syncs at once (not after the default 5 s of diskless sync delay); the
    // replica too, which is a master after the failover
    const serverArgs = ['--repl-diskless-sync-delay', '0']
    master = await RedisServer.start({ args: serverArgs })
    replica = await RedisServer.start({
      args: [...serverArgs, '--replicaof', '127.0.0.1', String(master.port)]
    })
    // Sentinel rewrites its configuration file: it lives in the sentinel's own directory.
    const dir = await mkdtemp(join(tmpdir(), 'vipsec-sentinel-'))
    const config = join(dir, 'sentinel.conf')
    await writeFile(
      config,
      [
        `sentinel monitor vipsec-test 127.0.0.1 ${master.port} 1`,
        'sentinel down-after-milliseconds vipsec-test 1000',
        'sentinel failover-timeout vipsec-test 10000',
        ''
      ].join('\n')
    )
    sentinel = await RedisServer.start({ dir, configFile: config, args: ['--sentinel'] })
    // the replica's first sync done before anything is written (a loaded machine can take
    // seconds over it); bounded, like every wait here
    const direct = new Redis({ host: '127.0.0.1', port: master.port })
    direct.on('error', () => undefined)
    try {
      let info = ''
      for (let i = 0; i < 150; i++) {
        info = String(await direct.info('replication'))
        if (/slave0:.*state=online/.test(info)) break
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(info, 'the replica never came online').to.match(/slave0:.*state=online/)
    } finally {
      direct.disconnect()
    }
  })

  afterEach(async () => {
    await store?.stop()
    store = undefined
  })

  after(async () => {
    await sentinel?.remove()
    if (sentinel !== undefined) await rm(sentinel.dir, { recursive: true, force: true })
    await replica?.remove()
    await master?.remove()
  })

  it('should find the master through the Sentinel and follow a failover without losing replicated records', async () => {
    store = new RedisCouplingStore(
      {},
      {
        sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
        name: 'vipsec-test',
        keyPrefix: 'sentinel:',
        operationTimeoutMs: 60_000
      }
    )
    await store.start()
    const ownership = await store.claimOwnership(DVIPA, {
      owner: 'dp-1',
      ranks: ['dp-2'],
      expectedEpoch: 0
    })
    const written: DvipaRecord[] = []
    for (let i = 0; i < 20; i++) written.push(...sampleRecords(DVIPA, i))
    await store.putRecords(DVIPA, written, { owner: 'dp-1', epoch: ownership.epoch })

    // the records reached the master, and the replica has them before the master dies
    const direct = new Redis({ host: '127.0.0.1', port: master.port })
    direct.on('error', () => undefined)
    try {
      expect(await direct.hlen(store.keys.records(DVIPA))).to.equal(written.length)
      expect(Number(await direct.call('WAIT', '1', '5000'))).to.equal(1)
    } finally {
      // a client left connecting to the killed master would log its errors for the rest of the run
      direct.disconnect()
    }
    await master.kill()

    // the same store carries on against the promoted replica
    expect(await store.getOwnership(DVIPA)).to.deep.equal(ownership)
    const set = await store.listRecords(DVIPA)
    expect(countRecords(set)).to.equal(written.length)
    const next = await store.claimOwnership(DVIPA, {
      owner: 'dp-2',
      ranks: [],
      expectedEpoch: ownership.epoch
    })
    const taken = await store.takeRecords(DVIPA, { owner: 'dp-2', epoch: next.epoch })
    expect(countRecords(taken)).to.equal(written.length)
    const promoted = new Redis({ host: '127.0.0.1', port: replica.port })
    promoted.on('error', () => undefined)
    const role = (await promoted.call('ROLE').finally(() => promoted.disconnect())) as unknown[]
    expect(String(role[0])).to.equal('master')
  })
})
