/**
 * Paying from the command line: a regtest chain served on 127.0.0.1 (the
 * same server `decloud chain serve` runs), two `decloud node` processes
 * sharing it with --chain-rpc, `decloud wallet` and `decloud call --pay`.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { p2wpkh } from '@scure/btc-signer'
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
    seller = await startCliNode(join(work, 'seller'), ['--chain-rpc', url, '--price', 'storage.put=1048576/GiB-month'], 60_000, { payments: true })
    // the buyer reads the URL (its API key) from a file only its owner reads
    await writeFile(join(work, 'rpc-url'), url + '\n', { mode: 0o600 })
    buyer = await startCliNode(join(work, 'buyer'), ['--chain-rpc-file', join(work, 'rpc-url')], 60_000, { payments: true })
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
    assert.doesNotMatch(w.backend, new RegExp(/x:([^@]+)@/.exec(url)?.[1] ?? 'the key'), 'the API key is not shown')
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
      [['node', '--price', 'storage.put=1.5'], /--price/],
      [['node', '--chain-rpc', 'http://x:k@127.0.0.1:1/', '--chain-rpc-file', join(work, 'rpc-url')], /give --chain-rpc or --chain-rpc-file, not both/],
      [['node', '--chain-rpc-file', join(work, 'readable-url')], /--chain-rpc-file: .* can be read by other users .*chmod 600/],
      [['node', '--no-payments', '--chain-rpc-file', join(work, 'rpc-url')], /--no-payments goes without chain options/]
    ]
    await writeFile(join(work, 'readable-url'), 'http://x:k@127.0.0.1:1/\n', { mode: 0o644 })
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

describe('paid calls in a row and at once from the command line (a real seller, a shared chain, no block between)', function () {
  this.timeout(300_000)
  let chain: EmbeddedChain
  let work: string
  let seller: CliNode
  let buyer: CliNode

  before(async () => {
    work = await tempDir('decloud-cli-paid-')
    chain = await EmbeddedChain.start({ memory: true, http: { port: 0, apiKey: generateApiKey() } })
    const url = chain.rpcUrl as string
    seller = await startCliNode(join(work, 'seller'), ['--chain-rpc', url, '--price', 'storage.put=400'], 60_000, { payments: true })
    buyer = await startCliNode(join(work, 'buyer'), ['--chain-rpc', url], 60_000, { payments: true })
  })

  after(async () => {
    await seller?.stop().catch(() => {})
    await buyer?.stop().catch(() => {})
    await killAll()
    await chain?.close()
  })

  const put = async (i: number): Promise<{ code: number | null, err: string, txid?: string }> => {
    const file = join(work, `body-${i}.bin`)
    await writeFile(file, `body ${i}`)
    // attached, not auto: auto would promise on a tab here (the buyer's dev wallet qualifies), and
    // what is tested is the wallet paying on chain call after call
    const r = await runCli(['call', seller.addr, 'storage.put', '-f', file, '--pay', 'attached:400', '--max', '5000', '--data-dir', buyer.dataDir], { timeout: 60_000 })
    return { code: r.code, err: r.stderr, txid: /paid 400 sat \(attached, txid ([0-9a-f]{64})\)/.exec(r.stderr)?.[1] }
  }

  const check = (results: Array<{ code: number | null, err: string, txid?: string }>): void => {
    const failed = results.map((r, i) => [i, r] as const).filter(([, r]) => r.code !== 0 || r.txid == null)
    assert.deepEqual(failed.map(([i, r]) => `#${i}: exit ${String(r.code)}: ${r.err.trim()}`), [])
    for (const r of results) { assert.doesNotMatch(r.err, /txid \?/) }
    assert.equal(new Set(results.map(r => r.txid)).size, results.length, 'one transaction per call')
  }

  it('50 paid calls in a row all pay, each with its own transaction', async () => {
    const results = []
    for (let i = 0; i < 50; i++) { results.push(await put(i)) }
    check(results)
  })

  it('8 paid calls at once all pay', async () => {
    check(await Promise.all(Array.from({ length: 8 }, async (_, i) => put(100 + i))))
  })

  it('after a block, both wallets\' histories show the payments with their confirmations', async () => {
    await chain.mine(2, p2wpkhElsewhere(chain))
    const history = async (dir: string): Promise<Array<{ txid: string, height?: number, confirmations?: number, delta: string }>> => {
      const r = await runCli(['wallet', 'history', '--json', '--limit', '200', '--data-dir', dir], { timeout: 60_000 })
      assert.equal(r.code, 0, r.stderr)
      return JSON.parse(r.stdout.toString('utf8')).transactions
    }
    const received = (await history(seller.dataDir)).filter(t => BigInt(t.delta) === 400n)
    assert.equal(received.length, 58, 'the seller sees every payment it received')
    for (const t of received) { assert.ok(t.height != null && t.confirmations != null && t.confirmations >= 2, JSON.stringify(t)) }
    const sent = (await history(buyer.dataDir)).filter(t => BigInt(t.delta) < -400n)
    assert.equal(sent.length, 58, 'the buyer sees every payment it made')
    for (const t of sent) { assert.ok(t.height != null && t.confirmations != null && t.confirmations >= 2, JSON.stringify(t)) }
    const text = await runCli(['wallet', 'history', '--limit', '3', '--data-dir', seller.dataDir], { timeout: 60_000 })
    assert.match(text.stdout.toString('utf8'), /^[0-9a-f]{64} {2}block [0-9]+ \([0-9]+ confirmations\) {2}\+400 sat$/m)
  })
})

/** An address no wallet here holds */
function p2wpkhElsewhere (chain: EmbeddedChain): string {
  return p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), chain.network).address as string
}
