// Flow "xss": hostile mail (fixtures/xss/) in the browser. A hook installed before any page
// script — a `window.__xss` setter, a console message "XSS-EXECUTED", any dialog, any popup —
// records script that runs, in every frame; every request to another origin is recorded and
// aborted. The flow first proves the hook sees script in the top page and in an
// `allow-scripts` frame and nothing in a frame sandboxed without it (control pages served by
// the route, never by the app), then opens, as USER_NAME: the search results listing SEQS,
// every message page (headers, text body, the HTML part's frame, attachments, thread) with
// every page left open for a while, each attachment's download, and the `/out` page of every
// link and of `javascript:`/`data:` URLs. Env: BASE_URL, USER_NAME, PASSWORD, QUERY (finds
// every seq of SEQS), SEQS (comma-separated), FLOW_NAME (names screenshots and checks, e.g.
// xss-auditor).
import { BASE_URL, ORIGIN, Run, guardedContext, launch, login, need, noOutsideRequests } from './lib.mjs';

const flow = process.env.FLOW_NAME || 'xss';
const run = new Run(flow);
const seqs = need('SEQS').split(',').filter((s) => s !== '');
const browser = await launch();

/** What the app's HTML part answers must carry (issue #16, dom-contract.md). */
const HTML_CSP = { 'default-src': "'none'", 'style-src': "'unsafe-inline'", 'img-src': 'data:' };

const hits = [];
const HOOK = `(() => {
  const log = [];
  const report = (how, value) => {
    const text = 'XSS-EXECUTED ' + how + ' ' + String(value).slice(0, 200);
    log.push(text);
    try { console.log(text); } catch (e) {}
    try { if (typeof window.__xssReport === 'function') window.__xssReport(text); } catch (e) {}
  };
  try {
    Object.defineProperty(window, '__xss', { configurable: false, get() { return undefined; }, set(v) { report('__xss', v); } });
    Object.defineProperty(window, '__xssLog', { configurable: false, enumerable: false, value: log });
  } catch (e) {}
})();`;

/** Watches one page: console, dialogs, navigations of its frames away from the app. */
function watch(page, where) {
  page.on('console', (msg) => {
    if (msg.text().includes('XSS-EXECUTED')) hits.push(`${where()}: console: ${msg.text()}`);
  });
  page.on('dialog', (dialog) => {
    hits.push(`${where()}: dialog ${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('popup', (popup) => hits.push(`${where()}: a page opened a window: ${popup.url()}`));
  page.on('framenavigated', (frame) => {
    const url = frame.url();
    if (!(url.startsWith(ORIGIN + '/') || url === 'about:blank' || url === 'about:srcdoc')) {
      hits.push(`${where()}: a frame navigated to ${url}`);
    }
  });
}

/** The CSP directives of a header value, name → value. */
function directives(csp) {
  const out = {};
  for (const part of (csp || '').split(';')) {
    const [name, ...value] = part.trim().split(/\s+/);
    if (name) out[name.toLowerCase()] = value.join(' ');
  }
  return out;
}

try {
  const context = await guardedContext(browser, run);
  await context.exposeBinding('__xssReport', ({ frame }, text) => hits.push(`${frame.url()}: binding: ${text}`));
  await context.addInitScript(HOOK);
  // Control pages, answered here (never by the app): registered after the guard, so tried first.
  const control = {
    main: '<!doctype html><title>control</title><script>window.__xss = "control-main"</script>',
    open: '<!doctype html><title>open</title><script>window.__xss = "control-open"</script><p>open</p>',
    shut: '<!doctype html><title>shut</title><script>window.__xss = "control-shut"; alert(1)</script><p>shut</p>',
    frames: '<!doctype html><title>frames</title>' +
      `<iframe sandbox="allow-scripts" src="${ORIGIN}/__xss-control/open"></iframe>` +
      `<iframe sandbox="" src="${ORIGIN}/__xss-control/shut"></iframe>` +
      '<iframe sandbox="" srcdoc="<script>window.__xss = &quot;control-srcdoc&quot;; alert(1)</script>"></iframe>',
  };
  await context.route(`${ORIGIN}/__xss-control/**`, (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop();
    return route.fulfill({ status: 200, contentType: 'text/html', body: control[name] || '' });
  });
  let where = 'login';
  const page = await context.newPage();
  watch(page, () => where);

  // The hook sees script where it runs, and a frame sandboxed without allow-scripts runs none.
  await run.step(`${flow}.control`, async () => {
    where = 'control main';
    await page.goto(`${ORIGIN}/__xss-control/main`);
    run.check(`${flow}.hook_sees_top_page_script`, hits.some((h) => h.includes('control-main')), JSON.stringify(hits));
    where = 'control frames';
    await page.goto(`${ORIGIN}/__xss-control/frames`);
    await page.waitForTimeout(300);
    run.check(`${flow}.hook_sees_allow_scripts_frame`, hits.some((h) => h.includes('control-open')), JSON.stringify(hits));
    run.check(`${flow}.sandbox_without_allow_scripts_runs_nothing`,
      !hits.some((h) => h.includes('control-shut') || h.includes('control-srcdoc') || h.includes('dialog')),
      `hits: ${JSON.stringify(hits)}`);
    hits.length = 0;
  });

  where = 'login';
  await login(page, need('USER_NAME'), need('PASSWORD'));

  await run.step(`${flow}.results`, async () => {
    where = 'search results';
    await page.goto(`${BASE_URL}/search?q=${encodeURIComponent(need('QUERY'))}&limit=500`);
    const listed = await page.locator('table#results tr.hit').evaluateAll((rows) => rows.map((r) => r.dataset.seq));
    const missing = seqs.filter((s) => !listed.includes(s));
    run.check(`${flow}.results_list_every_fixture`, missing.length === 0, `not listed: ${missing}; listed ${listed}`);
    await run.shot(page, 'results');
  });

  // Every message in a tab of its own, all left open together so that anything delayed
  // (timers, refreshes, late loads) has the time to show itself.
  const htmlAnswers = new Map();
  context.on('response', (response) => {
    const m = /^\/messages\/(\d+)\/html$/.exec(new URL(response.url()).pathname);
    if (m) htmlAnswers.set(m[1], response);
  });
  const tabs = [];
  const outLinks = new Set();
  for (const seq of seqs) {
    await run.step(`${flow}.message ${seq}`, async () => {
      const tab = await context.newPage();
      watch(tab, () => `message ${seq}`);
      tabs.push(tab);
      const response = await tab.goto(`${BASE_URL}/messages/${seq}`);
      run.check(`${flow}.message_status ${seq}`, response.status() === 200, `status ${response.status()}`);
      // No script URL anywhere on the app's page, text body links only through /out.
      const hrefs = await tab.locator('a[href], area[href], [src], form[action]').evaluateAll((els) =>
        els.map((e) => e.getAttribute('href') ?? e.getAttribute('src') ?? e.getAttribute('action')));
      const bad = hrefs.filter((h) => /^\s*(javascript|data|vbscript):/i.test(h) || /^\s*(https?:)?\/\//i.test(h));
      run.check(`${flow}.no_script_or_remote_urls ${seq}`, bad.length === 0, `on the page: ${bad}`);
      const textLinks = await tab.locator('#text-body a').evaluateAll((a) => a.map((x) => x.getAttribute('href')));
      run.check(`${flow}.text_links_through_out ${seq}`, textLinks.every((h) => h.startsWith('/out?url=')), `links: ${textLinks}`);
      textLinks.forEach((h) => outLinks.add(h));
      const attachments = await tab.locator('#attachments a.attachment').evaluateAll((a) => a.map((x) => x.getAttribute('href')));
      run.check(`${flow}.attachment_links_local ${seq}`, attachments.every((h) => h.startsWith(`/messages/${seq}/`)), `links: ${attachments}`);
      for (const href of attachments) {
        const answer = await context.request.get(new URL(href, BASE_URL).toString());
        const h = answer.headers();
        run.check(`${flow}.attachment_is_download ${href}`,
          (h['content-disposition'] || '').startsWith('attachment') && h['x-content-type-options'] === 'nosniff' &&
            /(^|;)\s*sandbox\b/.test(h['content-security-policy'] || ''),
          JSON.stringify(h));
      }
      const thread = await tab.locator('#thread a').evaluateAll((a) => a.map((x) => x.getAttribute('href')));
      run.check(`${flow}.thread_links_local ${seq}`, thread.every((h) => /^\/messages\/\d+$/.test(h)), `links: ${thread}`);
      const frame = tab.locator('iframe#html-body');
      if ((await frame.count()) > 0) {
        const sandbox = await frame.getAttribute('sandbox');
        run.check(`${flow}.iframe_sandbox ${seq}`, sandbox !== null && !/allow-same-origin|allow-scripts/.test(sandbox), `sandbox=${sandbox}`);
        const csp = directives(htmlAnswers.get(seq) && (await htmlAnswers.get(seq).allHeaders())['content-security-policy']);
        const wrong = Object.entries(HTML_CSP).filter(([k, v]) => csp[k] !== v);
        const scripts = Object.keys(csp).filter((k) => k.startsWith('script-src') || k === 'connect-src');
        run.check(`${flow}.html_csp ${seq}`, htmlAnswers.has(seq) && wrong.length === 0 && scripts.length === 0,
          `CSP ${JSON.stringify(csp)}`);
        // Pointer over the frame (handlers that survived would fire now).
        const box = await frame.boundingBox();
        if (box) {
          for (let y = 5; y < Math.min(box.height, 600); y += 40) {
            await tab.mouse.move(box.x + Math.min(box.width / 2, 200), box.y + y);
          }
        }
      }
      await run.shot(tab, `message-${seq}`);
    });
  }

  // `/out` for every linkified link, and for script and data URLs given to it directly.
  const outs = [...outLinks];
  for (const url of ['javascript:window.__xss=1', 'javascript:alert(1)', 'data:text/html,<script>window.__xss=1</script>', 'JaVaScRiPt:alert(1)']) {
    outs.push(`/out?url=${encodeURIComponent(url)}`);
  }
  let shotOut = false;
  for (const href of outs) {
    await run.step(`${flow}.out ${href}`, async () => {
      where = `out ${href}`;
      await page.goto(new URL(href, BASE_URL).toString());
      const target = new URL(href, BASE_URL).searchParams.get('url');
      run.equal(`${flow}.out_shows_target ${href}`, (await page.locator('#out-target').innerText()).trim(), target);
      run.check(`${flow}.out_stays ${href}`, new URL(page.url()).pathname === '/out', `went to ${page.url()}`);
      const link = page.locator('a#out-link');
      if ((await link.count()) > 0) {
        const rel = (await link.getAttribute('rel')) || '';
        run.check(`${flow}.out_link_rel ${href}`, rel.includes('noreferrer') && rel.includes('noopener'), `rel=${rel}`);
        const to = (await link.getAttribute('href')) || '';
        const scheme = /^\s*([a-z][a-z0-9+.-]*):/i.exec(to);
        run.check(`${flow}.out_link_no_script ${href}`, !scheme || ['http', 'https', 'mailto'].includes(scheme[1].toLowerCase()),
          `a#out-link href=${to}`);
        if (scheme && !['http', 'https', 'mailto'].includes(scheme[1].toLowerCase())) {
          await link.click().catch(() => {});
        }
      }
      if (!shotOut && /javascript/i.test(href)) {
        await run.shot(page, 'out-javascript');
        shotOut = true;
      }
    });
  }

  await run.step(`${flow}.settle`, async () => {
    where = 'after waiting';
    await page.waitForTimeout(2500);
    for (const tab of tabs) {
      for (const frame of tab.frames()) {
        // Where a frame runs script at all, the hook's own log must be empty too.
        const log = await frame.evaluate(() => globalThis.__xssLog || []).catch(() => []);
        log.forEach((l) => hits.push(`${frame.url()}: log: ${l}`));
      }
      if (!new URL(tab.url()).pathname.startsWith('/messages/')) hits.push(`a message tab went to ${tab.url()}`);
    }
  });

  run.check(`${flow}.nothing_executed`, hits.length === 0, hits.join(' | '));
  noOutsideRequests(run, context, `${flow}.no_outside_request`);
  await context.close();
} finally {
  await browser.close();
}
run.finish();
