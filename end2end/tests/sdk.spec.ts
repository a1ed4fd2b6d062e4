import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from '@playwright/test';
import { relayPort } from '../playwright.config';
import { admin, mockAccounts, newKey, usageOf } from './helpers';

const run = promisify(execFile);
const reply = 'Hello from the mock upstream.';

test('the official OpenAI and Anthropic Python SDKs get answers through the relay', async ({ request }) => {
  const auth = await admin(request);
  await mockAccounts(request, auth);
  const key = await newKey(request, auth, 'python sdks');
  const { stdout } = await run('python3', [join(__dirname, '..', 'clients', 'sdk_check.py')], {
    timeout: 90_000,
    env: { ...process.env, RELAY_URL: `http://127.0.0.1:${relayPort}`, RELAY_KEY: key },
  });
  const got = JSON.parse(stdout);
  expect(got.chat).toEqual({ text: reply, completion_tokens: 12 });
  expect(got.chat_stream).toEqual({ text: reply, completion_tokens: 12 });
  expect(got.chat_gpt.text).toBe(reply);
  expect(got.responses).toEqual({ text: reply, output_tokens: 12 });
  expect(got.responses_stream).toEqual({ text: reply, completed: true });
  expect(got.models).toContain('claude-sonnet-4-5-20250929');
  expect(got.models).toContain('gpt-5');
  expect(got.anthropic).toEqual({ text: reply, output_tokens: 12 });
  expect(got.anthropic_stream).toEqual({ text: reply, output_tokens: 12 });
  expect(got.bad_request.status).toBe(400);

  // Seven answered requests, each billed with the mock's 12 output tokens.
  await expect(async () => {
    const usage = await usageOf(request, key);
    expect(usage.requests).toBe(7);
    expect(usage.outputTokens).toBe(7 * 12);
    expect(usage.cost).toBeGreaterThan(0);
  }).toPass({ timeout: 10_000 });
});
