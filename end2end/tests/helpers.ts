import { APIRequestContext, expect, Page } from '@playwright/test';
import { adminPassword, mockPort } from '../playwright.config';

/** Signs in as the admin and returns the bearer headers. */
export async function admin(request: APIRequestContext): Promise<Record<string, string>> {
  const login = await request.post('/web/auth/login', { data: { username: 'admin', password: adminPassword } });
  expect(login.status()).toBe(200);
  return { Authorization: `Bearer ${(await login.json()).token}` };
}

/** An account of each kind on the mock upstream (idempotent enough for repeated use). */
export async function mockAccounts(request: APIRequestContext, auth: Record<string, string>) {
  const mock = `http://127.0.0.1:${mockPort}`;
  for (const [path, data] of [
    ['/admin/claude-console-accounts', { name: 'mock claude', apiUrl: mock, apiKey: 'sk-ant-e2e-upstream' }],
    ['/admin/openai-responses-accounts', { name: 'mock openai', baseApi: mock, apiKey: 'sk-e2e-openai' }],
    ['/admin/gemini-api-accounts', { name: 'mock gemini', baseUrl: mock, apiKey: 'e2e-gemini' }],
  ] as const) {
    const r = await request.post(path, { headers: auth, data });
    expect(r.status(), path).toBe(200);
  }
}

export async function newKey(request: APIRequestContext, auth: Record<string, string>, name: string): Promise<string> {
  const created = await request.post('/admin/api-keys', { headers: auth, data: { name } });
  expect(created.status()).toBe(200);
  return (await created.json()).data.apiKey as string;
}

export async function usageOf(request: APIRequestContext, key: string) {
  const stats = await request.post('/apiStats/api/user-stats', { data: { apiKey: key } });
  return (await stats.json()).data.usage.total;
}

/** Signs in through the login page and waits for the landing page. */
export async function signIn(page: Page, username = 'admin', password = adminPassword, landing = /\/admin-next\/dashboard$/) {
  await page.goto('/admin-next/login');
  // Hydration landing between a fill and the click can reset the fields.
  await page.locator('html[data-hydrated]').waitFor({ state: 'attached', timeout: 30_000 });
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#login-submit');
  await expect(page).toHaveURL(landing);
}

