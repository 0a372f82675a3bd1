import { parseArgs } from 'node:util'
import { runDemo, type DemoOptions } from './demo.js'
import type { LogLevel } from './log.js'
import { startNode } from './node-command.js'
import { formatStatus, readStatus } from './status-command.js'
import { writeKeyFile } from './keygen-command.js'

const USAGE = `usage: vipsec <command> [options]

commands:
  demo      run a simulated cluster, kill its owner and show the takeover
            --peers N          IPsec peers (default 6)
            --failure KIND     crash | partition | none (default crash)
            --before MS        virtual ms before the failure (default 3000)
            --after MS         virtual ms after it (default 4000)
            --speed X          virtual time per real time, 0 = as fast as possible (default 1)
            --seed S           simulation seed (default demo)
            --report FILE      write the takeover timeline as an HTML page
  node      run a node from its configuration file until SIGTERM or SIGINT
            --config FILE      the node file (JSON; see the docs)
            --log LEVEL        error | warn | info | debug (default info)
  status    print owners, epochs, SAs and connections from a Redis or etcd coupling store
            --redis URL        the store (default redis://127.0.0.1:6379)
            --etcd URL,...     an etcd store instead: its members' client URLs
            --prefix P         the cluster's key prefix (default vipsec: or vipsec/)
            --dvipa A          a DVIPA to show (repeat for more)
            --json             one JSON line instead of a table
  keygen    write a new cluster key file (mode 0600) for the node files' clusterKeys
            --out FILE         the key file (required; never overwritten without --force)
            --id N             the key id (default random)
            --force            replace an existing file
  help      print this
`

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
 */
export async function main(
  argv: string[],
  print: (line: string) => void = (l) => console.log(l)
): Promise<number> {
  const [command, ...rest] = argv
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
        const level = (values.log ?? 'info') as LogLevel
        if (!['error', 'warn', 'info', 'debug'].includes(level))
          throw new Error(`--log: unknown level ${level}`)
        const running = await startNode(values.config, { level })
        await new Promise<void>((resolve) => {
          process.once('SIGTERM', resolve)
          process.once('SIGINT', resolve)
        })
        await running.stop()
        return 0
      }
      case 'status': {
        const { values } = parseArgs({
          args: rest,
          options: {
            redis: { type: 'string' },
            etcd: { type: 'string' },
            prefix: { type: 'string' },
            dvipa: { type: 'string', multiple: true },
            json: { type: 'boolean' }
          },
          strict: true
        })
        if (values.dvipa === undefined || values.dvipa.length === 0)
          throw new Error('--dvipa is required')
        const prefix = values.prefix === undefined ? {} : { keyPrefix: values.prefix }
        const reports = await readStatus(
          values.etcd !== undefined
            ? { etcd: { hosts: values.etcd.split(','), ...prefix } }
            : { url: values.redis ?? 'redis://127.0.0.1:6379', ...prefix },
          values.dvipa
        )
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
