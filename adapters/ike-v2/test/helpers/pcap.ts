/** A pcap writer for tshark checks: raw IPv4/IPv6 packets (LINKTYPE_RAW), microsecond stamps. */
export function pcapOf(packets: Uint8Array[]): Uint8Array {
  const size = 24 + packets.reduce((n, p) => n + 16 + p.length, 0)
  const out = new Uint8Array(size)
  const v = new DataView(out.buffer)
  v.setUint32(0, 0xa1b2c3d4, true)
  v.setUint16(4, 2, true)
  v.setUint16(6, 4, true)
  v.setUint32(16, 262144, true)
  v.setUint32(20, 101, true)
  let o = 24
  for (const [i, p] of packets.entries()) {
    v.setUint32(o, 1_800_000_000, true)
    v.setUint32(o + 4, i, true)
    v.setUint32(o + 8, p.length, true)
    v.setUint32(o + 12, p.length, true)
    out.set(p, o + 16)
    o += 16 + p.length
  }
  return out
}
