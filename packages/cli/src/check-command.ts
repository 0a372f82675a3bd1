import { createNode, nodeConfigIssues } from '@vipsec/container'
import type { NetworkAdapter } from '@vipsec/interface'
import { EMPTY } from 'rxjs'
import {
  formatIssues,
  loadConfig,
  toNodeConfig,
  type FileIssue,
  type LoadOptions
} from './load-config.js'

/** A network adapter that does nothing: `check` builds the node without touching the network. */
const OFFLINE = {
  events$: EMPTY,
  start: async () => {},
  stop: async () => {},
  isStarted: () => false
} as unknown as NetworkAdapter

/**
 * Checks everything a start would, without touching the store or the network: the node,
 * cluster and secrets files (see `loadConfig`), then builds the node through the container so
 * that every adapter checks its own options.
 *
 * @param path - the node file
 * @param options - what to check of the host
 * @returns every problem found; empty when a start would get past its configuration
 */
export async function checkConfig(path: string, options: LoadOptions = {}): Promise<FileIssue[]> {
  const result = await loadConfig(path, options)
  if (!result.ok) return result.issues
  const config = toNodeConfig(result.config, OFFLINE)
  const issues = nodeConfigIssues(config).map((i) => ({ ...i, file: '(built node)' }))
  if (issues.length > 0) return issues
  try {
    createNode(config)
  } catch (err) {
    const e = err as Error & { field?: string; argument?: string }
    return [{ file: '(built node)', path: e.field ?? e.argument ?? '', message: e.message }]
  }
  return []
}

/**
 * `vipsec check`: prints each problem as `file: field: message` and returns the exit code
 * (0: none, 1: some).
 *
 * @param path - the node file
 * @param print - where lines go
 * @param options - what to check of the host
 */
export async function runCheck(
  path: string,
  print: (line: string) => void,
  options: LoadOptions = {}
): Promise<number> {
  const issues = await checkConfig(path, options)
  for (const line of formatIssues(issues)) print(line)
  if (issues.length === 0) print(`${path}: ok`)
  return issues.length === 0 ? 0 : 1
}
