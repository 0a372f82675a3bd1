import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import type { CouplingStoreEvent } from '@vipsec/interface'
import { EtcdCouplingStore, type EtcdCouplingStoreInit } from '../src/index.js'
import { EtcdCluster } from './etcd-cluster.js'

const DVIPA = '10.0.0.100'

async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected the promise to reject, but it fulfilled')
}

describe('EtcdCouplingStore security', function () {
  this.timeout(60_000)
  const stores: EtcdCouplingStore[] = []
  let cluster: EtcdCluster

  function newStore(init: EtcdCouplingStoreInit): EtcdCouplingStore {
    const store = new EtcdCouplingStore(
      {},
      { hosts: cluster.hosts, operationTimeoutMs: 3000, ...init }
    )
    stores.push(store)
    return store
  }

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.stop()
  })

  describe('with user and password authentication', () => {
    const etcdctl = (...args: string[]): string =>
      execFileSync('etcdctl', ['--endpoints', cluster.hosts[0]!, ...args], {
        env: { ...process.env, ETCDCTL_API: '3' }
      }).toString()

    before(async () => {
      cluster = await EtcdCluster.start()
      etcdctl('user', 'add', 'root:root-secret')
      etcdctl('user', 'add', 'vipsec:vipsec-secret')
      etcdctl('user', 'add', 'stranger:stranger-secret')
      etcdctl('role', 'add', 'vipsec-rw')
      etcdctl('role', 'grant-permission', 'vipsec-rw', '--prefix=true', 'readwrite', 'auth-test/')
      etcdctl('user', 'grant-role', 'vipsec', 'vipsec-rw')
      etcdctl('auth', 'enable')
    })

    after(async () => {
      await cluster?.remove()
    })

    it('should work for a user whose role grants the prefix', async () => {
      const store = newStore({
        username: 'vipsec',
        password: 'vipsec-secret',
        keyPrefix: 'auth-test/'
      })
      await store.start()
      const events: CouplingStoreEvent[] = []
      store.events$.subscribe((e) => events.push(e))
      const { epoch } = await store.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      expect(epoch).to.equal(1)
      await store.renewLease('dp-1', 5000)
      expect((await store.readLeases(['dp-1']))['dp-1']).to.be.greaterThan(0)
      for (let i = 0; i < 50 && events.length === 0; i++)
        await new Promise((r) => setTimeout(r, 20))
      expect(events.map((e) => e.type)).to.deep.equal(['ownership:claimed'])
    })

    it('should refuse a wrong password at once, naming the user', async () => {
      const store = newStore({ username: 'vipsec', password: 'wrong', keyPrefix: 'auth-test/' })
      const started = Date.now()
      const err = await rejection(store.start())
      expect(err.name).to.equal('StoreUnavailableError')
      expect(err.message).to.match(/refused user vipsec/)
      expect(Date.now() - started).to.be.below(2500)
    })

    it('should refuse a user whose role does not grant the prefix, naming the prefix', async () => {
      const store = newStore({
        username: 'stranger',
        password: 'stranger-secret',
        keyPrefix: 'auth-test/'
      })
      const err = await rejection(store.start())
      expect(err.name).to.equal('StoreUnavailableError')
      expect(err.message).to.match(/stranger/)
      expect(err.message).to.match(/auth-test\//)
    })
  })

  describe('over TLS', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vipsec-etcd-tls-'))
    const certFile = join(dir, 'server.crt')
    const keyFile = join(dir, 'server.key')

    before(async () => {
      // a throw-away self-signed certificate for 127.0.0.1
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          keyFile,
          '-out',
          certFile,
          '-days',
          '1',
          '-subj',
          '/CN=vipsec-test-etcd',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-addext',
          'basicConstraints=critical,CA:TRUE'
        ],
        { stdio: 'ignore' }
      )
      cluster = await EtcdCluster.start({ tls: { certFile, keyFile } })
    })

    after(async () => {
      await cluster?.remove()
      rmSync(dir, { recursive: true, force: true })
    })

    it('should work with the CA certificate', async () => {
      expect(cluster.hosts[0]).to.match(/^https:/)
      const store = newStore({ tls: { ca: readFileSync(certFile) }, keyPrefix: 'tls-test/' })
      await store.start()
      const { epoch } = await store.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      expect((await store.getOwnership(DVIPA)).epoch).to.equal(epoch)
    })

    it('should not trust a server whose certificate it cannot verify', async () => {
      const other = join(dir, 'other.crt')
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          join(dir, 'other.key'),
          '-out',
          other,
          '-days',
          '1',
          '-subj',
          '/CN=someone-else'
        ],
        { stdio: 'ignore' }
      )
      const store = newStore({
        tls: { ca: readFileSync(other) },
        keyPrefix: 'tls-test/',
        operationTimeoutMs: 1500
      })
      const err = await rejection(store.start())
      expect(err.name).to.equal('StoreUnavailableError')
    })
  })
})
