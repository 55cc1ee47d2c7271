import { sentJson, walletJson, walletTxJson } from '../../control/api.js'
import { findRunningNode } from '../../control/client.js'
import { CHAIN_OPTIONS, CHAIN_USAGE, CliError, EXIT, UsageError, hasChainOptions, out, parse, parseChainOptions, positiveInt, resolveDataDir } from '../command.js'
import type { SentJson, WalletJson, WalletTxJson } from '../../control/api.js'
import type { ControlClient } from '../../control/client.js'
import type { ChainOptionValues } from '../command.js'
import type { Command } from '../command.js'

const usage = `usage: decloud wallet <address|balance|send|history> [options]

The node's bitcoin wallet (a BIP39 seed in <data dir>/wallet.json, BIP84
P2WPKH addresses). Amounts are integer satoshis.

  decloud wallet address           a new receive address
  decloud wallet balance           confirmed and unconfirmed balance, and the
                                   identity address (the node's btc: credential)
  decloud wallet send ADDR SATS    pay SATS to ADDR; prints the txid
  decloud wallet history           the wallet's transactions, newest first

When a node is running for the data dir, the command goes through its
control API (its wallet and chain); otherwise it opens the data dir's
wallet and chain itself (the chain options then say which chain).

options:
  --json                 print the answer as JSON
  --fee-rate N           send: sat/vB (default: the chain's estimate)
  --limit N              history: at most N transactions (default 20)
  --data-dir DIR         data dir (default $DECLOUD_DATA_DIR or ~/.decloud)
${CHAIN_USAGE}

Set DECLOUD_WALLET_PASSPHRASE when the seed file is encrypted.

exit codes: 0 done · 1 failed (e.g. insufficient funds) · 2 bad command line

examples:
  decloud wallet balance
  decloud wallet send rb1q… 50000
`

const SATS = /^[0-9]{1,20}$/

/** The wallet operations, through a running node or on the data dir directly */
interface WalletAccess {
  info(): Promise<WalletJson>
  address(): Promise<string>
  send(address: string, amount: bigint, feeRate?: bigint): Promise<SentJson>
  history(limit: number): Promise<WalletTxJson[]>
  close(): Promise<void>
}

function throughNode (client: ControlClient): WalletAccess {
  return {
    info: async () => client.wallet({ timeout: 60_000 }),
    address: async () => (await client.walletAddress()).address,
    send: async (a, n, f) => client.walletSend(a, n, f),
    history: async (limit) => (await client.walletHistory(limit)).transactions,
    close: async () => {}
  }
}

async function direct (dataDir: string, chainValues: ChainOptionValues): Promise<WalletAccess> {
  const chainOptions = parseChainOptions(chainValues)
  const { join } = await import('node:path')
  const { Store } = await import('../../store/index.js')
  const { ensureDataDir, DB_DIR } = await import('../../node/data-dir.js')
  const { createChainBackend } = await import('../../payments/chain/index.js')
  const { Wallet } = await import('../../payments/wallet/wallet.js')
  await ensureDataDir(dataDir)
  const store = new Store(join(dataDir, DB_DIR))
  await store.open()
  let backend
  try {
    backend = await createChainBackend({ dataDir, ...chainOptions })
  } catch (e) {
    await store.close()
    throw e
  }
  const b = backend
  let wallet
  try {
    wallet = await Wallet.open({ dataDir, db: store.sub('wallet'), backend: b, passphrase: process.env.DECLOUD_WALLET_PASSPHRASE })
  } catch (e) {
    await b.close().catch(() => {})
    await store.close()
    throw e
  }
  const w = wallet
  return {
    info: async () => walletJson(w, b),
    address: async () => w.newAddress(),
    send: async (a, n, f) => sentJson(await w.send(a, n, f != null ? { feeRate: f } : {})),
    history: async (limit) => (await w.history(limit)).map(walletTxJson),
    async close () {
      await b.close().catch(() => {})
      await store.close()
    }
  }
}

export const command: Command = {
  name: 'wallet',
  summary: 'the bitcoin wallet: address, balance, send ADDR SATS, history',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      json: { type: 'boolean', default: false },
      'fee-rate': { type: 'string' },
      limit: { type: 'string' },
      'data-dir': { type: 'string' },
      ...CHAIN_OPTIONS
    })
    const [sub, ...rest] = positionals
    if (sub == null) { throw new UsageError('usage: decloud wallet <address|balance|send|history> (see decloud wallet --help)') }
    if (!['address', 'balance', 'send', 'history'].includes(sub)) { throw new UsageError(`unknown wallet command "${sub}" (address, balance, send, history)`) }
    if (sub === 'send' ? rest.length !== 2 : rest.length !== 0) {
      throw new UsageError(sub === 'send' ? 'usage: decloud wallet send ADDR SATS' : `decloud wallet ${sub} takes no argument`)
    }
    if (values['fee-rate'] != null && sub !== 'send') { throw new UsageError('--fee-rate goes with send') }
    if (values.limit != null && sub !== 'history') { throw new UsageError('--limit goes with history') }
    let amount = 0n
    if (sub === 'send') {
      if (!SATS.test(rest[1]) || BigInt(rest[1]) === 0n || BigInt(rest[1]) >= 2n ** 64n) { throw new UsageError(`SATS must be a positive whole number of satoshis, not "${rest[1]}"`) }
      amount = BigInt(rest[1])
    }
    let feeRate: bigint | undefined
    if (values['fee-rate'] != null) {
      if (!SATS.test(values['fee-rate']) || BigInt(values['fee-rate']) === 0n || BigInt(values['fee-rate']) > 100_000n) { throw new UsageError('--fee-rate must be a whole number of sat/vB from 1 to 100000') }
      feeRate = BigInt(values['fee-rate'])
    }
    const limit = positiveInt('limit', values.limit, 20)
    const dataDir = resolveDataDir(values['data-dir'])
    const chainValues: ChainOptionValues = {
      chain: values.chain,
      'bitcoind-rpc': values['bitcoind-rpc'],
      esplora: values.esplora,
      'chain-rpc': values['chain-rpc'],
      'bitcoind-rpc-file': values['bitcoind-rpc-file'],
      'esplora-file': values['esplora-file'],
      'chain-rpc-file': values['chain-rpc-file']
    }

    const running = await findRunningNode(dataDir).catch(() => undefined)
    if (running != null && hasChainOptions(chainValues)) {
      throw new UsageError(`a node is running for ${dataDir}: the wallet goes through it and its chain; drop the chain options`)
    }
    let access: WalletAccess
    try {
      access = running != null ? throughNode(running.client) : await direct(dataDir, chainValues)
    } catch (e: any) {
      if (e instanceof CliError) { throw e }
      if (e?.name === 'ChainConfigError') { throw new UsageError(String(e.message)) }
      throw new CliError(`cannot open the wallet: ${String(e?.message ?? e)}`)
    }
    try {
      const json = values.json === true
      switch (sub) {
        case 'address': {
          const address = await access.address()
          await out(json ? JSON.stringify({ address }) + '\n' : `${address}\n`)
          break
        }
        case 'balance': {
          const w = await access.info()
          if (json) {
            await out(JSON.stringify(w, null, 2) + '\n')
          } else {
            await out([
              `confirmed    ${w.balance.confirmed} sat`,
              `unconfirmed  ${w.balance.unconfirmed} sat`,
              `identity     ${w.identityAddress} (btc: credential) holds ${w.identity.confirmed} sat${w.identity.heldSince != null ? ` since block ${w.identity.heldSince}` : ''}`,
              `chain        ${w.backend}, height ${w.height}`
            ].join('\n') + '\n')
          }
          break
        }
        case 'send': {
          const sent = await access.send(rest[0], amount, feeRate)
          await out(json ? JSON.stringify(sent) + '\n' : `${sent.txid}\n`)
          break
        }
        case 'history': {
          const txs = await access.history(limit)
          if (json) {
            await out(JSON.stringify({ transactions: txs }, null, 2) + '\n')
          } else if (txs.length === 0) {
            await out('no transactions\n')
          } else {
            await out(txs.map(t => `${t.txid}  ${t.height != null ? `block ${t.height}${t.confirmations != null ? ` (${t.confirmations} confirmation${t.confirmations === 1 ? '' : 's'})` : ''}` : 'unconfirmed'}  ${t.delta.startsWith('-') ? '' : '+'}${t.delta} sat`).join('\n') + '\n')
          }
          break
        }
        default:
          throw new UsageError(`unknown wallet command "${sub}"`)
      }
    } catch (e: any) {
      if (e instanceof CliError) { throw e }
      throw new CliError(`wallet ${sub}: ${String(e?.message ?? e)}`)
    } finally {
      await access.close()
    }
    return EXIT.OK
  }
}
