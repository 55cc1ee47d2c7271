/**
 * The node's local control API: JSON over HTTP on 127.0.0.1, authorised by a
 * token file in the data dir. See docs/control-api.md.
 */
export { ControlServer, DEFAULT_MAX_REQUEST_SIZE, DEFAULT_SELLERS_TIMEOUT, MAX_SELLERS_TIMEOUT, MAX_SELLERS_LIMIT } from './server.js'
export type { ControlServerInit, ControlledNode } from './server.js'
export { ControlClient, ControlApiError, findRunningNode } from './client.js'
export type { ControlClientInit, NodeJson, PeersJson, RunningNode, RequestOptions, SellersRequest, MarketRequest } from './client.js'
export { callResultJson, API_PREFIX, BODY_HEX_LIMIT } from './api.js'
export type { CallJson, CallRequestJson, ErrorJson } from './api.js'
export { CONTROL_FILE, TOKEN_FILE, CONTROL_HOST, readControlFiles } from './files.js'
export type { ControlFile } from './files.js'
export { decloudVersion } from './version.js'
