import { expect } from 'chai'
import { Subject } from 'rxjs'
import {
  KernelDelivery,
  decodeIfreqName,
  encodeIfreq,
  type PacketDevice,
  type TunDeviceInit
} from '../src/index.js'

/** A device that records writes and lets the test emit packets. */
class FakeDevice implements PacketDevice {
  readonly written: Uint8Array[] = []
  readonly incoming = new Subject<Uint8Array>()
  closed = false
  constructor(readonly name: string) {}
  get packets$() {
    return this.incoming.asObservable()
  }
  write(packet: Uint8Array): boolean {
    this.written.push(packet)
    return true
  }
  async close(): Promise<void> {
    this.closed = true
    this.incoming.complete()
  }
  counters() {
    return {
      received: 0,
      sent: this.written.length,
      writeErrors: 0,
      readErrors: 0,
      writes: this.written.length,
      coalesced: 0,
      unsupported: 0
    }
  }
}

function setup(
  init: Partial<ConstructorParameters<typeof KernelDelivery>[1]> = {},
  failOn?: string
) {
  const commands: string[] = []
  let device: FakeDevice | undefined
  let opened: TunDeviceInit | undefined
  const delivery = new KernelDelivery(
    {
      ip: async (args) => {
        commands.push(args.join(' '))
        if (failOn !== undefined && args.join(' ').includes(failOn)) throw new Error('refused')
      },
      openDevice: (i) => {
        opened = i
        device = new FakeDevice(i.name ?? 'x')
        return device
      }
    },
    { addresses: ['10.77.0.10'], ...init }
  )
  return { delivery, commands, device: () => device!, opened: () => opened }
}

describe('KernelDelivery', () => {
  describe('.start', () => {
    it('should put the addresses on the device and route what they send back into it', async () => {
      const { delivery, commands } = setup({ addresses: ['10.77.0.10', 'fd00::10'], mtu: 1380 })
      await delivery.start()
      expect(commands).to.deep.equal([
        'link set dev vipsec0 mtu 1380 up',
        'addr add 10.77.0.10/32 dev vipsec0',
        'addr add fd00::10/128 dev vipsec0 nodad',
        '-4 route replace 0.0.0.0/0 dev vipsec0 table 7700',
        '-4 route replace 0.0.0.0/0 dev vipsec0 src 10.77.0.10 metric 7700',
        '-6 route replace ::/0 dev vipsec0 table 7700',
        '-6 route replace ::/0 dev vipsec0 src fd00::10 metric 7700',
        '-4 rule add from 10.77.0.10 lookup 7700 priority 7700',
        '-6 rule add from fd00::10 lookup 7700 priority 7700'
      ])
      expect(delivery.isStarted()).to.equal(true)
    })

    it('should undo what it did and close the device when a command fails', async () => {
      const { delivery, commands, device } = setup({}, 'route')
      let error: Error | undefined
      await delivery.start().catch((err: Error) => (error = err))
      expect(error?.message).to.equal('refused')
      expect(device().closed).to.equal(true)
      expect(delivery.isStarted()).to.equal(false)
      expect(commands.filter((c) => c.includes('rule'))).to.deep.equal([])
    })
  })

  describe('.stop', () => {
    it('should delete its rules and close the device, completing packets$', async () => {
      const { delivery, commands, device } = setup({ table: 10, rulePriority: 20 })
      await delivery.start()
      let completed = false
      delivery.packets$.subscribe({ complete: () => (completed = true) })
      commands.length = 0
      await delivery.stop()
      expect(commands).to.deep.equal(['-4 rule del from 10.77.0.10 lookup 10 priority 20'])
      expect(device().closed).to.equal(true)
      expect(completed).to.equal(true)
      await delivery.stop()
      expect(commands).to.have.length(1)
    })
  })

  describe('.deliver and .packets$', () => {
    it('should write delivered packets to the device and pass on what it reads', async () => {
      const { delivery, device } = setup()
      await delivery.start()
      const seen: Uint8Array[] = []
      delivery.packets$.subscribe((p) => seen.push(p))
      delivery.deliver(Uint8Array.of(0x45, 1))
      device().incoming.next(Uint8Array.of(0x45, 2))
      expect(device().written).to.deep.equal([Uint8Array.of(0x45, 1)])
      expect(seen).to.deep.equal([Uint8Array.of(0x45, 2)])
    })

    it('should count packets delivered while stopped as dropped', () => {
      const { delivery } = setup()
      delivery.deliver(Uint8Array.of(0x45))
      expect(delivery.counters().dropped).to.equal(1)
    })
  })

  describe('constructor', () => {
    it('should refuse an empty address list, a prefix and a bad MTU', () => {
      expect(() => setup({ addresses: [] })).to.throw('addresses')
      expect(() => setup({ addresses: ['10.0.0.1/24'] })).to.throw('addresses[0]')
      expect(() => setup({ mtu: 100 })).to.throw('mtu')
    })
  })
})

describe('encodeIfreq', () => {
  it('should lay out the name and IFF_TUN | IFF_NO_PI in a 40-byte ifreq', () => {
    const ifr = encodeIfreq('vipsec0')
    expect(ifr.length).to.equal(40)
    expect(decodeIfreqName(ifr)).to.equal('vipsec0')
    expect(ifr.readUInt16LE(16)).to.equal(0x1001)
  })

  it('should refuse names the kernel would not take', () => {
    expect(() => encodeIfreq('')).to.throw('name')
    expect(() => encodeIfreq('a'.repeat(16))).to.throw('name')
    expect(() => encodeIfreq('a/b')).to.throw('name')
  })
})
