import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from '@playwright/test';
import { relayPort } from '../playwright.config';
import { admin, mockAccounts, newKey, usageOf } from './helpers';

const run = promisify(execFile);

const codex = join(__dirname, '..', 'node_modules', '.bin', 'codex');

test('the Codex CLI (codex exec) answers through the relay over the Responses API', async ({ request }) => {
  const auth = await admin(request);
  await mockAccounts(request, auth);
  const key = await newKey(request, auth, 'codex cli');
  const home = mkdtempSync(join(tmpdir(), 'crs-codex-home-'));
  writeFileSync(
    join(home, 'config.toml'),
    [
      'model = "gpt-5"',
      'model_provider = "crs"',
      '',
      '[model_providers.crs]',
      'name = "crs"',
      `base_url = "http://127.0.0.1:${relayPort}/openai"`,
      'env_key = "CRS_API_KEY"',
      'wire_api = "responses"',
    ].join('\n'),
  );
  const running = run(codex, ['exec', '--skip-git-repo-check', 'Say hello'], {
    timeout: 90_000,
    cwd: home,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, CODEX_HOME: home, CRS_API_KEY: key },
  });
  // The prompt is on the command line; an open stdin would be read as more input.
  running.child.stdin?.end();
  const { stdout } = await running;
  expect(stdout).toContain('Hello from the mock upstream.');
  await expect(async () => {
    const usage = await usageOf(request, key);
    expect(usage.requests).toBeGreaterThan(0);
    expect(usage.outputTokens).toBe(12 * usage.requests);
  }).toPass({ timeout: 10_000 });
});
