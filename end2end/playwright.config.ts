import { defineConfig } from '@playwright/test';

// The relay and the mock upstream are started by Playwright from the binaries that
// scripts/build-site.sh built; a fresh data directory each run.
export const relayPort = Number(process.env.E2E_RELAY_PORT ?? 3311);
export const mockPort = Number(process.env.E2E_MOCK_PORT ?? 3312);
export const adminPassword = 'e2e-admin-password';
const bin = process.env.CRS_BIN_DIR ?? '../target/debug';
const dataDir = '../target/e2e-data';

export default defineConfig({
  testDir: './tests',
  workers: 1,
  reporter: 'list',
  timeout: 120_000,
  use: {
    baseURL: `http://127.0.0.1:${relayPort}`,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    },
  },
  projects: [{ name: 'chromium', use: { browserName: 'chromium' } }],
  webServer: [
    {
      command: `${bin}/mock-upstream 127.0.0.1:${mockPort}`,
      port: mockPort,
      reuseExistingServer: false,
    },
    {
      command: `rm -rf ${dataDir} && exec ${bin}/crs`,
      url: `http://127.0.0.1:${relayPort}/health`,
      reuseExistingServer: false,
      env: {
        HOST: '127.0.0.1',
        PORT: String(relayPort),
        DATA_DIR: dataDir,
        SITE_ROOT: '../target/site',
        PRICING_FILE: '../resources/model-pricing/model_prices_and_context_window.json',
        ADMIN_USERNAME: 'admin',
        ADMIN_PASSWORD: adminPassword,
        REDIS_URL: '',
        LOG_LEVEL: 'warn',
      },
    },
  ],
});
