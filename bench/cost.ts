/* eslint-disable no-console */
/**
 * The cost model of docs/files.md ("What storing costs"): sats per GiB-month
 * of user data at a redundancy k/n and a storage price, with the on-chain
 * cost of paying sellers, against Storj, Sia and Dropbox. Arithmetic only
 * (no nodes): every assumption is a flag with its default printed, so the
 * table can be redone for another BTC price, fee rate or payment interval.
 * Amounts are in sats as decimals: a model, not money that moves.
 * Usage: `node dist/bench/cost.js --help`.
 */
import { parseRedundancy } from '../src/files/index.js'
import { flags, fmt, parsePositive } from './common.js'

const USAGE = `usage: node dist/bench/cost.js [options]
  --price SATS        seller price, sat per GiB-month of piece bytes (default 2, decloud node's default)
  --redundancy K/N    (default 4/8: n/k = 2x expansion, one piece per seller)
  --btc-usd USD       BTC price assumed (default 100000: 1 sat = $0.001)
  --fee-rate SATVB    on-chain fee rate, sat/vB (default 10)
  --interval MONTHS   months paid per payment, i.e. the lease length (default 1)
  --max-tab SATS      the seller's tab limit: one payment settles at most this (default 100000)
  --stored LIST       GiB of user data stored, comma-separated (default 1,10,100,1024)`

const opts = flags({
  price: { type: 'string' },
  redundancy: { type: 'string' },
  'btc-usd': { type: 'string' },
  'fee-rate': { type: 'string' },
  interval: { type: 'string' },
  'max-tab': { type: 'string' },
  stored: { type: 'string' }
}, USAGE)
const price = parsePositive('price', opts.price as string | undefined, 2)
const { k, n } = parseRedundancy((opts.redundancy as string | undefined) ?? '4/8')
const btcUsd = parsePositive('btc-usd', opts['btc-usd'] as string | undefined, 100_000)
const feeRate = parsePositive('fee-rate', opts['fee-rate'] as string | undefined, 10)
const interval = parsePositive('interval', opts.interval as string | undefined, 1)
const maxTab = parsePositive('max-tab', opts['max-tab'] as string | undefined, 100_000, true)
const stored = ((opts.stored as string | undefined) ?? '1,10,100,1024').split(',').map(s => parsePositive('stored', s, 1))

/** One payment: 1 P2WPKH input, the seller's output and change (docs/payments.md) */
const TX_VBYTES = 141
/** The smallest P2WPKH output that is relayed */
const DUST = 294
const GIB_PER_TB = 1e12 / 2 ** 30
const satUsd = btcUsd / 1e8
const usdToSat = (usd: number): number => usd / satUsd

const fee = TX_VBYTES * feeRate
const expansion = n / k
const perUserGiB = price * expansion
/** decimals for sat amounts: whole sats unless the price is below a few sats */
const d = perUserGiB < 100 ? 2 : 0
console.log(`# assumptions: seller price ${fmt(price)} sat/GiB-month of piece bytes; ${k}/${n} (${fmt(expansion, 2)}× expansion, GCM tags ~4e-6 more) on ${n} sellers;`)
console.log(`# BTC = $${fmt(btcUsd)} (1 sat = $${satUsd}); fee ${feeRate} sat/vB × ${TX_VBYTES} vB = ${fmt(fee)} sat per payment; dust minimum ${DUST} sat;`)
console.log(`# deferred: one tab per seller settled every ${fmt(interval, 1)} month(s), at most ${fmt(maxTab)} sat per settlement; attached: one payment per ${DUST} sat (the rest is credit)`)
console.log(`storage: ${fmt(perUserGiB, d)} sat per GiB-month of user data ($${fmt(perUserGiB * satUsd, d === 0 ? 2 : 5)}, $${fmt(perUserGiB * satUsd * GIB_PER_TB, 0)} per TB-month)`)
console.log('')
console.log('stored GiB  storage sat/month  payments/month  fees sat/month  sat per GiB-month  overhead   attached: fees sat/month  overhead')
for (const gib of stored) {
  const bill = gib * perUserGiB
  const perSeller = bill / n
  // a seller's bill for one interval is settled in ceil(bill / maxTab) payments, at least one
  const deferredPayments = n * Math.max(1, Math.ceil(perSeller * interval / maxTab)) / interval
  const deferredFees = deferredPayments * fee
  // attached, every 294-sat output leaves credit that pays the next calls: one payment per 294 sat of bill
  const attachedFees = n * Math.max(1, Math.ceil(perSeller / DUST)) * fee
  console.log([
    fmt(gib).padStart(10),
    fmt(bill, d).padStart(17),
    fmt(deferredPayments, 1).padStart(14),
    fmt(deferredFees).padStart(14),
    fmt((bill + deferredFees) / gib, d).padStart(17),
    `${fmt(100 * deferredFees / bill, 1)}%`.padStart(9),
    fmt(attachedFees).padStart(25),
    `${fmt(100 * attachedFees / bill, 0)}%`.padStart(9)
  ].join('  '))
}
console.log('')
const others: Array<[string, number, string]> = [
  ['Storj', 4 / GIB_PER_TB, '$4/TB-month storage (egress $7/TB extra)'],
  ['Sia', 2 * 3 / GIB_PER_TB, '~$2/TB-month host price (market, varies) × 3 for renterd\'s 10/30, plus contract fees'],
  ['Dropbox Plus', 11.99 / (2 * GIB_PER_TB), '$11.99/month for 2 TB, full; the whole $11.99 whatever is stored']
]
console.log('others        sat per GiB-month  $ per TB-month')
for (const [name, usd, note] of others) {
  console.log(`${name.padEnd(12)}  ${fmt(usdToSat(usd), 1).padStart(17)}  ${fmt(usd * GIB_PER_TB, 2).padStart(14)}  ${note}`)
}
const parity = usdToSat(4 / GIB_PER_TB) / expansion
console.log(`seller price matching Storj at ${k}/${n}, before fees: ${fmt(parity, 2)} sat/GiB-month (${fmt(price / parity, 0)}× below the default)`)
