// Flow "message": a message page (headers, attachments, thread, the HTML part in its sandboxed
// frame with remote images blocked), the integrity panel, downloads (raw .eml byte for byte,
// an attachment, proof and checkpoint), the language switch (German sticks across pages),
// logging out. Env: BASE_URL, USER_NAME, PASSWORD; SEQ (a message with an attachment, in a
// thread with REPLY_SEQ), RAW_SHA256 (SHA-256 of `mailvault show SEQ`), ATTACHMENT_NAME and
// ATTACHMENT_SHA256 (its one attachment, decoded); REPLY_SEQ (a reply with an HTML part that
// has a remote image).
import { readFile } from 'node:fs/promises';
import { BASE_URL, Run, guardedContext, launch, login, need, noOutsideRequests, sha256 } from './lib.mjs';

const run = new Run('message');
const seq = need('SEQ');
const replySeq = need('REPLY_SEQ');
const browser = await launch();

/** Clicks `selector`, takes the download it starts, returns [name, sha256 of its bytes]. */
async function download(page, selector) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const path = await file.path();
  return [file.suggestedFilename(), sha256(await readFile(path))];
}

/** Switches the language with the page's switch (links or form, as dom-contract.md allows). */
async function switchLanguage(page, lang) {
  const link = page.locator(`a.lang[hreflang=${lang}]`);
  if ((await link.count()) > 0) {
    await Promise.all([page.waitForNavigation(), link.first().click()]);
    return;
  }
  const button = page.locator(`form#lang [name=lang][value=${lang}]`);
  if ((await button.count()) > 0 && (await button.first().getAttribute('type')) === 'submit') {
    await Promise.all([page.waitForNavigation(), button.first().click()]);
    return;
  }
  await page.selectOption('form#lang select[name=lang]', lang);
  if ((await page.locator('html').getAttribute('lang')) !== lang) {
    await Promise.all([page.waitForNavigation(), page.click('form#lang [type=submit]')]);
  }
}

try {
  const context = await guardedContext(browser, run);
  const page = await context.newPage();
  await login(page, need('USER_NAME'), need('PASSWORD'));

  await run.step('message.page', async () => {
    const response = await page.goto(`${BASE_URL}/messages/${seq}`);
    run.equal('message.status', response.status(), 200);
    const headers = await page.locator('#headers').innerText();
    run.check('message.headers_from', headers.includes('bob@example.org'), headers);
    run.check('message.headers_subject', headers.includes('invoice'), headers);
    run.check('message.text_body', (await page.locator('#text-body').innerText()).includes('payable'), 'body text missing');
    const integrity = page.locator('#integrity');
    run.equal('message.integrity_verified', await integrity.getAttribute('data-status'), 'verified');
    run.check('message.integrity_says_verified', /verified/i.test(await integrity.innerText()), await integrity.innerText());
    const names = await page.locator('#attachments a.attachment').allInnerTexts();
    run.check('message.attachment_listed', names.some((n) => n.includes(need('ATTACHMENT_NAME'))), `listed: ${names}`);
    run.equal('message.raw_link', await page.getAttribute('a#raw-download', 'href'), `/messages/${seq}/raw`);
    const thread = await page.locator('#thread a.thread-msg').evaluateAll((a) => a.map((x) => x.getAttribute('href')));
    run.check('message.thread_links_reply', thread.includes(`/messages/${replySeq}`), `thread links: ${thread}`);
    await run.shot(page, 'page');
  });

  await run.step('message.downloads', async () => {
    const [rawName, rawSha] = await download(page, 'a#raw-download');
    run.equal('message.raw_bytes_equal_show', rawSha, need('RAW_SHA256'));
    run.check('message.raw_is_eml', rawName.endsWith('.eml'), `file name ${rawName}`);
    const [attName, attSha] = await download(page, '#attachments a.attachment');
    run.equal('message.attachment_name', attName, need('ATTACHMENT_NAME'));
    run.equal('message.attachment_bytes', attSha, need('ATTACHMENT_SHA256'));
    for (const id of ['proof-download', 'checkpoint-download']) {
      const href = await page.getAttribute(`a#${id}`, 'href');
      const answer = await context.request.get(new URL(href, BASE_URL).toString());
      run.check(`message.${id}`, answer.status() === 200 && (await answer.body()).length > 0, `${href}: ${answer.status()}`);
    }
  });

  await run.step('message.html_part', async () => {
    await Promise.all([page.waitForNavigation(), page.click(`#thread a.thread-msg[href="/messages/${replySeq}"]`)]);
    run.equal('message.thread_opens_reply', new URL(page.url()).pathname, `/messages/${replySeq}`);
    const frame = page.locator('iframe#html-body');
    run.equal('message.html_iframe_src', await frame.getAttribute('src'), `/messages/${replySeq}/html`);
    const sandbox = await frame.getAttribute('sandbox');
    run.check('message.html_iframe_sandboxed', sandbox !== null && !/allow-same-origin|allow-scripts/.test(sandbox), `sandbox=${sandbox}`);
    run.check('message.remote_images_note', (await page.locator('#remote-images-note').count()) === 1, 'no #remote-images-note');
    const inner = page.frameLocator('iframe#html-body');
    run.check('message.html_rendered', (await inner.locator('body').innerText()).includes('Thanks'), 'the HTML part is not shown');
    await run.shot(page, 'html');
    // A link in the sandboxed body opens our /out page in a new tab (the frame's popups escape
    // the sandbox). From the frame's opaque origin no SameSite=Strict session cookie goes with
    // it: /out must show the target anyway, not the login page.
    const [popup] = await Promise.all([page.waitForEvent('popup'), inner.locator('a', { hasText: 'receipt' }).click()]);
    await popup.waitForLoadState();
    run.equal('message.html_link_opens_out', new URL(popup.url()).pathname, '/out');
    const target = await popup.locator('#out-target').innerText().catch((e) => `no #out-target: ${e}`);
    run.equal('message.html_link_shows_target', target, 'https://pay.example.net/receipt?id=42');
    await run.shot(popup, 'out');
    await popup.close();
  });

  // German, by the switch; it sticks on other pages, then English again.
  await run.step('message.language', async () => {
    await page.goto(`${BASE_URL}/messages/${seq}`);
    run.equal('message.lang_en', await page.locator('html').getAttribute('lang'), 'en');
    const english = await page.locator('h1').innerText();
    await switchLanguage(page, 'de');
    run.equal('message.lang_de', await page.locator('html').getAttribute('lang'), 'de');
    await page.goto(`${BASE_URL}/messages/${seq}`);
    run.check('message.integrity_verifiziert', /verifiziert/i.test(await page.locator('#integrity').innerText()),
      await page.locator('#integrity').innerText());
    await run.shot(page, 'de');
    await page.goto(`${BASE_URL}/search?q=invoice`);
    run.equal('message.lang_de_sticks', await page.locator('html').getAttribute('lang'), 'de');
    const german = await page.locator('main#main').innerText();
    await run.shot(page, 'search-de');
    const cookie = (await context.cookies(BASE_URL)).find((c) => c.name === 'mv_lang');
    run.equal('message.lang_cookie', cookie && cookie.value, 'de');
    await switchLanguage(page, 'en');
    run.equal('message.lang_en_again', await page.locator('html').getAttribute('lang'), 'en');
    run.check('message.lang_changes_text', (await page.locator('main#main').innerText()) !== german, 'same text in both languages');
    await page.goto(`${BASE_URL}/messages/${seq}`);
    run.equal('message.lang_en_sticks', await page.locator('h1').innerText(), english);
  });

  await run.step('message.logout', async () => {
    await Promise.all([page.waitForNavigation(), page.click('form#logout [type=submit], form#logout button')]);
    run.equal('message.logout', new URL(page.url()).pathname, '/login');
    const after = await page.goto(`${BASE_URL}/messages/${seq}/raw`);
    run.check('message.raw_after_logout_refused', after.status() === 401 || new URL(page.url()).pathname === '/login',
      `status ${after.status()} at ${page.url()}`);
  });

  noOutsideRequests(run, context, 'message.no_outside_request');
  await context.close();
} finally {
  await browser.close();
}
run.finish();
