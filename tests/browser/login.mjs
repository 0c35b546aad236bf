// Flow "login": a wrong password, logging in, the session cookie, logging out, and the old
// session cookie refused afterwards. Env: BASE_URL, USER_NAME, PASSWORD.
import { BASE_URL, Run, guardedContext, launch, login, need, noOutsideRequests } from './lib.mjs';

const run = new Run('login');
const user = need('USER_NAME');
const password = need('PASSWORD');
const browser = await launch();
try {
  const context = await guardedContext(browser, run);
  const page = await context.newPage();

  await run.step('login.form', async () => {
    const response = await page.goto(`${BASE_URL}/search`);
    run.equal('login.search_without_session_goes_to_login', new URL(page.url()).pathname, '/login');
    run.check('login.form_status', response.ok(), `status ${response.status()}`);
    for (const sel of ['form#login input[name=user]', 'form#login input[name=password]',
      'form#login input[type=hidden][name=csrf]', 'form#login button[type=submit]']) {
      run.check(`login.form has ${sel}`, (await page.locator(sel).count()) === 1, 'missing');
    }
    run.check('login.no_logout_form_before_login', (await page.locator('form#logout').count()) === 0, 'form#logout shown');
    await run.shot(page, 'form');
  });

  await run.step('login.wrong_password', async () => {
    await login(page, user, `${password}-wrong`);
    run.equal('login.wrong_password_stays_on_login', new URL(page.url()).pathname, '/login');
    const error = page.locator('#login-error');
    run.check('login.wrong_password_error', (await error.count()) === 1 && (await error.isVisible()), '#login-error not shown');
    await run.shot(page, 'wrong-password');
  });

  let session;
  await run.step('login.success', async () => {
    await login(page, user, password);
    run.equal('login.lands_on_search', new URL(page.url()).pathname, '/search');
    run.check('login.logout_form', (await page.locator('form#logout button, form#logout [type=submit]').count()) >= 1, 'no form#logout with a button');
    run.check('login.main', (await page.locator('main#main').count()) === 1, 'no main#main');
    const cookies = await context.cookies(BASE_URL);
    session = cookies.find((c) => c.name === (process.env.SESSION_COOKIE || 'mailvault_session'));
    run.check('login.session_cookie', session !== undefined, `cookies: ${cookies.map((c) => c.name).join(', ')}`);
    if (session) {
      run.check('login.cookie_httponly', session.httpOnly, 'not HttpOnly');
      run.equal('login.cookie_samesite', session.sameSite, 'Strict');
      const visible = await page.evaluate(() => document.cookie);
      run.check('login.cookie_not_in_document_cookie', !visible.includes(session.value), 'script can read it');
    }
    await run.shot(page, 'logged-in');
  });

  await run.step('login.logout', async () => {
    await Promise.all([page.waitForNavigation(), page.click('form#logout [type=submit], form#logout button')]);
    run.equal('login.logout_lands_on_login', new URL(page.url()).pathname, '/login');
    await run.shot(page, 'logged-out');
    await page.goto(`${BASE_URL}/search`);
    run.equal('login.after_logout_search_goes_to_login', new URL(page.url()).pathname, '/login');
  });

  // The cookie of the ended session, brought back by another browser: worth nothing.
  await run.step('login.old_cookie', async () => {
    if (!session) {
      run.check('login.old_cookie_refused', false, 'no session cookie was seen');
      return;
    }
    const replay = await guardedContext(browser, run);
    await replay.addCookies([session]);
    const again = await replay.newPage();
    await again.goto(`${BASE_URL}/search`);
    run.equal('login.old_cookie_page_goes_to_login', new URL(again.url()).pathname, '/login');
    const api = await replay.request.get(`${BASE_URL}/api/v1/session`);
    run.equal('login.old_cookie_refused', api.status(), 401);
    noOutsideRequests(run, replay, 'login.replay_no_outside_request');
    await replay.close();
  });

  noOutsideRequests(run, context, 'login.no_outside_request');
  await context.close();
} finally {
  await browser.close();
}
run.finish();
