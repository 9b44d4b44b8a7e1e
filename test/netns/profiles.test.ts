/**
 * Profile self-tests: every NAT profile, measured from outside with the probe tool (mapping per destination,
 * filtering of unsolicited senders, hairpin, TCP egress, port mapping), must behave as its name promises. And the
 * self-test must be able to fail: a site whose rules are swapped for another profile's is caught.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { PROFILE_NAMES } from '../../nat-lab/profiles.js';
import { describeFailures, selfTest, selfTestLab, type SelfTestResult } from '../../nat-lab/selftest.js';
import { createLab, type Lab } from '../../nat-lab/topology.js';
import { leftovers } from '../../nat-lab/cleanup.js';

const PROFILES = [...PROFILE_NAMES, 'same-lan+hairpin', 'easy+hairpin', 'full-cone+hairpin'];

labSuite('nat-lab profiles', () => {
  describe('behave as named', () => {
    let results: SelfTestResult[] = [];

    beforeAll(async () => {
      results = await selfTest(PROFILES);
    });

    it.each(PROFILES)('%s', (profile) => {
      const r = results.find((x) => x.profile === profile);
      expect(r, `no result for ${profile}`).toBeDefined();
      expect(describeFailures(r!), r!.measured.notes.join('\n')).toEqual([]);
      expect(r!.ok).toBe(true);
    });

    it('measures the RFC 4787 classes it claims', () => {
      const m = (p: string) => results.find((x) => x.profile === p)!.measured;
      expect([m('easy').mapping, m('easy').filtering]).toEqual(['EIM', 'APDF']);
      expect([m('easy-af').mapping, m('easy-af').filtering]).toEqual(['EIM', 'ADF']);
      expect([m('full-cone').mapping, m('full-cone').filtering]).toEqual(['EIM', 'EIF']);
      expect([m('hard').mapping, m('hard').portPreserved]).toEqual(['APDM', false]);
      expect(m('open').mapping).toBe('none');
      expect(m('cgnat').mappedIp).toMatch(/^198\.18\./);
      expect([m('udp-blocked').udp, m('udp-blocked').tcp443, m('udp-blocked').tcpOther]).toEqual([false, true, false]);
      expect(m('portmap').portmap).toBe(true);
      expect([m('same-lan').hairpin, m('same-lan+hairpin').hairpin]).toEqual([false, true]);
    });
  });

  describe('the self-test catches a NAT that is not what its profile says', () => {
    let lab: Lab;

    beforeAll(async () => {
      lab = await createLab({ sites: [{ name: 'a', profile: 'easy' }] });
    });

    afterAll(async () => {
      await lab?.close();
      expect(leftovers(lab.prefix)).toEqual([]);
    });

    it('flags EDM rules on an "easy" site', async () => {
      // Swap the router's rules for `hard` (masquerade random) while the site still claims `easy`.
      lab.state.routers['a-rtr']!.mode = 'hard';
      await lab.applyNatRules('a-rtr');
      const [r] = await selfTestLab(lab);
      expect(r!.ok).toBe(false);
      expect(describeFailures(r!).join('\n')).toMatch(/mapping expected EIM, measured APDM/);
    });
  });
});
