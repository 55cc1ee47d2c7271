import { statusPath } from './status.js'
import type { Response, Status } from './pb/opencloud.js'

/** A call ended with a status other than ok */
export class OpenCloudStatusError extends Error {
  static override name = 'OpenCloudStatusError'
  override name = 'OpenCloudStatusError'
  readonly response: Response
  readonly status: Status
  readonly path: string

  constructor (response: Response) {
    super(`${statusPath(response.status)}${response.detail !== '' ? `: ${response.detail}` : ''}`)
    this.response = response
    this.status = response.status
    this.path = statusPath(response.status)
  }
}

/** The peer sent something that is not valid OpenCloud */
export class ProtocolViolationError extends Error {
  static override name = 'ProtocolViolationError'
  override name = 'ProtocolViolationError'
}

/** A response's signature did not verify against the peer's key */
export class InvalidResponseSignatureError extends Error {
  static override name = 'InvalidResponseSignatureError'
  override name = 'InvalidResponseSignatureError'
}

/** A service or method definition is not valid */
export class InvalidServiceError extends Error {
  static override name = 'InvalidServiceError'
  override name = 'InvalidServiceError'
}
