import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from '@playwright/test';
import { adminPassword, mockPort, relayPort } from '../playwright.config';

const run = promisify(execFile);

// The native binary of the npm package (the wrapper's bin is only a copy of it).
function claudeBinary(): string {
  const native = join(__dirname, '..', 'node_modules', '@anthropic-ai', 'claude-code-linux-x64', 'claude');
  return existsSync(native) ? native : join(__dirname, '..', 'node_modules', '.bin', 'claude');
}

test('Claude Code (claude -p) gets the mock answer through the relay and the key is billed', async ({ request }) => {
  const login = await request.post('/web/auth/login', { data: { username: 'admin', password: adminPassword } });
  const token = (await login.json()).token as string;
  const auth = { Authorization: `Bearer ${token}` };
  const account = await request.post('/admin/claude-console-accounts', {
    headers: auth,
    data: { name: 'mock upstream', apiUrl: `http://127.0.0.1:${mockPort}`, apiKey: 'sk-ant-e2e-upstream' },
  });
  expect(account.status()).toBe(200);
  const created = await request.post('/admin/api-keys', { headers: auth, data: { name: 'claude code e2e' } });
  const key = (await created.json()).data.apiKey as string;
  expect(key).toMatch(/^cr_[0-9a-f]{64}$/);

  const home = mkdtempSync(join(tmpdir(), 'crs-claude-home-'));
  const { stdout } = await run(claudeBinary(), ['-p', 'Say hello'], {
    timeout: 90_000,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      ANTHROPIC_BASE_URL: `http://127.0.0.1:${relayPort}`,
      ANTHROPIC_API_KEY: key,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_AUTOUPDATER: '1',
    },
  });
  expect(stdout).toContain('Hello from the mock upstream.');

  await expect(async () => {
    const stats = await request.post('/apiStats/api/user-stats', { data: { apiKey: key } });
    const usage = (await stats.json()).data.usage.total;
    expect(usage.requests).toBeGreaterThan(0);
    // Every answer of the mock reports 25 input and 12 output tokens.
    expect(usage.inputTokens).toBe(25 * usage.requests);
    expect(usage.outputTokens).toBe(12 * usage.requests);
    expect(usage.cost).toBeGreaterThan(0);
  }).toPass({ timeout: 10_000 });
});
