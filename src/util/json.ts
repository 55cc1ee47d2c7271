const encoder = new TextEncoder()

/** JSON bytes of a record, bigints as decimal strings (amounts in sats are bigints) */
export function json (value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString() : v))
}
