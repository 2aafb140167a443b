// Browser test of the Balcão units page, run by tests/units_browser.rs.
//
// Serves the rendered folder ($BALCAO_WWW) on 127.0.0.1, drives Debian's
// chromium through playwright-core, checks the page with axe-core, and keeps
// screenshots in $BALCAO_ARTIFACTS. $BALCAO_NOW is the court-local moment the
// page was rendered at (balcaoctl --now), which the page's clock is pinned to.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const WWW = required('BALCAO_WWW');
const ARTIFACTS = required('BALCAO_ARTIFACTS');
const NOW = required('BALCAO_NOW');
const CHROMIUM = process.env.BALCAO_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-gpu',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];
const AXE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run this through tests/units_browser.rs`);
  return value;
}

const fold = (s) => s.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase();

let server;
let base;
let browser;
let data;

before(async () => {
  const types = { '.html': 'text/html; charset=utf-8', '.json': 'application/json' };
  server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
    const file = path.join(WWW, name);
    if (!name.includes('/') && fs.existsSync(file) && fs.statSync(file).isFile()) {
      res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
      res.end(fs.readFileSync(file));
    } else {
      // Stands in for a Jitsi room.
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><html lang="pt-BR"><title>Sala</title><p>Sala de teste</p></html>');
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${server.address().port}`;
  data = JSON.parse(fs.readFileSync(path.join(WWW, 'units.json'), 'utf8'));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.close();
});

async function open(url, options = {}) {
  const context = await browser.newContext({
    locale: 'pt-BR',
    viewport: { width: 1280, height: 900 },
    ...options,
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base + url);
  return { page, context, errors };
}

// Per unit index: [status line, button/closed text, today line, link shown].
async function statuses(page) {
  return page.$$eval('[data-indice]', (cards) => cards.map((c) => {
    const link = c.querySelector('[data-entrar]');
    return [
      Number(c.dataset.indice),
      c.querySelector('[data-situacao]').textContent.trim(),
      link.hidden ? c.querySelector('[data-fechado]').textContent.trim() : link.textContent.trim(),
      c.querySelector('[data-hoje]').textContent.trim(),
    ];
  }).sort((a, b) => a[0] - b[0]));
}

function unitIndex(predicate) {
  const i = data.units.findIndex(predicate);
  assert.ok(i >= 0, 'sample has such a unit');
  return i;
}

async function card(page, i) {
  return page.$eval(`[data-indice="${i}"]`, (c) => ({
    status: c.querySelector('[data-situacao]').textContent.trim(),
    today: c.querySelector('[data-hoje]').textContent.trim(),
    closedText: c.querySelector('[data-fechado]').textContent.trim(),
    linkShown: !c.querySelector('[data-entrar]').hidden,
  }));
}

async function axe(page, label) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  const summary = result.violations.map((v) =>
    `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('\n    ')}`);
  assert.deepEqual(summary, [], `axe-core violations (${label}):\n${summary.join('\n')}`);
  assert.ok(result.passes.length > 10, `axe ran its checks (${label})`);
}

let serverStatuses;

test('the list, hours and links read without JavaScript', async () => {
  const { page, context } = await open('/', { javaScriptEnabled: false });
  assert.equal(await page.locator('[data-indice]').count(), 300);
  assert.equal(await page.locator('html').getAttribute('lang'), 'pt-BR');
  assert.equal(await page.locator('#busca').isVisible(), false, 'search box needs the script');
  serverStatuses = await statuses(page);
  const first = unitIndex((u) => u.name === '1ª Vara Cível de Rio Branco');
  const c = await card(page, first);
  assert.equal(c.status, 'Aberto agora · até 14:00');
  assert.equal(c.today, 'Hoje: 08:00 às 14:00');
  assert.equal(
    await page.locator(`[data-indice="${first}"] [data-entrar]`).getAttribute('href'),
    '/1a-vara-civel-de-rio-branco',
  );
  assert.match(await page.locator('.privacidade').innerText(), /não é gravado/);
  await context.close();
});

test('the script agrees with the server at the pinned clock', async () => {
  assert.ok(serverStatuses, 'the no-JavaScript test ran first');
  const { page, context, errors } = await open(`/?agora=${NOW}`);
  const live = await statuses(page);
  assert.deepEqual(live, serverStatuses);
  assert.equal(await page.locator('#aviso-dia').isVisible(), false, 'no closure notice on a working day');
  assert.deepEqual(errors, []);
  assert.equal(await page.locator('#busca').isVisible(), true);
  await context.close();
});

test('status at an injected clock, whatever the visitor\'s timezone', async () => {
  // 15:00 UTC is 10:00 in Rio Branco (UTC-5); the visitor's browser is in Tokyo.
  const { page, context } = await open('/?agora=2026-03-02T15:00Z', { timezoneId: 'Asia/Tokyo' });
  const byHours = (h) => unitIndex((u) => u.hours_text === h);
  const cases = [
    ['seg-sex 08:00-14:00', 'Aberto agora · até 14:00', true],
    ['seg-sex 12:00-18:00', 'Fechado · abre hoje às 12:00', false],
    ['ter-qui 08:00-12:00', 'Fechado · abre amanhã às 08:00', false],
    ['qua-sex 08:00-13:00', 'Fechado · abre quarta às 08:00', false],
  ];
  for (const [hours, status, linkShown] of cases) {
    const c = await card(page, byHours(hours));
    assert.equal(c.status, status, hours);
    assert.equal(c.linkShown, linkShown, hours);
  }
  assert.equal((await card(page, byHours('seg-sex 12:00-18:00'))).closedText, 'Abre hoje às 12:00');
  assert.match(await page.locator('#relogio').innerText(), /segunda, 02\/03\/2026, às 10:00/);
  assert.deepEqual(await statuses(page), serverStatuses);
  await context.close();

  // 12:30 UTC is 07:30 in Rio Branco: nothing that opens at 08:00 is open yet.
  const early = await open('/?agora=2026-03-02T12:30Z', { timezoneId: 'Europe/Lisbon' });
  const c = await card(early.page, byHours('seg-sex 08:00-14:00'));
  assert.equal(c.status, 'Fechado · abre hoje às 08:00');
  await early.context.close();

  // Without an override the real clock runs through Intl without error.
  const real = await open('/', { timezoneId: 'America/Noronha' });
  assert.match(await real.page.locator('#relogio').innerText(), /^Situação em \w+/);
  assert.deepEqual(real.errors, []);
  await real.context.close();
});

test('holidays, the court\'s closed dates and the recess close every counter', async () => {
  const weekday = unitIndex((u) => u.hours_text === 'seg-sex 08:00-14:00');
  const cases = [
    ['2027-02-08T10:00', 'Fechado · abre quarta às 08:00', 'Hoje: fechado (Carnaval)'],
    ['2026-04-03T10:00', 'Fechado · abre segunda às 08:00', 'Hoje: fechado (Sexta-feira Santa)'],
    ['2026-04-01T10:00', 'Fechado · abre segunda às 08:00', 'Hoje: fechado (Semana Santa)'],
    ['2026-12-22T10:00', 'Fechado · abre quinta, 07/01, às 08:00', 'Hoje: fechado (Recesso forense)'],
  ];
  for (const [agora, status, today] of cases) {
    const { page, context } = await open(`/?agora=${agora}`);
    const c = await card(page, weekday);
    assert.equal(c.status, status, agora);
    assert.equal(c.today, today, agora);
    assert.equal(await page.locator('[data-entrar]:visible').count(), 0, `${agora}: no open counter`);
    const reason = today.match(/\((.*)\)/)[1];
    assert.equal(await page.locator('#aviso-dia').innerText(), `Hoje não há atendimento: ${reason}.`);
    await context.close();
  }
});

test('the search box filters by unit or city, accents and case ignored', async () => {
  const { page, context } = await open(`/?agora=${NOW}`);
  const box = page.getByLabel('Buscar por unidade ou cidade');
  const expected = (q) => {
    const words = fold(q).split(/\s+/).filter(Boolean);
    return data.units.filter((u) => words.every((w) => fold(`${u.name} ${u.city}`).includes(w))).length;
  };
  for (const q of ['rio branco', 'ORFAOS', 'cível xapuri', 'Juizado', 'plácido']) {
    await box.fill(q);
    const n = expected(q);
    assert.ok(n > 0, `sample matches ${q}`);
    assert.equal(await page.locator('[data-indice]:visible').count(), n, q);
    const word = n === 1 ? 'unidade encontrada' : 'unidades encontradas';
    assert.equal(await page.locator('#contagem').innerText(), `${n} ${word}`);
  }
  await box.fill('cruzeiro');
  const cities = await page.locator('[data-cidade]:visible h3').allInnerTexts();
  assert.deepEqual(cities, ['Cruzeiro do Sul']);
  await page.screenshot({ path: path.join(ARTIFACTS, 'units-1280-busca.png') });

  await box.fill('zzzz');
  assert.equal(await page.locator('[data-indice]:visible').count(), 0);
  assert.equal(await page.locator('#nada').isVisible(), true);
  await box.fill('');
  assert.equal(await page.locator('[data-indice]:visible').count(), 300);
  await context.close();
});

test('entering asks the name and opens the room with it', async () => {
  const { page, context } = await open(`/?agora=${NOW}`);
  const i = unitIndex((u) => u.name === '1ª Vara Cível de Rio Branco');
  await page.locator(`[data-indice="${i}"] [data-entrar]`).click();
  const dialog = page.getByRole('dialog', { name: 'Entrar no balcão' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /1ª Vara Cível de Rio Branco/);
  assert.match(await dialog.innerText(), /apenas o nome que você digitar.*não é gravado/s);

  await dialog.getByRole('button', { name: 'Entrar na sala' }).click();
  assert.equal(await page.locator('#entrada-erro').isVisible(), true, 'empty name refused');
  assert.equal(page.url(), `${base}/?agora=${NOW}`);

  const name = 'Maria José "Zezé" da Silva';
  await dialog.getByLabel('Seu nome').fill(name);
  await page.screenshot({ path: path.join(ARTIFACTS, 'units-1280-entrada.png') });
  await dialog.getByLabel('Seu nome').press('Enter');
  await page.waitForURL((u) => u.pathname === '/1a-vara-civel-de-rio-branco');
  const url = new URL(page.url());
  assert.equal(url.hash, '#userInfo.displayName=' + encodeURIComponent(JSON.stringify(name)));
  const [key, value] = url.hash.slice(1).split('=');
  assert.equal(key, 'userInfo.displayName');
  assert.equal(JSON.parse(decodeURIComponent(value)), name);
  await context.close();
});

test('keyboard alone: search, open the entry dialog, close it', async () => {
  const { page, context } = await open(`/?agora=${NOW}`);
  const focused = () => page.evaluate(() => document.activeElement.id || document.activeElement.className);
  await page.keyboard.press('Tab');
  assert.equal(await focused(), 'pular', 'first Tab reaches the skip link');
  for (let n = 0; n < 6 && (await focused()) !== 'q'; n++) await page.keyboard.press('Tab');
  assert.equal(await focused(), 'q', 'Tab reaches the search box');
  await page.keyboard.type('xapuri');
  for (let n = 0; n < 6 && (await focused()) !== 'entrar'; n++) await page.keyboard.press('Tab');
  assert.equal(await focused(), 'entrar', 'Tab reaches an open counter');
  const href = await page.evaluate(() => document.activeElement.getAttribute('href'));
  await page.keyboard.press('Enter');
  assert.equal(await page.locator('#entrada').isVisible(), true);
  assert.equal(await focused(), 'entrada-nome', 'focus moves into the dialog');
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#entrada').isVisible(), false);
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('href')), href,
    'focus returns to the link');
  await context.close();
});

for (const [width, height] of [[1280, 900], [360, 780]]) {
  test(`no axe-core violations and a readable layout at ${width} pixels`, async () => {
    const { page, context } = await open(`/?agora=${NOW}`, { viewport: { width, height } });
    await axe(page, `${width}px`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= width, `no sideways scrolling at ${width}px (page is ${overflow}px wide)`);
    await page.screenshot({ path: path.join(ARTIFACTS, `units-${width}.png`) });

    await page.locator('[data-entrar]:visible').first().click();
    await page.locator('#entrada').waitFor();
    await axe(page, `${width}px, entry dialog open`);
    await page.screenshot({ path: path.join(ARTIFACTS, `units-${width}-dialogo.png`) });
    await page.keyboard.press('Escape');

    if (width === 360) {
      await page.getByLabel('Buscar por unidade ou cidade').fill('xapuri');
      await page.locator('[data-indice]:visible details').first().locator('summary').click();
      await page.screenshot({ path: path.join(ARTIFACTS, 'units-360-busca.png'), fullPage: true });
    }
    await context.close();
  });
}

test('a closed day: axe-core on the closed look', async () => {
  const { page, context } = await open('/?agora=2027-02-08T10:00', { viewport: { width: 1280, height: 900 } });
  await axe(page, 'Carnival, every counter closed');
  await page.screenshot({ path: path.join(ARTIFACTS, 'units-1280-fechado.png') });
  await context.close();
});
