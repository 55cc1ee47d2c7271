/**
 * Reachability parts that need no network namespaces (test/nat/namespaces.test.ts
 * has the real NATs): public ranges, the announce filter of `public` mode,
 * the private verdict and what follows from it (DHT client, relay listener),
 * the clear refusal of a transfer too big for a limited connection, and the
 * CLI flags.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { isPrivate } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { ControlClient } from '../src/control/client.js'
import { TOKEN_FILE } from '../src/control/files.js'
import { ControlServer } from '../src/control/server.js'
import { PublicRangeError, publicRanges, treatAsPublic } from '../src/node/nat.js'
import { checkLimits, LimitedConnectionError } from '../src/protocols/opencloud/net/limited.js'
import { runCli } from './cli-fixtures.js'
import { startNode, tempDir } from './fixtures.js'
import type { TestNode } from './fixtures.js'
import type { Connection } from '@libp2p/interface'

describe('NAT: reachability without namespaces', function () {
  this.timeout(60_000)

  describe('public ranges', () => {
    it('refuse what is not a private IPv4 CIDR, and never lift loopback', () => {
      for (const bad of ['10.0.0.1', 'fd00::/8', '8.8.8.0/24', '127.0.0.0/8', '0.0.0.0/0', '10.0.0.0/33']) {
        assert.throws(() => { treatAsPublic([bad]) }, PublicRangeError, bad)
      }
      assert.deepEqual(publicRanges().filter(r => r.startsWith('127.') || r.startsWith('8.')), [])
    })

    it('make a given range public for every isPrivate check, and nothing else', () => {
      // a CGNAT range no other test uses: the change is process-wide
      const inside = multiaddr('/ip4/100.127.5.6/tcp/4001')
      assert.equal(isPrivate(inside), true)
      treatAsPublic(['100.127.0.0/16'])
      assert.equal(isPrivate(inside), false)
      assert.equal(isPrivate(multiaddr('/ip4/100.126.5.6/tcp/4001')), true)
      assert.equal(isPrivate(multiaddr('/ip4/127.0.0.1/tcp/4001')), true)
      assert.equal(isPrivate(multiaddr('/ip4/192.168.1.2/tcp/4001')), true)
      assert.ok(publicRanges().includes('100.127.0.0/16'))
    })
  })

  describe('a limited (relayed) connection', () => {
    const remotePeer = peerIdFromString('12D3KooWGRUVh7F4hB3E9KzRmMJ7ZGNuuz6CQWGf4DvEP8WxoLWr')
    const limited = { remotePeer, limits: { bytes: 262_144n, seconds: 120 } } as unknown as Connection
    const direct = { remotePeer } as unknown as Connection

    it('takes a request that fits and refuses one that cannot, naming the limit and the way out', () => {
      checkLimits(limited, 32 * 1024)
      checkLimits(direct, 64 * 1024 * 1024)
      assert.throws(() => { checkLimits(limited, 1024 * 1024) }, (err: any) => {
        assert.ok(err instanceof LimitedConnectionError)
        assert.match(err.message, /only a limited relayed connection to 12D3KooWGRUV.* at most 262144 bytes for 120 s.*request of 1048576 bytes needs a direct connection/)
        return true
      })
    })
  })

  describe('public mode on loopback', () => {
    const nodes: TestNode[] = []
    after(async () => { await Promise.all(nodes.map(async n => { await n.destroy() })) })

    it('announces no loopback address, still lists where it listens, and starts unknown as a DHT server', async () => {
      const a = await startNode({ networkMode: 'public', nat: { privateAfter: 500 } })
      nodes.push(a)
      assert.deepEqual(a.addresses(), [])
      assert.match(a.listening()[0], /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
      const r = a.reachability()
      assert.equal(r.reachability, 'unknown')
      assert.equal(r.dht, 'server')
      assert.equal(a.libp2p.services.reachability != null, true)
    })

    it('a node nobody can verify turns private once a peer able to check was met: DHT client, and no busy relay search', async () => {
      const a = nodes[0]
      const b = await startNode({ networkMode: 'public', nat: { privateAfter: 500 }, bootstrap: a.listening() })
      nodes.push(b)
      const signal = AbortSignal.timeout(20_000)
      await Promise.all([a, b].map(async n => { await n.libp2p.services.reachability?.waitFor('private', signal) }))
      for (const n of [a, b]) {
        const r = n.reachability()
        assert.equal(r.reachability, 'private')
        assert.equal(r.dht, 'client')
        assert.equal(r.relaying, false)
        assert.deepEqual(r.relayed, [])
      }
      // no relay in this swarm: libp2p's relay search (a random walk that ends at once and starts
      // again) is not started, so timers still run (with it, this wait never ended)
      await new Promise(resolve => setTimeout(resolve, 1_000))
      assert.equal(a.reachability().reachability, 'private')
    })

    it('GET /v1/node gives the verdict and its addresses, and listening addresses apart from announced ones', async () => {
      const a = nodes[0]
      const dir = await tempDir()
      const control = new ControlServer({ node: a, dataDir: dir })
      await control.start()
      try {
        const token = (await readFile(join(dir, TOKEN_FILE), 'utf8')).trim()
        const info = await new ControlClient({ port: control.port, token }).node()
        assert.equal(info.reachability?.reachability, 'private')
        assert.equal(info.reachability?.dht, 'client')
        assert.deepEqual(info.addresses, [])
        assert.deepEqual(info.listening, a.listening())
      } finally {
        await control.stop()
      }
    })

    it('local mode checks nothing: no reachability service, unknown, DHT server', async () => {
      const c = await startNode()
      nodes.push(c)
      assert.equal(c.networkMode, 'local')
      assert.equal(c.libp2p.services.reachability, undefined)
      assert.equal(c.libp2p.services.autoNAT, undefined)
      assert.equal(c.reachability().reachability, 'unknown')
      assert.equal(c.reachability().dht, 'server')
      assert.equal(c.addresses()[0], c.listening()[0])
    })
  })

  describe('decloud node', () => {
    it('bad --nat, --public-ranges and --relay-limit values exit 2 with one line', async () => {
      const dir = await tempDir()
      const bad = [
        ['--nat', 'pcp'],
        ['--public-ranges', '10.0.0.0'],
        ['--public-ranges', '8.8.8.0/24'],
        ['--relay-limit', '1000'],
        ['--relay-limit', '0/10'],
        ['--no-relay', '--relay-limit', '1000/10']
      ]
      const results = await Promise.all(bad.map(async args => runCli(['node', '--dev', '--no-payments', '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', dir, ...args])))
      for (const [i, r] of results.entries()) {
        assert.notEqual(r.code, 0, bad[i].join(' '))
        assert.match(r.stderr, /^decloud: .*(nat|public.range|relay)/, `${bad[i].join(' ')}: ${r.stderr}`)
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
      }
    })
  })
})
