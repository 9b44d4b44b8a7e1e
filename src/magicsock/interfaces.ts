/** A cheap fingerprint of the host's interface addresses, polled to notice address changes (no netlink in Node). */
import { networkInterfaces } from 'node:os';

export function interfaceSignature(): string {
  const parts: string[] = [];
  for (const [name, list] of Object.entries(networkInterfaces())) {
    for (const a of list ?? []) parts.push(`${name}/${a.address}/${a.netmask}`);
  }
  return parts.sort().join(',');
}
