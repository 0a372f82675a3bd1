import { parseConfig, throwIssues, type ConfigIssue } from './config-issues.js'
import { nodeConfigSchema, type NodeConfig } from './schema.js'

/**
 * Every problem in a node configuration, each with its dotted path and the expected form; empty
 * when it is valid. The adapters check their own `init` options when the node is built.
 *
 * @param config - what the integrator passed (possibly parsed from a file)
 */
export function nodeConfigIssues(config: unknown): ConfigIssue[] {
  const result = parseConfig(nodeConfigSchema, config)
  return result.ok ? [] : result.issues
}

/**
 * Checks a node configuration and throws an error that names the first bad field.
 *
 * @param config - what the integrator passed (possibly parsed from a file)
 * @throws InvalidConfigError with `field` set to the dotted path of the bad field
 */
export function validateNodeConfig(config: unknown): asserts config is NodeConfig {
  throwIssues(nodeConfigIssues(config))
}
