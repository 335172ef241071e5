// The demo task app in a real Chromium (Debian's chromium package, driven by
// playwright-core): two people, JWT expiry, sign-out, roles at the gateway, outages.
// One stack for the whole file; the tests run in order and build on each other's
// accounts (Better Auth allows 3 sign-ups per 10 s per client address).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";
import { missingPrerequisites, Proc, REPO_ROOT, startStack, waitUntil } from "./stack.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
export const ARTIFACTS = join(REPO_ROOT, "tests/browser/artifacts");

// Short enough that the expiry test sees several tokens expire; the gateway's leeway is
// lowered to match, so an expired token really is refused.
const JWT_LIFETIME_S = 10;
const LEEWAY_S = 1;
const UNAVAILABLE = "We can't reach your tasks right now";

// Every run has its own databases, so the accounts can have plain names.
const password = `pw-${randomBytes(9).toString("base64url")}`;
const alice = { label: "alice", name: "Alice Example", email: "alice@example.com" };
const bob = { label: "bob", name: "Bob Example", email: "bob@example.com" };
const carol = { label: "carol", name: "Carol Example", email: "carol@example.com" };

let stack;
let browser;
let workdir;
const people = [];

before(async () => {
  const missing = missingPrerequisites();
  if (missing.length) throw new Error(`browser tests cannot start:\n  ${missing.join("\n  ")}`);
  workdir = mkdtempSync(join(tmpdir(), "portcullis-browser-"));
  stack = await startStack(workdir, {
    jwtLifetime: `${JWT_LIFETIME_S}s`,
    leeway: `${LEEWAY_S}s`,
    adminEmails: [alice.email],
  });
  // launch() gives every run a fresh, temporary user-data dir.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close();
  await Proc.stopAll();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

// --- helpers ----------------------------------------------------------------------------

function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
}

/** A person with their own browser context (cookies, storage) and one tab. */
async function open(person, { clockOffsetMs = 0 } = {}) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 860 } });
  context.setDefaultTimeout(15_000);
  if (clockOffsetMs) await context.clock.install({ time: Date.now() + clockOffsetMs });
  const page = await context.newPage();
  person.context = context;
  person.page = page;
  person.console = [];
  person.tokens = []; // every JWT Better Auth handed this page, as seen on the wire
  person.gateway = []; // every answer the page got from Portcullis: "METHOD path status"
  page.on("console", (m) => person.console.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => person.console.push(`[pageerror] ${e.message}`));
  page.on("response", async (response) => {
    if (response.url().startsWith(`${stack.gatewayUrl}/`) && response.request().method() !== "OPTIONS") {
      const { pathname } = new URL(response.url());
      person.gateway.push(`${response.request().method()} ${pathname} ${response.status()}`);
    }
    if (new URL(response.url()).pathname !== "/api/auth/token" || !response.ok()) return;
    try {
      person.tokens.push((await response.json()).token);
    } catch {
      // the page navigated away meanwhile
    }
  });
  people.push(person);
  return person;
}

/** Saves a screenshot and the console log of every open page, and the stack's logs. */
async function saveArtifacts(name) {
  const dir = join(ARTIFACTS, name.replace(/[^a-z0-9]+/gi, "-").toLowerCase());
  mkdirSync(dir, { recursive: true });
  for (const person of people) {
    try {
      await person.page.screenshot({ path: join(dir, `${person.label}.png`), fullPage: true });
    } catch {
      // a closed page has nothing to show
    }
    writeFileSync(join(dir, `${person.label}-console.log`), person.console.join("\n") + "\n");
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

async function eventually(what, check, timeout = 15_000) {
  let last;
  await waitUntil(
    what,
    async () => {
      try {
        return await check();
      } catch (err) {
        last = err;
        return false;
      }
    },
    { timeout },
  ).catch((err) => {
    throw last ? new Error(`${err.message} (last error: ${last.message})`) : err;
  });
}

const taskList = (page) => page.getByRole("list", { name: "Tasks" });
const checkbox = (page, title) => taskList(page).getByRole("checkbox", { name: title, exact: true });
const item = (page, title) =>
  taskList(page).getByRole("listitem").filter({ has: page.getByRole("checkbox", { name: title, exact: true }) });
const newTaskForm = (page) => page.getByRole("form", { name: "New task" });

async function titles(page) {
  if ((await taskList(page).count()) === 0) return [];
  return taskList(page).locator(".task-title").allTextContents();
}

async function expectTitles(page, expected) {
  await eventually(`tasks ${JSON.stringify(expected)}`, async () => {
    const seen = await titles(page);
    return JSON.stringify(seen) === JSON.stringify(expected);
  }).catch(async (err) => {
    throw new Error(`${err.message}; the page shows ${JSON.stringify(await titles(page))}`);
  });
}

// Next.js keeps an empty role="alert" route announcer on every page: only alerts with text count.
const alerts = (page) => page.getByRole("alert").filter({ hasText: /\S/ });

async function expectNoError(page) {
  assert.equal(await alerts(page).count(), 0, `an error is shown: ${await alerts(page).allTextContents()}`);
}

async function signUp(person) {
  const { page } = person;
  await page.goto(stack.webUrl);
  await page.getByRole("button", { name: "Create an account" }).click();
  await page.getByLabel("Name").fill(person.name);
  await page.getByLabel("Email").fill(person.email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign up", exact: true }).click();
  await page.getByRole("button", { name: "Sign out", exact: true }).waitFor();
  await page.getByText("No tasks yet.").waitFor();
  person.userId = claimsOf(person.tokens.at(-1)).sub;
}

async function addTask(page, title, description = "") {
  const form = newTaskForm(page);
  await form.getByLabel("Title").fill(title);
  await form.getByLabel("Description").fill(description);
  await form.getByRole("button", { name: "Add task" }).click();
  await checkbox(page, title).waitFor();
}

// --- the tests ----------------------------------------------------------------------------

scenario("two people each manage only their own tasks, and a reload shows what was stored", async () => {
  await open(alice);
  await open(bob);
  await signUp(alice);
  await signUp(bob);
  const a = alice.page;
  const b = bob.page;

  // The header says who is signed in.
  await a.getByText("Signed in as").getByText(alice.name).waitFor();

  await addTask(a, "Buy milk", "Two litres, oat");
  // A title is required: nothing is sent, the person is told until they type one.
  await newTaskForm(a).getByRole("button", { name: "Add task" }).click();
  await alerts(a).getByText("A task needs a title.").waitFor();
  await addTask(a, "Write report");
  // Keyboard only: type the title and press Enter.
  await newTaskForm(b).getByLabel("Title").focus();
  await b.keyboard.type("Fix bike");
  await b.keyboard.press("Enter");
  await checkbox(b, "Fix bike").waitFor();
  await expectTitles(a, ["Buy milk", "Write report"]);
  await expectTitles(b, ["Fix bike"]);
  await item(a, "Buy milk").getByText("Two litres, oat").waitFor();

  // Edit title and description; Escape cancels an edit.
  await item(a, "Write report").getByRole("button", { name: "Edit" }).click();
  const edit = a.getByRole("form", { name: "Edit task" });
  await edit.getByLabel("Title").fill("Write quarterly report");
  await edit.getByLabel("Description").fill("Due Friday");
  await edit.getByRole("button", { name: "Save" }).click();
  await item(a, "Write quarterly report").getByText("Due Friday").waitFor();
  await item(a, "Buy milk").getByRole("button", { name: "Edit" }).click();
  await a.getByRole("form", { name: "Edit task" }).getByLabel("Title").fill("not saved");
  await a.keyboard.press("Escape");
  await expectTitles(a, ["Buy milk", "Write quarterly report"]);
  await expectNoError(a);

  // Complete, then filter.
  await checkbox(a, "Buy milk").check();
  await eventually("Buy milk checked", () => checkbox(a, "Buy milk").isChecked());
  const filters = a.getByRole("group", { name: "Filter" });
  await filters.getByRole("button", { name: "Active" }).click();
  await expectTitles(a, ["Write quarterly report"]);
  await filters.getByRole("button", { name: "Completed" }).click();
  await expectTitles(a, ["Buy milk"]);
  await filters.getByRole("button", { name: "All" }).click();
  await expectTitles(a, ["Buy milk", "Write quarterly report"]);

  // Delete, undo, delete for good.
  await item(a, "Write quarterly report").getByRole("button", { name: "Delete" }).click();
  await expectTitles(a, ["Buy milk"]);
  await a.getByRole("status").getByRole("button", { name: "Undo" }).click();
  await expectTitles(a, ["Buy milk", "Write quarterly report"]);
  await item(a, "Write quarterly report").getByText("Due Friday").waitFor();
  await item(a, "Write quarterly report").getByRole("button", { name: "Delete" }).click();
  await expectTitles(a, ["Buy milk"]);

  // Bob completes and deletes his only task: the empty state, not a blank page.
  // Bob edits his task with the keyboard only: Enter saves.
  await item(b, "Fix bike").getByRole("button", { name: "Edit" }).click();
  await b.getByRole("form", { name: "Edit task" }).getByLabel("Title").fill("Fix bike brakes");
  await b.keyboard.press("Enter");
  await expectTitles(b, ["Fix bike brakes"]);
  await checkbox(b, "Fix bike brakes").check();
  await eventually("Fix bike brakes checked", () => checkbox(b, "Fix bike brakes").isChecked());
  await b.getByRole("group", { name: "Filter" }).getByRole("button", { name: "Active" }).click();
  await b.getByText("Nothing left to do.").waitFor();
  await b.getByRole("group", { name: "Filter" }).getByRole("button", { name: "All" }).click();
  await item(b, "Fix bike brakes").getByRole("button", { name: "Delete" }).click();
  await b.getByText("No tasks yet.").waitFor();
  await expectNoError(a);
  await expectNoError(b);

  // Stored, not just on the page; and each still sees only their own.
  await a.reload();
  await b.reload();
  await expectTitles(a, ["Buy milk"]);
  assert.equal(await checkbox(a, "Buy milk").isChecked(), true);
  await b.getByText("No tasks yet.").waitFor();
  assert.deepEqual(await titles(b), []);

  // Readable on a phone-width window: nothing sticks out sideways.
  await a.setViewportSize({ width: 375, height: 760 });
  await a.getByRole("button", { name: "Sign out", exact: true }).waitFor();
  const overflow = await a.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 375px window`);
  await a.setViewportSize({ width: 1000, height: 860 });
});

scenario("an admin sees the Admin panel; anyone else is refused at the gateway", async () => {
  const a = alice.page;
  const b = bob.page;
  await addTask(b, "Water the plants");
  // The panel counts again after each of the admin's own changes.
  await addTask(a, "Review the gateway config", "Admin route, roles and CORS");
  await addTask(a, "Book train tickets");

  // The service's own totals, asked for directly on loopback.
  const truth = await (await fetch(`${stack.tasksUrl}/api/admin/stats`, { headers: { "X-User-Id": "test" } })).json();
  const admin = a.getByRole("region", { name: "Admin" });
  await admin.waitFor();
  await eventually(`Admin panel shows ${JSON.stringify(truth)}`, async () => {
    const shown = await admin.locator("dd").allTextContents();
    return JSON.stringify(shown) === JSON.stringify([truth.users, truth.tasks, truth.completed].map(String));
  });
  assert.deepEqual(truth, { users: 2, tasks: 4, completed: 1 });

  // Bob is not an admin: no panel, and calling the route by hand from his page is the
  // gateway's 403; the task service never hears of it.
  await checkbox(b, "Water the plants").waitFor();
  assert.equal(await b.getByRole("region", { name: "Admin" }).count(), 0);
  const callAdminRoute = (page) =>
    page.evaluate(async (gatewayUrl) => {
      const { token } = await (await fetch("/api/auth/token")).json();
      const response = await fetch(`${gatewayUrl}/api/admin/stats`, { headers: { Authorization: `Bearer ${token}` } });
      return { status: response.status, body: await response.json() };
    }, stack.gatewayUrl);
  const before = await stack.serviceRequestCount();
  const refused = await callAdminRoute(b);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error, "insufficient_scope");
  assert.equal(await stack.serviceRequestCount(), before, "the task service saw the refused call");
  // The same call with the admin's token goes through.
  const allowed = await callAdminRoute(a);
  assert.equal(allowed.status, 200);
  assert.deepEqual(allowed.body, truth);
  assert.equal(await stack.serviceRequestCount(), before + 1);

  // The screenshot in deploy/demo/README.md.
  await a.reload();
  await expectTitles(a, ["Buy milk", "Review the gateway config", "Book train tickets"]);
  await eventually("Admin counts loaded", async () => (await admin.locator("dd").first().textContent()) === "2");
  await a.setViewportSize({ width: 900, height: 860 });
  mkdirSync(ARTIFACTS, { recursive: true });
  await a.screenshot({ path: join(ARTIFACTS, "task-page.png"), fullPage: true });
  await a.setViewportSize({ width: 1000, height: 860 });
});

scenario("people keep working across several JWT expiries without seeing an error", async () => {
  // Bob's clock is right; Carol's runs 30 s behind, so her page believes expired tokens
  // are fresh: the gateway's 401 makes it fetch a new one and retry once.
  await open(carol, { clockOffsetMs: -30_000 });
  await signUp(carol);
  const b = bob.page;
  const c = carol.page;
  const acceptedAfter = (userId, method, since) =>
    stack
      .accessLog()
      .filter((e) => e.user === userId && e.method === method && e.status < 400 && Date.parse(e.timestamp) > since);

  const expected = { bob: ["Water the plants"], carol: [] };
  for (let round = 1; round <= 3; round++) {
    // Wait out the newest token Bob's page holds (plus the gateway's leeway).
    const expiredAt = claimsOf(bob.tokens.at(-1)).exp * 1000 + LEEWAY_S * 1000;
    await waitUntil("Bob's JWT to expire", () => Date.now() > expiredAt + 300, { timeout: (JWT_LIFETIME_S + 5) * 1000 });
    for (const [person, page] of [[bob, b], [carol, c]]) {
      await addTask(page, `Round ${round}`);
      expected[person.label].push(`Round ${round}`);
      await expectTitles(page, expected[person.label]);
      await expectNoError(page);
    }
    // The gateway accepted Bob's request after his previous token had expired.
    await eventually(`access log: bob's POST accepted after expiry ${round}`, () =>
      acceptedAfter(bob.userId, "POST", expiredAt).length >= 1,
    );
  }
  await b.reload();
  await expectTitles(b, expected.bob);
  await expectNoError(b);

  // Bob's page replaced its token before use: one per lifetime, never a refused call.
  assert.ok(bob.tokens.length >= 4, `bob's page fetched ${bob.tokens.length} tokens`);
  assert.deepEqual(bob.gateway.filter((a) => a.endsWith(" 401")), [], "bob's page sent an expired token");
  // Carol's page met refusals (expired tokens it thought fresh), and each was answered
  // by a fresh token and one accepted retry of the same call; she never saw an error.
  const refused = carol.gateway.flatMap((answer, i) => (answer.endsWith(" 401") ? [i] : []));
  assert.ok(refused.length >= 2, `carol's page met no expired-token refusals: ${carol.gateway.join(", ")}`);
  for (const i of refused) {
    const call = carol.gateway[i].replace(/ 401$/, "");
    assert.match(carol.gateway[i + 1] ?? "", new RegExp(`^${call} 2\\d\\d$`), `no accepted retry of ${call}`);
  }
  assert.ok(carol.tokens.length >= refused.length + 1);
  // The gateway's log holds her three accepted POSTs, by user id (the access log is
  // written out at least once a second, so the last line may still be on its way).
  await eventually("access log: carol's three POSTs accepted", () => acceptedAfter(carol.userId, "POST", 0).length === 3);
  await expectNoError(c);
});

scenario("signing out returns to sign-in and leaves nothing of the JWT in the page", async () => {
  const b = bob.page;
  const storage = () =>
    b.evaluate(() => ({
      local: JSON.stringify({ ...localStorage }),
      session: JSON.stringify({ ...sessionStorage }),
      cookie: document.cookie,
    }));
  const holdsJwt = (text) =>
    /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/.test(text) || bob.tokens.some((t) => text.includes(t.split(".")[2]));

  const signedIn = await storage();
  for (const [where, text] of Object.entries(signedIn)) assert.ok(!holdsJwt(text), `a JWT in ${where} while signed in`);

  await b.getByRole("button", { name: "Sign out", exact: true }).click();
  await b.getByLabel("Email").waitFor();
  await b.getByLabel("Password").waitFor();
  assert.equal(await b.getByRole("list", { name: "Tasks" }).count(), 0);
  const signedOut = await storage();
  for (const [where, text] of Object.entries(signedOut)) assert.ok(!holdsJwt(text), `a JWT in ${where} after sign-out`);
  // The session is really gone: Better Auth hands out no token for this browser.
  const tokenAnswer = await b.evaluate(async () => (await fetch("/api/auth/token")).status);
  assert.equal(tokenAnswer, 401);

  // Signing in again brings back the stored tasks.
  await b.getByLabel("Email").fill(bob.email);
  await b.getByLabel("Password").fill(password);
  await b.getByRole("button", { name: "Sign in", exact: true }).click();
  await expectTitles(b, ["Water the plants", "Round 1", "Round 2", "Round 3"]);

  // The session ends elsewhere (not through this page): the page finds out when its
  // token runs out and Better Auth has none to give. A clear signed-out state, no error.
  await bob.context.clock.install();
  const tab = await bob.context.newPage();
  await tab.goto(stack.webUrl);
  await expectTitles(tab, ["Water the plants", "Round 1", "Round 2", "Round 3"]);
  const ended = await bob.context.request.post(`${stack.webUrl}/api/auth/sign-out`, {
    headers: { Origin: stack.webUrl },
    data: {},
  });
  assert.equal(ended.status(), 200);
  await bob.context.clock.fastForward((JWT_LIFETIME_S + 60) * 1000);
  await newTaskForm(tab).getByLabel("Title").fill("After the session ended");
  await newTaskForm(tab).getByRole("button", { name: "Add task" }).click();
  await tab.getByText("Your session has ended. Please sign in again.").waitFor();
  await tab.getByLabel("Email").waitFor();
  await expectNoError(tab);
  await tab.close();
});

scenario("when the task service or Portcullis stops, the page says so plainly and recovers", async () => {
  const a = alice.page;
  const expected = ["Buy milk", "Review the gateway config", "Book train tickets"];
  await expectTitles(a, expected);

  for (const [part, stop, start] of [
    ["the task service", () => stack.tasks.stop(), () => stack.startTasks()],
    ["Portcullis", () => stack.gateway.stop(), () => stack.startGateway()],
  ]) {
    await stop();
    await newTaskForm(a).getByLabel("Title").fill(`Written while ${part} is down`);
    await newTaskForm(a).getByRole("button", { name: "Add task" }).click();
    const alert = alerts(a);
    await alert.getByText(UNAVAILABLE).waitFor();
    const text = await alert.textContent();
    assert.doesNotMatch(text, /\b50[234]\b|gateway|fetch|error:|exception/i, `technical words in: ${text}`);
    // What was there stays on the page.
    await expectTitles(a, expected);

    await start();
    // The page also retries on its own every few seconds; whichever comes first.
    const tryAgain = alert.getByRole("button", { name: "Try again" });
    if (await tryAgain.isVisible()) await tryAgain.click().catch(() => {});
    await alert.waitFor({ state: "detached" });
    await newTaskForm(a).getByRole("button", { name: "Add task" }).click();
    await checkbox(a, `Written while ${part} is down`).waitFor();
    expected.push(`Written while ${part} is down`);
    await expectNoError(a);
  }
  await a.reload();
  await expectTitles(a, expected);
  await expectNoError(a);
});

// --- revocation: ending sessions reaches the gateway --------------------------------------

async function signIn(person) {
  const { page } = person;
  await page.goto(stack.webUrl);
  await page.getByLabel("Email").fill(person.email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("button", { name: "Sign out", exact: true }).waitFor();
}

/** The gateway's answer to `token` on GET /api/tasks, asked from here (not a page). */
async function gatewayAnswer(token) {
  const response = await fetch(`${stack.gatewayUrl}/api/tasks`, { headers: { Authorization: `Bearer ${token}` } });
  await response.body?.cancel();
  return { status: response.status, challenge: response.headers.get("www-authenticate") ?? "" };
}

/**
 * The newest JWT a page holds is refused by the gateway within a second (polled), while
 * it has not expired: the refusal is the revocation, not the clock.
 */
async function expectRevoked(person) {
  const token = person.tokens.at(-1);
  assert.ok(token, `${person.label}'s page holds no JWT`);
  let answer;
  await waitUntil(
    `the gateway to refuse ${person.label}'s JWT`,
    async () => (answer = await gatewayAnswer(token)).status === 401,
    { timeout: 1000, interval: 50 },
  ).catch((err) => {
    throw new Error(`${err.message}; last answer ${answer?.status}`);
  });
  assert.match(answer.challenge, /error="invalid_token"/);
  assert.match(answer.challenge, /error_description="revoked"/);
  assert.ok(claimsOf(token).exp > Date.now() / 1000, "the JWT had expired: the test proves nothing");
}

/** The page's next call is refused; it shows the signed-out state, not an error. */
async function expectSignedOutOnNextCall(person, title) {
  const { page } = person;
  await newTaskForm(page).getByLabel("Title").fill(title);
  await newTaskForm(page).getByRole("button", { name: "Add task" }).click();
  await page.getByText("Your session has ended. Please sign in again.").waitFor();
  await page.getByLabel("Email").waitFor();
  await expectNoError(page);
  assert.ok(person.gateway.includes("POST /api/tasks 401"), `no refused call: ${person.gateway.join(", ")}`);
  assert.ok(!person.gateway.includes("POST /api/tasks 201"), "the write went through");
}

scenario("sign out everywhere: another browser's unexpired JWT is refused at once", async () => {
  // Dave signs in twice, in two browsers (each with its own cookies and storage).
  const dave = await open({ label: "dave", name: "Dave Example", email: "dave@example.com" });
  await signUp(dave);
  await addTask(dave.page, "Pack for the trip");
  const laptop = await open({ label: "dave-laptop", name: dave.name, email: dave.email });
  await signIn(laptop);
  await expectTitles(laptop.page, ["Pack for the trip"]);
  assert.equal(claimsOf(laptop.tokens.at(-1)).sub, dave.userId);
  assert.notEqual(claimsOf(laptop.tokens.at(-1)).sid, claimsOf(dave.tokens.at(-1)).sid, "one session for both");
  assert.deepEqual(await gatewayAnswer(laptop.tokens.at(-1)), { status: 200, challenge: "" });
  laptop.gateway.length = 0;

  const d = dave.page;
  await d.getByRole("button", { name: "Sign out everywhere" }).click();
  // This browser is signed out, and says why.
  await d.getByText("You are signed out on every device.").waitFor();
  await d.getByLabel("Email").waitFor();
  await expectNoError(d);
  assert.equal(await d.evaluate(async () => (await fetch("/api/auth/token")).status), 401);

  await expectRevoked(laptop);
  await expectSignedOutOnNextCall(laptop, "Written after signing out everywhere");
});

scenario("an admin bans a user: that user's open page is refused at once", async () => {
  const c = carol.page;
  await c.reload();
  await expectTitles(c, ["Round 1", "Round 2", "Round 3"]);
  // A JWT of Carol's session minted just now (her page's clock runs behind: it may hold
  // an older one, which it would replace on a refusal anyway).
  assert.equal(await c.evaluate(async () => (await fetch("/api/auth/token")).status), 200);
  assert.equal((await gatewayAnswer(carol.tokens.at(-1))).status, 200);
  carol.gateway.length = 0;

  const banned = await alice.context.request.post(`${stack.webUrl}/api/auth/admin/ban-user`, {
    headers: { Origin: stack.webUrl },
    data: { userId: carol.userId, banReason: "browser test" },
  });
  assert.equal(banned.status(), 200, await banned.text());

  await expectRevoked(carol);
  await expectSignedOutOnNextCall(carol, "Written after the ban");
  // The admin is not affected.
  await alice.page.reload();
  await expectTitles(alice.page, ["Buy milk", "Review the gateway config", "Book train tickets",
    "Written while the task service is down", "Written while Portcullis is down"]);
  await expectNoError(alice.page);
});
