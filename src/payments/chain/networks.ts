/**
 * Address encodings of the bitcoin networks decloud speaks. The embedded
 * regtest chain is bcoin, whose regtest prefixes differ from Bitcoin Core's;
 * a backend names the one it uses (`ChainBackend.network`).
 */
import type { AddressNetwork, ChainName } from '../types.js'

export const MAINNET: AddressNetwork = { bech32: 'bc', pubKeyHash: 0x00, scriptHash: 0x05, wif: 0x80 }
/** testnet3, testnet4 and signet share these */
export const TESTNET: AddressNetwork = { bech32: 'tb', pubKeyHash: 0x6f, scriptHash: 0xc4, wif: 0xef }
/** Bitcoin Core's regtest */
export const CORE_REGTEST: AddressNetwork = { bech32: 'bcrt', pubKeyHash: 0x6f, scriptHash: 0xc4, wif: 0xef }
/** bcoin's regtest (the embedded chain) */
export const BCOIN_REGTEST: AddressNetwork = { bech32: 'rb', pubKeyHash: 0x3c, scriptHash: 0x26, wif: 0x5a }

/** The usual encoding of a chain (Core's for regtest) */
export function networkOf (chain: ChainName): AddressNetwork {
  switch (chain) {
    case 'mainnet': return MAINNET
    case 'testnet':
    case 'signet': return TESTNET
    case 'regtest': return CORE_REGTEST
    default: throw new RangeError(`unknown chain "${String(chain)}"`)
  }
}

export const CHAINS: readonly ChainName[] = ['regtest', 'signet', 'testnet', 'mainnet']

export function isChainName (s: string): s is ChainName {
  return (CHAINS as readonly string[]).includes(s)
}
