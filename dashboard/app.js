// vcw dashboard: plain JavaScript, no build step. It calls the same API as every client;
// the token lives in an HttpOnly cookie, and changes carry the X-Vcw-Csrf header.
"use strict";

const POLL_MS = 3000;
const $ = (id) => document.getElementById(id);
let role = null;
let tab = "overview";
let current = null; // the review item open
let hls = null;

// --- small helpers -----------------------------------------------------------------

/** An element with attributes and children (strings become text: never HTML). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c) e.append(c instanceof Node ? c : String(c));
  return e;
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)vcw_csrf=([0-9a-f]+)/);
  return m ? m[1] : "";
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers);
  if (opts.method && opts.method !== "GET") headers["X-Vcw-Csrf"] = csrf();
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
  }
  const r = await fetch(path, { credentials: "same-origin", ...opts, headers });
  if (r.status === 401) {
    showLogin();
    throw new Error("signed out");
  }
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error((body && body.message) || `HTTP ${r.status}`);
  return body;
}

const bytes = (n) =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${Math.round(n / 1024)} KiB`;
const secs = (ms) => (ms == null ? "–" : ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);
const when = (ms) => new Date(ms).toLocaleTimeString();
const short = (id) => id.slice(0, 8) + "…";
const ranges = (reasons) =>
  (reasons || []).flatMap((r) => r.ranges.map(([a, b]) => `${r.code} ${a.toFixed(1)}–${b.toFixed(1)} s`)).join(", ");

// --- session ---------------------------------------------------------------------

function showLogin() {
  $("login-view").hidden = false;
  $("tabs").hidden = $("who").hidden = true;
  document.querySelectorAll(".tab").forEach((t) => (t.hidden = true));
}

function showApp(who) {
  role = who.role;
  $("role").textContent = `${who.role} · ${who.id}`;
  $("login-view").hidden = true;
  $("tabs").hidden = $("who").hidden = false;
  show(tab);
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const r = await fetch("/dashboard/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("token").value }),
    });
    if (!r.ok) throw new Error(r.status === 401 ? "unknown token" : `HTTP ${r.status}`);
    $("token").value = "";
    showApp(await r.json());
  } catch (e) {
    $("login-error").textContent = `Sign-in failed: ${e.message}`;
  }
});

$("logout").addEventListener("click", async () => {
  await fetch("/dashboard/logout", { method: "POST", credentials: "same-origin" });
  showLogin();
});

document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.tab)));

function show(name) {
  tab = name;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((t) => (t.hidden = t.id !== name));
  refresh();
}

// --- overview --------------------------------------------------------------------

async function overview() {
  const o = await api("/v1/dashboard");
  const jobs = o.jobs;
  const card = (label, value, cls = "") => el("div", { class: `card ${cls}` }, el("b", {}, value), el("span", {}, label));
  const c = o.cache;
  // Sealed objects refused on opening (swapped, altered, failing authentication).
  const integrity = Object.values(o.integrity_failures).reduce((a, b) => a + b, 0);
  $("cards").replaceChildren(
    card("queued", jobs.queued || 0),
    card("running", jobs.running || 0),
    card("done", jobs.done || 0),
    card("failed", jobs.failed || 0, jobs.failed ? "warn" : ""),
    card("dead", jobs.dead || 0, jobs.dead ? "bad" : ""),
    card("webhooks pending", o.outbox.pending),
    card("latency p50 / p99", `${secs(o.latency_ms.p50)} / ${secs(o.latency_ms.p99)}`),
    card("cache hit rate", c ? (c.hit_rate == null ? "–" : `${Math.round(c.hit_rate * 100)} %`) : "off"),
    card("cache held", c ? `${bytes(c.bytes)} of ${bytes(c.budget_bytes)}` : "off"),
    card("integrity failures", integrity, integrity ? "bad" : ""),
  );
  plotThroughput(o.throughput, o.now_ms);
  plotVerdicts(o.verdicts);
  plotLatency(o.latency_ms.samples);
  const w = o.workers;
  $("workers").replaceChildren(
    table(["Running job", "Attempt", "Progress", "Lease left", "Heartbeat"],
      w.leases.map((l) => [short(l.id), l.attempt, `${Math.round(l.progress * 100)} %`, secs(l.lease_left_ms), `${secs(l.heartbeat_ago_ms)} ago`]),
      "No job holds a lease."),
    table(["API node", "Last heartbeat"], w.api_nodes.map((n) => [n.node, `${secs(n.seen_ago_ms)} ago`]), "No API node heartbeats (embedded mode)."),
    table(["Reaper action (this process)", "Count"], Object.entries(w.reaper_actions), "The reaper has not run yet."),
  );
  $("consent").replaceChildren(
    table(["Event", "At", "Subject (hash)", "By"], o.consent_events.map((e) => [e.kind, when(e.at_ms), e.subject + "…", e.actor]), "No consent events yet."),
  );
}

function table(head, rows, empty) {
  if (!rows.length) return el("p", { class: "muted" }, empty);
  return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

/** Bars per minute over the last hour: done (green) and failed (red) stacked. */
function plotThroughput(t, now) {
  const W = 360, H = 120, n = Math.round((now - t.since_ms) / t.bucket_ms);
  const max = Math.max(1, ...t.buckets.map((b) => b.done + b.failed));
  const bw = W / n;
  const bars = t.buckets.flatMap((b) => {
    const i = Math.floor((b.at_ms - t.since_ms) / t.bucket_ms);
    const hd = (b.done / max) * (H - 14), hf = (b.failed / max) * (H - 14);
    return [
      svg("rect", { x: i * bw, y: H - hd, width: Math.max(1, bw - 1), height: hd, class: "done" }, svg("title", {}, `${when(b.at_ms)}: ${b.done} done`)),
      svg("rect", { x: i * bw, y: H - hd - hf, width: Math.max(1, bw - 1), height: hf, class: "failed" }, svg("title", {}, `${b.failed} failed`)),
    ];
  });
  $("plot-throughput").replaceChildren(svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "throughput" },
    svg("text", { x: 2, y: 10, class: "axis" }, `max ${max}/min`), bars));
}

const VERDICT_ORDER = ["allow", "review", "restrict", "block"];
function plotVerdicts(v) {
  const total = VERDICT_ORDER.reduce((s, k) => s + (v[k] || 0), 0);
  const W = 360, H = 120;
  if (!total) return $("plot-verdicts").replaceChildren(el("p", { class: "muted" }, "No finished videos yet."));
  const bh = 22;
  const rows = VERDICT_ORDER.map((k, i) => {
    const w = ((v[k] || 0) / total) * (W - 120);
    return [
      svg("text", { x: 0, y: i * (bh + 6) + 16, class: "axis" }, k),
      svg("rect", { x: 64, y: i * (bh + 6), width: Math.max(w, 1), height: bh, class: `verdict-${k}` }),
      svg("text", { x: 70 + w, y: i * (bh + 6) + 16, class: "axis" }, `${v[k] || 0}`),
    ];
  });
  $("plot-verdicts").replaceChildren(svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "verdict mix" }, rows));
}

/** A histogram of latencies on a log scale of seconds. */
function plotLatency(samples) {
  const W = 360, H = 120;
  if (!samples.length) return $("plot-latency").replaceChildren(el("p", { class: "muted" }, "No job finished in the last hour."));
  const edges = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, Infinity];
  const counts = edges.map(() => 0);
  for (const ms of samples) counts[edges.findIndex((e) => ms / 1000 <= e)]++;
  const max = Math.max(...counts), bw = W / edges.length;
  const bars = counts.map((c, i) => {
    const h = (c / max) * (H - 28);
    return [
      svg("rect", { x: i * bw + 2, y: H - 14 - h, width: bw - 4, height: h, class: "done" }, svg("title", {}, `${c} jobs`)),
      svg("text", { x: i * bw + 4, y: H - 2, class: "axis" }, edges[i] === Infinity ? ">5m" : `≤${edges[i]}s`),
    ];
  });
  $("plot-latency").replaceChildren(svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "latency" }, bars));
}

// --- jobs ------------------------------------------------------------------------

["f-state", "f-verdict", "f-escalated"].forEach((id) => $(id).addEventListener("change", refresh));

async function jobs() {
  const q = new URLSearchParams({ limit: "100" });
  if ($("f-state").value) q.set("state", $("f-state").value);
  if ($("f-verdict").value) q.set("verdict", $("f-verdict").value);
  if ($("f-escalated").checked) q.set("escalated", "true");
  const page = await api(`/v1/videos?${q}`);
  const rows = page.items.map((v) => {
    const retry = role === "admin" && (v.state === "dead" || v.state === "failed")
      ? el("button", { class: "retry", onclick: () => retryJob(v.id) }, "Retry") : "";
    return el("tr", { class: v.escalate ? "escalated" : "", "data-id": v.id },
      el("td", { title: v.id }, short(v.id)),
      el("td", {}, el("span", { class: `state state-${v.state}` }, v.state)),
      el("td", {}, el("progress", { max: 1, value: v.progress }), ` ${Math.round(v.progress * 100)} %`),
      el("td", {}, v.verdict ? el("span", { class: `verdict verdict-${v.verdict}` }, v.verdict) : "–", v.escalate ? el("b", { class: "esc" }, " escalated") : ""),
      el("td", {}, ranges(v.reasons) || "–"),
      el("td", {}, when(v.created_at_ms)),
      el("td", { class: "error" }, v.error || ""),
      el("td", {}, retry));
  });
  $("job-table").tBodies[0].replaceChildren(...rows);
  $("jobs-note").textContent = page.next ? "Showing the newest 100." : `${rows.length} videos.`;
}

async function retryJob(id) {
  try {
    await api(`/v1/videos/${id}/retry`, { method: "POST" });
  } catch (e) {
    alert(`Retry refused: ${e.message}`);
  }
  refresh();
}

// --- review lane -----------------------------------------------------------------

async function reviewList() {
  const { items } = await api("/v1/review");
  $("review-count").textContent = items.length || "";
  $("review-list").replaceChildren(...items.map((it) =>
    el("li", { class: `${it.escalate ? "escalated" : ""} ${current === it.id ? "open" : ""}`, "data-id": it.id, onclick: () => openItem(it.id) },
      it.escalate ? el("b", { class: "esc" }, "ESCALATED · ") : "",
      el("span", { class: `verdict verdict-${it.verdict}` }, it.verdict), " ", short(it.id),
      el("div", { class: "muted" }, (it.reasons || []).map((r) => r.code).join(", ")))));
}

async function openItem(id) {
  current = id;
  const v = await api(`/v1/videos/${id}`);
  const duration = v.report?.video?.duration || Math.max(1, ...(v.reasons || []).flatMap((r) => r.ranges.map((x) => x[1])));
  const evidence = [...new Set((v.reasons || []).flatMap((r) => r.evidence))].sort((a, b) => a - b).slice(0, 8);
  const thumbs = evidence.map((t) => {
    const img = el("img", { src: `/v1/videos/${id}/evidence?t=${t}`, alt: `frame at ${t.toFixed(1)} s (blurred)`, class: "blurred" });
    const button = el("button", { class: "unblur", onclick: () => {
      img.src = `/v1/videos/${id}/evidence?t=${t}&clear=true`;
      img.className = "";
      img.alt = `frame at ${t.toFixed(1)} s`;
      button.remove();
    } }, "Unblur (audited)");
    return el("figure", { class: "thumb" }, img, el("figcaption", {}, `${t.toFixed(1)} s `, button));
  });
  const W = 600;
  const timeline = svg("svg", { viewBox: `0 0 ${W} 40`, class: "timeline", role: "img", "aria-label": "flagged ranges" },
    svg("rect", { x: 0, y: 14, width: W, height: 12, class: "track" }),
    (v.reasons || []).flatMap((r) => r.ranges.map(([a, b]) => svg("rect", {
      x: (a / duration) * W, y: 10, width: Math.max(3, ((b - a) / duration) * W), height: 20, class: `range verdict-${r.action}`,
    }, svg("title", {}, `${r.code}: ${a.toFixed(1)}–${b.toFixed(1)} s, score ${r.max_score.toFixed(2)}`)))),
    svg("text", { x: 0, y: 40, class: "axis" }, "0 s"),
    svg("text", { x: W - 40, y: 40, class: "axis" }, `${duration.toFixed(0)} s`));
  const player = el("video", { id: "player", controls: true, muted: true, playsinline: true });
  const reason = el("textarea", { id: "decision-reason", placeholder: "Reason (recorded in the audit trail)", maxlength: 1000 });
  const status = el("p", { id: "decision-status", role: "status" });
  const decide = (decision) => el("button", { class: `decide decide-${decision}`, onclick: async () => {
    if (!reason.value.trim()) return (status.textContent = "A reason is required.");
    try {
      const r = await api(`/v1/videos/${id}/review`, { method: "POST", json: { decision, reason: reason.value } });
      status.textContent = `Recorded: ${r.decision}, verdict ${r.verdict_before} → ${r.verdict}.`;
      current = null;
      reviewList();
    } catch (e) {
      status.textContent = `Refused: ${e.message}`;
    }
  } }, decision[0].toUpperCase() + decision.slice(1));
  $("review-item").replaceChildren(
    el("h2", { class: v.escalate ? "esc" : "" }, v.escalate ? "Escalated: probable minor with explicit content · " : "", `${v.verdict} · ${v.id}`),
    el("ul", { class: "reasons" }, (v.reasons || []).map((r) =>
      el("li", {}, el("b", {}, r.code), ` → ${r.action}, score ${r.max_score.toFixed(2)}, at ${r.ranges.map(([a, b]) => `${a.toFixed(1)}–${b.toFixed(1)} s`).join(", ")}`))),
    timeline,
    el("div", { class: "thumbs" }, thumbs.length ? thumbs : el("p", { class: "muted" }, "No evidence frames.")),
    v.verdict === "block" ? el("p", { class: "muted" }, "Verdict block: playback is refused (451); the evidence frames above are all a reviewer sees.") : player,
    el("div", { class: "decision" }, reason, decide("approve"), decide("reject"), decide("escalate")),
    status);
  const first = (v.reasons || [])[0]?.ranges[0] || [0, duration];
  if (v.verdict !== "block" && v.links.playlist) play(player, v.links.playlist, first);
  reviewList();
}

/** Plays the stored HLS over the flagged range [start, end] (seeking outside it stays
 * possible): natively where the browser can, else with the embedded hls.js. */
function play(video, playlist, [start, end]) {
  if (hls) hls.destroy();
  hls = null;
  video.addEventListener("loadedmetadata", () => (video.currentTime = start), { once: true });
  const stop = () => {
    if (video.currentTime >= end) {
      video.pause();
      video.removeEventListener("timeupdate", stop);
    }
  };
  video.addEventListener("timeupdate", stop);
  if (window.Hls && window.Hls.isSupported()) {
    hls = new window.Hls({ xhrSetup: (xhr) => (xhr.withCredentials = true) });
    hls.loadSource(playlist);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = playlist;
  } else {
    video.replaceWith(el("p", { class: "muted" }, "This build has no HLS player (run make setup) and the browser plays no HLS itself."));
  }
}

// --- polling ---------------------------------------------------------------------

let busy = false;
async function refresh() {
  if (busy || !role) return;
  busy = true;
  try {
    if (tab === "overview") await overview();
    if (tab === "jobs") await jobs();
    if (tab === "review" || tab === "overview") await reviewList();
  } catch (e) {
    console.warn(e);
  } finally {
    busy = false;
  }
}
setInterval(refresh, POLL_MS);

api("/v1/whoami").then(showApp, showLogin);
