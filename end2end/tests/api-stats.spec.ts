import { expect, test } from '@playwright/test';
import { relayPort } from '../playwright.config';
import { admin, mockAccounts } from './helpers';

test('the root leads to the public stats page, rendered on the server', async ({ request }) => {
  const root = await request.get('/', { maxRedirects: 0 });
  expect(root.status()).toBe(303);
  expect(root.headers()['location']).toBe('/admin-next/api-stats');
  const html = await (await request.get('/admin-next/api-stats')).text();
  expect(html).toContain('API key usage');
  expect(html).toMatch(/<input[^>]*id="stats-key"[^>]*type="password"/);
});

test('a key holder sees usage and limit progress for their key', async ({ page, request }) => {
  const auth = await admin(request);
  await mockAccounts(request, auth);
  const created = await request.post('/admin/api-keys', {
    headers: auth,
    data: { name: 'stats page key', dailyCostLimit: 1, concurrencyLimit: 4, modelLimits: { 'claude-sonnet-*': { totalCost: 2 } } },
  });
  const key = (await created.json()).data.apiKey as string;
  const relayed = await request.post(`http://127.0.0.1:${relayPort}/v1/messages`, {
    headers: { 'x-api-key': key },
    data: { model: 'claude-sonnet-4-5-20250929', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
  });
  expect(relayed.status()).toBe(200);

  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto('/admin-next/api-stats');
  // Submitted before the WASM took over, the form would be a plain POST.
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached', timeout: 30_000 });
  await expect(async () => {
    await page.fill('#stats-key', key);
    await page.click('#stats-submit');
    await expect(page.locator('#stats-name')).toHaveText('stats page key', { timeout: 1000 });
    // Usage lands with the next coalesced write (ACCOUNTING_FLUSH_MS).
    await expect(page.locator('#stats-total')).toContainText('1 requests', { timeout: 1000 });
  }).toPass({ timeout: 15_000 });
  await expect(page.locator('#stats-models tr.model-row')).toHaveCount(1);
  await expect(page.locator('#stats-models tr.model-row').first()).toContainText('claude-sonnet-4-5-20250929');
  const labels = await page.locator('.limit-label').allTextContents();
  expect(labels).toEqual(['Daily cost', 'Model claude-sonnet-* · total cost', 'Concurrent requests']);
  // The key never lands in a URL.
  expect(requests.some((u) => u.includes(key))).toBe(false);
  expect(page.url()).not.toContain(key);

  await page.fill('#stats-key', 'cr_' + '0'.repeat(64));
  await page.click('#stats-submit');
  await expect(page.locator('#stats-error')).toHaveText('API key not found');
});
