/**
 * Port-mapping constants: NAT-PMP (RFC 6886), PCP (RFC 6887), UPnP IGD (SSDP + SOAP) and the probe-and-map timing
 * of the port mapper. One table per protocol; every value carries its reason. Timing follows Tailscale's
 * `net/portmapper` (tailscale-protocols.md §5) unless the reason says otherwise.
 */

/** NAT-PMP wire constants (RFC 6886). */
export const NAT_PMP = {
  /** RFC 6886 §1.1 / §3.1: the gateway listens on UDP 5351 (shared with PCP, RFC 6887 §19.1). */
  SERVER_PORT: 5351,
  /** RFC 6886 §3.2: NAT-PMP's only version is 0. */
  VERSION: 0,
  /** RFC 6886 §3.2: opcode 0 asks for the gateway's external (public) IPv4 address. */
  OP_PUBLIC_ADDRESS: 0,
  /** RFC 6886 §3.3: opcode 1 maps a UDP port, 2 a TCP port. */
  OP_MAP_UDP: 1,
  OP_MAP_TCP: 2,
  /** RFC 6886 §3.2/§3.3: a response's opcode is the request's plus 128. */
  RESPONSE_BIT: 0x80,
  /** RFC 6886 §3.2: the public-address request is just version + opcode. */
  PUBLIC_ADDRESS_REQUEST_LEN: 2,
  /** RFC 6886 §3.2: version, op, result u16, epoch u32, IPv4 address. */
  PUBLIC_ADDRESS_RESPONSE_LEN: 1 + 1 + 2 + 4 + 4,
  /** RFC 6886 §3.3: version, op, reserved u16, internal port, suggested external port, lifetime u32. */
  MAP_REQUEST_LEN: 1 + 1 + 2 + 2 + 2 + 4,
  /** RFC 6886 §3.3: version, op, result u16, epoch u32, internal port, mapped external port, lifetime u32. */
  MAP_RESPONSE_LEN: 1 + 1 + 2 + 4 + 2 + 2 + 4,
  /** RFC 6886 §3.5: every response starts with version, op, result code and epoch (the error-response form). */
  RESPONSE_HEADER_LEN: 1 + 1 + 2 + 4,
} as const;

/** NAT-PMP result codes (RFC 6886 §3.5). */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  /** "Not Authorized/Refused": the box supports mapping but the user turned it off. */
  NOT_AUTHORIZED: 2,
  /** The gateway itself has no working uplink or DHCP lease. */
  NETWORK_FAILURE: 3,
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;
export type NatPmpResult = (typeof NatPmpResult)[keyof typeof NatPmpResult];

/** PCP wire constants (RFC 6887). */
export const PCP = {
  /** RFC 6887 §19.1: the PCP server port, the same as NAT-PMP's. */
  SERVER_PORT: 5351,
  /** RFC 6887 §7: PCP is version 2 (NAT-PMP was 0; 1 was never deployed). */
  VERSION: 2,
  /** RFC 6887 §7.1: the R bit (top bit of byte 1) marks a response. */
  RESPONSE_BIT: 0x80,
  /** RFC 6887 §14.1 ANNOUNCE, §11 MAP, §12 PEER. */
  OP_ANNOUNCE: 0,
  OP_MAP: 1,
  OP_PEER: 2,
  /** RFC 6887 §7.1/§7.2: the common request and response headers are both 24 bytes. */
  HEADER_LEN: 24,
  /** RFC 6887 §11.1: nonce 12, protocol 1, reserved 3, internal port 2, external port 2, external IP 16. */
  MAP_PAYLOAD_LEN: 12 + 1 + 3 + 2 + 2 + 16,
  /** RFC 6887 §11.1: the mapping nonce is 96 random bits; renewals and deletions repeat it. */
  NONCE_LEN: 12,
  /** RFC 6887 §7: messages are at most 1100 bytes (a bound for the decoder, not a wire field). */
  MAX_MESSAGE_LEN: 1100,
  /** IANA protocol number of UDP, the only protocol meshsock maps. */
  PROTO_UDP: 17,
  PROTO_TCP: 6,
} as const;

/** PCP result codes (RFC 6887 §7.4). */
export const PcpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  /** The server speaks PCP but will not map for us ("implemented but not enabled"). */
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  /** The client IP in the request is not the packet's source: a NAT sits between us and the PCP server. */
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;
export type PcpResult = (typeof PcpResult)[keyof typeof PcpResult];

/** UPnP IGD constants (UPnP Device Architecture 1.1, IGD:1/IGD:2 WANIPConnection / WANPPPConnection). */
export const UPNP = {
  /** UDA 1.1 §1.1.2: the SSDP multicast group and port. */
  SSDP_MULTICAST_IP: '239.255.255.250',
  SSDP_PORT: 1900,
  /**
   * UDA 1.1 §1.3.2: devices answer a multicast M-SEARCH after a random delay of up to MX seconds (1..5). We send
   * the minimum, 1 (Tailscale sends 2): our probe window is 250 ms, so a shorter spread puts more answers inside
   * it. Measured against miniupnpd 2.3.1 in nat-lab: first answer after 96-129 ms with MX 1, 206-251 ms with MX 2.
   */
  MX_SECONDS: 1,
  /** Search targets: everything (some gateways answer nothing more specific) and IGD v1 (answered by IGD:2 too). */
  ST_ALL: 'ssdp:all',
  ST_IGD1: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  /**
   * UDA §1.1.2: a router's scope is the LAN; TTL 2 as UDA recommends for multicast M-SEARCH (it never needs to
   * cross a router, and the lab's namespaces stay closed either way).
   */
  MULTICAST_TTL: 2,
  /** The WAN connection services we can map with, best first (tailscale-protocols.md §5). */
  SERVICE_WANIP2: 'urn:schemas-upnp-org:service:WANIPConnection:2',
  SERVICE_WANIP1: 'urn:schemas-upnp-org:service:WANIPConnection:1',
  SERVICE_WANPPP1: 'urn:schemas-upnp-org:service:WANPPPConnection:1',
  /** UPnP error 402 Invalid Args and 725 OnlyPermanentLeasesSupported: retry with lease 0 (permanent). */
  ERR_INVALID_ARGS: 402,
  ERR_ONLY_PERMANENT_LEASES: 725,
  /** 718 ConflictInMappingEntry: the external port belongs to another host; pick another port. */
  ERR_CONFLICT: 718,
  /** WANIPConnection:2 §2.5.16: AddAnyPortMapping may answer 728 NoPortMapsAvailable. */
  ERR_NO_PORT_MAPS: 728,
  /** Description of our mappings in the router's table; says who made them. */
  DESCRIPTION: 'meshsock-portmap',
  /** Random external ports for UPnP come from the non-privileged range (tailscale-protocols.md §5). */
  RANDOM_PORT_MIN: 1024,
  RANDOM_PORT_MAX: 65535,
  /** A device description is a few KiB; a cap keeps a hostile LAN device from feeding us megabytes. */
  MAX_DESCRIPTION_BYTES: 64 * 1024,
  /** SOAP answers are a few hundred bytes. */
  MAX_SOAP_BYTES: 16 * 1024,
  /** At most this many description URLs are remembered from SSDP answers (Tailscale picks among at most 10). */
  MAX_LOCATIONS: 10,
  /** An SSDP answer is one small HTTP header block (typically 300-500 bytes); anything longer is not one. */
  MAX_SSDP_BYTES: 4096,
} as const;

/** Probe and mapping timing of the port mapper (all milliseconds unless named _S). */
export const PORTMAP = {
  /** Probe window: PMP public address + PCP ANNOUNCE + SSDP, all answered within it on a LAN (Tailscale: 250 ms). */
  PROBE_TIMEOUT_MS: 250,
  /** After the first UPnP answer, keep collecting others this long (Tailscale: 50 ms). */
  UPNP_COLLECT_MS: 50,
  /** Requested mapping lifetime for PMP, PCP and UPnP (Tailscale: 2 h; RFC 6886 §3.3 recommends 7200 s). */
  LIFETIME_S: 7200,
  /** Renew when this fraction of the granted lifetime has passed (RFC 6886 §3.3: renew at half). */
  RENEW_FRACTION: 0.5,
  /** Shortest renewal interval accepted, so a router granting 1 s lifetimes cannot make us spin. */
  MIN_RENEW_MS: 5_000,
  /** PMP/PCP request retransmission: first wait (RFC 6886 §3.1: 250 ms, doubling). */
  RETRANSMIT_INITIAL_MS: 250,
  /** Give up on one PMP/PCP mapping request after this long (Tailscale: 5 s for the whole mapping attempt). */
  REQUEST_TIMEOUT_MS: 4_000,
  /** One UPnP HTTP request (description or SOAP) may take this long on a LAN. */
  HTTP_TIMEOUT_MS: 2_000,
  /** Release on close: wait this long for the router's answer, then close anyway. */
  RELEASE_TIMEOUT_MS: 1_000,
  /** While mapped with PMP/PCP, ask for the epoch this often, so a router reboot is noticed (RFC 6886 §3.6). */
  EPOCH_CHECK_INTERVAL_MS: 60_000,
  /** Nothing answered or every protocol refused: probe again after this long, doubling up to the maximum. */
  RETRY_MIN_MS: 30_000,
  /** Upper bound of the retry backoff (Tailscale trusts a seen service for 10 min). */
  RETRY_MAX_MS: 600_000,
  /** A failed renewal is retried this often while the mapping has not expired yet. */
  RENEW_RETRY_MS: 30_000,
  /** UPnP AddPortMapping attempts with a fresh random port after 718 ConflictInMappingEntry. */
  UPNP_CONFLICT_RETRIES: 3,
  /** RFC 6886 §3.6: the epoch may lag our clock by 1/8 of the elapsed time plus 2 s before we call it a reboot. */
  EPOCH_SLACK_S: 2,
} as const;

/** The port-mapping protocols, in the default order of preference (tailscale-protocols.md §5). */
export const PORTMAP_PROTOCOLS = ['pmp', 'pcp', 'upnp'] as const;
export type PortmapProtocol = (typeof PORTMAP_PROTOCOLS)[number];
