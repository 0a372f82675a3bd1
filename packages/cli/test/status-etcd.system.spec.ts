import { expect } from 'chai'
import { sampleRecords } from '@vipsec/compliance/coupling-store'
import { EtcdCouplingStore } from '@vipsec/store-etcd'
import { EtcdCluster } from '@vipsec/store-etcd/test/etcd-cluster'
import { main } from '../src/index.js'

describe('vipsec status --etcd', function () {
  this.timeout(60_000)
  let cluster: EtcdCluster

  before(async () => {
    cluster = await EtcdCluster.start()
    const store = new EtcdCouplingStore({}, { hosts: cluster.hosts, keyPrefix: 'status-test/' })
    await store.start()
    const { epoch } = await store.claimOwnership('10.0.0.100', {
      owner: 'dp-1',
      ranks: ['dp-2'],
      expectedEpoch: 0
    })
    await store.putRecords('10.0.0.100', sampleRecords('10.0.0.100', 1), { owner: 'dp-1', epoch })
    await store.stop()
  })

  after(async () => {
    await cluster?.remove()
  })

  it('should print owner, epoch, backups and record counts from the etcd store', async () => {
    const lines: string[] = []
    const code = await main(
      [
        'status',
        '--etcd',
        cluster.hosts.join(','),
        '--prefix',
        'status-test/',
        '--dvipa',
        '10.0.0.100',
        '--dvipa',
        '10.0.0.200'
      ],
      (l) => lines.push(l)
    )
    expect(code).to.equal(0)
    expect(lines[1]).to.match(/^10\.0\.0\.100\s+dp-1\s+1\s+dp-2\s+1\s+1\s+1\s+1\s+0$/)
    expect(lines[2]).to.match(/^10\.0\.0\.200\s+-\s+0\s+-\s+0\s+0\s+0\s+0\s+0$/)
  })
})
