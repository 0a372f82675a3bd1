import type { AppHandler } from '@vipsec/interface'

/** A UDP echo application: answers every datagram with its own payload. */
export function udpEcho(): AppHandler {
  return ({ payload }) => [payload.slice()]
}

/**
 * A small request/response application: answers each request with `<name> <n> <request>`, so
 * that a client can tell which target served it and count the answers.
 *
 * @param name - printed in every response (for example the target's node id)
 */
export function requestResponse(name: string): AppHandler {
  let served = 0
  const encoder = new TextEncoder()
  const decoder = new TextDecoder()
  return ({ payload }) => {
    served++
    return [encoder.encode(`${name} ${served} ${decoder.decode(payload)}`)]
  }
}
