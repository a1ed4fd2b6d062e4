import { Browser, expect, Page, test } from '@playwright/test';
import { adminPassword, relayPort } from '../playwright.config';
import { admin, mockAccounts } from './helpers';

async function signIn(page: Page) {
  await page.goto('/admin-next/login');
  await page.fill('#username', 'admin');
  await page.fill('#password', adminPassword);
  await page.click('#login-submit');
  await expect(page).toHaveURL(/\/admin-next\/dashboard$/);
}

test('keys page: create a key in the UI, shown once, with its limits; accounts page lists states', async ({ page, request }) => {
  await mockAccounts(request, await admin(request));
  await signIn(page);
  await page.goto('/admin-next/keys');
  // Hydrated before the form is used (the action needs the WASM to show the result inline).
  await expect(async () => {
    await page.fill('#new-key-name', 'ui created key');
    await page.fill('#new-key-daily', '2.5');
    await page.click('#new-key-submit');
    await expect(page.locator('#new-key-value')).toHaveText(/^cr_[0-9a-f]{64}$/, { timeout: 1000 });
  }).toPass({ timeout: 15_000 });
  const key = (await page.locator('#new-key-value').textContent())!.trim();
  const row = page.locator('tr.key-row', { hasText: 'ui created key' }).first();
  await expect(row).toBeVisible();
  await expect(row.locator('.key-limit')).toHaveAttribute('title', 'Daily cost');

  const relayed = await request.post(`http://127.0.0.1:${relayPort}/v1/messages`, {
    headers: { 'x-api-key': key },
    data: { model: 'claude-sonnet-4-5-20250929', max_tokens: 16, messages: [{ role: 'user', content: 'from the ui key' }] },
  });
  expect(relayed.status()).toBe(200);
  await expect(async () => {
    await page.reload();
    await expect(page.locator('tr.key-row', { hasText: 'ui created key' }).first().locator('td').nth(3)).toHaveText('1', { timeout: 500 });
  }).toPass({ timeout: 10_000 });

  // Disabled in the UI: the key stops working.
  await page.locator('tr.key-row', { hasText: 'ui created key' }).first().locator('button[data-action="disable"]').click();
  await expect(page.locator('tr.key-row', { hasText: 'ui created key' }).first()).toContainText('disabled');
  const refused = await request.post(`http://127.0.0.1:${relayPort}/v1/messages`, {
    headers: { 'x-api-key': key },
    data: { model: 'claude-sonnet-4-5-20250929', max_tokens: 16, messages: [{ role: 'user', content: 'again' }] },
  });
  expect(refused.status()).toBe(401);
  // Deleted after the confirmation: gone from the table.
  page.once('dialog', (d) => d.accept());
  await page.locator('tr.key-row', { hasText: 'ui created key' }).first().locator('button[data-action="delete"]').click();
  await expect(page.locator('tr.key-row', { hasText: 'ui created key' })).toHaveCount(0);

  await page.goto('/admin-next/accounts');
  const account = page.locator('tr.account-row', { hasText: 'mock claude' }).first();
  await expect(account).toBeVisible();
  await expect(account.locator('.account-state')).toHaveText('normal');
  await account.locator('button[data-action="toggle-schedulable"]').click();
  await expect(account.locator('.account-state')).toHaveText('paused');
  await account.locator('button[data-action="toggle-schedulable"]').click();
  await expect(account.locator('.account-state')).toHaveText('normal');
  await expect(page.locator('tr.account-row', { hasText: 'mock gemini' }).first()).toContainText('gemini-api');
});

async function noScript(browser: Browser) {
  const context = await browser.newContext({ javaScriptEnabled: false });
  return context.newPage();
}

test('without WASM: login by plain form, and the admin pages render on the server', async ({ browser }) => {
  const page = await noScript(browser);
  await page.goto('/admin-next/login');
  await page.fill('#username', 'admin');
  await page.fill('#password', adminPassword);
  await page.click('#login-submit');
  await expect(page).toHaveURL(/\/admin-next\/dashboard$/);
  await expect(page.locator('h1')).toHaveText('Dashboard');
  await page.goto('/admin-next/keys');
  await expect(page.locator('#keys-table')).toBeVisible();
  await page.goto('/admin-next/accounts');
  await expect(page.locator('#accounts-table')).toBeVisible();
  await page.goto('/admin-next/api-stats');
  await expect(page.locator('#stats-key')).toBeVisible();
  await page.context().close();
});
