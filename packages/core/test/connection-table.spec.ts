import { expect } from 'chai'
import type { FiveTuple } from '@vipsec/interface'
import { ConnectionTable, connectionId } from '../src/index.js'

const flow = (n: number): FiveTuple => ({
  protocol: 17,
  sourceAddress: '172.16.2.1',
  sourcePort: 10000 + n,
  destinationAddress: '10.77.0.10',
  destinationPort: 7
})

function spread(table: ConnectionTable, flows: number, first = 0): Record<string, number> {
  const counts: Record<string, number> = {}
  for (let i = first; i < first + flows; i++) {
    const t = table.route(flow(i), 0, null, 'dp-1')!.connection.target
    counts[t] = (counts[t] ?? 0) + 1
  }
  return counts
}

describe('ConnectionTable', () => {
  describe('.route', () => {
    describe('when the policy is round-robin', () => {
      it('should spread new flows evenly and keep each flow on its target', () => {
        const table = new ConnectionTable('10.0.0.100', [
          { node: 't1' },
          { node: 't2' },
          { node: 't3' }
        ])
        expect(spread(table, 300)).to.deep.equal({ t1: 100, t2: 100, t3: 100 })
        const first = table.route(flow(0), 0, null, 'dp-1')!
        expect(first.created).to.equal(false)
        expect(first.connection.id).to.equal(connectionId(flow(0)))
      })
    })

    describe('when the policy is weighted', () => {
      it('should give targets flows in proportion to their weights', () => {
        const table = new ConnectionTable(
          '10.0.0.100',
          [
            { node: 't1', weight: 3 },
            { node: 't2', weight: 1 }
          ],
          'weighted'
        )
        expect(spread(table, 400)).to.deep.equal({ t1: 300, t2: 100 })
      })
    })

    describe('when the policy is source-hash', () => {
      it('should keep each source address on one target, spread addresses, and move only a failed target’s', () => {
        const targets = [{ node: 't1' }, { node: 't2' }, { node: 't3' }]
        const table = new ConnectionTable('10.0.0.100', targets, 'source-hash')
        const from = (a: number, port: number): FiveTuple => ({
          ...flow(port),
          sourceAddress: `172.16.2.${a}`
        })
        const first = new Map<number, string>()
        for (let a = 1; a <= 60; a++) {
          for (let port = 0; port < 3; port++) {
            const t = table.route(from(a, port), 0, null, 'dp-1')!.connection.target
            if (port === 0) first.set(a, t)
            else expect(t, `address ${a}`).to.equal(first.get(a))
          }
        }
        const per = [...first.values()].reduce<Record<string, number>>(
          (m, t) => ({ ...m, [t]: (m[t] ?? 0) + 1 }),
          {}
        )
        expect(Object.keys(per).sort()).to.deep.equal(['t1', 't2', 't3'])
        table.setHealth('t2', false)
        for (let a = 1; a <= 60; a++) {
          const t = table.route(from(a, 9), 0, null, 'dp-1')!.connection.target
          if (first.get(a) === 't2') expect(t).to.not.equal('t2')
          else expect(t, `address ${a} stays`).to.equal(first.get(a))
        }
      })
    })

    describe('when the policy is least-connections', () => {
      it('should give a new flow to the target with the fewest', () => {
        const table = new ConnectionTable(
          '10.0.0.100',
          [{ node: 't1' }, { node: 't2' }],
          'least-connections'
        )
        for (let i = 0; i < 4; i++) table.route(flow(i), 0, null, 'dp-1')
        for (const c of table.all().filter((c) => c.target === 't1')) table.remove(c.flow)
        expect(table.loads()).to.deep.equal({ t1: 0, t2: 2 })
        expect(table.route(flow(10), 0, null, 'dp-1')!.connection.target).to.equal('t1')
        expect(table.route(flow(11), 0, null, 'dp-1')!.connection.target).to.equal('t1')
      })
    })

    describe('when a target is unhealthy', () => {
      it('should give it no new flows and move its flows on their next packet', () => {
        const table = new ConnectionTable('10.0.0.100', [{ node: 't1' }, { node: 't2' }])
        const onT1 = table.route(flow(0), 0, null, 'dp-1')!.connection
        expect(onT1.target).to.equal('t1')
        table.setHealth('t1', false)
        expect(spread(table, 10, 100)).to.deep.equal({ t2: 10 })
        const moved = table.route(flow(0), 5, null, 'dp-1')!
        expect(moved.created).to.equal(true)
        expect(moved.connection.target).to.equal('t2')
        expect(table.size).to.equal(11)
      })

      it('should route nothing when no target is healthy', () => {
        const table = new ConnectionTable('10.0.0.100', [{ node: 't1' }])
        table.setHealth('t1', false)
        expect(table.route(flow(0), 0, null, 'dp-1')).to.equal(undefined)
      })
    })

    describe('when the same flow object comes again', () => {
      it('should keep the key of a frozen flow, and read a mutable one anew each time', () => {
        const table = new ConnectionTable('10.0.0.100', [{ node: 't1' }, { node: 't2' }])
        const frozen = Object.freeze(flow(1))
        expect(table.route(frozen, 0, null, 'dp-1')!.created).to.equal(true)
        expect(table.route(frozen, 0, null, 'dp-1')!.created).to.equal(false)
        const mutable = flow(2)
        expect(table.route(mutable, 0, null, 'dp-1')!.created).to.equal(true)
        mutable.sourcePort = 20000
        const moved = table.route(mutable, 0, null, 'dp-1')!
        expect(moved.created).to.equal(true)
        expect(moved.connection.id).to.equal(connectionId(flow(10000)))
        // the frozen flow still finds its own connection after the others
        const again = table.route(frozen, 0, null, 'dp-1')!
        expect(again.created).to.equal(false)
        expect(again.connection.id).to.equal(connectionId(flow(1)))
        expect(table.size).to.equal(3)
      })
    })

    describe('when the target is the owner itself', () => {
      it('should mark the connection not distributed', () => {
        const table = new ConnectionTable('10.0.0.100', [{ node: 'dp-1' }])
        expect(table.route(flow(0), 0, null, 'dp-1')!.connection.distributed).to.equal(false)
      })
    })
  })

  describe('.add', () => {
    it('should take connections read from the store and keep the loads right when one is replaced', () => {
      const table = new ConnectionTable('10.0.0.100', [{ node: 't1' }, { node: 't2' }])
      const c = table.route(flow(0), 0, null, 'dp-1')!.connection
      table.add({ ...c, target: 't2' })
      expect(table.size).to.equal(1)
      expect(table.loads()).to.deep.equal({ t1: 0, t2: 1 })
      expect(table.get(flow(0))!.target).to.equal('t2')
    })
  })

  describe('constructor', () => {
    it('should refuse a weight that is not positive, naming it', () => {
      expect(() => new ConnectionTable('10.0.0.100', [{ node: 't1', weight: 0 }], 'weighted'))
        .to.throw()
        .with.property('argument', 'targets[0].weight')
    })
  })
})

describe('ConnectionTable idle expiry', () => {
  describe('.expireIdle', () => {
    it('should remove the flows not seen since the cut-off and keep the others', () => {
      const table = new ConnectionTable('10.0.0.100', [{ node: 't1' }])
      table.route(flow(1), 0, null, 'dp-1', 100)
      table.route(flow(2), 0, null, 'dp-1', 100)
      table.route(flow(2), 0, null, 'dp-1', 900)
      const removed = table.expireIdle(500)
      expect(removed.map((c) => c.flow.sourcePort)).to.deep.equal([10001])
      expect(table.size).to.equal(1)
      expect(table.loads()).to.deep.equal({ t1: 1 })
    })
  })
})
