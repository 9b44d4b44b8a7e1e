/**
 * Gateway epoch validation: NAT-PMP and PCP servers put "seconds since my mapping table was (re)initialised" in
 * every response. If it goes backwards, or lags our own clock too much, the gateway rebooted or lost its state,
 * and every mapping we hold must be re-created at once.
 *
 * NAT-PMP, RFC 6886 §3.6: expected = previous epoch + 7/8 of our elapsed seconds; a reset when the new epoch is
 * more than 2 s below that.
 *
 * PCP, RFC 6887 §8.5: a reset when the new epoch is more than 1 s below the previous one, or when the server's
 * and our elapsed times differ by more than 2 s plus 1/16 of the elapsed time in either direction.
 */
import { PORTMAP } from './constants.js';

/** The last epoch heard from a gateway and when (our clock, ms). */
export interface EpochSample {
  readonly epoch: number;
  readonly at: number;
}

/**
 * True when `epoch`, received at `now`, shows that the gateway lost its mappings since `prev`. Pure; never
 * throws.
 */
export function epochReset(kind: 'pmp' | 'pcp', prev: EpochSample, epoch: number, now: number): boolean {
  const elapsedS = Math.max(0, (now - prev.at) / 1000);
  if (kind === 'pmp') return epoch < prev.epoch + (elapsedS * 7) / 8 - PORTMAP.EPOCH_SLACK_S;
  if (epoch + 1 < prev.epoch) return true;
  const serverDelta = epoch - prev.epoch;
  return (
    elapsedS + PORTMAP.EPOCH_SLACK_S < serverDelta - serverDelta / 16 ||
    serverDelta + PORTMAP.EPOCH_SLACK_S < elapsedS - elapsedS / 16
  );
}
