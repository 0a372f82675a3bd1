/**
 * Reads an existing `swanctl.conf`: its `connections { }` become the cluster file's
 * `connections` (the cluster file's `swanctl: FILE`), its `secrets { ike-NAME { } }` the secrets
 * file's `ike` PSKs (the secrets file's `swanctl: FILE`). Keys map one to one where vipsec has
 * them (`proposals`, `local_addrs`, `rekey_time`, `local { auth id certs cacerts }`, `children {
 * local_ts remote_ts esp_proposals mode rekey_time ... }`); keys that do not change what a
 * responder on a DVIPA accepts are ignored ({@link IGNORED_KEYS}); anything else is an error
 * that names the line.
 *
 * @module
 */
import { didYouMean } from '@vipsec/container'

/** `not supported by vipsec`, with the nearest key it knows. */
function unsupported(key: string, known: ReadonlySet<string>): string {
  const near = didYouMean(key, [...known])
  return `not supported by vipsec${near === undefined ? '' : `; did you mean '${near}'?`}`
}

/** A problem in a swanctl.conf, with its line (1-based; 0 for the whole file). */
export class SwanctlConfError extends Error {
  /** The error's name. */
  override readonly name = 'SwanctlConfError'

  /**
   * @param line - the line
   * @param message - what is wrong
   */
  constructor(
    readonly line: number,
    message: string
  ) {
    super(message)
  }
}

/** A section of the file: values and subsections by name. */
export interface SwanctlSection {
  [key: string]: string | SwanctlSection
}

/** A parsed file: its sections, and the line of every key and section by dotted path. */
export interface ParsedSwanctl {
  /** The top level. */
  root: SwanctlSection
  /** `connections.NAME.children.CHILD.esp_proposals` -> line. */
  lines: Map<string, number>
}

/**
 * Parses strongSwan's settings syntax as swanctl.conf uses it: `name { ... }` sections,
 * `key = value` pairs (a value may be quoted), `#` comments.
 *
 * @param text - the file's text
 * @throws SwanctlConfError naming the line of a syntax error, an `include`, or a repeated key
 */
export function parseSwanctlConf(text: string): ParsedSwanctl {
  const root: SwanctlSection = {}
  const lines = new Map<string, number>()
  const stack: { section: SwanctlSection; path: string[] }[] = [{ section: root, path: [] }]
  text.split(/\r?\n/).forEach((raw, i) => {
    const n = i + 1
    const line = stripComment(raw).trim()
    if (line === '') return
    const top = stack.at(-1)!
    const at = (key: string): string => [...top.path, key].join('.')
    let m: RegExpExecArray | null
    if ((m = /^([A-Za-z0-9_.-]+)\s*\{\s*(\})?$/.exec(line)) !== null) {
      const name = m[1]!
      if (name in top.section) throw new SwanctlConfError(n, `'${at(name)}' is defined twice`)
      const section: SwanctlSection = {}
      top.section[name] = section
      lines.set(at(name), n)
      if (m[2] === undefined) stack.push({ section, path: [...top.path, name] })
    } else if (line === '}') {
      if (stack.length === 1) throw new SwanctlConfError(n, "a '}' without its section")
      stack.pop()
    } else if ((m = /^([A-Za-z0-9_.-]+)\s*=\s*(.*)$/.exec(line)) !== null) {
      const key = m[1]!
      if (key in top.section) throw new SwanctlConfError(n, `'${at(key)}' is set twice`)
      let value = m[2]!.trim()
      if (value.startsWith('"')) {
        if (!value.endsWith('"') || value.length < 2)
          throw new SwanctlConfError(n, 'a quoted value must end on its line')
        value = value.slice(1, -1).replace(/\\(.)/g, '$1')
      }
      top.section[key] = value
      lines.set(at(key), n)
    } else if (/^include\s/.test(line)) {
      throw new SwanctlConfError(n, 'include is not supported: put the connections in this file')
    } else {
      throw new SwanctlConfError(n, `expected 'name {', '}' or 'key = value', got '${line}'`)
    }
  })
  if (stack.length > 1)
    throw new SwanctlConfError(
      lines.get(stack.at(-1)!.path.join('.')) ?? 0,
      `section '${stack.at(-1)!.path.join('.')}' is not closed`
    )
  return { root, lines }
}

function stripComment(line: string): string {
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"' && line[i - 1] !== '\\') quoted = !quoted
    if (line[i] === '#' && !quoted) return line.slice(0, i)
  }
  return line
}

/**
 * swanctl.conf keys that do not change what vipsec accepts as a responder on a DVIPA, and are
 * ignored: the peer's addresses and ports (any peer may connect), NAT-T and MOBIKE switches
 * (always on), retry and start/close actions (vipsec answers and renegotiates on takeover).
 */
export const IGNORED_KEYS: ReadonlySet<string> = new Set([
  'remote_addrs',
  'local_port',
  'remote_port',
  'encap',
  'mobike',
  'send_cert',
  'send_certreq',
  'unique',
  'keyingtries',
  'rand_time',
  'over_time',
  'start_action',
  'close_action',
  'dpd_action',
  'updown',
  'hostaccess',
  'policies',
  'inactivity',
  'replay_window'
])

const CONNECTION_KEYS = new Set([
  'local_addrs',
  'proposals',
  'fragmentation',
  'rekey_time',
  'reauth_time',
  'dpd_delay',
  'dpd_timeout',
  'version'
])
const AUTH_KEYS = new Set(['auth', 'id', 'certs', 'cacerts'])
const CHILD_KEYS = new Set([
  'local_ts',
  'remote_ts',
  'esp_proposals',
  'mode',
  'rekey_time',
  'life_time',
  'rekey_bytes',
  'life_bytes',
  'rekey_packets',
  'life_packets'
])
const LIST_KEYS = new Set(['local_ts', 'remote_ts'])

/** The cluster-file connections of a parsed swanctl.conf, with the line of each path. */
export interface SwanctlConnections {
  /** In the cluster file's form (YAML values before its schema). */
  connections: Record<string, unknown>
  /** Cluster-file path (`connections.NAME...`) -> line. */
  lines: Map<string, number>
}

const value = (v: string | SwanctlSection | undefined): string | undefined =>
  typeof v === 'string' ? v : undefined

/**
 * Maps the `connections { }` of a swanctl.conf onto the cluster file's `connections`.
 *
 * @param parsed - from {@link parseSwanctlConf}
 * @throws SwanctlConfError naming the line of a key vipsec cannot honour
 */
export function swanctlConnections(parsed: ParsedSwanctl): SwanctlConnections {
  const { root, lines } = parsed
  const out: Record<string, unknown> = {}
  const outLines = new Map<string, number>()
  const conns = root.connections
  if (conns === undefined) return { connections: out, lines: outLines }
  if (typeof conns === 'string')
    throw new SwanctlConfError(lines.get('connections') ?? 0, 'connections is a section')
  const line = (path: string): number => lines.get(path) ?? 0
  const fail = (path: string, message: string): never => {
    throw new SwanctlConfError(line(path), `${path}: ${message}`)
  }
  for (const [name, conn] of Object.entries(conns)) {
    const cpath = `connections.${name}`
    if (typeof conn === 'string') fail(cpath, 'expected a connection section')
    const c: Record<string, unknown> = {}
    outLines.set(cpath, line(cpath))
    for (const [key, v] of Object.entries(conn as SwanctlSection)) {
      const path = `${cpath}.${key}`
      const target = key.replace(/-.*$/, '')
      if (IGNORED_KEYS.has(key)) continue
      if (key === 'version') {
        if (value(v) !== '2' && value(v) !== '0')
          fail(path, 'vipsec speaks IKEv2 only (version = 2)')
        continue
      }
      if (target === 'local' || target === 'remote') {
        if (typeof v === 'string') fail(path, 'expected a section')
        if (target in c) fail(path, `one ${target} section only (vipsec has one auth round)`)
        const auth: Record<string, string> = {}
        for (const [k, x] of Object.entries(v as SwanctlSection)) {
          const p = `${path}.${k}`
          if (!AUTH_KEYS.has(k))
            fail(p, `not supported by vipsec (it knows ${[...AUTH_KEYS].join(', ')})`)
          if (typeof x !== 'string') fail(p, 'expected a value')
          auth[k] = x as string
          outLines.set(`${cpath}.${target}.${k}`, line(p))
        }
        c[target] = auth
        outLines.set(`${cpath}.${target}`, line(path))
        continue
      }
      if (key === 'children') {
        if (typeof v === 'string') fail(path, 'expected a section')
        const children: Record<string, unknown> = {}
        for (const [child, cv] of Object.entries(v as SwanctlSection)) {
          const chpath = `${path}.${child}`
          if (typeof cv === 'string') fail(chpath, 'expected a child section')
          const ch: Record<string, unknown> = {}
          for (const [k, x] of Object.entries(cv as SwanctlSection)) {
            const p = `${chpath}.${k}`
            if (IGNORED_KEYS.has(k)) continue
            if (!CHILD_KEYS.has(k)) fail(p, unsupported(k, CHILD_KEYS))
            if (typeof x !== 'string') fail(p, 'expected a value')
            ch[k] = LIST_KEYS.has(k)
              ? (x as string)
                  .split(',')
                  .map((s) => s.trim())
                  .filter((s) => s !== '')
              : x
            outLines.set(p, line(p))
          }
          children[child] = ch
          outLines.set(chpath, line(chpath))
        }
        c.children = children
        outLines.set(path, line(path))
        continue
      }
      if (!CONNECTION_KEYS.has(key)) fail(path, unsupported(key, CONNECTION_KEYS))
      if (typeof v !== 'string') fail(path, 'expected a value')
      if (key === 'local_addrs' && (v as string).includes(','))
        fail(path, 'one address: the DVIPA this connection terminates on')
      c[key] = v
      outLines.set(path, line(path))
    }
    out[name] = c
  }
  return { connections: out, lines: outLines }
}

/** One PSK read from a swanctl.conf. */
export interface SwanctlPsk {
  /** Every identity of the entry (`id`, `id-1`, `id-x`). */
  id: string[]
  /** The key. */
  secret: string
}

/** The secrets-file PSKs of a parsed swanctl.conf, with the line of each. */
export interface SwanctlSecrets {
  /** In the secrets file's `ike` form (before its schema). */
  ike: Record<string, SwanctlPsk>
  /** `ike.NAME` -> line. */
  lines: Map<string, number>
}

/**
 * Maps the `secrets { ike-NAME { id = ..., secret = ... } }` of a swanctl.conf onto the secrets
 * file's `ike` PSKs (every `id`, `id-1`, `id-x` of an entry).
 *
 * @param parsed - from {@link parseSwanctlConf}
 * @throws SwanctlConfError naming the line of a secret vipsec cannot use
 */
export function swanctlSecrets(parsed: ParsedSwanctl): SwanctlSecrets {
  const { root, lines } = parsed
  const ike: SwanctlSecrets['ike'] = {}
  const out = new Map<string, number>()
  const secrets = root.secrets
  if (secrets === undefined || typeof secrets === 'string') return { ike, lines: out }
  for (const [name, entry] of Object.entries(secrets)) {
    const path = `secrets.${name}`
    const n = lines.get(path) ?? 0
    if (!/^ike(-|$)/.test(name))
      throw new SwanctlConfError(
        n,
        `${path}: only ike secrets (PSKs) are read; give keys in the secrets file`
      )
    if (typeof entry === 'string') throw new SwanctlConfError(n, `${path}: expected a section`)
    const ids: string[] = []
    let secret: string | undefined
    for (const [k, v] of Object.entries(entry)) {
      const at = lines.get(`${path}.${k}`) ?? n
      if (typeof v !== 'string') throw new SwanctlConfError(at, `${path}.${k}: expected a value`)
      if (/^id(-|$)/.test(k)) ids.push(v)
      else if (k === 'secret') {
        if (/^0[xs]/i.test(v))
          throw new SwanctlConfError(
            at,
            `${path}.secret: write the key as a (quoted) string, not 0x or 0s`
          )
        secret = v
      } else throw new SwanctlConfError(at, `${path}.${k}: not supported (id, id-*, secret)`)
    }
    if (secret === undefined) throw new SwanctlConfError(n, `${path}: no secret`)
    if (ids.length === 0) throw new SwanctlConfError(n, `${path}: no id (it would match any peer)`)
    const key = name === 'ike' ? 'ike' : name.slice(4)
    ike[key] = { id: ids, secret }
    out.set(`ike.${key}`, n)
  }
  return { ike, lines: out }
}
