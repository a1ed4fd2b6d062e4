import { expect, test } from '@playwright/test';
import { admin, mockAccounts, newKey, signIn } from './helpers';
import { relayPort } from '../playwright.config';

// Every page in light and dark mode at a desktop and a phone width: written to
// end2end/screenshots/ for review, and checked for horizontal overflow (the page must never
// scroll sideways; wide tables scroll inside their own box).
const pages = [
  ['login', '/admin-next/login', false],
  ['api-stats', '/admin-next/api-stats', false],
  ['dashboard', '/admin-next/dashboard', true],
  ['keys', '/admin-next/keys', true],
  ['accounts', '/admin-next/accounts', true],
  ['account-new', '/admin-next/accounts/new', true],
  ['users', '/admin-next/users', true],
  ['settings', '/admin-next/settings', true],
  ['requests', '/admin-next/requests', true],
] as const;

test('screenshots of every page, light and dark, 1280 and 390 px, without overflow', async ({ page, request }) => {
  test.setTimeout(240_000);
  const auth = await admin(request);
  await mockAccounts(request, auth);
  await request.post('/admin/api-keys', {
    headers: auth,
    data: { name: 'screenshot key', dailyCostLimit: 5, platformLimits: { claude: { dailyCost: 2 } }, tags: ['docs'] },
  });
  const key = await newKey(request, auth, 'traffic key');
  for (const model of ['claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20251001', 'claude-sonnet-4-5-20250929']) {
    await request.post(`http://127.0.0.1:${relayPort}/v1/messages`, {
      headers: { 'x-api-key': key },
      data: { model, max_tokens: 16, messages: [{ role: 'user', content: 'screenshot traffic' }] },
    });
  }
  await signIn(page);
  for (const theme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: theme });
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 900 });
      for (const [name, path] of pages) {
        await page.goto(path);
        await page.waitForLoadState('networkidle');
        await expect(page.locator('html')).toHaveClass(theme === 'dark' ? /dark/ : /^(?!.*dark)/);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        expect(overflow, `${name} ${theme} ${width}px overflows by ${overflow}px`).toBeLessThanOrEqual(0);
        await page.screenshot({ path: `screenshots/${name}-${theme}-${width}.png`, fullPage: true });
      }
    }
  }
});
