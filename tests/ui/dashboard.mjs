// The operator dashboard in a real browser (Debian's headless Chromium, playwright-core):
// every page loads with no console error, the instance table pages and filters with
// 1,000 instances, a liveness change made through the API shows on the open page
// within 2 s, the deprovision, resize and drain actions work, and a service name that is
// an XSS attempt renders as text. Saves a screenshot of each page (SCREENSHOTS, default ci-artifacts/).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { call, credentials, launchChromium, root, startEsm } from './esm.mjs';

const shots = process.env.SCREENSHOTS ?? path.join(root, 'ci-artifacts');
const XSS = '<img src=x onerror="window.__xss=1">ui-service';
const INSTANCES = 1000;
const id = (n) => `i-${String(n).padStart(4, '0')}`;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function setUp(api) {
  const [registered] = await call(api, 'PUT', '/v2/et/catalog', { id: 'ui-svc', name: XSS, description: XSS,
    bindable: true, plans: [{ id: 'ui-plan', name: 'small', description: 'a plan' }] });
  check(registered === 201, `registering a service answered ${registered}`);
  const [manifest] = await call(api, 'PUT', '/v2/et/manifest/ui-manifest', { service_id: 'ui-svc', plan_id: 'ui-plan',
    manifest_type: 'dummy', manifest_content: 'x-esm-dummy: {mode: sync}\nservices:\n  app:\n    image: x\n' });
  check(manifest === 201, `registering a manifest answered ${manifest}`);
  const body = { service_id: 'ui-svc', plan_id: 'ui-plan', organization_guid: 'o', space_guid: 's' };
  for (let n = 0; n < INSTANCES; n += 50) {
    const batch = [];
    for (let k = n; k < Math.min(n + 50, INSTANCES); k++) batch.push(call(api, 'PUT', `/v2/service_instances/${id(k)}`, body));
    for (const [status] of await Promise.all(batch)) check(status === 201, `a provision answered ${status}`);
  }
  // Every instance reports itself up: the table shows a liveness to change.
  for (let n = 0; n < INSTANCES; n += 100) {
    const batch = [];
    for (let k = n; k < Math.min(n + 100, INSTANCES); k++) {
      batch.push(call(api, 'PUT', `/v2/et/service_instances/${id(k)}/liveness`, { status: 'up', ttl_seconds: 3600 }));
    }
    for (const [status] of await Promise.all(batch)) check(status === 200, `a liveness report answered ${status}`);
  }
}

async function main() {
  const esm = await startEsm('/dashboard');
  const { api } = esm;
  let browser;
  try {
    await setUp(api);
    browser = await launchChromium();
    const context = await browser.newContext({ httpCredentials: credentials, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`${page.url()}: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`));
    mkdirSync(shots, { recursive: true });

    for (const [name, route] of [['overview', '/dashboard'], ['services', '/dashboard/services'],
      ['instances', '/dashboard/instances'], ['instance', `/dashboard/instances/${id(1)}`],
      ['pools', '/dashboard/pools'], ['engines', '/dashboard/engines'], ['events', '/dashboard/events']]) {
      const response = await page.goto(`${api}${route}`);
      check(response.status() === 200, `${route} answered ${response.status()}`);
      await page.waitForLoadState('networkidle').catch(() => {});
      await page.screenshot({ path: path.join(shots, `dashboard-${name}.png`), fullPage: false });
    }
    console.log('every page loads; screenshots in', shots);

    // The XSS attempt is text, and its handler never ran.
    await page.goto(`${api}/dashboard/services`);
    const heading = await page.locator('section.service h2').first().textContent();
    check(heading.includes('<img src=x'), `the service name is not shown as text: ${heading}`);
    check(await page.evaluate(() => window.__xss === undefined), 'the XSS handler ran');
    console.log('an XSS attempt in a service name renders as text');

    // Paging and filters over 1,000 instances.
    await page.goto(`${api}/dashboard/instances`);
    const firstPage = await page.locator('#instances tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.instance));
    check(firstPage.length === 50 && firstPage[0] === id(0), `the first page: ${firstPage.slice(0, 3)}…`);
    await page.click('a.next');
    const secondPage = await page.locator('#instances tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.instance));
    check(secondPage.length === 50 && secondPage[0] === id(50), `the second page: ${secondPage.slice(0, 3)}…`);
    await page.goto(`${api}/dashboard/instances?limit=500`);
    await page.click('a.next');
    const lastPage = await page.locator('#instances tbody tr').count();
    check(lastPage === 500 && (await page.locator('a.next').count()) === 0, `the last page of 500: ${lastPage} rows`);

    // A liveness change made through the API shows on the open page within 2 s.
    await page.goto(`${api}/dashboard/instances`);
    await page.waitForFunction(() => document.querySelector('tr[data-instance="i-0003"] [data-liveness]').dataset.liveness === 'up');
    const reported = Date.now();
    const [status] = await call(api, 'PUT', `/v2/et/service_instances/${id(3)}/liveness`,
      { status: 'down', ttl_seconds: 3600, note: 'killed by the browser test' });
    check(status === 200, `reporting down answered ${status}`);
    await page.waitForFunction(
      () => document.querySelector('tr[data-instance="i-0003"] [data-liveness]').dataset.liveness === 'down',
      null, { timeout: 2000 });
    console.log(`a liveness change shows on the open page after ${Date.now() - reported} ms`);
    await page.selectOption('select[name=liveness]', 'down');
    await page.click('form.filters button[type=submit]');
    const down = await page.locator('#instances tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.instance));
    check(down.length === 1 && down[0] === id(3), `filtered by liveness down: ${down}`);
    console.log('the table pages through 1,000 instances and filters by liveness');

    // The deprovision action, confirmed.
    await page.goto(`${api}/dashboard/instances/${id(7)}`);
    page.once('dialog', (dialog) => dialog.accept());
    await page.click('button[data-action=deprovision]');
    await page.locator('#status').filter({ hasText: 'Deprovisioning' }).waitFor({ timeout: 5000 });
    for (let i = 0; ; i++) {
      const [gone] = await call(api, 'GET', `/v2/service_instances/${id(7)}/last_operation`);
      if (gone === 410) break;
      check(i < 100, `the deprovisioned instance still answers ${gone}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // The page it was deprovisioned from ends saying so, without a reload, and after one
    // (from the tombstone esm keeps).
    await page.locator('#instance-status').filter({ hasText: 'deprovisioned' }).waitFor({ timeout: 5000 });
    check(await page.locator('button[data-action=deprovision]').count() === 0, 'a Deprovision button once deprovisioned');
    await page.locator('#operations tbody tr').first().filter({ hasText: 'succeeded' }).waitFor({ timeout: 5000 });
    const latest = await page.locator('#operations tbody tr').first().textContent();
    check(latest.includes('deprovision'), `the operations table's latest row is ${latest}`);
    const reloaded = await page.reload();
    check(reloaded.status() === 200, `a reload answers ${reloaded.status()}`);
    check((await page.locator('#instance-status').textContent()) === 'deprovisioned', 'deprovisioned after a reload');
    console.log('the deprovision action removes the instance, and its page ends saying so');

    // The overview's counts follow events without a reload.
    await page.goto(`${api}/dashboard`);
    const counted = await page.locator('#counts .big').first().textContent();
    const [added] = await call(api, 'PUT', `/v2/service_instances/${id(INSTANCES)}`,
      { service_id: 'ui-svc', plan_id: 'ui-plan', organization_guid: 'o', space_guid: 's' });
    check(added === 201, `a provision answered ${added}`);
    await page.waitForFunction((before) => document.querySelector('#counts .big').textContent !== before, counted,
      { timeout: 2000 });
    console.log(`the overview's count went from ${counted} to ${await page.locator('#counts .big').first().textContent()} live`);

    // Resize and drain a pool, each confirmed.
    const [pooled, pool] = await call(api, 'PUT', '/v2/et/pools/ui-plan', { size: 1 });
    check(pooled === 200 || pooled === 201, `setting a pool answered ${pooled}: ${JSON.stringify(pool)}`);
    await page.goto(`${api}/dashboard/pools`);
    await page.screenshot({ path: path.join(shots, 'dashboard-pools.png'), fullPage: false });
    const answers = ['2'];
    const answer = (dialog) => (dialog.type() === 'prompt' ? dialog.accept(answers.shift()) : dialog.accept());
    page.on('dialog', answer);
    await page.click('button[data-action=resize]');
    await page.locator('#status').filter({ hasText: 'resized to 2' }).waitFor({ timeout: 5000 });
    const [, resized] = await call(api, 'GET', '/v2/et/pools/ui-plan');
    check(resized.size === 2, `the pool's size after the resize: ${resized.size}`);
    await page.click('button[data-action=drain]');
    await page.locator('#status').filter({ hasText: 'Draining' }).waitFor({ timeout: 5000 });
    const [drained, after] = await call(api, 'GET', '/v2/et/pools/ui-plan');
    check(drained === 404 || after.draining === true, `the pool after the drain: ${drained} ${JSON.stringify(after)}`);
    page.off('dialog', answer);
    console.log('the pool actions resize and drain');

    check(errors.length === 0, `console errors:\n${errors.join('\n')}`);
  } finally {
    if (browser) await browser.close();
    esm.stop();
  }
}

main().then(() => console.log('dashboard test passed'), (e) => { console.error(e); process.exit(1); });
