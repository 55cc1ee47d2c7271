import { BYTE_SECONDS_PER_GIB_MONTH, isByteSecond } from '../../protocols/opencloud/api/units.js'
import { isName } from '../../util/names.js'
import { EXIT, UsageError, commonOptions, commonUsage, out, parse, parseUnits, readCommon, terminalSafe } from '../command.js'
import { fromNodeOrSwarm } from '../node-or-swarm.js'
import type { MarketJson } from '../../node/reports.js'
import type { Command } from '../command.js'

const usage = `usage: decloud market [service] [options]

Shows the market's price book: per service and method, every seller's
price (cheapest first), the minimum, median, maximum and spread, and the age
of each entry. Prices are integer satoshis; "price" is base + the usage of
1,000,000 units of service (bytes, byte·days…), or --units.

When a node is running for the data dir it shows that node's book (control
API); otherwise a short-lived client node joins the swarm through
--bootstrap and shows what its bootstrap peers know.

options:
  --method NAME          only this method
  --units N              units of service the price column is for (default 1000000)
${commonUsage('json', 'bootstrap', 'network-mode', 'data-dir')}

exit codes: 0 printed · 1 failed · 2 bad command line

examples:
  decloud market
  decloud market storage --method put --units 1048576
`

export const command: Command = {
  name: 'market',
  summary: 'show the price book: sellers, prices, median and spread per service',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      method: { type: 'string' },
      units: { type: 'string' },
      ...commonOptions('json', 'bootstrap', 'network-mode', 'data-dir')
    })
    if (positionals.length > 1) { throw new UsageError('usage: decloud market [service] (see decloud market --help)') }
    const service = positionals[0]
    if (service != null && !isName(service)) { throw new UsageError(`"${service}" is not a service name`) }
    if (values.method != null && !isName(values.method)) { throw new UsageError(`"${values.method}" is not a method name`) }
    const usage = parseUnits(values.units)
    const common = readCommon(values)
    const answer: MarketJson = await fromNodeOrSwarm({
      ...common,
      what: 'read the market',
      viaNode: async (client) => client.market({ service, method: values.method, units: usage }),
      viaSwarm: async (node) => {
        const { marketJson } = await import('../../node/reports.js')
        return marketJson(node, { service, method: values.method, usage })
      }
    })
    if (common.json) {
      await out(JSON.stringify(answer, null, 2) + '\n')
      return EXIT.OK
    }
    // peer ids, prices and addresses come from other nodes' announcements
    await out(terminalSafe(renderMarket(answer)))
    return EXIT.OK
  }
}

function age (ms: number): string {
  if (ms < 1_000) { return `${ms}ms` }
  if (ms < 120_000) { return `${Math.round(ms / 1000)}s` }
  if (ms < 7_200_000) { return `${Math.round(ms / 60_000)}m` }
  return `${Math.round(ms / 3_600_000)}h`
}

/** Human rendering: a block per service/method */
export function renderMarket (a: MarketJson): string {
  if (a.summary.length === 0) { return 'the price book is empty\n' }
  const blocks: string[] = []
  for (const s of a.summary as Array<Record<string, any>>) {
    const unit = (s.units as string[]).length === 0
      ? 'per call'
      : isByteSecond(s.units) && BigInt(s.usage) === BYTE_SECONDS_PER_GIB_MONTH ? 'per GiB-month' : `for ${String(s.usage)} ${(s.units as string[]).join('·')}`
    const lines = [`${String(s.service)}.${String(s.method)}  (sat ${unit})  sellers ${String(s.sellers.length)}  min ${String(s.min)}  median ${String(s.median)}  max ${String(s.max)}  spread ${String(s.spread)}`]
    const rows = (s.sellers as Array<Record<string, any>>).map(e => [String(e.peerId), String(e.price), `${String(e.base)} + ${String(e.rate)}/${String(e.per)}`, age(Number(e.age))])
    const head = ['  peer', 'price', 'base + rate/per', 'age']
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (i === 0 ? 2 : 0) + r[i].length)))
    for (const r of [head, ...rows.map(r => [`  ${r[0]}`, ...r.slice(1)])]) { lines.push(r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ')) }
    blocks.push(lines.join('\n'))
  }
  return blocks.join('\n\n') + '\n'
}
