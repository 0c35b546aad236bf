// Flow "search": the query box, the criteria form (the built query shown), page size, cursor
// pages through `a[rel=next]`, sorting, a bad query, and the keyboard (`/`, `j`, `k`, Enter).
// Env: BASE_URL, USER_NAME, PASSWORD; REPORTS (how many mails `subject:report` finds, more than
// 25 and at most 50); INVOICE_SEQ (the one mail from bob@example.org with "invoice" in the
// subject and an attachment).
import { BASE_URL, Run, guardedContext, launch, login, need, noOutsideRequests } from './lib.mjs';

const run = new Run('search');
const reports = Number(need('REPORTS'));
const invoiceSeq = need('INVOICE_SEQ');
const browser = await launch();

/** The seqs of the hits on the page, in order. */
async function hitSeqs(page) {
  return page.locator('table#results tr.hit').evaluateAll((rows) => rows.map((r) => r.dataset.seq));
}

/** Submits the form around `selector` with its own submit button, or as a browser would. */
async function submitFormOf(page, selector) {
  const button = page.locator(`${selector} >> xpath=ancestor::form[1]//*[@type="submit"]`);
  if ((await button.count()) > 0) {
    await Promise.all([page.waitForNavigation(), button.first().click()]);
  } else {
    await Promise.all([page.waitForNavigation(), page.locator(selector).evaluate((el) => el.form.requestSubmit())]);
  }
}

try {
  const context = await guardedContext(browser, run);
  const page = await context.newPage();
  await login(page, need('USER_NAME'), need('PASSWORD'));

  await run.step('search.page', async () => {
    run.equal('search.page_after_login', new URL(page.url()).pathname, '/search');
    run.check('search.query_box', (await page.locator('input#q[name=q]').count()) === 1, 'no input#q[name=q]');
    const help = page.locator('details#help');
    run.check('search.help', (await help.count()) === 1, 'no details#help');
    await page.click('details#help > summary');
    run.check('search.help_examples', /from:/.test(await help.innerText()), 'the help shows no from: example');
    await run.shot(page, 'empty');
  });

  // The query box, then the page size, then the pages.
  let firstPage = [];
  await run.step('search.query_box', async () => {
    await page.fill('input#q', 'subject:report');
    await Promise.all([page.waitForNavigation(), page.press('input#q', 'Enter')]);
    const url = new URL(page.url());
    run.equal('search.url_holds_query', url.searchParams.get('q'), 'subject:report');
    const total = await page.locator('#total').innerText();
    run.check('search.total', total.includes(String(reports)), `#total says ${JSON.stringify(total)}, want ${reports}`);
    const limits = await page.locator('select[name=limit] option').evaluateAll((o) => o.map((x) => x.value));
    run.check('search.page_sizes', ['25', '50', '100', '500'].every((v) => limits.includes(v)), `options ${limits}`);
    await run.shot(page, 'query-box');
  });

  await run.step('search.pages', async () => {
    await page.selectOption('select[name=limit]', '25');
    if (new URL(page.url()).searchParams.get('limit') !== '25') {
      await submitFormOf(page, 'select[name=limit]');
    }
    run.equal('search.limit_in_url', new URL(page.url()).searchParams.get('limit'), '25');
    firstPage = await hitSeqs(page);
    run.equal('search.first_page_size', firstPage.length, 25);
    const cells = page.locator('table#results tr.hit').first();
    run.check('search.hit_opens', (await cells.locator('a.open').getAttribute('href')) === `/messages/${firstPage[0]}`,
      `a.open links ${await cells.locator('a.open').getAttribute('href')}`);
    run.check('search.next_link', (await page.locator('a[rel=next]').count()) === 1, 'no a[rel=next] on page 1');
    await run.shot(page, 'page-1');
    await Promise.all([page.waitForNavigation(), page.click('a[rel=next]')]);
    const url = new URL(page.url());
    run.check('search.cursor_in_url', url.searchParams.get('cursor'), `no cursor in ${url}`);
    run.equal('search.next_keeps_query', url.searchParams.get('q'), 'subject:report');
    const second = await hitSeqs(page);
    run.equal('search.second_page_size', second.length, reports - 25);
    const all = new Set([...firstPage, ...second]);
    run.equal('search.pages_disjoint_and_complete', all.size, reports);
    run.check('search.last_page_no_next', (await page.locator('a[rel=next]').count()) === 0, 'a[rel=next] on the last page');
    await run.shot(page, 'page-2');

    // One page of 50 holds them all.
    await page.goto(`${BASE_URL}/search?q=subject%3Areport&limit=50`);
    run.equal('search.limit_50', (await hitSeqs(page)).length, reports);
    run.check('search.limit_50_no_next', (await page.locator('a[rel=next]').count()) === 0, 'a[rel=next] with all shown');
  });

  await run.step('search.sort', async () => {
    for (const key of ['date', 'relevance', 'size']) {
      run.check(`search.sort_link_${key}`, (await page.locator(`a.sort[data-sort=${key}]`).count()) === 1, `no a.sort[data-sort=${key}]`);
    }
    await Promise.all([page.waitForNavigation(), page.click('a.sort[data-sort=size]')]);
    const url = new URL(page.url());
    run.equal('search.sort_in_url', url.searchParams.get('sort'), 'size');
    run.equal('search.sort_keeps_query', url.searchParams.get('q'), 'subject:report');
    run.equal('search.sorted_same_hits', (await hitSeqs(page)).length, reports);
  });

  // The criteria form builds the query, shows it and runs it.
  await run.step('search.criteria', async () => {
    await page.goto(`${BASE_URL}/search`);
    const form = 'form#criteria';
    // The form may sit in a closed <details>: open it as a person would.
    const panel = page.locator('details:has(form#criteria)');
    if ((await panel.count()) > 0 && (await panel.getAttribute('open')) === null) {
      await panel.locator(':scope > summary').click();
    }
    for (const name of ['from', 'to', 'subject', 'text', 'after', 'before', 'has_attachment', 'attachment', 'min_size', 'max_size', 'domain']) {
      run.check(`search.criteria_has_${name}`, (await page.locator(`${form} [name=${name}]`).count()) === 1, 'missing');
    }
    await page.fill(`${form} [name=from]`, 'bob@example.org');
    await page.fill(`${form} [name=subject]`, 'invoice');
    await page.fill(`${form} [name=after]`, '2020-01-01');
    await page.check(`${form} [name=has_attachment]`);
    await submitFormOf(page, `${form} [name=from]`);
    const built = (await page.locator('#built-query').innerText()).trim();
    for (const part of ['from:bob@example.org', 'subject:invoice', 'after:2020-01-01', 'has:attachment']) {
      run.check(`search.built_query has ${part}`, built.includes(part), `#built-query is ${JSON.stringify(built)}`);
    }
    run.equal('search.built_query_in_box', (await page.inputValue('input#q')).trim(), built);
    const seqs = await hitSeqs(page);
    run.check('search.criteria_finds_invoice', seqs.length === 1 && seqs[0] === invoiceSeq, `hits ${seqs}, want [${invoiceSeq}]`);
    const row = page.locator('table#results tr.hit').first();
    run.check('search.attachment_mark', (await row.locator('.att').count()) === 1, 'no .att in the row');
    await run.shot(page, 'criteria');

    // A word of the body: highlighted in the snippet.
    await page.goto(`${BASE_URL}/search?q=${encodeURIComponent('payable')}`);
    run.check('search.snippet_mark', (await page.locator('tr.hit .snippet mark').count()) >= 1, 'no mark in .snippet');
    await run.shot(page, 'snippet');
  });

  await run.step('search.bad_query', async () => {
    const response = await page.goto(`${BASE_URL}/search?q=${encodeURIComponent('invoice (march')}`);
    run.equal('search.bad_query_400', response.status(), 400);
    const error = await page.locator('#query-error').innerText();
    run.check('search.bad_query_position', /\d/.test(error), `#query-error names no position: ${JSON.stringify(error)}`);
    await run.shot(page, 'bad-query');
  });

  // Keyboard: `/` focuses the box, j/k move the selection, Enter opens it.
  await run.step('search.keyboard', async () => {
    await page.goto(`${BASE_URL}/search?q=subject%3Areport&limit=25`);
    const seqs = await hitSeqs(page);
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.keyboard.press('/');
    run.equal('search.slash_focuses_box', await page.evaluate(() => document.activeElement && document.activeElement.id), 'q');
    run.equal('search.slash_not_typed', await page.inputValue('input#q'), 'subject:report');
    await page.keyboard.press('j');
    run.check('search.j_typed_in_box', (await page.inputValue('input#q')).endsWith('j') &&
      (await page.locator('tr.hit.selected').count()) === 0, 'j in the box moved the selection or was not typed');
    await page.fill('input#q', 'subject:report');
    await page.evaluate(() => document.activeElement.blur());
    const selected = () => page.locator('tr.hit.selected').evaluateAll((rows) => rows.map((r) => r.dataset.seq));
    await page.keyboard.press('j');
    run.equal('search.j_selects_first', (await selected()).join(), seqs[0]);
    await page.keyboard.press('j');
    run.equal('search.j_moves_down', (await selected()).join(), seqs[1]);
    await page.keyboard.press('k');
    run.equal('search.k_moves_up', (await selected()).join(), seqs[0]);
    await run.shot(page, 'keyboard');
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
    run.equal('search.enter_opens', new URL(page.url()).pathname, `/messages/${seqs[0]}`);
  });

  noOutsideRequests(run, context, 'search.no_outside_request');
  await context.close();
} finally {
  await browser.close();
}
run.finish();
