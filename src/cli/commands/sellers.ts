import { isName } from '../../util/names.js'
import { EXIT, UsageError, commonOptions, commonUsage, out, parse, parseUnits, parseTimeout, positiveInt, readCommon, terminalSafe } from '../command.js'
import { fromNodeOrSwarm } from '../node-or-swarm.js'
import type { SellersJson } from '../../node/reports.js'
import type { Command } from '../command.js'

const DEFAULT_TIMEOUT = 10_000
const MAX_TIMEOUT = 120_000
const MAX_LIMIT = 20

const usage = `usage: decloud sellers <service> [options]

Finds the nodes that sell <service> through decloud's DHT and prints them,
cheapest first by the market's price book: peer id, price, addresses. Sellers
found in the DHT that announced no price come last.

When a node is running for the data dir it asks that node (control API);
otherwise (or when the running node is too old to answer) a short-lived
DHT-client node joins the swarm through --bootstrap (or the running node).

options:
  --method NAME          rank by the price of this method (default: storage put,
                         sha256 hash; for other services the first priced one)
  --units N              units of service the price is for (default 1000000)
  --timeout MS           deadline of the DHT lookup (default ${DEFAULT_TIMEOUT}, at most ${MAX_TIMEOUT})
  --limit N              at most N sellers (1 to ${MAX_LIMIT})
${commonUsage('json', 'bootstrap', 'network-mode', 'data-dir')}

exit codes: 0 printed (also when none was found) · 1 failed · 2 bad command line

examples:
  decloud sellers storage
  decloud sellers storage --method put --units 1048576 --json
  decloud sellers storage --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo…
`

export const command: Command = {
  name: 'sellers',
  summary: 'find the sellers of a service through the DHT, cheapest first',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      method: { type: 'string' },
      units: { type: 'string' },
      ...commonOptions('timeout'),
      limit: { type: 'string' },
      ...commonOptions('json', 'bootstrap', 'network-mode', 'data-dir')
    })
    if (positionals.length !== 1) { throw new UsageError('usage: decloud sellers <service> (see decloud sellers --help)') }
    const [service] = positionals
    if (!isName(service)) { throw new UsageError(`"${service}" is not a service name`) }
    if (values.method != null && !isName(values.method)) { throw new UsageError(`"${values.method}" is not a method name`) }
    const timeout = parseTimeout(values.timeout, DEFAULT_TIMEOUT, MAX_TIMEOUT)
    const limit = values.limit != null ? positiveInt('limit', values.limit, MAX_LIMIT) : undefined
    if (limit != null && limit > MAX_LIMIT) { throw new UsageError(`--limit is at most ${MAX_LIMIT}`) }
    const usage = parseUnits(values.units)
    const common = readCommon(values)
    // without --method the node (or the swarm client) ranks by rankingMethod(service): storage put, sha256 hash
    const method = values.method

    const answer: SellersJson = await fromNodeOrSwarm({
      ...common,
      what: 'look up sellers',
      viaNode: async (client) => client.sellers({ service, method, units: usage, timeout, limit }),
      viaSwarm: async (node) => {
        const { sellersJson } = await import('../../node/reports.js')
        return sellersJson(node, { service, method, usage, timeout, limit })
      }
    })
    // the price book part is not bounded by the DHT's limit
    if (limit != null) { answer.sellers = answer.sellers.slice(0, limit) }
    if (common.json) {
      await out(JSON.stringify(answer, null, 2) + '\n')
      return EXIT.OK
    }
    // peer ids, prices and addresses come from other nodes' announcements
    await out(terminalSafe(renderSellers(answer)))
    return EXIT.OK
  }
}

/** Human rendering: one line per seller, cheapest first */
export function renderSellers (a: SellersJson): string {
  if (a.sellers.length === 0) { return `no sellers of ${a.service} found (${a.elapsed} ms)\n` }
  const priceHead = a.method != null ? `${a.method} price (sat${a.usage != null ? ` for ${a.usage} units` : ' per 10^6 units'})` : 'price'
  const rows = a.sellers.map(s => [s.peerId, s.price ?? '-', s.foundIn.join('+'), s.addresses[0] ?? ''])
  const head = ['peer', priceHead, 'found in', 'address']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (r: string[]): string => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ').trimEnd()
  return [`${a.sellers.length} seller${a.sellers.length === 1 ? '' : 's'} of ${a.service} (${a.elapsed} ms)`, line(head), ...rows.map(line)].join('\n') + '\n'
}
