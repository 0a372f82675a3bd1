/** LINKTYPE_RAW: each record is a bare IPv4 or IPv6 packet. */
export const LINKTYPE_RAW = 101

/**
 * Writes a classic pcap file (microsecond timestamps, little-endian) of raw IP packets.
 *
 * @param packets - the IP packets, in order
 * @param startSeconds - the first packet's timestamp; each next one is 1 ms later
 */
export function writePcap(packets: Uint8Array[], startSeconds = 1_700_000_000): Uint8Array {
  const total = 24 + packets.reduce((n, p) => n + 16 + p.length, 0)
  const out = new Uint8Array(total)
  const view = new DataView(out.buffer)
  view.setUint32(0, 0xa1b2c3d4, true) // magic
  view.setUint16(4, 2, true) // version 2.4
  view.setUint16(6, 4, true)
  view.setUint32(16, 65535, true) // snaplen
  view.setUint32(20, LINKTYPE_RAW, true)
  let at = 24
  packets.forEach((packet, i) => {
    view.setUint32(at, startSeconds + Math.floor(i / 1000), true)
    view.setUint32(at + 4, (i % 1000) * 1000, true)
    view.setUint32(at + 8, packet.length, true)
    view.setUint32(at + 12, packet.length, true)
    out.set(packet, at + 16)
    at += 16 + packet.length
  })
  return out
}
