/**
 * Timing and sizing of the virtual socket, in one table. Values follow Tailscale's magicsock
 * (tailscale-protocols.md §3.7) unless a comment says why meshsock differs.
 */
export const MAGICSOCK = {
  /** Ping the best path this often while the session is active; two missed heartbeats lose trust. */
  HEARTBEAT_INTERVAL_MS: 3_000,
  /**
   * meshsock addition: while data flows (a send within the last interval), heartbeat every second instead of every
   * 3 s, and a heartbeat unanswered after HEARTBEAT_LOSS_MS (or 4 × the path's latency, whichever is longer) ends
   * trust at once: sends go over DERP and UDP together until a pong returns. A path that dies silently then costs
   * at most about 1.3 s of datagrams instead of up to 6.5 s; a single lost heartbeat costs only duplicate copies.
   */
  HEARTBEAT_ACTIVE_INTERVAL_MS: 1_000,
  HEARTBEAT_LOSS_MS: 250,
  /** A pong makes the direct path trusted (UDP-only sends) for this long. */
  TRUST_UDP_ADDR_MS: 6_500,
  /** A ping without a pong after this long has failed. */
  PING_TIMEOUT_MS: 5_000,
  /** Steady-state minimum interval between discovery pings to one candidate. */
  DISCO_PING_INTERVAL_MS: 5_000,
  /**
   * meshsock addition: while a candidate has never answered, retry it sooner than every 5 s (0, 0.2, 0.6, 1.4,
   * 3 s after discovery starts) so a first ping lost to a NAT that was not yet open costs 200 ms, not 5 s.
   */
  DISCOVERY_RETRY_MS: [200, 400, 800, 1_600] as readonly number[],
  /**
   * meshsock addition: a ping from a candidate that has not answered ours (our ping was likely dropped by a NAT not
   * yet open, or by a peer that did not know our disco key yet) is answered with our own ping at once, at most this
   * often per candidate — both sides learn the path within one round trip instead of waiting for a retry.
   */
  RECIPROCAL_PING_MIN_MS: 100,
  /** Data over DERP while we trust a direct path re-validates that path at most this often. */
  DERP_RECV_REVALIDATE_MS: 1_000,
  /** No outbound data for this long: the session is idle, heartbeats stop. */
  SESSION_ACTIVE_TIMEOUT_MS: 45_000,
  /** Re-probe every candidate this often even with a good direct path, looking for a better one. */
  UPGRADE_INTERVAL_MS: 60_000,
  /** Skip the periodic re-probe when the current path is at least this fast. */
  GOOD_ENOUGH_LATENCY_MS: 5,
  /** Refresh our endpoints (re-STUN) before a CallMeMaybe if they are older than this. */
  ENDPOINTS_FRESH_MS: 27_000,
  /** Periodic re-STUN while active: uniform in [min, max] — just under 30 s, a common NAT UDP timeout. */
  RESTUN_MIN_MS: 20_000,
  RESTUN_MAX_MS: 26_000,
  /** Runtime-learned candidates (ping sources, CallMeMaybe) unheard for this long are pruned. */
  CANDIDATE_PRUNE_MS: 45_000,
  /** Recent pong history per candidate. */
  PONG_HISTORY: 64,
  /** Hard cap on candidates per peer (a hostile CallMeMaybe cannot grow memory without bound). */
  MAX_CANDIDATES: 100,
  /** meshsock addition: send our CallMeMaybe back when we receive one, at most this often per peer. */
  CALL_ME_MAYBE_REPLY_MIN_MS: 2_000,
  /** ... but at once (bounded by this) when the peer's CallMeMaybe shows it does not know our disco key yet. */
  CALL_ME_MAYBE_FIRST_REPLY_MIN_MS: 100,
  /** meshsock addition: resend CallMeMaybe this often while the peer has never answered (it may not know us yet). */
  CALL_ME_MAYBE_UNANSWERED_MS: 1_000,
  /** Rebind after a send error at most this often. */
  REBIND_THROTTLE_MS: 5_000,
  /** How often to look for interface/address changes (Node has no netlink events). */
  INTERFACE_POLL_MS: 1_000,
  /** Datagrams queued per peer while no path exists yet (first datagrams before discovery or DERP). */
  PENDING_QUEUE_MAX: 128,
  /** Queued datagrams older than this are dropped (counted) instead of being sent late. */
  PENDING_MAX_AGE_MS: 5_000,
  /**
   * Data from a candidate address that no pong has proven yet (the peer found the path a moment before us) is held
   * this long, at most this many datagrams per peer, and delivered once a pong proves the address — never trusted
   * on the strength of a ping alone, which an on-path attacker could replay from its own address.
   */
  HELD_MAX_AGE_MS: 1_000,
  HELD_MAX: 32,
  /** Socket buffers: large enough that a burst of 10k datagrams is not dropped by the kernel. */
  SOCKET_BUFFER_BYTES: 7 << 20,
  /** Received datagrams buffered for an async iterator that is not being read (drop-oldest beyond). */
  ITERATOR_QUEUE_MAX: 4_096,
  /**
   * meshsock addition: while a peer uses both DERP and UDP, the same datagram may arrive on both paths; a copy
   * seen on the other path within this window is dropped (counted as 'duplicate').
   */
  DEDUP_WINDOW_MS: 2_000,
} as const;
