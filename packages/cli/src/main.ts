import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runCheck } from './check-command.js'
import type { LoadOptions } from './load-config.js'
import { runDemo, type DemoOptions } from './demo.js'
import { runUntilSignalled, startNode } from './node-command.js'
import { runReload, runSwitchover } from './operator-commands.js'
import { writeKeyFile } from './keygen-command.js'
import {
  formatStatus,
  isEmpty,
  prefixOf,
  readStatus,
  statusTarget,
  type StatusSource
} from './status-command.js'

const COMMANDS: Record<string, string> = {
  demo: `vipsec demo [options]: run a simulated cluster, kill its owner and show the takeover
  --peers N          IPsec peers (default 6)
  --failure KIND     crash | partition | none (default crash)
  --before MS        virtual ms before the failure (default 3000)
  --after MS         virtual ms after it (default 4000)
  --speed X          virtual time per real time, 0 = as fast as possible (default 1)
  --seed S           simulation seed (default demo)
  --report FILE      write the takeover timeline as an HTML page`,
  node: `vipsec node --config FILE [options]: run a node until SIGTERM or SIGINT
  --config FILE      the node file (YAML; it names the cluster and secrets files)
  --log LEVEL        error | warn | info | debug (default info)
  SIGHUP reloads the files (as vipsec reload); SIGTERM or SIGINT hands the DVIPAs this node
  owns to the best live backup (a planned switchover), then exits 0`,
  reload: `vipsec reload --config FILE: make the running node of a node file read its files again
(through its admin endpoint, from this host); applies peers, secrets, cluster keys and targets
without a failover, refuses with the reason what needs a restart; exits 1 when refused
  --config FILE      the node file (it names the admin endpoint)`,
  switchover: `vipsec switchover --config FILE --dvipa A [--to NODE]: hand a DVIPA to another DP now, planned
(through the coupling store, with the node file's store credentials)
  --config FILE      a node file of the cluster
  --dvipa A          the DVIPA
  --to NODE          the new owner (default: the best live backup)
  --timeout MS       how long to wait for the new owner (default 15000)`,
  check: `vipsec check --config FILE [options]: check everything a start would, touching neither
store nor network; prints each problem as file: field: message, exits 1 if there is any
  --config FILE      the node file
  --no-host          skip the checks of this host (interface, subnets, the node's address)`,
  status: `vipsec status [options]: owners, epochs, every IKE and Child SA from a Redis or etcd coupling store
  --config FILE      a node file: the store, its password and the DVIPAs from its cluster and secrets
  --redis URL        the store (default redis://127.0.0.1:6379), without --config
  --etcd URL,...     an etcd store instead: its members' client URLs, without --config
  --prefix P         the cluster's key prefix (default vipsec: for Redis, vipsec/ for etcd)
  --dvipa A          a DVIPA to show (repeat for more)
  --json             one JSON line instead of a table`,
  keygen: `vipsec keygen --out FILE [options]: write a new cluster key file (mode 0600) for the node files' cluster_key_files
  --out FILE         the key file (required; never overwritten without --force)
  --id N             the key id (default random)
  --force            replace an existing file`
}

const USAGE = `usage: vipsec <command> [options]   (vipsec <command> --help for its options)

commands:
${Object.entries(COMMANDS)
  .map(([name, text]) => `  ${name.padEnd(11)}${text.split('\n')[0]!.replace(/^[^:]*: /, '')}`)
  .join('\n')}
  help       print this

every command takes --help and --version
`

/** The CLI's version, from its package.json (next to `src/` and to `dist/src/`). */
export function version(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string
        version?: string
      }
      if (pkg.name === '@vipsec/cli') return pkg.version ?? '0.0.0'
    } catch {
      // not there
    }
  }
  return '0.0.0'
}

function number(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isFinite(n))
    throw new Error(`--${name}: expected a number, got ${JSON.stringify(value)}`)
  return n
}

/**
 * Runs the command line with the given arguments and returns the exit code.
 *
 * @param argv - the arguments after the program name
 * @param print - where output goes (default `console.log`)
 * @param host - the host `vipsec check` looks at (default this one's interfaces), for tests
 */
export async function main(
  argv: string[],
  print: (line: string) => void = (l) => console.log(l),
  host: Pick<LoadOptions, 'interfaces'> = {}
): Promise<number> {
  const [command, ...rest] = argv
  if (command === '--version' || command === '-V' || rest.includes('--version')) {
    print(version())
    return 0
  }
  if (
    command !== undefined &&
    command in COMMANDS &&
    (rest.includes('--help') || rest.includes('-h'))
  ) {
    print(COMMANDS[command]!)
    return 0
  }
  try {
    switch (command) {
      case 'demo': {
        const { values } = parseArgs({
          args: rest,
          options: {
            peers: { type: 'string' },
            failure: { type: 'string' },
            before: { type: 'string' },
            after: { type: 'string' },
            speed: { type: 'string' },
            seed: { type: 'string' },
            report: { type: 'string' }
          },
          strict: true
        })
        const options: DemoOptions = { print }
        const peers = number(values.peers, 'peers')
        const before = number(values.before, 'before')
        const after = number(values.after, 'after')
        const speed = number(values.speed, 'speed')
        if (peers !== undefined) options.peers = peers
        if (before !== undefined) options.before = before
        if (after !== undefined) options.after = after
        if (speed !== undefined) options.speed = speed
        if (values.failure !== undefined) options.failure = values.failure as DemoOptions['failure']
        if (values.seed !== undefined) options.seed = values.seed
        if (values.report !== undefined) options.report = values.report
        const summary = await runDemo(options)
        return summary.ok ? 0 : 1
      }
      case 'node': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string' }, log: { type: 'string' } },
          strict: true
        })
        if (values.config === undefined) throw new Error('--config FILE is required')
        const level = (values.log ?? 'info') as 'error' | 'warn' | 'info' | 'debug'
        if (!['error', 'warn', 'info', 'debug'].includes(level))
          throw new Error(`--log: unknown level ${level}`)
        return await runUntilSignalled((signal) => startNode(values.config!, { level, signal }))
      }
      case 'reload': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string' } },
          strict: true
        })
        if (values.config === undefined) throw new Error('--config FILE is required')
        return await runReload(values.config, print)
      }
      case 'switchover': {
        const { values } = parseArgs({
          args: rest,
          options: {
            config: { type: 'string' },
            dvipa: { type: 'string' },
            to: { type: 'string' },
            timeout: { type: 'string' }
          },
          strict: true
        })
        if (values.config === undefined) throw new Error('--config FILE is required')
        if (values.dvipa === undefined) throw new Error('--dvipa A is required')
        const timeoutMs = number(values.timeout, 'timeout')
        return await runSwitchover(
          values.config,
          {
            dvipa: values.dvipa,
            ...(values.to === undefined ? {} : { to: values.to }),
            ...(timeoutMs === undefined ? {} : { timeoutMs })
          },
          print
        )
      }
      case 'check': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string' }, 'no-host': { type: 'boolean' } },
          strict: true
        })
        if (values.config === undefined) throw new Error('--config FILE is required')
        return await runCheck(values.config, print, { ...host, host: values['no-host'] !== true })
      }
      case 'status': {
        const { values } = parseArgs({
          args: rest,
          options: {
            config: { type: 'string' },
            redis: { type: 'string' },
            etcd: { type: 'string' },
            prefix: { type: 'string' },
            dvipa: { type: 'string', multiple: true },
            json: { type: 'boolean' }
          },
          strict: true
        })
        const fromFile = values.config === undefined ? undefined : await statusTarget(values.config)
        if (values.redis !== undefined && values.etcd !== undefined)
          throw new Error('--redis or --etcd, not both')
        let init: StatusSource =
          fromFile?.init ??
          (values.etcd !== undefined
            ? { etcd: { hosts: values.etcd.split(',') } }
            : { url: values.redis ?? 'redis://127.0.0.1:6379' })
        if (values.prefix !== undefined)
          init =
            'etcd' in init
              ? { etcd: { ...init.etcd, keyPrefix: values.prefix } }
              : { ...init, keyPrefix: values.prefix }
        const dvipas = values.dvipa ?? fromFile?.dvipas ?? []
        if (dvipas.length === 0) throw new Error('--dvipa (or --config) is required')
        const reports = await readStatus(init, dvipas)
        if (isEmpty(reports)) {
          const where = fromFile?.where ?? values.etcd ?? values.redis ?? 'redis://127.0.0.1:6379'
          print(
            `vipsec status: nothing under prefix '${prefixOf(init)}' at ${where} for ${dvipas.join(', ')}: no cluster there (a wrong --prefix?)`
          )
          return 1
        }
        if (values.json === true) print(JSON.stringify(reports))
        else for (const line of formatStatus(reports)) print(line)
        return 0
      }
      case 'keygen': {
        const { values } = parseArgs({
          args: rest,
          options: { out: { type: 'string' }, id: { type: 'string' }, force: { type: 'boolean' } },
          strict: true
        })
        if (values.out === undefined) throw new Error('--out FILE is required')
        const id = number(values.id, 'id')
        const key = await writeKeyFile(values.out, {
          ...(id === undefined ? {} : { id }),
          ...(values.force === true ? { force: true } : {})
        })
        print(`wrote cluster key ${key.id} to ${values.out}`)
        return 0
      }
      case undefined:
      case 'help':
      case '-h':
      case '--help':
        print(USAGE)
        return command === undefined ? 2 : 0
      default:
        print(`vipsec: unknown command ${JSON.stringify(command)}\n\n${USAGE}`)
        return 2
    }
  } catch (err) {
    const e = err as Error & { field?: string }
    print(`vipsec ${command}: ${e.name === 'Error' ? '' : `${e.name}: `}${e.message}`)
    return 2
  }
}
