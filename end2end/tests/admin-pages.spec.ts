import { Browser, expect, Page, test } from '@playwright/test';
import { adminPassword, mockPort, relayPort } from '../playwright.config';
import { admin, mockAccounts, newKey, signIn } from './helpers';

async function relay(request: import('@playwright/test').APIRequestContext, key: string, model = 'claude-sonnet-4-5-20250929') {
  return request.post(`http://127.0.0.1:${relayPort}/v1/messages`, {
    headers: { 'x-api-key': key },
    data: { model, max_tokens: 16, messages: [{ role: 'user', content: 'from the admin pages test' }] },
  });
}

/** Acts once the WASM has taken the page over (a form submitted before would be a plain
 * POST), retrying until the result shows inline. */
async function whenHydrated(page: Page, action: () => Promise<void>) {
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached', timeout: 30_000 });
  await expect(action).toPass({ timeout: 15_000 });
}

test('keys page: create, limits as progress blocks, edit every kind of limit, search, delete and restore', async ({ page, request }) => {
  await mockAccounts(request, await admin(request));
  await signIn(page);
  await page.goto('/admin-next/keys');
  await whenHydrated(page, async () => {
    await page.fill('#form-name', 'ui created key');
    await page.fill('#form-daily_cost_limit', '2.5');
    await page.click('#new-key-submit');
    await expect(page.locator('.new-key-value').first()).toHaveText(/^cr_[0-9a-f]{64}$/, { timeout: 1000 });
  });
  const key = (await page.locator('.new-key-value').first().textContent())!.trim();
  await expect(page.locator('#new-keys pre').first()).toContainText(`ANTHROPIC_API_KEY=${key}`);
  const row = () => page.locator('tr.key-row', { hasText: 'ui created key' }).first();
  await expect(row().locator('.key-limit')).toHaveAttribute('title', 'Daily cost');

  expect((await relay(request, key)).status()).toBe(200);
  await expect(async () => {
    await page.reload();
    await expect(row().locator('td').nth(3)).toHaveText('1', { timeout: 500 });
  }).toPass({ timeout: 10_000 });

  // Edit: a refused value names its field; then platform and model limits become blocks.
  await row().locator('a[data-action="edit"]').click();
  await expect(page).toHaveURL(/\/admin-next\/keys\/[0-9a-f-]+$/);
  await expect(page.locator('#form-daily_cost_limit')).toHaveValue('2.5');
  await whenHydrated(page, async () => {
    await page.fill('#form-total_cost_limit', '-1');
    await page.click('#edit-key-submit');
    await expect(page.locator('.field-error')).toContainText('totalCostLimit', { timeout: 1000 });
  });
  await page.fill('#form-total_cost_limit', '');
  await page.fill('#form-claude_daily', '3');
  await page.fill('#form-model_limits', 'claude-sonnet-* 1 5');
  await page.fill('#form-tags', 'team-a, e2e');
  await page.click('#edit-key-submit');
  await expect(page).toHaveURL(/\/admin-next\/keys$/);
  await expect(row().locator('.key-limit')).toHaveCount(4);
  const titles = await row().locator('.key-limit').evaluateAll((els) => els.map((e) => e.getAttribute('title')));
  expect(titles).toEqual(['Daily cost', 'Platform claude · daily cost', 'Model claude-sonnet-* · daily cost', 'Model claude-sonnet-* · total cost']);

  // Search and filter run on the server, from the URL.
  await newKey(request, await admin(request), 'another key');
  await page.goto('/admin-next/keys?search=ui+created');
  await expect(page.locator('tr.key-row')).toHaveCount(1);
  await page.goto('/admin-next/keys?tag=team-a');
  await expect(page.locator('tr.key-row')).toHaveCount(1);
  await page.goto('/admin-next/keys?sort=name');
  await expect(page.locator('#key-count')).toContainText('page 1 of 1');

  // Disabled in the UI: the key stops working.
  await page.goto('/admin-next/keys?search=ui+created');
  await whenHydrated(page, async () => {
    await row().locator('button[data-action="disable"]').click();
    await expect(row().locator('.key-status')).toHaveText('disabled', { timeout: 1000 });
  });
  expect((await relay(request, key)).status()).toBe(401);
  // Deleted after the confirmation, then restored from the deleted filter.
  page.once('dialog', (d) => d.accept());
  await row().locator('button[data-action="delete"]').click();
  await expect(page.locator('tr.key-row', { hasText: 'ui created key' })).toHaveCount(0);
  await page.goto('/admin-next/keys?state=deleted');
  await whenHydrated(page, async () => {
    await row().locator('button[data-action="restore"]').click();
    await expect(page.locator('tr.key-row', { hasText: 'ui created key' })).toHaveCount(0, { timeout: 1000 });
  });
  expect((await relay(request, key)).status()).toBe(200);
});

test('batch creation shows every new key once', async ({ page }) => {
  await signIn(page);
  await page.goto('/admin-next/keys');
  await whenHydrated(page, async () => {
    await page.fill('#form-name', 'batch');
    await page.fill('#form-count', '3');
    await page.click('#new-key-submit');
    await expect(page.locator('.new-key-value')).toHaveCount(3, { timeout: 1000 });
  });
  await page.goto('/admin-next/keys?search=batch_');
  await expect(page.locator('tr.key-row')).toHaveCount(3);
});

test('accounts: create a Console account in the UI, it serves, test it, see the OAuth steps, delete it', async ({ page, request }) => {
  await signIn(page);
  await page.goto('/admin-next/accounts');
  await page.click('#add-account');
  await expect(page).toHaveURL(/\/admin-next\/accounts\/new$/);
  await whenHydrated(page, async () => {
    await page.fill('#form-name', 'ui console');
    await page.fill('#form-api_url', `http://127.0.0.1:${mockPort}`);
    await page.fill('#form-api_key', 'sk-ant-from-the-ui');
    await page.fill('#form-priority', '0');
    await page.click('#account-submit');
    await expect(page.locator('.field-error')).toContainText('priority', { timeout: 1000 });
  });
  await page.fill('#form-priority', '1');
  await page.click('#account-submit');
  await expect(page).toHaveURL(/\/admin-next\/accounts$/);
  const row = page.locator('tr.account-row', { hasText: 'ui console' }).first();
  await expect(row.locator('.account-state')).toHaveText('normal');

  // Priority 1 goes first: the request is served by the new account.
  const key = await newKey(request, await admin(request), 'account ui key');
  expect((await relay(request, key)).status()).toBe(200);
  // Usage is written in coalesced batches (ACCOUNTING_FLUSH_MS): reload until it shows.
  await expect(async () => {
    await page.reload();
    await expect(page.locator('tr.account-row', { hasText: 'ui console' }).first()).toContainText('1 req', { timeout: 500 });
  }).toPass({ timeout: 10_000 });

  await page.locator('tr.account-row', { hasText: 'ui console' }).first().locator('a', { hasText: 'ui console' }).click();
  await expect(page.locator('#form-name')).toHaveValue('ui console');
  await expect(page.locator('#error-history-empty')).toBeVisible();
  await whenHydrated(page, async () => {
    await page.click('#account-test');
    await expect(page.locator('#account-test-result')).toContainText('HTTP 200', { timeout: 2000 });
  });

  await page.goto('/admin-next/accounts/new?platform=claude-official');
  await whenHydrated(page, async () => {
    await page.click('#oauth-start');
    await expect(page.locator('#oauth-url')).toHaveAttribute('href', /code_challenge=.*code_challenge_method=S256/, { timeout: 1000 });
  });

  await page.goto('/admin-next/accounts');
  await page.locator('tr.account-row', { hasText: 'ui console' }).first().locator('a', { hasText: 'ui console' }).click();
  page.once('dialog', (d) => d.accept());
  await whenHydrated(page, async () => {
    await page.click('#account-delete');
    await expect(page).toHaveURL(/\/admin-next\/accounts$/, { timeout: 2000 });
  });
  await expect(page.locator('tr.account-row', { hasText: 'ui console' })).toHaveCount(0);
});

test('users: a user signs in to their own keys; disabled in the UI, their key stops working', async ({ page, request }) => {
  await mockAccounts(request, await admin(request));
  await signIn(page);
  await page.goto('/admin-next/users');
  await whenHydrated(page, async () => {
    await page.fill('#username', 'alice');
    await page.fill('#password', 'short');
    await page.click('#create-user');
    await expect(page.locator('#create-user-error')).toContainText('password', { timeout: 1000 });
  });
  await page.fill('#password', 'alice-password-1');
  await page.click('#create-user');
  await expect(page.locator('tr.user-row[data-username="alice"] .user-status')).toHaveText('enabled');
  await page.click('#nav-logout');
  await expect(page).toHaveURL(/\/admin-next\/login$/);

  await signIn(page, 'alice', 'alice-password-1', /\/admin-next\/my-keys$/);
  await whenHydrated(page, async () => {
    await page.fill('#form-name', 'alice laptop');
    await page.click('#new-key-submit');
    await expect(page.locator('.new-key-value').first()).toHaveText(/^cr_/, { timeout: 1000 });
  });
  const key = (await page.locator('.new-key-value').first().textContent())!.trim();
  expect((await relay(request, key)).status()).toBe(200);
  // Only their own keys, and no admin page.
  await page.reload();
  await expect(page.locator('tr.key-row')).toHaveCount(1);
  await page.goto('/admin-next/dashboard');
  await expect(page.locator('#forbidden')).toBeVisible();
  await page.click('#nav-logout');

  await signIn(page);
  await page.goto('/admin-next/users');
  const alice = page.locator('tr.user-row[data-username="alice"]');
  await expect(alice).toContainText('1');
  await whenHydrated(page, async () => {
    await alice.locator('button[data-action="disable"]').click();
    await expect(alice.locator('.user-status')).toHaveText('disabled', { timeout: 1000 });
  });
  expect((await relay(request, key)).status()).toBe(401);
  await alice.locator('button[data-action="enable"]').click();
  await expect(alice.locator('.user-status')).toHaveText('enabled');
  expect((await relay(request, key)).status()).toBe(200);
});

test('password: a user changes their own password; the old one and the old session stop working', async ({ page }) => {
  await signIn(page);
  await page.goto('/admin-next/users');
  await whenHydrated(page, async () => {
    await page.fill('#username', 'carol');
    await page.fill('#password', 'carol-password-1');
    await page.click('#create-user');
    await expect(page.locator('tr.user-row[data-username="carol"] .user-status')).toHaveText('enabled', { timeout: 1000 });
  });
  await page.click('#nav-logout');
  await expect(page).toHaveURL(/\/admin-next\/login$/);

  await signIn(page, 'carol', 'carol-password-1', /\/admin-next\/my-keys$/);
  await page.goto('/admin-next/password');
  await whenHydrated(page, async () => {
    await page.fill('#current_password', 'not-my-password');
    await page.fill('#new_password', 'carol-password-2');
    await page.fill('#confirm_password', 'carol-password-2');
    await page.click('#change-password-submit');
    await expect(page.locator('#change-password-error')).toContainText('current password is wrong', { timeout: 1000 });
  });
  await page.fill('#current_password', 'carol-password-1');
  await page.fill('#new_password', 'carol-password-2');
  await page.fill('#confirm_password', 'carol-password-2');
  await page.click('#change-password-submit');
  // As the original: every session ends, this one too.
  await expect(page).toHaveURL(/\/admin-next\/login$/);
  await page.goto('/admin-next/my-keys');
  await expect(page).toHaveURL(/\/admin-next\/login/);

  await page.locator('html[data-hydrated]').waitFor({ state: 'attached', timeout: 30_000 });
  await page.fill('#username', 'carol');
  await page.fill('#password', 'carol-password-1');
  await page.click('#login-submit');
  await expect(page.locator('#login-error')).toHaveText('Invalid username or password');
  await signIn(page, 'carol', 'carol-password-2', /\/admin-next\/my-keys$/);
});

test('settings: site name shows in the header; a bad rate is refused with its field', async ({ page }) => {
  await signIn(page);
  await page.goto('/admin-next/settings');
  await whenHydrated(page, async () => {
    await page.fill('#form-rate_claude', 'abc');
    await page.click('#settings-submit');
    await expect(page.locator('#settings-error')).toContainText('serviceRates', { timeout: 1000 });
  });
  await page.fill('#form-rate_claude', '');
  await page.fill('#form-site_name', 'Team Relay');
  await page.fill('#form-webhooks', 'slack https://hooks.slack.example/T1 ops\nfeishu https://open.feishu.example/hook/x (off)');
  await page.click('#settings-submit');
  await expect(page.locator('#settings-saved')).toBeVisible();
  await page.reload();
  await expect(page.locator('#site-name')).toHaveText('Team Relay');
  await expect(page.locator('#form-webhooks')).toHaveValue('slack https://hooks.slack.example/T1 ops\nfeishu https://open.feishu.example/hook/x feishu (off)');
});

test('dashboard charts show the day and the models used', async ({ page, request }) => {
  const auth = await admin(request);
  await mockAccounts(request, auth);
  const key = await newKey(request, auth, 'chart key');
  expect((await relay(request, key, 'claude-haiku-4-5-20251001')).status()).toBe(200);
  await signIn(page);
  await expect(page.locator('#model-chart .model-bar', { hasText: 'claude-haiku-4-5-20251001' })).toHaveCount(1);
  await expect(page.locator('#card-requests')).not.toContainText(/^0$/);

  // The request log filters on the server and exports the same selection as CSV.
  await page.goto('/admin-next/requests');
  await page.fill('#filter-model', 'claude-haiku*');
  await page.fill('#filter-key', 'chart key');
  await page.click('#record-filter-submit');
  await expect(page).toHaveURL(/model=claude-haiku/);
  await expect(page.locator('tr.record-row')).toHaveCount(1);
  await expect(page.locator('tr.record-row').first()).toContainText('claude-haiku-4-5-20251001');
  const csvHref = await page.locator('#record-csv').getAttribute('href');
  const csv = await page.request.get(csvHref!);
  expect(csv.status()).toBe(200);
  const lines = (await csv.text()).trim().split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[1]).toContain('chart key');
});

async function noScript(browser: Browser) {
  const context = await browser.newContext({ javaScriptEnabled: false });
  return context.newPage();
}

test('without WASM: login by plain form, and every admin page renders on the server', async ({ browser }) => {
  const page = await noScript(browser);
  await page.goto('/admin-next/login');
  await page.fill('#username', 'admin');
  await page.fill('#password', adminPassword);
  await page.click('#login-submit');
  await expect(page).toHaveURL(/\/admin-next\/dashboard$/);
  await expect(page.locator('h1')).toHaveText('Dashboard');
  await expect(page.locator('#trend-chart')).toBeVisible();
  for (const [path, selector] of [
    ['/admin-next/keys', '#keys-table'],
    ['/admin-next/accounts', '#accounts-table'],
    ['/admin-next/accounts/new', '#account-form'],
    ['/admin-next/accounts/new?platform=bedrock', '#form-region'],
    ['/admin-next/users', '#create-user-form'],
    ['/admin-next/settings', '#settings-form'],
    ['/admin-next/requests', '#records-table'],
    ['/admin-next/api-stats', '#stats-key'],
  ]) {
    await page.goto(path);
    await expect(page.locator(selector), path).toBeVisible();
  }
  // A plain GET form filters the keys; a plain POST creates a key.
  await page.goto('/admin-next/keys');
  await page.fill('#key-search', 'nothing-matches-this');
  await page.click('#key-filter-submit');
  await expect(page).toHaveURL(/search=nothing-matches-this/);
  await expect(page.locator('tr.key-row')).toHaveCount(0);
  await page.goto('/admin-next/keys');
  await page.fill('#form-name', 'made without wasm');
  await page.click('#new-key-submit');
  await page.goto('/admin-next/keys?search=without+wasm');
  await expect(page.locator('tr.key-row')).toHaveCount(1);
  // The edit page, filled from the key.
  await page.locator('tr.key-row a[data-action="edit"]').click();
  await expect(page.locator('#form-name')).toHaveValue('made without wasm');
  // A refused form comes back to its page with the message.
  await page.goto('/admin-next/users');
  await page.fill('#username', 'nojs-user');
  await page.fill('#password', 'short');
  await page.click('#create-user');
  await expect(page).toHaveURL(/\/admin-next\/users/);
  await expect(page.locator('body')).toContainText('at least 8 characters');
  await page.context().close();
});
