// Drives Debian's Chromium (headless) through page.html served from two origins: one in
// TODO_CORS_ORIGINS, one not. Started by run.sh, which passes everything in the environment:
//   API            the server's base URL (http://127.0.0.1:<port>)
//   TOKEN          a token for USER_ID
//   USER_ID        the user the page acts as
//   ALLOWED_PAGE   page.html's URL on the allowed origin
//   OTHER_PAGE     page.html's URL on an origin that is not allowed
//   CHROMIUM       the browser binary (default /usr/bin/chromium)
//   PROFILE_DIR    an empty directory for the browser profile
// Prints a PASS or FAIL line per test and, last, "<n> passed, <m> failed"; exits 1 on failure.

import http from "node:http";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (!value) {
    console.error(`FAIL setup: ${name} is not set`);
    process.exit(2);
  }
  return value;
};
const API = env("API");
const TOKEN = env("TOKEN");
const USER_ID = env("USER_ID");
const ALLOWED_PAGE = env("ALLOWED_PAGE");
const OTHER_PAGE = env("OTHER_PAGE");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const PROFILE_DIR = env("PROFILE_DIR");
// The page gives up on each wait at this deadline; no test waits longer.
const SCENARIO_MS = 5000;

/** GET `path` on the API from outside the browser: Node's http module, no Origin header. */
function apiGet(path) {
  return new Promise((resolve, reject) => {
    const request = http.get(`${API}${path}`, { headers: { Authorization: `Bearer ${TOKEN}` }, timeout: 5000 }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => {
        try {
          resolve({ status: response.statusCode, body: JSON.parse(body) });
        } catch (e) {
          reject(new Error(`GET ${path}: ${response.statusCode} ${body}`));
        }
      });
    });
    request.on("timeout", () => request.destroy(new Error(`GET ${path} timed out`)));
    request.on("error", reject);
  });
}

async function tasksTitled(title) {
  const reply = await apiGet(`/api/${encodeURIComponent(USER_ID)}/tasks?limit=200`);
  if (reply.status !== 200) throw new Error(`listing tasks: ${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body.items.filter((t) => t.title === title);
}

/** Opens `url` in a new tab and runs the page's scenario; returns its result and the console. */
async function runPage(context, url, title) {
  const page = await context.newPage();
  const consoleLines = [];
  // The WebSocket URL carries the token; keep it out of CI logs.
  const redact = (text) => text.split(TOKEN).join("<token>");
  page.on("console", (m) => consoleLines.push(redact(`${m.type()}: ${m.text()}`)));
  page.on("pageerror", (e) => consoleLines.push(redact(`pageerror: ${e.message}`)));
  try {
    await page.goto(url, { waitUntil: "load", timeout: SCENARIO_MS });
    const result = await page.evaluate(
      (args) => window.runScenario(args),
      { api: API, user: USER_ID, token: TOKEN, title, timeoutMs: SCENARIO_MS },
    );
    return { result, consoleLines };
  } finally {
    await page.close();
  }
}

/** A test: `body` returns a list of failed checks (empty when it passed). */
const tests = [
  {
    name: "a page on the allowed origin creates a task with fetch, reads Location, and gets task.created over the WebSocket",
    async body(context) {
      const title = `from the allowed origin ${Date.now()}`;
      const { result, consoleLines } = await runPage(context, ALLOWED_PAGE, title);
      const failed = [];
      const check = (ok, what) => { if (!ok) failed.push(what); };
      check(result.ws.opened, `the WebSocket opened (got ${JSON.stringify(result.ws)})`);
      check(result.fetch.status === 201, `fetch POST answered 201 (got ${JSON.stringify(result.fetch)})`);
      const id = result.fetch.taskId;
      check(id && result.fetch.location === `/api/${USER_ID}/tasks/${id}`,
        `JS read Location /api/${USER_ID}/tasks/<id> (got ${JSON.stringify(result.fetch.location)})`);
      check(result.fetch.etag === '"1"', `JS read ETag "1" (got ${JSON.stringify(result.fetch.etag)})`);
      check(Boolean(result.fetch.requestId), `JS read X-Request-Id (got ${JSON.stringify(result.fetch.requestId)})`);
      check(result.event && result.event.type === "task.created" && result.event.taskId === id,
        `task.created for ${id} arrived within ${SCENARIO_MS} ms (got ${JSON.stringify(result.event)}; timed out: ${result.timedOut.join(", ") || "nothing"})`);
      const stored = await tasksTitled(title);
      check(stored.length === 1 && stored[0].id === id, `the API lists exactly that task (got ${stored.length})`);
      if (failed.length) failed.push(`origin ${result.origin}; console: ${JSON.stringify(consoleLines)}`);
      return failed;
    },
  },
  {
    name: "a page on another origin is refused: fetch fails with a CORS TypeError, the WebSocket never opens, no task is created",
    async body(context) {
      const title = `from the other origin ${Date.now()}`;
      const { result, consoleLines } = await runPage(context, OTHER_PAGE, title);
      const failed = [];
      const check = (ok, what) => { if (!ok) failed.push(what); };
      check(!result.ws.opened && result.ws.closeCode !== null,
        `the WebSocket was refused: closed without opening (got ${JSON.stringify(result.ws)})`);
      check(result.fetch.errorName === "TypeError" && result.fetch.status === null,
        `fetch failed with a TypeError (got ${JSON.stringify(result.fetch)})`);
      check(consoleLines.some((l) => l.includes("CORS policy")),
        "the browser blamed the CORS policy for the failed fetch (console)");
      check(consoleLines.some((l) => l.includes("WebSocket") && l.includes("403")),
        "the browser reported the handshake's 403 (console)");
      const stored = await tasksTitled(title);
      check(stored.length === 0, `no task was created (the API lists ${stored.length})`);
      if (failed.length) failed.push(`origin ${result.origin}; console: ${JSON.stringify(consoleLines)}`);
      return failed;
    },
  },
];

let passed = 0;
let failedCount = 0;
let context;
// Never hang a CI job: a test still running after this counts as failed, like those after it.
const watchdog = setTimeout(() => {
  console.log("FAIL watchdog: the browser tests did not finish within 60 s");
  console.log(`${passed} passed, ${tests.length - passed} failed`);
  process.exit(1);
}, 60_000);
// Stopped by run.sh's traps (or ^C): close the browser, then exit. Playwright's own handlers
// would close the browser but leave this script waiting for it.
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]]) {
  process.once(signal, () => {
    const closing = context ? context.close().catch(() => {}) : Promise.resolve();
    const deadline = new Promise((resolve) => setTimeout(resolve, 5000));
    Promise.race([closing, deadline]).then(() => process.exit(code));
  });
}
try {
  context = await chromium.launchPersistentContext(PROFILE_DIR, {
    executablePath: CHROMIUM,
    headless: true,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
} catch (e) {
  console.log(`FAIL setup: cannot launch ${CHROMIUM}: ${e.message}`);
}
for (const test of tests) {
  const started = Date.now();
  let failures;
  if (!context) {
    failures = ["the browser did not start"];
  } else {
    try {
      failures = await test.body(context);
    } catch (e) {
      failures = [`threw: ${e.stack ?? e}`];
    }
  }
  const ms = Date.now() - started;
  if (failures.length === 0) {
    passed += 1;
    console.log(`PASS ${test.name} (${ms} ms)`);
  } else {
    failedCount += 1;
    console.log(`FAIL ${test.name} (${ms} ms)`);
    for (const f of failures) console.log(`     - ${f}`);
  }
}
if (context) await context.close().catch(() => {});
clearTimeout(watchdog);
console.log(`${passed} passed, ${failedCount} failed`);
process.exit(failedCount === 0 ? 0 : 1);
