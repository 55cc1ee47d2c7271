/**
 * What every `decloud` command is, and the small helpers they share.
 *
 * A command is a file `src/cli/commands/<name>.ts` that exports `command`;
 * `main.ts` finds it by name, so adding a command needs no other change.
 */
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { defaultDataDir } from '../node/data-dir.js'
import { secretFrom } from '../payments/chain/secrets.js'
import { BYTE_SECONDS_PER_GIB_MONTH } from '../protocols/opencloud/api/units.js'
import { NAME_PATTERN } from '../util/names.js'
import type { ParseArgsConfig } from 'node:util'

export interface Command {
  /** the word after `decloud`; equal to the file name */
  name: string
  /** one line for `decloud help` */
  summary: string
  /** full help text for `decloud help <name>` and `decloud <name> --help` */
  usage: string
  /** runs the command; resolves with the process exit code */
  run(argv: string[]): Promise<number>
}

/** Exit codes shared by every command (docs/cli.md) */
export const EXIT = {
  OK: 0,
  /** the command failed, or the remote answered with a non-ok status */
  FAILURE: 1,
  /** bad command line */
  USAGE: 2,
  /** no answer: dial failure, timeout, protocol violation */
  TRANSPORT: 3
} as const

/** An error with a message for the user and an exit code; printed without a stack */
export class CliError extends Error {
  static override name = 'CliError'
  override name = 'CliError'
  readonly exitCode: number

  constructor (message: string, exitCode: number = EXIT.FAILURE) {
    super(message)
    this.exitCode = exitCode
  }
}

export class UsageError extends CliError {
  static override name = 'UsageError'
  override name = 'UsageError'

  constructor (message: string) {
    super(message, EXIT.USAGE)
  }
}

export class TransportError extends CliError {
  static override name = 'TransportError'
  override name = 'TransportError'

  constructor (message: string) {
    super(message, EXIT.TRANSPORT)
  }
}

type Options = NonNullable<ParseArgsConfig['options']>

/** A token that reads as a negative number (`-5`, `-1.5`), which parseArgs would take for an option */
const NEGATIVE = /^-[0-9.]/

/**
 * Lets negative numbers through parseArgs so that the command's own checks
 * reject them with their own message (`--max must be…`) instead of
 * parseArgs' "argument is ambiguous": `--opt -5` becomes `--opt=-5`, and a
 * positional `-5` is hidden behind a placeholder and restored afterwards.
 */
function shieldNegatives (argv: string[], options: Options): { args: string[], restore(p: string[]): string[] } {
  const takesValue = (tok: string): string | undefined => {
    if (tok.startsWith('--') && !tok.includes('=')) { return options[tok.slice(2)]?.type === 'string' ? tok : undefined }
    if (/^-[a-zA-Z]$/.test(tok)) {
      const name = Object.keys(options).find(k => options[k].short === tok.slice(1))
      return name != null && options[name].type === 'string' ? `--${name}` : undefined
    }
    return undefined
  }
  const args: string[] = []
  const hidden = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]
    if (tok === '--') {
      args.push(...argv.slice(i))
      break
    }
    const next = argv[i + 1]
    const long = takesValue(tok)
    if (long != null && next != null && NEGATIVE.test(next)) {
      args.push(`${long}=${next}`)
      i++
      continue
    }
    if (NEGATIVE.test(tok)) {
      const key = `\u0000negative${hidden.size}`
      hidden.set(key, tok)
      args.push(key)
      continue
    }
    args.push(tok)
  }
  return { args, restore: (p) => p.map(x => hidden.get(x) ?? x) }
}

/** `parseArgs` with positionals allowed and its errors turned into UsageError */
export function parse<O extends Options> (argv: string[], options: O): { values: ReturnType<typeof parseArgs<{ options: O, allowPositionals: true, strict: true }>>['values'], positionals: string[] } {
  const { args, restore } = shieldNegatives(argv, options)
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true })
    return { values, positionals: restore(positionals) }
  } catch (err: any) {
    throw new UsageError(String(err.message).split('\n')[0])
  }
}

/**
 * The options many commands share, defined once: take the ones a command
 * has with `commonOptions(…)`, their help lines with `commonUsage(…)` and
 * their checked values with `readCommon(…)`.
 */
export const COMMON_OPTIONS = {
  'data-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
  timeout: { type: 'string' },
  bootstrap: { type: 'string', multiple: true },
  'network-mode': { type: 'string' }
} as const

export type CommonOption = keyof typeof COMMON_OPTIONS

/** Help lines of the common options (`--timeout` is described by each command: its meaning differs) */
const COMMON_USAGE: Record<Exclude<CommonOption, 'timeout'>, string> = {
  'data-dir': '  --data-dir DIR         data dir (default $DECLOUD_DATA_DIR or ~/.decloud)',
  json: '  --json                 print the answer as one JSON object',
  bootstrap: '  --bootstrap MULTIADDR  a node of the swarm, repeatable (when no node is running)',
  'network-mode': '  --network-mode MODE    local or public (default: local for private/loopback bootstrap addresses)'
}

/** parseArgs options of some common options */
export function commonOptions<K extends CommonOption> (...names: K[]): Pick<typeof COMMON_OPTIONS, K> {
  return Object.fromEntries(names.map(n => [n, COMMON_OPTIONS[n]])) as Pick<typeof COMMON_OPTIONS, K>
}

/** Help lines of some common options, one per line */
export function commonUsage (...names: Array<Exclude<CommonOption, 'timeout'>>): string {
  return names.map(n => COMMON_USAGE[n]).join('\n')
}

/** The common options of a command line, checked */
export function readCommon (values: { 'data-dir'?: string, json?: boolean, bootstrap?: string[], 'network-mode'?: string }): { dataDir: string, json: boolean, bootstrap: string[], networkMode?: 'local' | 'public' } {
  const networkMode = parseNetworkMode(values['network-mode'])
  return {
    dataDir: resolveDataDir(values['data-dir']),
    json: values.json === true,
    bootstrap: checkMultiaddrs('bootstrap', values.bootstrap ?? []),
    ...(networkMode != null ? { networkMode } : {})
  }
}

/** `--timeout MS`: a positive integer of at most `max`, else `fallback` */
export function parseTimeout (value: string | undefined, fallback: number, max: number): number {
  const timeout = positiveInt('timeout', value, fallback)
  if (timeout > max) { throw new UsageError(`--timeout is at most ${max} ms`) }
  return timeout
}

/** `--data-dir`, else `$DECLOUD_DATA_DIR`, else `~/.decloud` */
export function resolveDataDir (value: string | undefined): string {
  return value != null ? resolve(value) : defaultDataDir()
}

/** A positive integer option, or a UsageError */
export function positiveInt (name: string, value: string | undefined, fallback: number): number {
  if (value == null) { return fallback }
  if (!/^[1-9][0-9]*$/.test(value) || !Number.isSafeInteger(Number(value))) { throw new UsageError(`--${name} must be a positive integer, not "${value}"`) }
  return Number(value)
}

/** Writes to a stream and waits until it is handed to the OS */
export async function write (stream: NodeJS.WritableStream, data: string | Uint8Array): Promise<void> {
  if (typeof data !== 'string' && data.byteLength === 0) { return }
  await new Promise<void>((resolve, reject) => {
    stream.write(data, (err) => { err != null ? reject(err) : resolve() })
  })
}

export async function out (data: string | Uint8Array): Promise<void> {
  await write(process.stdout, data)
}

/**
 * Characters that a terminal interprets rather than shows (C0 and C1
 * controls, DEL, and the bidirectional overrides that reorder a line), except
 * tab and newline. Remote text (a seller's status detail, an error message,
 * an address) may carry them to rewrite or hide what the user reads.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

/** `text` with every character a terminal would interpret shown as a visible `\xNN` / `\uNNNN` escape */
export function terminalSafe (text: string): string {
  return text.replace(UNSAFE, c => {
    const code = c.charCodeAt(0)
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
  })
}

/** Writes one line on stderr, with terminal controls made visible (terminalSafe) */
export async function err (line: string): Promise<void> {
  const safe = terminalSafe(line)
  await write(process.stderr, safe.endsWith('\n') ? safe : safe + '\n')
}

/** Checks that every value of a repeatable `--option` is a multiaddr; returns them */
export function checkMultiaddrs (option: string, values: string[]): string[] {
  for (const v of values) {
    try {
      multiaddr(v)
    } catch (e: any) {
      throw new UsageError(`--${option} "${v}" is not a valid multiaddr: ${e.message}`)
    }
  }
  return values
}

/** `--network-mode local|public`, when given */
export function parseNetworkMode (value: string | undefined): 'local' | 'public' | undefined {
  if (value != null && value !== 'local' && value !== 'public') { throw new UsageError(`--network-mode must be local or public, not "${value}"`) }
  return value
}

/** `--units N`: a non-negative integer amount of units of service, when given */
export function parseUnits (value: string | undefined): bigint | undefined {
  if (value == null) { return undefined }
  if (!/^[0-9]{1,20}$/.test(value)) { throw new UsageError('--units must be a non-negative integer') }
  return BigInt(value)
}

/** parseArgs options of the chain backend (`decloud node`, `decloud wallet`) */
export const CHAIN_OPTIONS = {
  chain: { type: 'string' },
  'bitcoind-rpc': { type: 'string' },
  esplora: { type: 'string' },
  'chain-rpc': { type: 'string' },
  'bitcoind-rpc-file': { type: 'string' },
  'esplora-file': { type: 'string' },
  'chain-rpc-file': { type: 'string' }
} as const

export const CHAIN_USAGE = `  --chain NAME           regtest (default), signet, testnet or mainnet
  --chain-rpc URL        a shared regtest chain (decloud chain serve prints the URL)
  --bitcoind-rpc URL     a bitcoind-compatible JSON-RPC server, http://user:pass@host:port/
  --esplora URL          an Esplora REST API root (signet, testnet, mainnet)
                         without --chain-rpc/--bitcoind-rpc/--esplora, regtest runs
                         embedded in <data dir>/chain; other chains need one of them
  --chain-rpc-file F, --bitcoind-rpc-file F, --esplora-file F
                         the URL read from file F (mode 0600), so its password is
                         not in the process list; or set DECLOUD_CHAIN_RPC,
                         DECLOUD_BITCOIND_RPC or DECLOUD_ESPLORA`

/** The chain options of a command line, checked */
export function parseChainOptions (given: ChainOptionValues, opts: { env?: boolean } = {}): { chain?: 'regtest' | 'signet' | 'testnet' | 'mainnet', bitcoindRpc?: string, esplora?: string } {
  const values = resolveChainUrls(given, opts.env !== false)
  const chain = values.chain
  if (chain != null && !['regtest', 'signet', 'testnet', 'mainnet'].includes(chain)) {
    throw new UsageError(`--chain must be regtest, signet, testnet or mainnet, not "${chain}"`)
  }
  const urls = (['bitcoind-rpc', 'esplora', 'chain-rpc'] as const).filter(k => values[k] != null)
  if (urls.length > 1) { throw new UsageError(`give only one of --${urls.join(', --')}`) }
  if (values['chain-rpc'] != null && chain != null && chain !== 'regtest') { throw new UsageError('--chain-rpc is a shared regtest chain: it goes with --chain regtest only') }
  for (const k of urls) {
    const v = values[k] as string
    let u: URL
    try {
      u = new URL(v)
    } catch {
      // the value may hold a password: not repeated
      throw new UsageError(`--${k}: not a URL`)
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') { throw new UsageError(`--${k}: an http:// or https:// URL is required`) }
  }
  return {
    ...(chain != null ? { chain: chain as 'regtest' | 'signet' | 'testnet' | 'mainnet' } : {}),
    ...(values['chain-rpc'] != null ? { chain: 'regtest' as const, bitcoindRpc: values['chain-rpc'] } : {}),
    ...(values['bitcoind-rpc'] != null ? { bitcoindRpc: values['bitcoind-rpc'] } : {}),
    ...(values.esplora != null ? { esplora: values.esplora } : {})
  }
}

/** The chain options as parseArgs gives them */
export interface ChainOptionValues { chain?: string, 'bitcoind-rpc'?: string, esplora?: string, 'chain-rpc'?: string, 'bitcoind-rpc-file'?: string, 'esplora-file'?: string, 'chain-rpc-file'?: string }

/** Environment variables naming the chain URLs when no option does */
export const CHAIN_URL_ENV = { 'chain-rpc': 'DECLOUD_CHAIN_RPC', 'bitcoind-rpc': 'DECLOUD_BITCOIND_RPC', esplora: 'DECLOUD_ESPLORA' } as const

/** True when the command line names a chain (the environment not counted) */
export function hasChainOptions (values: ChainOptionValues): boolean {
  return (['chain', 'bitcoind-rpc', 'esplora', 'chain-rpc', 'bitcoind-rpc-file', 'esplora-file', 'chain-rpc-file'] as const).some(k => values[k] != null)
}

/**
 * The chain URLs from the options, their `-file` variants (a file only its
 * owner may read) and, when no option names a URL, the environment
 */
function resolveChainUrls (values: ChainOptionValues, env: boolean): { chain?: string, 'bitcoind-rpc'?: string, esplora?: string, 'chain-rpc'?: string } {
  const out: { chain?: string, 'bitcoind-rpc'?: string, esplora?: string, 'chain-rpc'?: string } = { chain: values.chain }
  const keys = ['chain-rpc', 'bitcoind-rpc', 'esplora'] as const
  const fromArgs = keys.some(k => values[k] != null || values[`${k}-file`] != null)
  for (const k of keys) {
    try {
      const v = secretFrom({ flag: `--${k}`, value: values[k], file: values[`${k}-file`], ...(fromArgs || !env ? {} : { env: CHAIN_URL_ENV[k] }) })
      if (v != null) { out[k] = v }
    } catch (e: any) {
      throw new UsageError(String(e?.message ?? e))
    }
  }
  return out
}
/** `service.method=BASE`, `=BASE+RATE/PER` or `=RATE/PER`, integer sats */
const PRICE = new RegExp(`^(${NAME_PATTERN})\\.(${NAME_PATTERN})=(?:([0-9]{1,19})(?:\\+([0-9]{1,19})/([0-9]{1,19}))?|([0-9]{1,19})/([0-9]{1,19}))$`)

/** `--price service.method=BASE` or `=BASE+RATE/PER` or `=RATE/PER`, integer sats */
export function parsePrice (value: string): { service: string, method: string, pricing: { base: bigint, rate: bigint, per: bigint } } {
  // storage leases are priced per byte·second; people write them per GiB-month
  const m = PRICE.exec(value.replace(/\/GiB-month$/i, `/${BYTE_SECONDS_PER_GIB_MONTH}`))
  if (m == null) { throw new UsageError(`--price "${value}": use service.method=BASE, =BASE+RATE/PER or =RATE/PER (integer satoshis; PER may be GiB-month for storage, e.g. storage.put=16384/GiB-month)`) }
  const base = BigInt(m[3] ?? '0')
  const rate = BigInt(m[4] ?? m[6] ?? '0')
  const per = BigInt(m[5] ?? m[7] ?? '1')
  if (per === 0n) { throw new UsageError(`--price "${value}": PER must be at least 1`) }
  return { service: m[1], method: m[2], pricing: { base, rate, per } }
}

/** Resolves with the name of the first SIGINT/SIGTERM; a second one exits at once */
export async function untilSignal (): Promise<NodeJS.Signals> {
  return new Promise(resolve => {
    let seen = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (seen) {
        process.stderr.write(`decloud: ${signal} again: exiting without a clean stop\n`)
        process.exit(signal === 'SIGINT' ? 130 : 143)
      }
      seen = true
      resolve(signal)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}
