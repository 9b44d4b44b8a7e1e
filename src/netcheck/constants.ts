/**
 * netcheck timing and sizing constants (tailscale-protocols.md §4.2, `net/netcheck/netcheck.go`). One table; each
 * value carries its reason.
 */
export const NETCHECK = {
  /** ReportTimeout: the whole report (STUN phase, then HTTPS fallback) never takes longer. */
  REPORT_TIMEOUT_MS: 5_000,
  /** stunProbeTimeout: after this long without finishing, UDP is assumed blocked and the STUN phase ends. */
  STUN_PROBE_TIMEOUT_MS: 3_000,
  /** httpsProbeTimeout: one HTTP(S) latency check (bounded by what is left of the report timeout). */
  HTTPS_PROBE_TIMEOUT_MS: 5_000,
  /** fullReportInterval: a full report (every region, 3 tries) at least this often; otherwise incremental. */
  FULL_REPORT_INTERVAL_MS: 5 * 60_000,
  /** defaultInitialRetransmitTime: spacing of the 3 tries per region in a full report (0 / 100 / 200 ms). */
  INITIAL_RETRANSMIT_MS: 100,
  /** Tries per region and family in a full report. */
  INITIAL_TRIES: 3,
  /** defaultActiveRetransmitTime: retry spacing in incremental reports when the region's last latency is unknown. */
  ACTIVE_RETRANSMIT_MS: 200,
  /** Incremental retry spacing is the last latency × 1.2, so a retry waits a little longer than one RTT. */
  INCREMENTAL_LATENCY_FACTOR: 1.2,
  /** From the third try on, each try waits n × 50 ms more, spreading retries beyond plain multiples. */
  INCREMENTAL_EXTRA_PER_TRY_MS: 50,
  /** numIncrementalRegions: incremental reports re-probe the 3 fastest regions of the last report. */
  INCREMENTAL_REGIONS: 3,
  /** The two fastest regions get 2 tries in an incremental report. */
  INCREMENTAL_FAST_TRIES: 2,
  /** The current home gets 4 tries so one lost packet cannot move the home (#13969). */
  INCREMENTAL_HOME_TRIES: 4,
  /** enoughRegions: once this many regions answered, stop after the slowest latency seen (×2 on full reports). */
  ENOUGH_REGIONS: 3,
  /** enoughRegions in verbose mode, so every region's latency is shown. */
  ENOUGH_REGIONS_VERBOSE: 100,
  /** Path netcheck times over HTTP(S) when UDP is blocked (derper serves it with 200 and an empty body). */
  LATENCY_CHECK_PATH: '/derp/latency-check',
  /** Largest latency-check body read before the response is considered done. */
  LATENCY_CHECK_MAX_BODY: 8 << 10,
} as const;
