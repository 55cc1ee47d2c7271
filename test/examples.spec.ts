import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { main } from '../examples/embed.js'
import { within } from './fixtures.js'

const run = promisify(execFile)

describe('examples/embed: decloud inside another libp2p app', () => {
  it('sells sha256 and its own service; the other node calls them and gets the template and the payment gate', async () => {
    const message = 'Embedded dans une autre app — ünïcode 🚀'
    const lines: string[] = []
    const r = await within(main(message, (line) => lines.push(line)), 20_000, 'examples/embed main() did not finish')

    assert.match(r.address, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW/)
    assert.equal(r.hash, createHash('sha256').update(message).digest('hex'))
    assert.equal(r.upper, message.toUpperCase())
    assert.deepEqual(r.methods, ['upper', 'reverse', 'info', 'methods', 'quote'])
    const bytes = BigInt(Buffer.byteLength(message))
    const price = 1n + (bytes + 99n) / 100n // base 1 + ceil(bytes / 100)
    assert.equal(r.quote, price)
    assert.deepEqual(r.reverse, { path: 'request-declined/payment-declined/too-low', amount: price })
    assert.deepEqual(r.services, ['sha256', 'text', 'info'])
    assert.equal(lines.length, 7)
    assert.ok(lines.some(l => l.includes(r.hash)))
  })

  it('runs as a program: node dist/examples/embed.js prints its results and exits 0', async () => {
    const script = fileURLToPath(new URL('../examples/embed.js', import.meta.url))
    const { stdout } = await run(process.execPath, [script], { timeout: 25_000 })
    assert.match(stdout, /^seller listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//m)
    assert.match(stdout, new RegExp(`^sha256.hash +${createHash('sha256').update('hello from an embedded decloud').digest('hex')}$`, 'm'))
    assert.match(stdout, /^text\.upper +HELLO FROM AN EMBEDDED DECLOUD$/m)
    assert.match(stdout, /^text\.reverse +request-declined\/payment-declined\/too-low \(asks 2 sat\)$/m)
  })
})
