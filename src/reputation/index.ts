/**
 * Reputation (docs/reputation.md): first-hand records of promises kept and
 * broken, local trust, signed reports on gossipsub, opinion trust, global
 * trust by EigenTrust, and the trust the policy and seller choice read.
 */
export { Reputation, MAX_REPUTATION_REPORTERS } from './model.js'
export type { ReputationInit, ReputationOptions, TrustExplanation } from './model.js'
export { RecordStore } from './records.js'
export type { Fact, FactInput, FactKind, FactRole, PeerState } from './records.js'
export { ReputationService, reputationService } from './service.js'
export type { ReputationComponents, ReputationServiceInit, PublishResult, ReportListener } from './service.js'
export { REPUTATION_TOPIC, MAX_REPORT_ENTRIES, MAX_REPORT_SIZE, signReport, verifyReport } from './report.js'
export type { Report, ReportClaim, ReportVerdict } from './report.js'
export { eigenTrust, TrustGraph, DEFAULT_EIGENTRUST, validateEigenTrustParams } from './eigentrust.js'
export type { EigenTrustParams, EigenTrustInput, EigenTrustResult, TrustRow } from './eigentrust.js'
export { opinionTrust, combinedTrust, DEFAULT_OPINION, validateOpinionParams } from './opinion.js'
export type { OpinionParams, WeighedClaim } from './opinion.js'
export { betaTrust, foldFact, DEFAULT_SCORE_PARAMS, FACT_WEIGHTS, validateScoreParams } from './score.js'
export type { BetaState, ScoreParams } from './score.js'
