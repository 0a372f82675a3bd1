import { InvalidConfigError } from '@vipsec/interface'
import {
  BUILT_IN_TYPES,
  NODE_ROLES,
  ROLE_REQUIREMENTS,
  type ComponentSpec,
  type NodeComponents,
  type NodeConfig
} from './config.js'

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function checkComponent(value: unknown, field: string): void {
  if (!isObject(value))
    throw new InvalidConfigError(field, 'expected { type }, { instance } or { factory }')
  const spec = value as ComponentSpec<unknown>
  if ('instance' in spec) {
    if (spec.instance == null) throw new InvalidConfigError(`${field}.instance`, 'must not be null')
  } else if ('factory' in spec) {
    if (typeof spec.factory !== 'function')
      throw new InvalidConfigError(`${field}.factory`, 'expected a function')
  } else {
    throw new InvalidConfigError(field, 'expected { type }, { instance } or { factory }')
  }
}

function checkChoice(
  value: unknown,
  field: string,
  types: readonly string[],
  extra: (v: Record<string, unknown>) => void
): void {
  if (value === undefined) return
  if (!isObject(value)) throw new InvalidConfigError(field, 'expected an object with a type')
  if (!types.includes(value.type as string)) {
    throw new InvalidConfigError(
      `${field}.type`,
      `expected one of ${types.map((t) => `'${t}'`).join(', ')}`
    )
  }
  extra(value)
}

/**
 * Checks a node configuration and throws an error that names the first bad field.
 *
 * @param config - what the integrator passed (possibly parsed from a file)
 * @throws InvalidConfigError with `field` set to the dotted path of the bad field
 */
export function validateNodeConfig(config: unknown): asserts config is NodeConfig {
  if (!isObject(config)) throw new InvalidConfigError('config', 'expected an object')
  if (!NODE_ROLES.includes(config.role as never)) {
    throw new InvalidConfigError(
      'role',
      `expected one of ${NODE_ROLES.map((r) => `'${r}'`).join(', ')}`
    )
  }
  if (typeof config.nodeId !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(config.nodeId)) {
    throw new InvalidConfigError('nodeId', 'expected 1 to 64 letters, digits, ".", "_" or "-"')
  }
  checkChoice(config.store, 'store', ['memory', 'redis', 'etcd', 'custom'], (v) => {
    if (v.type === 'custom') checkComponent(v.component, 'store.component')
  })
  checkChoice(config.clock, 'clock', ['system', 'custom'], (v) => {
    if (v.type === 'custom') checkComponent(v.component, 'clock.component')
  })
  checkChoice(config.random, 'random', ['crypto', 'seeded', 'custom'], (v) => {
    if (v.type === 'seeded' && (typeof v.seed !== 'string' || v.seed.length === 0)) {
      throw new InvalidConfigError('random.seed', 'expected a non-empty string')
    }
    if (v.type === 'custom') checkComponent(v.component, 'random.component')
  })
  const components = config.components ?? {}
  if (!isObject(components)) throw new InvalidConfigError('components', 'expected an object')
  for (const [key, value] of Object.entries(components)) {
    if (value === undefined) continue
    const field = `components.${key}`
    if (!(key in BUILT_IN_TYPES)) throw new InvalidConfigError(field, 'not a part a node has')
    if (isObject(value) && 'type' in value) {
      const expected = BUILT_IN_TYPES[key as keyof NodeComponents]
      if (!expected.includes(value.type as string)) {
        throw new InvalidConfigError(
          `${field}.type`,
          `expected ${expected.map((t) => `'${t}'`).join(' or ')}`
        )
      }
      if (key === 'networkAdapter') {
        if (!isObject(value.network)) {
          throw new InvalidConfigError(`${field}.network`, 'expected a VirtualNetwork')
        }
        if (!Array.isArray(value.addresses)) {
          throw new InvalidConfigError(`${field}.addresses`, 'expected a list of addresses')
        }
      } else if (!['espEngine', 'targetStack'].includes(key) && !isObject(value.init)) {
        throw new InvalidConfigError(`${field}.init`, 'expected an object')
      }
      continue
    }
    checkComponent(value, field)
  }
  for (const key of ROLE_REQUIREMENTS[config.role as NodeConfig['role']]) {
    if (components[key] === undefined) {
      throw new InvalidConfigError(
        `components.${key}`,
        `required for the ${String(config.role)} role`
      )
    }
  }
}
