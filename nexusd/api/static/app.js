// Nexus dashboard: starts from the server-rendered page, then follows /ws live updates.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  let state = JSON.parse($("#initial-data").textContent);
  const history = state.history.slice();
  const seen = new Set(history.map((r) => r.request_id));  // request ids shown

  // badge beside the model (dashboard.py has the same map); chat, and records from before
  // the field existed, get none
  const KIND_BADGES = { completions: "compl", embeddings: "embed", messages: "msgs", responses: "resp" };
  const DIALECT_PATHS = { anthropic: "messages", responses: "responses" };
  function kindBadge(endpoint, dialect) {
    const kind = DIALECT_PATHS[dialect] || endpoint;
    if (!kind || kind === "chat") return "";
    return `<span class="kind kind-${esc(kind)}" title="/v1/${esc(kind)}">${esc(KIND_BADGES[kind] || kind)}</span>`;
  }

  function fmtMs(v) { return v == null ? "-" : (v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms"); }

  // the same as _duration() in dashboard.py
  function duration(seconds) {
    const t = Math.floor(seconds), d = Math.floor(t / 86400), h = Math.floor((t % 86400) / 3600);
    const m = Math.floor((t % 3600) / 60), sec = t % 60, two = (n) => String(n).padStart(2, "0");
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${two(m)}m`;
    if (m) return `${m}m ${two(sec)}s`;
    return `${sec}s`;
  }

  // the same as _retry_badge() in dashboard.py
  function retryBadge(r) {
    const failed = r.failed_backends || [];
    if (r.fallback_model) return ' <span class="badge retry" title="a fallback model answered">fallback</span>';
    if (failed.length) return ` <span class="badge retry" title="failed first: ${esc(failed.join(", "))}">failover ×${failed.length}</span>`;
    return "";
  }

  function summary() {
    const s = state.stats, b = state.backends;
    const healthy = b.filter((x) => x.status === "healthy");
    const models = new Set(healthy.flatMap((x) => x.models.map((m) => m.id)));
    const cards = [["Uptime", duration(s.uptime_seconds), "uptime"], ["Requests", s.requests.total, "requests"],
      ["Errors", s.requests.errors, "errors"], ["Backends healthy", healthy.length + "/" + b.length, "backends"],
      ["Models available", models.size, "models"]];
    $("#summary").innerHTML = cards.map(([l, v, k]) =>
      `<div class="card" data-summary="${k}"><div class="label">${esc(l)}</div><div class="value">${esc(v)}</div></div>`).join("");
  }

  // trend sparklines: the same table, viewBox and point mapping as dashboard.py
  const TREND_CHARTS = [["rate", "req/min", 1], ["p95_ms", "p95", 1], ["error_rate", "errors", 1]];
  const SPARK_W = 120, SPARK_H = 24;
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? Math.max(v, 0) : 0);
  const coord = (v) => String(Math.round(v * 10) / 10);
  function sparkPoints(values, floor) {
    const nums = (Array.isArray(values) ? values : []).map(num);
    if (nums.length < 2) return "";
    const top = Math.max(...nums, floor), last = nums.length - 1;
    return nums.map((v, i) => `${coord(i * SPARK_W / last)},${coord(SPARK_H - 1 - v / top * (SPARK_H - 2))}`).join(" ");
  }
  function trendValue(metric, s) {
    if (metric === "rate") return `${Math.trunc(num(s.rate[s.rate.length - 1]))}/min`;
    if (metric === "p95_ms") {
      const latest = s.p95_ms.filter((v) => v != null).map(num);
      return latest.length ? `${latest[latest.length - 1].toFixed(0)} ms` : "-";
    }
    const total = s.rate.reduce((a, v) => a + num(v), 0);
    if (!total) return "-";
    const errors = s.rate.reduce((a, r, i) => a + num(r) * num(s.error_rate[i]), 0);
    return `${(errors / total * 100).toFixed(1)}%`;
  }
  function trendCharts(s) {
    if (!s) return '<div class="trends"></div>';
    return '<div class="trends">' + TREND_CHARTS.map(([metric, label, floor]) => {
      const points = sparkPoints(s[metric], floor);
      return `<div class="trend" data-trend="${metric}" title="${label}, last hour per minute"><span class="tl">${label}</span>` +
        `<svg class="spark" viewBox="0 0 ${SPARK_W} ${SPARK_H}" preserveAspectRatio="none">${points ? `<polyline points="${points}"/>` : ""}</svg>` +
        `<b class="tv">${esc(trendValue(metric, s))}</b></div>`;
    }).join("") + "</div>";
  }
  function backendTrends(id) { return state.trends && state.trends.backends ? state.trends.backends[id] : null; }
  function overall() { $("#overall-trends").innerHTML = trendCharts(state.trends && state.trends.overall); }

  function backends() {
    const el = $("#backends");
    if (!state.backends.length) { el.innerHTML = '<p class="empty">No backends yet.</p>'; return; }
    el.innerHTML = state.backends.map((b) => {
      return `<div class="backend" data-backend="${esc(b.id)}"><div class="head"><span class="name">${esc(b.name)}</span>` +
        `<span class="badge status-${esc(b.status)}">${esc(b.status)}</span></div>` +
        `<div class="meta">${esc(b.type)} · ${esc(b.url)} · ${esc(b.source)}</div>` +
        `<div class="numbers"><span>latency <b data-field="latency">${fmtMs(b.latency_ema_ms)}</b></span>` +
        `<span>pending <b data-field="pending">${b.pending}</b></span><span>requests <b data-field="requests">${b.total_requests}</b></span>` +
        `<span>models <b data-field="models">${b.models.length}</b></span></div>` +
        trendCharts(backendTrends(b.id)) +
        (b.last_error ? `<div class="error">${esc(b.last_error)}</div>` : "") + `</div>`;
    }).join("");
  }

  function models() {
    const b = state.backends;
    const byId = new Map();
    b.forEach((x) => x.models.forEach((m) => byId.set(m.id, m)));
    const names = [...byId.keys()].sort();
    if (!names.length) { $("#models").innerHTML = '<p class="empty">No models available.</p>'; return; }
    const head = b.map((x) => `<th>${esc(x.name)}</th>`).join("");
    const rows = names.map((n) => {
      const m = byId.get(n);
      const caps = Object.entries(m.capabilities).filter(([, v]) => v).map(([k]) => k);
      const cells = b.map((x) => x.models.some((mm) => mm.id === n) ? `<td class="cell">${x.status === "healthy" ? "●" : "○"}</td>` : "<td></td>").join("");
      return `<tr><td class="model" title="${esc(n)}">${esc(n.slice(0, 50))}</td><td>${m.context_length.toLocaleString()}</td>` +
        `<td>${(caps.length ? caps : ["text"]).map((c) => `<span class="cap">${esc(c)}</span>`).join("")}</td>${cells}</tr>`;
    }).join("");
    $("#models").innerHTML = `<table><thead><tr><th>Model</th><th>Context</th><th>Capabilities</th>${head}</tr></thead><tbody>${rows}</tbody></table>`;
  }

  function requests() {
    const names = Object.fromEntries(state.backends.map((b) => [b.id, b.name]));
    const rows = history.slice().reverse().map((r) => {
      const when = new Date(r.time * 1000).toLocaleTimeString();
      const served = r.served_model && r.served_model !== r.requested_model ? " → " + r.served_model : "";
      return `<tr data-request="${esc(r.request_id)}" class="${esc(r.status)}"><td>${when}</td><td>${esc(r.requested_model + served)}${kindBadge(r.endpoint, r.dialect)}</td>` +
        `<td>${esc(names[r.backend] || r.backend || "-")}</td><td>${r.status_code}</td><td>${fmtMs(r.latency_ms)}</td>` +
        `<td>${fmtMs(r.ttft_ms)}</td><td>${esc(r.route_reason || r.error_type || "")}${retryBadge(r)}</td></tr>`;
    }).join("") || '<tr class="empty"><td colspan="7">No requests yet.</td></tr>';
    $("#history-body").innerHTML = rows;
  }

  function renderAll() { summary(); overall(); backends(); models(); requests(); }

  // apply one update from /ws; marks in `dirty` what must be re-rendered
  function apply(m, dirty) {
    if (m.update_type === "Snapshot") {
      state = m.data; history.length = 0; seen.clear();
      m.data.history.forEach((r) => { history.push(r); seen.add(r.request_id); });
      dirty.all = true;
    } else if (m.update_type === "Batch") {
      m.data.forEach((u) => apply(u, dirty));
    } else if (m.update_type === "BackendStatus") {
      state.backends = m.data; dirty.summary = dirty.backends = dirty.models = true;
    } else if (m.update_type === "ModelChange") {
      const b = state.backends.find((x) => x.id === m.data.backend_id);
      if (b) { b.models = m.data.models; dirty.summary = dirty.backends = dirty.models = true; }
    } else if (m.update_type === "Trends") {
      state.trends = m.data; dirty.trends = dirty.backends = true;
    } else if (m.update_type === "Totals") {
      // absolute counts: rows the server left out of a busy batch still count
      state.stats.requests.total = m.data.total; state.stats.requests.errors = m.data.errors;
      dirty.summary = true;
    } else if (m.update_type === "RequestComplete") {
      if (seen.has(m.data.request_id)) return;  // already in the snapshot
      history.push(m.data); seen.add(m.data.request_id);
      if (history.length > 100) seen.delete(history.shift().request_id);
      state.stats.requests.total += 1;
      if (m.data.status !== "success") state.stats.requests.errors += 1;
      dirty.summary = dirty.requests = true;
    }
  }

  let attempts = 0;
  function connect() {
    const conn = $("#connection");
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => { attempts = 0; conn.textContent = "Live"; conn.className = "conn live"; };
    ws.onmessage = (msg) => {
      const dirty = {};
      apply(JSON.parse(msg.data), dirty);
      if (dirty.all) { renderAll(); return; }
      if (dirty.summary) summary();
      if (dirty.trends) overall();
      if (dirty.backends) backends();
      if (dirty.models) models();
      if (dirty.requests) requests();
    };
    ws.onclose = () => {
      conn.textContent = "Disconnected — retrying"; conn.className = "conn down";
      attempts += 1;
      setTimeout(connect, Math.min(1000 * 2 ** attempts, 30000));
    };
  }
  connect();
})();
