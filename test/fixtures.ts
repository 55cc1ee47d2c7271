import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDecloudNode } from '../src/node/index.js'
import type { DecloudNode, DecloudNodeOptions } from '../src/node/index.js'

/** Every temp dir handed out; whatever a test did not remove goes when the process exits */
const made = new Set<string>()
process.once('exit', () => {
  for (const dir of made) { rmSync(dir, { recursive: true, force: true }) }
})

/** A fresh data dir under the OS temp dir, removed at the latest when the test process exits */
export async function tempDir (prefix = 'decloud-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  made.add(dir)
  return dir
}

export interface TestNode extends DecloudNode {
  /** first listen address with /p2p/ */
  addr: string
  /** stop the node and delete its data dir */
  destroy(): Promise<void>
}

/** A real decloud node on 127.0.0.1, random port, temp data dir */
export async function startNode (options: DecloudNodeOptions = {}): Promise<TestNode> {
  const dataDir = options.dataDir ?? await tempDir()
  const node = await createDecloudNode({ listen: ['/ip4/127.0.0.1/tcp/0'], ...options, dataDir })
  const addr = node.addresses()[0]
  return Object.assign(node, {
    addr,
    async destroy () {
      await node.stop()
      if (options.dataDir == null) { await rm(dataDir, { recursive: true, force: true }) }
    }
  })
}

/**
 * `promise`, or a rejection naming `what` once `ms` have passed: a promise
 * that a bug would leave pending fails the test with that message instead
 * of running into mocha's timeout
 */
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new assert.AssertionError({ message: `${what} (still pending after ${ms} ms)` })) }, ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Polls `fn` every `every` ms until it returns true (resolves true) or
 * `deadline` ms have passed (resolves false): for gossip and DHT state that
 * spreads in its own time
 */
export async function eventually (fn: () => Promise<boolean> | boolean, deadline = 15_000, every = 100): Promise<boolean> {
  const end = Date.now() + deadline
  for (;;) {
    if (await fn()) { return true }
    if (Date.now() > end) { return false }
    await new Promise(resolve => setTimeout(resolve, every))
  }
}
