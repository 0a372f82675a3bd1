/**
 * The software ESP engine of vipsec.
 *
 * @packageDocumentation
 */
export {
  SoftwareEspEngine,
  softwareEspEngine,
  ESP_DROP_REASONS,
  type SoftwareEspEngineComponents,
  type SoftwareEspEngineInit
} from './software-esp-engine.js'
export * from './esp-crypto.js'
export * from './replay-window.js'
export * from './spd.js'
export * from './packet.js'
export * from './ip-address.js'
export * from './udp-encapsulation.js'
