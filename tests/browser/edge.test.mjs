// The demo task app in edge mode, in a real Chromium (Debian's chromium package, driven
// by playwright-core): Portcullis serves the page, Better Auth and the task API on one
// origin, and Better Auth's signed session cookie is the only credential. The page runs
// no token code. One stack for the whole file; the tests run in order and share two
// accounts (Better Auth allows 3 sign-ups per 10 s per client address).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";
import { missingPrerequisites, Proc, REPO_ROOT, startStack, waitUntil } from "./stack.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const ARTIFACTS = join(REPO_ROOT, "tests/browser/artifacts");

// The signed session cookie lives this long; the gateway's leeway is small, so a cookie
// past its lifetime really is refused.
const COOKIE_MAX_AGE_S = 15;
const SESSION_DATA = "better-auth.session_data";
const SESSION_TOKEN = "better-auth.session_token";

const password = `pw-${randomBytes(9).toString("base64url")}`;
const alice = { label: "alice", name: "Alice Edge", email: "alice@example.com" };
const bob = { label: "bob", name: "Bob Edge", email: "bob@example.com" };

let stack;
let browser;
let workdir;
let otherSite; // a page on another origin, served by a second local HTTP server
const people = [];

before(async () => {
  const missing = missingPrerequisites();
  if (missing.length) throw new Error(`browser tests cannot start:\n  ${missing.join("\n  ")}`);
  workdir = mkdtempSync(join(tmpdir(), "portcullis-browser-edge-"));
  stack = await startStack(workdir, {
    jwtLifetime: "15m",
    leeway: "1s",
    adminEmails: [],
    edge: { cookieMaxAge: COOKIE_MAX_AGE_S },
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close();
  if (otherSite) await new Promise((ok) => otherSite.close(ok));
  await Proc.stopAll();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

// --- helpers ----------------------------------------------------------------------------

/** A person with their own browser context; every request to the gateway is recorded. */
async function open(person) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 860 } });
  context.setDefaultTimeout(15_000);
  person.context = context;
  person.console = [];
  person.sent = []; // { method, path, withAuthorization } of every request the pages sent to the gateway
  person.answers = []; // "METHOD path status" of every answer from the gateway
  context.on("request", (request) => {
    if (!request.url().startsWith(`${stack.gatewayUrl}/`)) return;
    const { pathname } = new URL(request.url());
    // Whether it had an Authorization header, never its value (no token in a test's output).
    const withAuthorization = request.headers().authorization !== undefined;
    person.sent.push({ method: request.method(), path: pathname, withAuthorization });
  });
  context.on("response", (response) => {
    if (!response.url().startsWith(`${stack.gatewayUrl}/`)) return;
    const { pathname } = new URL(response.url());
    person.answers.push(`${response.request().method()} ${pathname} ${response.status()}`);
  });
  person.page = await context.newPage();
  person.page.on("console", (m) => person.console.push(`[${m.type()}] ${m.text()}`));
  person.page.on("pageerror", (e) => person.console.push(`[pageerror] ${e.message}`));
  people.push(person);
  return person;
}

async function saveArtifacts(name) {
  const dir = join(ARTIFACTS, `edge-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}`);
  mkdirSync(dir, { recursive: true });
  for (const person of people) {
    try {
      await person.page.screenshot({ path: join(dir, `${person.label}.png`), fullPage: true });
    } catch {
      // a closed page has nothing to show
    }
    writeFileSync(join(dir, `${person.label}-console.log`), person.console.join("\n") + "\n");
    writeFileSync(join(dir, `${person.label}-gateway.log`), person.answers.join("\n") + "\n");
  }
  for (const log of ["web.log", "tasks.log", "portcullis.log"]) {
    try {
      copyFileSync(join(workdir, log), join(dir, log));
    } catch {
      // not started
    }
  }
  process.stderr.write(`\nbrowser test artifacts (screenshots, console logs): ${dir}\n`);
}

function scenario(name, body) {
  test(name, async () => {
    try {
      await body();
    } catch (err) {
      await saveArtifacts(name);
      throw err;
    }
  });
}

const taskList = (page) => page.getByRole("list", { name: "Tasks" });
const checkbox = (page, title) => taskList(page).getByRole("checkbox", { name: title, exact: true });
const item = (page, title) =>
  taskList(page).getByRole("listitem").filter({ has: page.getByRole("checkbox", { name: title, exact: true }) });
const newTaskForm = (page) => page.getByRole("form", { name: "New task" });
const alerts = (page) => page.getByRole("alert").filter({ hasText: /\S/ });

async function titles(page) {
  if ((await taskList(page).count()) === 0) return [];
  return taskList(page).locator(".task-title").allTextContents();
}

async function expectTitles(page, expected) {
  let seen;
  await waitUntil(`tasks ${JSON.stringify(expected)}`, async () => {
    seen = await titles(page);
    return JSON.stringify(seen) === JSON.stringify(expected);
  }, { timeout: 15_000 }).catch((err) => {
    throw new Error(`${err.message}; the page shows ${JSON.stringify(seen)}`);
  });
}

async function expectNoError(page) {
  assert.equal(await alerts(page).count(), 0, `an error is shown: ${await alerts(page).allTextContents()}`);
}

function assertNoTokenSent(person) {
  assert.ok(person.sent.some((r) => r.path.startsWith("/api/tasks")), "the page made no task call");
  const withToken = person.sent.filter((r) => r.withAuthorization);
  assert.deepEqual(withToken, [], "the page sent an Authorization header");
  assert.ok(!person.sent.some((r) => r.path === "/api/auth/token"), "the page asked Better Auth for a JWT");
}

async function cookie(person, name) {
  return (await person.context.cookies(stack.gatewayUrl)).find((c) => c.name === name)?.value;
}

async function signUp(person) {
  const { page } = person;
  await page.goto(stack.pageUrl);
  await page.getByRole("button", { name: "Create an account" }).click();
  await page.getByLabel("Name").fill(person.name);
  await page.getByLabel("Email").fill(person.email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign up", exact: true }).click();
  await page.getByRole("button", { name: "Sign out", exact: true }).waitFor();
  await page.getByText("No tasks yet.").waitFor();
}

async function addTask(page, title) {
  const form = newTaskForm(page);
  await form.getByLabel("Title").fill(title);
  await form.getByRole("button", { name: "Add task" }).click();
  await checkbox(page, title).waitFor();
}

// --- the tests ----------------------------------------------------------------------------

scenario("edge mode: a person signs up and manages tasks with the session cookie alone", async () => {
  await open(alice);
  const a = alice.page;
  await signUp(alice);
  assert.ok(await cookie(alice, SESSION_DATA), "Better Auth set no signed session cookie");

  await addTask(a, "Buy milk");
  await addTask(a, "Write report");
  await checkbox(a, "Buy milk").check();
  await item(a, "Buy milk").getByRole("button", { name: "Delete" }).click();
  await expectTitles(a, ["Write report"]);
  await a.reload();
  await expectTitles(a, ["Write report"]);
  await expectNoError(a);
  assertNoTokenSent(alice);
  await a.getByText("signed session cookie").waitFor(); // the page says which mode it runs in
  for (const call of ["POST /api/tasks 201", "PATCH", "DELETE", "GET /api/tasks 200"]) {
    assert.ok(alice.answers.some((line) => line.startsWith(call)), `no "${call}" answered by the gateway`);
  }
});

scenario("edge mode: two people each see only their own tasks", async () => {
  await open(bob);
  const b = bob.page;
  await signUp(bob);
  await addTask(b, "Fix bike");
  await expectTitles(b, ["Fix bike"]);

  await alice.page.reload();
  await expectTitles(alice.page, ["Write report"]);
  // Bob's cookie does not reach Alice's task by its id either.
  const aliceTask = await alice.page.evaluate(async () => (await (await fetch("/api/tasks")).json())[0].id);
  const status = await b.evaluate(async (id) => (await fetch(`/api/tasks/${id}`)).status, aliceTask);
  assert.equal(status, 404);
  assertNoTokenSent(bob);
});

scenario("edge mode: the signed cookie expiring goes unnoticed while a person keeps working", async () => {
  const a = alice.page;
  const first = await cookie(alice, SESSION_DATA);
  assert.ok(first);
  // The browser drops the cookie at its Max-Age; the session behind it lives on.
  await waitUntil("the session cookie cache to expire", async () => (await cookie(alice, SESSION_DATA)) === undefined,
    { timeout: (COOKIE_MAX_AGE_S + 10) * 1000, interval: 250 });
  assert.ok(await cookie(alice, SESSION_TOKEN));

  const from = alice.answers.length;
  await addTask(a, "After the cookie expired");
  await expectTitles(a, ["Write report", "After the cookie expired"]);
  await expectNoError(a);
  // What happened on the wire: refused, renewed through get-session, retried.
  const seen = alice.answers.slice(from);
  const refused = seen.indexOf("POST /api/tasks 401");
  assert.ok(refused >= 0, `the write was not refused first: ${seen.join(", ")}`);
  const renewed = seen.indexOf("GET /api/auth/get-session 200", refused);
  assert.ok(renewed > refused, `no renewal after the 401: ${seen.join(", ")}`);
  assert.ok(seen.indexOf("POST /api/tasks 201", renewed) > renewed, `no retry: ${seen.join(", ")}`);
  const renewedCookie = await cookie(alice, SESSION_DATA);
  assert.ok(renewedCookie && renewedCookie !== first, "the cookie was not renewed");
  assertNoTokenSent(alice);
});

scenario("edge mode: signing out ends access at once for requests that carry only the cookie", async () => {
  const b = bob.page;
  await expectTitles(b, ["Fix bike"]);

  // The session ends elsewhere (not through this page, so no tab is told): the page finds
  // out on its next write, the renewal finds no session, and it shows a plain signed-out
  // state, no error.
  const ended = await bob.context.request.post(`${stack.gatewayUrl}/api/auth/sign-out`, {
    headers: { Origin: stack.gatewayUrl },
    data: {},
  });
  assert.equal(ended.status(), 200);
  assert.equal(await cookie(bob, SESSION_DATA), undefined);
  await newTaskForm(b).getByLabel("Title").fill("After the session ended");
  await newTaskForm(b).getByRole("button", { name: "Add task" }).click();
  await b.getByText("Your session has ended. Please sign in again.").waitFor();
  await b.getByLabel("Email").waitFor();
  await expectNoError(b);

  // Signed in again, the tasks are there and nothing was added after the session ended.
  await b.getByLabel("Email").fill(bob.email);
  await b.getByLabel("Password").fill(password);
  await b.getByRole("button", { name: "Sign in", exact: true }).click();
  await expectTitles(b, ["Fix bike"]);

  // Sign out on the page: the cookies are gone and a cookie-only call is refused at once.
  await b.getByRole("button", { name: "Sign out", exact: true }).click();
  await b.getByLabel("Email").waitFor();
  assert.equal(await cookie(bob, SESSION_DATA), undefined);
  assert.equal(await cookie(bob, SESSION_TOKEN), undefined);
  const answer = await b.evaluate(async () => {
    const response = await fetch("/api/tasks");
    return { status: response.status, error: (await response.json()).error };
  });
  assert.deepEqual(answer, { status: 401, error: "session_missing" });
  assertNoTokenSent(bob);
});

scenario("edge mode: a form on another origin posting with the person's cookie is refused", async () => {
  // Another origin on the same host (another port): the browser sends the SameSite=Lax
  // session cookie along with its form POST, so only the gateway's check stands in the way.
  const target = `${stack.gatewayUrl}/api/tasks`;
  const html = `<!doctype html><title>Win a prize</title>
<form method="POST" action="${target}" enctype="text/plain">
<input type="hidden" name='{"title":"forged","x":"' value='"}'>
</form>
<script>document.forms[0].submit()</script>`;
  otherSite = createServer((_, response) => {
    response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    response.end(html);
  });
  await new Promise((ok) => otherSite.listen(0, "127.0.0.1", ok));
  const otherUrl = `http://127.0.0.1:${otherSite.address().port}/`;

  const a = alice.page;
  await a.reload(); // a fresh signed cookie in the jar
  await expectTitles(a, ["Write report", "After the cookie expired"]);
  assert.ok(await cookie(alice, SESSION_DATA));
  const before = await stack.serviceRequestCount();

  const attack = await alice.context.newPage();
  const posted = attack.waitForResponse((r) => r.url() === target && r.request().method() === "POST");
  await attack.goto(otherUrl);
  const response = await posted;
  const sentHeaders = await response.request().allHeaders();
  assert.match(sentHeaders.cookie ?? "", new RegExp(`${SESSION_DATA.replace(".", "\\.")}=`), "the browser sent no session cookie");
  assert.equal(sentHeaders.origin, otherUrl.replace(/\/$/, ""));
  assert.equal(response.status(), 403);
  assert.equal((await response.json()).error, "cross_site_request");
  await attack.close();

  assert.equal(await stack.serviceRequestCount(), before, "the forged request reached the task service");
  await a.reload();
  await expectTitles(a, ["Write report", "After the cookie expired"]);
});

scenario("edge mode: sign out everywhere refuses another browser's unexpired session cookie at once", async () => {
  const a = alice.page;
  // Alice signs in a second time, in another browser.
  const phone = await open({ label: "alice-phone", name: alice.name, email: alice.email });
  const p = phone.page;
  await p.goto(stack.pageUrl);
  await p.getByLabel("Email").fill(alice.email);
  await p.getByLabel("Password").fill(password);
  await p.getByRole("button", { name: "Sign in", exact: true }).click();
  await expectTitles(p, ["Write report", "After the cookie expired"]);
  const phoneCookie = await cookie(phone, SESSION_DATA);
  assert.ok(phoneCookie, "no signed session cookie on the phone");
  const cookieOnlyCall = () =>
    p.evaluate(async () => {
      const response = await fetch("/api/tasks");
      return { status: response.status, error: (await response.json()).error ?? null };
    });
  assert.equal((await cookieOnlyCall()).status, 200);

  await a.reload();
  await a.getByRole("button", { name: "Sign out everywhere" }).click();
  await a.getByText("You are signed out on every device.").waitFor();
  await a.getByLabel("Email").waitFor();
  await expectNoError(a);

  // The phone still holds its signed cookie, which has not expired, yet the gateway
  // refuses it within a second (polled): revoked, not missing or expired.
  let answer;
  await waitUntil("the gateway to refuse the phone's cookie", async () => (answer = await cookieOnlyCall()).status === 401,
    { timeout: 1000, interval: 50 });
  assert.equal(answer.error, "invalid_token");
  assert.equal(await cookie(phone, SESSION_DATA), phoneCookie);
  const { exp } = JSON.parse(Buffer.from(phoneCookie.split(".")[1], "base64url").toString());
  assert.ok(exp > Date.now() / 1000, "the cookie had expired: the test proves nothing");

  // The phone's page shows the signed-out state on its next call, not an error.
  await newTaskForm(p).getByLabel("Title").fill("Written after signing out everywhere");
  await newTaskForm(p).getByRole("button", { name: "Add task" }).click();
  await p.getByText("Your session has ended. Please sign in again.").waitFor();
  await p.getByLabel("Email").waitFor();
  await expectNoError(p);
  assertNoTokenSent(phone);
});
