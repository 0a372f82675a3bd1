/**
 * The pure protocol layer, for tests and tools: the message codec, the crypto functions and the
 * IKEv2 numbers.
 *
 * @module
 */
export * from './constants.js'
export * from './message.js'
export * from './crypto.js'
export {
  ipToBytes,
  bytesToIp,
  narrow,
  intersect,
  toWireSelector,
  fromWireSelector
} from './selectors.js'
export { encodeDn, decodeDn } from './dn.js'
