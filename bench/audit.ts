/* eslint-disable no-console */
/**
 * Merkle audits of one 4 MiB piece (docs/protocol.md "Storage evidence").
 * Local: the seller's answer (`answerAudit`: read the challenged leaves,
 * build the proofs from the stored leaf hashes) and the buyer's check
 * (`verifyAudit`) in one process, no network. RPC: `storage.audit` between
 * two real nodes over 127.0.0.1, the buyer checking every answer, with 1 and
 * 4 calls in flight. For scale: one put's Merkle tree (hashing the piece).
 *
 * Usage: `node dist/bench/audit.js [--seconds N] [--leaves C] [--json]`.
 */
import { randomBytes } from 'node:crypto'
import { answerAudit, challengedLeaves } from '../src/services/storage/audit.js'
import { auditArgs, newChallenge, parsePutAnswer, verifyAudit } from '../src/services/storage/client.js'
import { leafHashes, merkleRoot, treeLevels } from '../src/services/storage/merkle.js'
import { MiB, flags, fmt, machine, parsePositive, rate, runBenchmark, startBenchNode, table, time } from './common.js'

const USAGE = `usage: node dist/bench/audit.js [options]
  --seconds N   seconds per measurement (default 3)
  --leaves C    leaves per audit (default 32)
  --json        also print the results as one JSON line`

runBenchmark(async () => {
  const f = flags({ seconds: { type: 'string' }, leaves: { type: 'string' }, json: { type: 'boolean' } }, USAGE)
  const ms = parsePositive('seconds', f.seconds as string | undefined, 3) * 1000
  const leaves = parsePositive('leaves', f.leaves as string | undefined, 32, true)
  const piece = randomBytes(4 * MiB)
  const root = merkleRoot(piece)
  const hashes = leafHashes(piece)
  // the seller keeps the tree of a piece it audits (a small cache), so an audit does not rebuild it
  const levels = treeLevels(hashes)
  const treeMs = await time(async () => { merkleRoot(piece) })

  const local = await rate(ms, 1, async () => {
    const challenge = newChallenge()
    const { proof } = await answerAudit(piece.byteLength, hashes, challengedLeaves(challenge, piece.byteLength, leaves), async (o, l) => piece.subarray(o, o + l), levels)
    verifyAudit(proof, { root, size: piece.byteLength, challenge, leaves })
  })

  const seller = await startBenchNode({ storage: { sweepInterval: 0 } })
  const buyer = await startBenchNode()
  const seen = { answerBytes: 0 }
  const rows: string[][] = []
  const results: Record<string, number> = { local: local.perSecond, treeMs }
  try {
    const { id } = parsePutAnswer(await buyer.node.opencloud.callOk(seller.addr, { service: 'storage', method: 'put', body: piece }))
    for (const parallel of [1, 4]) {
      const r = await rate(ms, parallel, async () => {
        const challenge = newChallenge()
        const answer = await buyer.node.opencloud.callOk(seller.addr, { service: 'storage', method: 'audit', args: auditArgs(id, challenge, leaves) })
        seen.answerBytes = answer.byteLength
        verifyAudit(answer, { root, size: piece.byteLength, challenge, leaves })
      })
      rows.push([`storage.audit over loopback, ${parallel} in flight`, fmt(r.perSecond), fmt(r.cpuPerOp)])
      results[`rpc${parallel}`] = r.perSecond
    }
  } finally {
    await buyer.destroy()
    await seller.destroy()
  }
  console.log(machine())
  console.log(`4 MiB piece, ${leaves} leaves of 4 KiB per audit; answer ${fmt(seen.answerBytes)} bytes; Merkle tree of the piece (at put) ${fmt(treeMs, 1)} ms`)
  console.log(table(['audits of a 4 MiB piece', 'audits/s', 'CPU µs/audit'], [
    ['local: answer + verify, no network', fmt(local.perSecond), fmt(local.cpuPerOp)],
    ...rows
  ]))
  if (f.json === true) { console.log(JSON.stringify({ leaves, answerBytes: seen.answerBytes, ...results })) }
})
