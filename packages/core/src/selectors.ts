import type { Phase2Record, TrafficSelector } from '@vipsec/interface'
import { formatIp, tryParseIp } from '@vipsec/wire'

/** An address in one spelling (`::1` and `0:0::1` alike); the text itself when it does not parse. */
function canonical(address: string): string {
  const bytes = tryParseIp(address)
  return bytes === undefined ? address : formatIp(bytes)
}

/**
 * Whether two traffic selectors cover the same traffic: the same address range (however the
 * addresses are written), protocol and port range.
 *
 * @param a - one selector
 * @param b - the other
 */
export function sameTrafficSelector(a: TrafficSelector, b: TrafficSelector): boolean {
  return (
    a.protocol === b.protocol &&
    a.startPort === b.startPort &&
    a.endPort === b.endPort &&
    canonical(a.startAddress) === canonical(b.startAddress) &&
    canonical(a.endAddress) === canonical(b.endAddress)
  )
}

/**
 * Whether two lists of traffic selectors cover the same traffic as sets: each selector of one
 * is in the other, in any order, repeated or not.
 *
 * @param a - one list
 * @param b - the other
 */
export function sameSelectorSet(
  a: readonly TrafficSelector[],
  b: readonly TrafficSelector[]
): boolean {
  return (
    a.every((x) => b.some((y) => sameTrafficSelector(x, y))) &&
    b.every((y) => a.some((x) => sameTrafficSelector(x, y)))
  )
}

/**
 * Whether two Child SAs carry the same traffic: the same selectors on this side and the peer's.
 *
 * @param a - one Child SA's selectors
 * @param b - the other's
 */
export function sameChildSelectors(
  a: Phase2Record['selectors'],
  b: Phase2Record['selectors']
): boolean {
  return sameSelectorSet(a.local, b.local) && sameSelectorSet(a.remote, b.remote)
}
