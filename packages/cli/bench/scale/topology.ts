/**
 * The addresses of `npm run bench:scale` beside the cluster fixture's (scripts/cluster-netns.sh):
 * the peers' outer addresses are in {@link PEER_NET}, routed to the peer namespace's eth0 from
 * every DP and bound there without being configured one by one (a `local` route: Linux accepts and
 * sends from any address of a local route); their inner addresses are in {@link INNER_NET}.
 */

/** The peers' outer (IKE, ESP-in-UDP) addresses: 10.89.0.0/16. */
export const PEER_NET = '10.89.0.0/16'
/** The peers' inner (tunnel) addresses: 172.16.0.0/16. */
export const INNER_NET = '172.16.0.0/16'
/** The service behind the DVIPA (the request-response app of the target). */
export const SERVICE = '10.77.0.10'
/** Its UDP port. */
export const SERVICE_PORT = 7
/** The most peers the address plan holds (250 per /24 of each /16). */
export const MAX_PEERS = 250 * 256

/**
 * The outer and inner address of peer `k` (1-based): 10.89.X.Y and 172.16.X.Y with Y from 1 to
 * 250.
 *
 * @param k - 1 to {@link MAX_PEERS}
 */
export function peerAddresses(k: number): { outer: string; inner: string } {
  const x = Math.floor((k - 1) / 250)
  const y = ((k - 1) % 250) + 1
  return { outer: `10.89.${x}.${y}`, inner: `172.16.${x}.${y}` }
}
