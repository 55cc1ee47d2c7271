import { join } from 'node:path'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { findRunningNode } from '../../control/client.js'
import { DB_DIR, readKey } from '../../node/data-dir.js'
import { reputationJson } from '../../reputation/json.js'
import { Reputation } from '../../reputation/model.js'
import { Store } from '../../store/index.js'
import { CliError, EXIT, UsageError, commonOptions, commonUsage, out, parse, readCommon, terminalSafe } from '../command.js'
import type { ReputationJson, ReputationListJson } from '../../reputation/json.js'
import type { TrustExplanation } from '../../reputation/model.js'
import type { Command } from '../command.js'

const usage = `usage: decloud reputation [peer] [options]

Shows what this node thinks of other peers (docs/reputation.md): for one
peer, its trust (what the policy's trust bands and seller choice use), the
first-hand records behind it (promises kept and broken, calls served and
failed, with their evidence), its share of the global trust vector
(EigenTrust), and what reporters said of it, each with its opinion trust;
without a peer, every peer known, most trusted first, and the reporters heard.

When a node is running for the data dir it asks that node (control API);
otherwise it reads the data dir's records (reports heard by a node live only
in the running node).

options:
${commonUsage('json', 'data-dir')}

exit codes: 0 printed · 1 failed · 2 bad command line

examples:
  decloud reputation
  decloud reputation 12D3KooW... --json
`

export const command: Command = {
  name: 'reputation',
  summary: 'show the trust of peers and why: records, reports, opinion and global trust',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, { ...commonOptions('json', 'data-dir') })
    if (positionals.length > 1) { throw new UsageError('usage: decloud reputation [peer] (see decloud reputation --help)') }
    let peer: string | undefined
    if (positionals[0] != null) {
      try {
        peer = peerIdFromString(positionals[0].replace(/^oc:/, '')).toString()
      } catch {
        throw new UsageError(`"${positionals[0]}" is not a peer id`)
      }
    }
    const common = readCommon(values)
    const running = await findRunningNode(common.dataDir).catch(() => undefined)
    let answer: ReputationJson
    if (running != null) {
      answer = await running.client.reputation(peer)
    } else {
      const key = await readKey(common.dataDir)
      if (key == null) { throw new CliError(`${common.dataDir} holds no node: no reputation records (start one with decloud node)`) }
      const store = new Store(join(common.dataDir, DB_DIR))
      await store.open()
      try {
        const rep = new Reputation({ db: store.sub('reputation'), self: peerIdFromPrivateKey(key).toString() })
        await rep.open()
        answer = await reputationJson(rep, peer)
      } finally {
        await store.close()
      }
    }
    if (common.json) {
      await out(JSON.stringify(answer, null, 2) + '\n')
      return EXIT.OK
    }
    // peer ids and evidence come from other nodes
    await out(terminalSafe(peer != null ? renderPeer(answer as TrustExplanation) : renderList(answer as ReputationListJson)))
    return EXIT.OK
  }
}

const fmt = (x: number | undefined): string => x == null ? '-' : x.toFixed(3)

export function renderPeer (e: TrustExplanation): string {
  const lines = [
    `peer      ${e.peer}`,
    `trust     ${e.trust == null ? 'none known' : fmt(e.trust)}${e.pretrusted ? '  (pre-trusted)' : ''}`,
    `local     ${e.local == null ? 'no first-hand records' : `${fmt(e.local.trust)} from ${e.local.facts} facts (${e.local.bad} bad)`}`,
    `global    ${e.global.toExponential(3)}`
  ]
  if (e.facts.length > 0) {
    lines.push('records (newest first):')
    for (const f of e.facts) { lines.push(`  ${new Date(f.at).toISOString()}  ${f.role.padEnd(8)} ${f.kind.padEnd(16)} value ${f.value} weight ${f.weight}`) }
  }
  if (e.claims.length > 0) {
    lines.push('reports:')
    for (const c of e.claims) { lines.push(`  ${c.reporter}  says ${fmt(c.trust)} (${c.facts} facts, ${c.bad} bad)  opinion trust ${fmt(c.opinionTrust)}  weight ${fmt(c.weight)}`) }
  }
  return lines.join('\n') + '\n'
}

export function renderList (l: ReputationListJson): string {
  if (l.peers.length === 0 && l.reporters.length === 0) { return 'no reputation records yet\n' }
  const lines = ['peer                                                   trust  local  facts  bad']
  for (const p of l.peers) { lines.push(`${p.peer.padEnd(54)} ${fmt(p.trust)}  ${fmt(p.local)}  ${String(p.facts).padStart(5)}  ${String(p.bad).padStart(3)}`) }
  if (l.reporters.length > 0) {
    lines.push('', 'reporter                                               opinion trust  claims')
    for (const r of l.reporters) { lines.push(`${r.reporter.padEnd(54)} ${fmt(r.opinionTrust).padStart(13)}  ${String(r.claims).padStart(6)}`) }
  }
  return lines.join('\n') + '\n'
}
