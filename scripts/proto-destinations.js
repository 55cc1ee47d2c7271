/** Where the code generated from each proto/*.proto file lives */
export const PROTO_DESTINATIONS = {
  'opencloud.proto': 'src/protocols/opencloud/pb',
  'market.proto': 'src/market/pb',
  'storage.proto': 'src/services/storage/pb',
  'reputation.proto': 'src/reputation/pb'
}
