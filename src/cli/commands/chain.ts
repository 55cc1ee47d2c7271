/**
 * `decloud chain serve | mine | info`: one regtest chain for several decloud
 * processes. `serve` runs the embedded bcoin chain with its JSON-RPC on
 * 127.0.0.1; nodes, `mine` and `info` reach it with `--chain-rpc URL`.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Address } from '@scure/btc-signer'
import { secretFrom } from '../../payments/chain/secrets.js'
import { ChainUnavailableError } from '../../payments/types.js'
import { CliError, EXIT, TransportError, UsageError, err, out, parse, resolveDataDir, untilSignal } from '../command.js'
import type { Command } from '../command.js'

/** bcoin's regtest RPC port */
const DEFAULT_PORT = 48443
/** the most blocks one `decloud chain mine` makes */
const MAX_MINE = 10_000
const STOP_DEADLINE = 30_000

/** serve's default block interval (ms) while transactions wait */
export const DEFAULT_BLOCK_INTERVAL = 2_000

const usage = `usage: decloud chain serve [--port P] [--data-dir DIR | --memory] [--api-key-file FILE]
       decloud chain mine N [--to ADDRESS] --chain-rpc-file FILE
       decloud chain info --chain-rpc-file FILE

A regtest bitcoin chain several decloud processes share (docs/chain.md).

serve  runs a bcoin regtest full node in this process (SegWit active: it mines
       to height 432 on a new chain) and serves its bitcoind-style JSON-RPC on
       127.0.0.1 only. Prints the URL to give other commands as --chain-rpc:
         chain rpc: http://x:<api key>@127.0.0.1:<port>/
       Ctrl-C (SIGINT) or SIGTERM stops it cleanly.
mine   mines N blocks (to ADDRESS, else to an address nobody holds) and prints
       the new height
info   prints the chain name and height of the server at URL

options:
  --port P         TCP port on 127.0.0.1 (default ${DEFAULT_PORT}; 0 picks a free one)
  --data-dir DIR   keep the chain in DIR/chain (default $DECLOUD_DATA_DIR or ~/.decloud)
  --memory         keep the chain in memory (gone when serve stops)
  --api-key-file FILE
                   the RPC password (A-Z a-z 0-9 . _ ~ -, 8 to 255 characters)
                   read from FILE, which only its owner may read (chmod 600);
                   or DECLOUD_CHAIN_API_KEY; --api-key KEY works too but every
                   local user sees it in the process list. Default:
                   DIR/chain/api-key, created with mode 0600 when missing
  --chain-rpc-file FILE
                   the URL serve printed, read from FILE (chmod 600); or
                   DECLOUD_CHAIN_RPC; or --chain-rpc URL (visible to every
                   local user in the process list)
  --to ADDRESS     where the block rewards go
  --block-interval MS
                   serve: mine a block every MS ms while transactions wait in
                   the mempool, so payments confirm on their own (default
                   ${DEFAULT_BLOCK_INTERVAL}; 0: only decloud chain mine makes blocks)

exit codes: 0 done · 1 failed · 2 bad command line · 3 the chain server did not answer

examples:
  decloud chain serve --data-dir /tmp/chain
  DECLOUD_CHAIN_RPC=http://x:KEY@127.0.0.1:${DEFAULT_PORT}/ decloud chain mine 6
`

export const command: Command = {
  name: 'chain',
  summary: 'serve a regtest chain for several nodes, mine blocks, show its height',
  usage,
  async run (argv) {
    const [sub, ...rest] = argv
    switch (sub) {
      case 'serve': return serve(rest)
      case 'mine': return mine(rest)
      case 'info': return info(rest)
      case undefined: throw new UsageError('decloud chain needs serve, mine or info (see decloud chain --help)')
      default: throw new UsageError(`unknown chain command "${sub}" (serve, mine or info)`)
    }
  }
}

async function serve (argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    port: { type: 'string' },
    'data-dir': { type: 'string' },
    memory: { type: 'boolean', default: false },
    'api-key': { type: 'string' },
    'api-key-file': { type: 'string' },
    'block-interval': { type: 'string' }
  })
  if (positionals.length > 0) { throw new UsageError(`unexpected argument "${positionals[0]}"`) }
  const blockInterval = values['block-interval'] == null ? DEFAULT_BLOCK_INTERVAL : Number(values['block-interval'])
  if (!Number.isSafeInteger(blockInterval) || (blockInterval !== 0 && blockInterval < 100) || blockInterval > 3_600_000) {
    throw new UsageError('--block-interval must be 0 or a whole number of milliseconds from 100 to 3600000')
  }
  if (values.memory === true && values['data-dir'] != null) { throw new UsageError('give --data-dir or --memory, not both') }
  const port = parsePort(values.port)
  const apiKeyOption = secret({ flag: '--api-key', value: values['api-key'], file: values['api-key-file'], env: 'DECLOUD_CHAIN_API_KEY' })
  if (apiKeyOption != null && !API_KEY.test(apiKeyOption)) { throw new UsageError('--api-key must be 8 to 255 characters among A-Z a-z 0-9 . _ ~ -') }

  const { EmbeddedChain, generateApiKey } = await import('../../payments/chain/embedded.js')
  const memory = values.memory === true
  const chainDir = memory ? undefined : join(resolveDataDir(values['data-dir']), 'chain')
  let apiKey = apiKeyOption
  if (chainDir != null) {
    await mkdir(chainDir, { recursive: true, mode: 0o700 })
    apiKey ??= await readApiKey(join(chainDir, 'api-key'))
  }
  if (apiKey == null) {
    apiKey = generateApiKey()
    if (chainDir != null) {
      const file = join(chainDir, 'api-key')
      await writeFile(file, apiKey + '\n', { mode: 0o600 })
      await chmod(file, 0o600)
    }
  }

  const signal = untilSignal()
  let chain
  try {
    chain = await EmbeddedChain.start({ ...(chainDir != null ? { dir: chainDir } : { memory: true }), http: { port, host: '127.0.0.1', apiKey } })
  } catch (e: any) {
    const message = String(e?.message ?? e)
    if (/EADDRINUSE/.test(message)) { throw new CliError(`cannot listen on 127.0.0.1:${port}: address already in use; pick another --port`) }
    throw new CliError(message)
  }
  if (blockInterval > 0) { chain.autoMine(blockInterval) }
  await out(`chain rpc: ${chain.rpcUrl ?? ''}\n`)
  await err(`regtest chain at height ${await chain.height()} (${chain.description}) · give the URL above as --chain-rpc · Ctrl-C to stop`)

  const received = await signal
  const deadline = setTimeout(() => {
    process.stderr.write(`decloud: the chain did not stop within ${STOP_DEADLINE / 1000} s; exiting\n`)
    process.exit(EXIT.FAILURE)
  }, STOP_DEADLINE)
  deadline.unref()
  await err(`${received}: stopping`)
  await chain.close()
  clearTimeout(deadline)
  await err('stopped')
  return EXIT.OK
}

async function mine (argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    to: { type: 'string' },
    'chain-rpc': { type: 'string' },
    'chain-rpc-file': { type: 'string' }
  })
  if (positionals.length !== 1) { throw new UsageError('decloud chain mine takes one block count (see decloud chain --help)') }
  const n = positionals[0]
  if (!/^[0-9]{1,5}$/.test(n) || Number(n) > MAX_MINE) { throw new UsageError(`the block count must be 0..${MAX_MINE}, not "${n}"`) }
  const backend = await connect(chainRpc(values), true)
  try {
    const to = values.to ?? Address(backend.network).encode({ type: 'wpkh', hash: new Uint8Array(20) })
    let height: number
    try {
      height = await backend.mine(Number(n), to)
    } catch (e: any) {
      if (e instanceof TypeError) { throw new UsageError(`--to: ${e.message}`) }
      throw transport(e)
    }
    await out(`height ${height}\n`)
    return EXIT.OK
  } finally {
    await backend.close()
  }
}

async function info (argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'chain-rpc': { type: 'string' }, 'chain-rpc-file': { type: 'string' } })
  if (positionals.length > 0) { throw new UsageError(`unexpected argument "${positionals[0]}"`) }
  const backend = await connect(chainRpc(values), false)
  try {
    let chainName: unknown
    let height: number
    try {
      chainName = ((await backend.call('getblockchaininfo', [])) as { chain?: unknown } | null)?.chain
      height = await backend.height()
    } catch (e) {
      throw transport(e)
    }
    await out(`chain: ${typeof chainName === 'string' ? chainName.slice(0, 40) : 'unknown'}\nheight: ${height}\n`)
    return EXIT.OK
  } finally {
    await backend.close()
  }
}

/** A client for --chain-rpc; `regtest` also checks the chain and finds the address encoding */
async function connect (url: string | undefined, regtest: boolean): Promise<import('../../payments/chain/bitcoind-rpc.js').BitcoindRpcBackend> {
  if (url == null) { throw new UsageError('--chain-rpc URL, --chain-rpc-file FILE or DECLOUD_CHAIN_RPC is required (decloud chain serve prints the URL)') }
  const { BitcoindRpcBackend } = await import('../../payments/chain/bitcoind-rpc.js')
  try {
    return regtest ? await BitcoindRpcBackend.connect(url, { chain: 'regtest' }) : new BitcoindRpcBackend(url)
  } catch (e: any) {
    if (e instanceof TypeError) { throw new UsageError(`--chain-rpc: ${e.message}`) }
    throw transport(e)
  }
}

/** A secret from its option, its `-file` option (mode 0600) or the environment */
function secret (o: { flag: string, value?: string, file?: string, env: string }): string | undefined {
  try {
    return secretFrom(o)
  } catch (e: any) {
    throw new UsageError(String(e?.message ?? e))
  }
}

/** --chain-rpc URL, --chain-rpc-file FILE or DECLOUD_CHAIN_RPC */
function chainRpc (values: { 'chain-rpc'?: string, 'chain-rpc-file'?: string }): string | undefined {
  return secret({ flag: '--chain-rpc', value: values['chain-rpc'], file: values['chain-rpc-file'], env: 'DECLOUD_CHAIN_RPC' })
}

function transport (e: any): CliError {
  if (e instanceof CliError) { return e }
  if (e instanceof ChainUnavailableError) { return new TransportError(e.message) }
  return new CliError(String(e?.message ?? e))
}

const API_KEY = /^[A-Za-z0-9._~-]{8,255}$/

function parsePort (value: string | undefined): number {
  if (value == null) { return DEFAULT_PORT }
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535) { throw new UsageError(`--port must be 0..65535, not "${value}"`) }
  return Number(value)
}

/** the key a previous serve wrote, so the URL stays the same across restarts */
async function readApiKey (file: string): Promise<string | undefined> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e: any) {
    if (e?.code === 'ENOENT') { return undefined }
    throw new CliError(`cannot read ${file}: ${String(e?.message ?? e)}`)
  }
  const key = text.trim()
  if (!API_KEY.test(key)) { throw new CliError(`${file} does not hold a valid API key; delete it to make a new one`) }
  return key
}
