/**
 * Joining the public swarm from behind a home router, with real NATs: Linux
 * network namespaces (topology.ts), one decloud node per namespace as a
 * child process (peer.ts). Run by `npm run test:nat` (root; CI runs it);
 * skipped with the reason where namespaces are not available, unless
 * DECLOUD_NAT_TESTS=require, which turns the skip into a failure.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { build, HOME_IPS, INTERNET, PUBLIC_IPS, unsupported } from './topology.js'
import type { Topology } from './topology.js'
import type { ChildProcess } from 'node:child_process'

const PEER = join(dirname(fileURLToPath(import.meta.url)), 'peer.js')
/** the verdict's delay in these tests: a young swarm of four has few peers to ask */
const PRIVATE_AFTER = 3_000
/** the relays' data limit here: 256 KiB per relayed connection */
const RELAY_DATA_LIMIT = 256 * 1024
/** every wait of these tests is bounded by this (ms) */
const WAIT = 30_000

interface Peer {
  name: string
  peerId: string
  events: Array<Record<string, any>>
  /** resolves with the first event that matches, within WAIT */
  next(match: (e: Record<string, any>) => boolean, what: string): Promise<Record<string, any>>
  /** sends a command and resolves with its answer */
  ask(cmd: Record<string, unknown>): Promise<Record<string, any>>
  stop(): Promise<void>
}

let seq = 0

async function startPeer (name: string, ns: string, config: Record<string, unknown>): Promise<Peer> {
  const dataDir = await mkdtemp(join(tmpdir(), `decloud-nat-${name}-`))
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, process.execPath, PEER, JSON.stringify({ dataDir, publicRanges: [INTERNET], privateAfter: PRIVATE_AFTER, relayDataLimit: String(RELAY_DATA_LIMIT), ...config })], { stdio: ['pipe', 'pipe', 'pipe'] })
  const events: Array<Record<string, any>> = []
  const waiters = new Set<{ match: (e: Record<string, any>) => boolean, resolve: (e: Record<string, any>) => void }>()
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  createInterface({ input: child.stdout! }).on('line', line => {
    let e: Record<string, any>
    try {
      e = JSON.parse(line)
    } catch {
      return
    }
    events.push(e)
    for (const w of [...waiters]) {
      if (w.match(e)) {
        waiters.delete(w)
        w.resolve(e)
      }
    }
  })
  const next = async (match: (e: Record<string, any>) => boolean, what: string): Promise<Record<string, any>> => {
    const seen = events.find(match)
    if (seen != null) { return seen }
    return await new Promise((resolve, reject) => {
      const w = { match, resolve: (e: Record<string, any>) => { clearTimeout(t); resolve(e) } }
      const t = setTimeout(() => {
        waiters.delete(w)
        reject(new Error(`${name}: no ${what} within ${WAIT} ms; stderr: ${stderr}`))
      }, WAIT)
      waiters.add(w)
      void exited.then(() => {
        if (!waiters.has(w)) { return }
        waiters.delete(w)
        clearTimeout(t)
        reject(new Error(`${name} exited before ${what}; stderr: ${stderr}`))
      })
    })
  }
  const started = await next(e => e.event === 'started', 'start')
  return {
    name,
    peerId: started.peerId,
    events,
    next,
    async ask (cmd) {
      const id = ++seq
      child.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n')
      return await next(e => e.id === id, `answer to ${String(cmd.cmd)}`)
    },
    async stop () {
      if (child.exitCode == null && child.signalCode == null) {
        child.stdin!.write(JSON.stringify({ cmd: 'stop' }) + '\n')
        const killer = setTimeout(() => { child.kill('SIGKILL') }, 5_000)
        await exited
        clearTimeout(killer)
      }
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

const reason = unsupported()

describe('NAT traversal in network namespaces', function () {
  this.timeout(120_000)
  let topo: Topology | undefined
  const peers: Peer[] = []
  let boot: Peer, relay2: Peer, home1: Peer, home2: Peer

  before(async function () {
    if (reason != null) {
      if (process.env.DECLOUD_NAT_TESTS === 'require') { throw new Error(`DECLOUD_NAT_TESTS=require but ${reason}`) }
      console.log(`      (skipped: ${reason})`)
      this.skip()
    }
    topo = build()
    boot = await startPeer('boot', topo.internet, { listen: [`/ip4/${PUBLIC_IPS[0]}/tcp/4001`] })
    peers.push(boot)
    const bootAddr = `/ip4/${PUBLIC_IPS[0]}/tcp/4001/p2p/${boot.peerId}`
    relay2 = await startPeer('public2', topo.internet, { listen: [`/ip4/${PUBLIC_IPS[1]}/tcp/4001`], bootstrap: [bootAddr] })
    peers.push(relay2)
    home1 = await startPeer('home1', topo.homes[0], { listen: ['/ip4/0.0.0.0/tcp/4001'], bootstrap: [bootAddr] })
    peers.push(home1)
    home2 = await startPeer('home2', topo.homes[1], { listen: ['/ip4/0.0.0.0/tcp/4001'], bootstrap: [bootAddr] })
    peers.push(home2)
  })

  after(async function () {
    await Promise.all(peers.map(async p => { await p.stop().catch(() => {}) }))
    topo?.destroy()
  })

  it('public nodes learn they are reachable, announce their (public-range) address, relay and serve the DHT', async () => {
    for (const [p, ip] of [[boot, PUBLIC_IPS[0]], [relay2, PUBLIC_IPS[1]]] as const) {
      const e = await p.next(e => e.event === 'reachability' && e.reachability === 'public', 'public verdict')
      console.log(`      ${p.name}: public after ${String(e.ms)} ms`)
      const { status, addresses, dht } = await p.ask({ cmd: 'status' })
      assert.equal(status.reachability, 'public')
      assert.ok(status.verified.some((a: string) => a.startsWith(`/ip4/${ip}/tcp/4001`)), `${p.name} verified ${String(status.verified)}`)
      // public mode strips loopback and private addresses, not the ranges given as public
      assert.deepEqual(addresses, [`/ip4/${ip}/tcp/4001/p2p/${p.peerId}`])
      assert.equal(dht, 'server')
      assert.equal(status.relaying, true)
    }
  })

  it('home nodes learn they are private, go DHT client and reserve a relay slot', async () => {
    for (const p of [home1, home2]) {
      const e = await p.next(e => e.event === 'reachability' && e.reachability === 'private', 'private verdict')
      console.log(`      ${p.name}: private after ${String(e.ms)} ms`)
      const relayed = await p.next(e => e.event === 'addresses' && e.addresses.some((a: string) => a.includes('/p2p-circuit/')), 'relayed address')
      console.log(`      ${p.name}: relay reservation after ${String(relayed.ms)} ms`)
      const { status, addresses, dht } = await p.ask({ cmd: 'status' })
      assert.equal(status.reachability, 'private')
      assert.equal(dht, 'client')
      assert.equal(status.relaying, false)
      // only relayed addresses through a public node: no 192.168.x, no loopback
      assert.ok(addresses.length > 0)
      for (const a of addresses as string[]) {
        assert.match(a, /^\/ip4\/10\.99\.0\.[12]\/tcp\/4001\/p2p\/\w+\/p2p-circuit\/p2p\/\w+$/)
        assert.ok(!a.includes(HOME_IPS[0]) && !a.includes(HOME_IPS[1]) && !a.includes('127.0.0.1'))
      }
    }
  })

  it('a public buyer finds a home seller through the DHT and stores with it over the relay', async () => {
    await home1.next(e => e.event === 'addresses' && e.addresses.some((a: string) => a.includes('/p2p-circuit/')), 'relayed address')
    let sellers: Array<{ peerId: string, addresses: string[] }> = []
    const deadline = Date.now() + WAIT
    // the seller provides again once it has a relayed address; lookups are repeated until it shows
    while (Date.now() < deadline) {
      const found = await relay2.ask({ cmd: 'find', service: 'storage', timeout: 3_000 })
      sellers = found.sellers
      if (sellers.some(s => s.peerId === home1.peerId && s.addresses.some(a => a.includes('/p2p-circuit/')))) { break }
    }
    const seller = sellers.find(s => s.peerId === home1.peerId)
    assert.ok(seller != null, `home1 among ${JSON.stringify(sellers)}`)
    assert.ok(seller.addresses.length > 0 && seller.addresses.every(a => a.includes('/p2p-circuit/')), `addresses ${String(seller.addresses)}`)
    const put = await relay2.ask({ cmd: 'put', peer: home1.peerId, bytes: 32 * 1024 })
    assert.equal(put.ok, true, put.message)
    assert.equal(put.status, 'ok')
    console.log(`      public2 → home1: 32 KiB put in ${String(put.ms)} ms over ${JSON.stringify(put.connections)}`)
    const get = await relay2.ask({ cmd: 'get', peer: home1.peerId, sha256: put.sha256 })
    assert.equal(get.status, 'ok')
    assert.equal(get.bytes, 32 * 1024)
  })

  it('a transfer over the relay\'s limit is refused with a clear message when no direct connection exists', async () => {
    // home2 sits behind the symmetric NAT: no hole punch can predict its port
    const put = await home2.ask({ cmd: 'put', peer: home1.peerId, bytes: 4 * 1024 })
    assert.equal(put.ok, true, put.message)
    const direct = await home2.ask({ cmd: 'waitDirect', peer: home1.peerId, timeout: 10_000 })
    console.log(`      home2 ⇄ home1 direct after hole punching: ${String(direct.direct)} ${JSON.stringify(direct.connections)}`)
    assert.equal(direct.direct, false)
    const big = await home2.ask({ cmd: 'put', peer: home1.peerId, bytes: 1024 * 1024 })
    assert.equal(big.ok, false)
    assert.equal(big.error, 'LimitedConnectionError')
    assert.match(big.message, /limited relayed connection .* needs a direct connection/)
  })
})
