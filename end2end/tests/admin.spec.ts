import { expect, test } from '@playwright/test';
import { adminPassword } from '../playwright.config';

test('the login page is rendered on the server', async ({ request }) => {
  const resp = await request.get('/admin-next/login');
  expect(resp.status()).toBe(200);
  const html = await resp.text();
  expect(html).toContain('Admin sign in');
  expect(html).toMatch(/<form[^>]*action="\/admin-next\/api\/login"/);
  expect(html).toContain('/pkg/crs.wasm');
  for (const asset of ['/pkg/crs.js', '/pkg/crs.wasm', '/pkg/crs.css']) {
    expect((await request.get(asset)).status(), asset).toBe(200);
  }
});

test('hydrated: theme light / dark / auto sticks across reloads, login reaches the dashboard, logout leaves', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.emulateMedia({ colorScheme: 'light' });
  await page.goto('/admin-next/login');
  const html = page.locator('html');
  const theme = page.locator('#theme-select');
  await expect(html).not.toHaveClass(/dark/);
  // Only the hydrated WASM attaches the change handler, so this proves hydration.
  await expect(async () => {
    await theme.selectOption('dark');
    await expect(html).toHaveClass(/dark/, { timeout: 500 });
  }).toPass({ timeout: 15_000 });
  // After a reload the select works only once the WASM took over again.
  const hydrated = () => page.locator('html[data-hydrated]').waitFor({ state: 'attached', timeout: 30_000 });
  await page.reload();
  await expect(html).toHaveClass(/dark/);
  await expect(theme).toHaveValue('dark');
  await hydrated();
  await theme.selectOption('light');
  await expect(html).not.toHaveClass(/dark/);
  await page.reload();
  await expect(html).not.toHaveClass(/dark/);
  // Auto follows the system, also on the next load (applied before first paint).
  await hydrated();
  await theme.selectOption('auto');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.reload();
  await expect(html).toHaveClass(/dark/);
  await expect(theme).toHaveValue('auto');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.reload();
  await expect(html).not.toHaveClass(/dark/);

  // Used before the WASM took over, the form is a plain POST, and hydration landing between a
  // fill and the click can reset the field: wait for it (a slow, busy machine shows the race).
  await hydrated();
  await page.fill('#username', 'admin');
  await page.fill('#password', 'wrong-password');
  await page.click('#login-submit');
  await expect(page.locator('#login-error')).toHaveText('Invalid username or password');

  await hydrated();
  await page.fill('#username', 'admin');
  await page.fill('#password', adminPassword);
  await page.click('#login-submit');
  await expect(page).toHaveURL(/\/admin-next\/dashboard$/);
  await expect(page.locator('h1')).toHaveText('Dashboard');
  await expect(page.locator('#signed-in-as')).toContainText('admin');
  await expect(page.locator('#signed-in-as')).toContainText('store: embedded');
  await expect(page.locator('#card-keys')).toBeVisible();
  await expect(page.locator('#account-states li')).toHaveCount(6);
  await expect(page.locator('#trend-chart .trend-bar')).toHaveCount(14);

  await page.click('#nav-logout');
  await expect(page).toHaveURL(/\/admin-next\/login$/);
  await page.goto('/admin-next/dashboard');
  await expect(page).toHaveURL(/\/admin-next\/login$/);
  expect(errors).toEqual([]);
});

test('the dashboard without a session redirects to the login page', async ({ request }) => {
  const resp = await request.get('/admin-next/dashboard', { maxRedirects: 0, headers: { accept: 'text/html' } });
  expect([302, 303, 307]).toContain(resp.status());
  expect(resp.headers()['location']).toBe('/admin-next/login');
});
