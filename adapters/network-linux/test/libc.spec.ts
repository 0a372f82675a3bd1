import { execFile } from 'node:child_process'
import { constants } from 'node:os'
import { promisify } from 'node:util'
import { expect } from 'chai'
import { Errno, NetlinkErrno } from '../src/index.js'
import { ifindex, libc, type Libc } from '../src/libc.js'

describe('libc', () => {
  describe('Errno and NetlinkErrno', () => {
    it("should be this system's errno values", () => {
      for (const table of [Errno, NetlinkErrno]) {
        for (const [name, value] of Object.entries(table)) {
          expect(value, name).to.equal(constants.errno[name as keyof typeof constants.errno])
        }
      }
    })
  })

  describe('ifindex', () => {
    it('should be the index of a device that exists', () => {
      const c = libc()
      if (c === undefined) throw new Error('koffi cannot load libc here')
      expect(ifindex(c, 'lo')).to.equal(1)
    })

    it('should be -ENODEV for a device that does not exist', () => {
      const c = libc()
      if (c === undefined) throw new Error('koffi cannot load libc here')
      expect(ifindex(c, 'vsnosuchdev0')).to.equal(-NetlinkErrno.ENODEV)
    })

    it('should be -ENODEV when libc found no device but left errno 0', () => {
      const c = { nametoindex: () => 0, koffi: { errno: () => 0 } } as unknown as Libc
      expect(ifindex(c, 'eth9')).to.equal(-NetlinkErrno.ENODEV)
    })
  })

  describe('when koffi cannot load', () => {
    it('should bind nothing, and leave the route, packet and UDP sockets to their fallbacks', async () => {
      const child = new URL('./helpers/without-koffi-child.ts', import.meta.url).pathname
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', '--conditions=vipsec-source', child],
        { timeout: 15_000 }
      )
      expect(JSON.parse(stdout)).to.deep.equal({
        libc: 'none',
        mmsg: 'none',
        netlink: 'none',
        arp: 'none',
        udp: 'dgram'
      })
    })
  })
})
