// Swagger UI in a real browser: starts esm (ESM_BIN, default target/debug/esm) with
// basic auth, opens /ui in Debian's headless Chromium, checks that every OSB and
// ElasTest operation is listed, authorizes, uses "Try it out" on GET /v2/catalog with
// the API-version header and expects a 200. Saves a screenshot (SCREENSHOT, default
// ci-artifacts/swagger-ui.png). Exits non-zero on any failure.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { call, credentials, launchChromium, root, startEsm } from './esm.mjs';

const screenshot = process.env.SCREENSHOT ?? path.join(root, 'ci-artifacts', 'swagger-ui.png');
const { username: user, password: pass } = credentials;

const EXPECTED = [
  'GET /v2/catalog',
  'PUT /v2/service_instances/{instance_id}',
  'PATCH /v2/service_instances/{instance_id}',
  'GET /v2/service_instances/{instance_id}',
  'DELETE /v2/service_instances/{instance_id}',
  'GET /v2/service_instances/{instance_id}/last_operation',
  'PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}',
  'GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}',
  'DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}',
  'GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation',
  'PUT /v2/et/catalog',
  'DELETE /v2/et/catalog',
  'DELETE /v2/et/catalog/{service_id}',
  'GET /v2/et/manifest',
  'PUT /v2/et/manifest/{manifest_id}',
  'GET /v2/et/manifest/{manifest_id}',
  'DELETE /v2/et/manifest/{manifest_id}',
  'GET /v2/et/service_instances',
  'GET /v2/et/service_instances/{instance_id}',
];

async function main() {
  const esm = await startEsm('/ui/');
  const { api } = esm;
  let browser;
  try {
    const [registered] = await call(api, 'PUT', '/v2/et/catalog', { id: 'ui-svc', name: 'ui-service',
      description: 'seen from the browser', bindable: true, plans: [{ id: 'ui-plan', name: 'small', description: 'a plan' }] });
    if (registered !== 201) throw new Error(`registering a service answered ${registered}`);

    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${api}/ui/`);
    await page.waitForSelector('.opblock', { timeout: 20000 });

    const listed = await page.$$eval('.opblock', (blocks) => blocks.map((b) =>
      `${b.querySelector('.opblock-summary-method')?.textContent?.trim()} ${b.querySelector('.opblock-summary-path')?.getAttribute('data-path')}`));
    const missing = EXPECTED.filter((op) => !listed.includes(op));
    if (missing.length) throw new Error(`Swagger UI does not list: ${missing.join(', ')}\nit lists: ${listed.join(', ')}`);
    console.log(`Swagger UI lists all ${EXPECTED.length} operations`);

    await page.click('button.authorize');
    const modal = page.locator('.modal-ux');
    await modal.locator('input[type=text]').first().fill(user);
    await modal.locator('input[type=password]').first().fill(pass);
    await modal.locator('button.modal-btn.auth.authorize').first().click();
    await modal.locator('button.btn-done').first().click();

    const catalog = page.locator('#operations-catalog-catalog');
    await catalog.locator('.opblock-summary').click();
    await catalog.locator('button.try-out__btn').click();
    await catalog.locator('tr[data-param-name="X-Broker-API-Version"] input').fill('2.17');
    await catalog.locator('button.execute').click();
    const status = catalog.locator('.live-responses-table .response .response-col_status').first();
    await status.waitFor({ timeout: 15000 });
    const code = (await status.textContent()).trim();
    const body = await catalog.locator('.live-responses-table .response-col_description pre').first().textContent();
    mkdirSync(path.dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: false });
    console.log(`screenshot: ${screenshot}`);
    if (code !== '200') throw new Error(`Try it out on GET /v2/catalog answered ${code}: ${body}`);
    if (!body.includes('ui-svc')) throw new Error(`the catalog in the browser lacks the service: ${body}`);
    console.log('Try it out: GET /v2/catalog -> 200 with the registered service');
  } finally {
    if (browser) await browser.close();
    esm.stop();
  }
}

main().then(() => console.log('Swagger UI test passed'), (e) => { console.error(e); process.exit(1); });
