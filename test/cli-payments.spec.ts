/**
 * Paying from the command line: a regtest chain served on 127.0.0.1 (the
 * same server `decloud chain serve` runs), two `decloud node` processes
 * sharing it with --chain-rpc, `decloud wallet` and `decloud call --pay`.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateApiKey } from '../src/payments/chain/embedded.js'
import { killAll, runCli, startCliNode } from './cli-fixtures.js'
import { tempDir } from './fixtures.js'
import { EmbeddedChain } from './regtest.js'
import type { CliNode } from './cli-fixtures.js'

describe('decloud wallet and decloud call --pay (real processes, a shared regtest chain)', function () {
  this.timeout(180_000)
  let chain: EmbeddedChain
  let url: string
  let work: string
  let seller: CliNode
  let buyer: CliNode

  before(async () => {
    work = await tempDir('decloud-cli-pay-')
    chain = await EmbeddedChain.start({ memory: true, http: { port: 0, apiKey: generateApiKey() } })
    url = chain.rpcUrl as string
    assert.ok(url.startsWith('http://'), 'the chain serves RPC')
    seller = await startCliNode(join(work, 'seller'), ['--chain-rpc', url, '--price', 'storage.put=1/1024'], 60_000, { payments: true })
    buyer = await startCliNode(join(work, 'buyer'), ['--chain-rpc', url], 60_000, { payments: true })
  })

  after(async () => {
    await seller?.stop().catch(() => {})
    await buyer?.stop().catch(() => {})
    await killAll()
    await chain?.close()
  })

  const run = async (args: string[], dir: string): Promise<{ code: number | null, out: string, err: string }> => {
    const r = await runCli([...args, '--data-dir', dir], { timeout: 60_000 })
    return { code: r.code, out: r.stdout.toString('utf8'), err: r.stderr }
  }

  it('decloud wallet balance and address go through the running node', async () => {
    const b = await run(['wallet', 'balance', '--json'], buyer.dataDir)
    assert.equal(b.code, 0, b.err)
    const w = JSON.parse(b.out)
    assert.equal(w.chain, 'regtest')
    assert.match(w.identityAddress, /^rb1q/)
    assert.ok(BigInt(w.balance.confirmed) >= 1_000_000_000n, `dev-funded: ${w.balance.confirmed}`)
    const a = await run(['wallet', 'address'], buyer.dataDir)
    assert.equal(a.code, 0, a.err)
    assert.match(a.out.trim(), /^rb1q[0-9a-z]{38}$/)
  })

  it('decloud call --pay auto stores a blob at a priced seller; --pay with a max below the price gives up', async () => {
    const file = join(work, 'blob.bin')
    await writeFile(file, new Uint8Array(300 * 1024).fill(3))
    const unpaid = await run(['call', seller.addr, 'storage.put', '-f', file], buyer.dataDir)
    assert.equal(unpaid.code, 1)
    assert.match(unpaid.err, /too-low: storage\.put costs 300 sat/)

    const paid = await run(['call', seller.addr, 'storage.put', '-f', file, '--pay', 'auto', '--max', '5000'], buyer.dataDir)
    assert.equal(paid.code, 0, paid.err)
    assert.match(paid.out.trim(), /^[0-9a-f]{64}$/, 'prints the blob id')
    assert.match(paid.err, /decloud: (paid [0-9]+ sat \(attached|promised [0-9]+ sat on tab)/)

    const tooPoor = await run(['call', seller.addr, 'storage.put', '-f', file, '--pay', 'auto', '--max', '10'], buyer.dataDir)
    assert.equal(tooPoor.code, 1)
    assert.match(tooPoor.err, /max/)
  })

  it('decloud wallet send pays another wallet; history shows it', async () => {
    const to = (await run(['wallet', 'address'], seller.dataDir)).out.trim()
    // no block since the paid call: the wallet spends its own unconfirmed change
    const sent = await run(['wallet', 'send', to, '12345'], buyer.dataDir)
    assert.equal(sent.code, 0, sent.err)
    const txid = sent.out.trim()
    assert.match(txid, /^[0-9a-f]{64}$/)
    await chain.mine(1, to)
    const h = await run(['wallet', 'history', '--json'], buyer.dataDir)
    assert.equal(h.code, 0, h.err)
    const txs = JSON.parse(h.out).transactions as Array<{ txid: string, delta: string }>
    const mine = txs.find(t => t.txid === txid)
    assert.ok(mine != null, 'the payment is in the history')
    assert.ok(BigInt(mine.delta) <= -12345n, 'it cost the amount plus the fee')
  })

  it('checks its command line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['call', seller.addr, 'sha256.hash', '--pay', 'auto'], /--pay needs --max/],
      [['call', seller.addr, 'sha256.hash', '--pay', 'defer:x', '--max', '1'], /--pay: .*whole number/],
      [['call', seller.addr, 'sha256.hash', '--max', '1'], /--max goes with --pay/],
      [['wallet', 'send', 'rb1qxyz', '1.5'], /whole number of satoshis/],
      [['wallet', 'frobnicate'], /unknown wallet command/],
      [['node', '--chain', 'moon'], /--chain must be regtest, signet, testnet or mainnet/],
      [['node', '--chain', 'mainnet', '--chain-rpc', 'http://127.0.0.1:1/'], /--chain-rpc is a shared regtest chain/],
      [['node', '--price', 'storage.put=1.5'], /--price/]
    ]
    for (const [args, message] of cases) {
      const r = await run(args, buyer.dataDir)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`)
      assert.match(r.err, message)
    }
    // --pay without a running node for the data dir
    const r = await run(['call', seller.addr, 'sha256.hash', '--pay', 'auto', '--max', '1'], join(work, 'nobody'))
    assert.equal(r.code, 2)
    assert.match(r.err, /--pay needs a running node/)
  })
})
