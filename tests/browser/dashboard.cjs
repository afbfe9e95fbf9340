// The dashboard in headless Chromium (Debian's), driven by playwright-core: sign in,
// upload a sample, watch it appear and finish, open it in the review lane, unblur an
// evidence frame, play the flagged range, approve. Run by tests/it/dashboard.rs, which
// starts `vcw serve` and checks the API and the audit trail afterwards.
//
// Environment: VCW_URL, VCW_TOKEN (reviewer), VCW_UPLOAD_TOKEN, VCW_CONSENT, VCW_SAMPLE and
// VCW_VIDEO_ID (the upload to review), VCW_MORE (id=path,… uploaded too), VCW_SHOTS (a
// directory for the screenshots), VCW_CHROMIUM.
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require(path.join(__dirname, "../../dashboard/node_modules/playwright-core"));

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const [base, token, id, shots] = ["VCW_URL", "VCW_TOKEN", "VCW_VIDEO_ID", "VCW_SHOTS"].map(env);

function check(ok, what) {
  if (!ok) throw new Error(`failed: ${what}`);
  console.log(`ok: ${what}`);
}

async function upload(id, file) {
  const r = await fetch(`${base}/v1/videos/${id}`, {
    method: "PUT",
    headers: {
      Authorization: `Bearer ${env("VCW_UPLOAD_TOKEN")}`,
      "Vcw-Consent": env("VCW_CONSENT"),
      "Content-Type": "application/octet-stream",
    },
    body: fs.readFileSync(file),
  });
  check(r.status === 202, `upload of ${path.basename(file)} accepted (${r.status})`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: env("VCW_CHROMIUM"),
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  try {
    await page.goto(`${base}/dashboard`);
    await page.waitForSelector("#login-form:visible");
    await page.fill("#token", "vcw_not-a-token");
    await page.click("#login");
    await page.waitForSelector("#login-error:has-text('unknown token')");
    check(true, "a wrong token is refused");
    await shot("01-login");

    await page.fill("#token", token);
    await page.click("#login");
    await page.waitForSelector("#tabs:visible");
    check((await page.textContent("#role")).startsWith("reviewer"), "signed in as reviewer");
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "vcw_session");
    check(session && session.httpOnly && session.sameSite === "Strict", "session cookie is HttpOnly, SameSite=Strict");
    check(!(await page.evaluate(() => document.cookie)).includes("vcw_session"), "page scripts cannot read the token");

    await page.click("button[data-tab=jobs]");
    // The sample to review, then the other samples (VCW_MORE: id=path,…), so that the
    // overview shows a real mix.
    const more = (process.env.VCW_MORE || "").split(",").filter(Boolean).map((p) => p.split("="));
    for (const [i, file] of [[id, env("VCW_SAMPLE")], ...more]) {
      await upload(i, file);
      const row = `#job-table tr[data-id="${i}"]`;
      await page.waitForSelector(row, { timeout: 30000 });
      check(true, `${i} appears in the job list`);
    }
    for (const [i] of [[id], ...more]) {
      await page.waitForSelector(`#job-table tr[data-id="${i}"] .state-done`, { timeout: 240000 });
      check(true, `${i} finishes`);
    }
    await shot("02-jobs");

    await page.click("button[data-tab=overview]");
    // A plot has drawn when one of its bars has a height (empty buckets draw flat bars).
    const drawn = (sel) =>
      page.waitForFunction(
        (s) => [...document.querySelectorAll(s)].some((r) => Number(r.getAttribute("height")) > 0),
        sel,
        { timeout: 30000 },
      );
    await drawn("#plot-throughput svg rect.done");
    await drawn("#plot-verdicts svg rect.verdict-review");
    await drawn("#plot-latency svg rect.done");
    check(true, "the overview plots throughput and the verdict mix");
    await shot("03-overview");

    await page.click("button[data-tab=review]");
    const item = `#review-list li[data-id="${id}"]`;
    await page.waitForSelector(item, { timeout: 30000 });
    await page.click(item);
    await page.waitForSelector("#review-item .thumb img");
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#review-item .thumb img")].every((i) => i.complete && i.naturalWidth > 0));
    const srcs = await page.$$eval("#review-item .thumb img", (imgs) => imgs.map((i) => i.getAttribute("src")));
    check(srcs.length > 0 && srcs.every((s) => !s.includes("clear=true")), `${srcs.length} evidence frames, blurred`);
    check(await page.isVisible("#review-item svg.timeline rect.range"), "flagged ranges on the timeline");
    await page.click("#review-item .unblur >> nth=0");
    await page.waitForFunction(() => {
      const i = document.querySelector("#review-item .thumb img");
      return i.src.includes("clear=true") && i.complete && i.naturalWidth > 0;
    });
    check(true, "one frame unblurred on a deliberate click");
    await page.waitForFunction(() => document.querySelector("#player")?.readyState >= 2, null, { timeout: 60000 });
    const at = await page.$eval("#player", (v) => v.currentTime);
    check(at > 0, `the player loaded the stored HLS at the flagged range (${at.toFixed(1)} s)`);
    await shot("04-review");

    await page.fill("#decision-reason", "cartoon, nothing explicit");
    await page.click(".decide-approve");
    await page.waitForSelector("#decision-status:has-text('Recorded: approve')");
    check(true, "approved");
    await page.waitForFunction((sel) => !document.querySelector(sel), item);
    check(true, "the item left the review lane");
    await shot("05-approved");
    check(errors.length === 0, `no script errors (${errors.join("; ")})`);
  } catch (e) {
    await shot("failure").catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
