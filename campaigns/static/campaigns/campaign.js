// The console's campaign page (campaigns/admin_page.py): live progress, engagement
// (opens, clicks, conversions: campaign_analytics), per-run results with charts (SVG
// built here from the JSON), cancel confirmation and the test-push dialog. Plain JS
// on top of console.js (window.Herald); no framework.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const BARS = ["sent", "failed", "invalid_tokens", "skipped", "unknown"];
  const SERIES = [["sent", "Sent", "#15803d"], ["failed", "Failed", "#b91c1c"], ["invalid_token", "Invalid token", "#7c3aed"], ["unknown", "Unknown", "#b45309"]];
  const STATUS_LABELS = { queued: "Queued", sent: "Sent", failed: "Failed", invalid_token: "Invalid token", skipped: "Skipped", unknown: "Unknown" };
  const PROVIDER_LABELS = { apns: "APNs", fcm: "FCM", webpush: "Web push" };
  const PLATFORM_LABELS = { ios: "iOS", android: "Android", web: "Web" };
  const ENGAGEMENT = [["sent", "Sent", "#15803d"], ["opened", "Opened", "#2563eb"], ["clicked", "Clicked", "#d97706"], ["converted", "Converted", "#7c3aed"]];

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) { if (v !== null && v !== undefined) node.setAttribute(k, v); });
    (children || []).forEach(function (c) { node.append(c); });
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " min";
  }

  // --- live progress -------------------------------------------------------------

  function renderProgress(panel, p) {
    const field = function (name) { return panel.querySelector('[data-field="' + name + '"]'); };
    const status = field("status");
    status.textContent = p.status_label;
    status.className = "herald-badge herald-status-" + p.status;
    const run = p.run;
    field("run").textContent = run
      ? "Run " + run.number + " · " + run.trigger_label + " · started " + run.started_at + (run.completed_at ? " · ended " + run.completed_at : "")
      : "Not sent yet";
    const targeted = p.stats.targeted;
    BARS.forEach(function (key) {
      const share = targeted ? (100 * p.stats[key]) / targeted : 0;
      panel.querySelector('[data-bar="' + key + '"]').style.width = share + "%";
    });
    Object.keys(p.stats).forEach(function (key) {
      const dd = panel.querySelector('[data-count="' + key + '"]');
      if (dd) dd.textContent = Herald.number(p.stats[key]);
    });
    panel.querySelector("[role=progressbar]").setAttribute("aria-valuenow", p.percent);
    field("percent").textContent = (Number.isInteger(p.percent) ? p.percent : p.percent.toFixed(1)) + "%";
    field("rate").textContent = p.rate_per_second === null ? "–" : Herald.number(p.rate_per_second) + "/s";
    field("eta").textContent = p.sending ? (p.eta_seconds === null ? "–" : duration(p.eta_seconds) + (run && !run.fanout_done ? " (audience still being resolved)" : "")) : (run ? "done" : "–");
    field("updated").textContent = p.updated_at;
    panel.dataset.sending = p.sending ? "1" : "0";
    document.querySelectorAll('[data-tool="send"]').forEach(function (t) { t.hidden = !p.can_send; });
    document.querySelectorAll('[data-tool="cancel"]').forEach(function (t) { t.hidden = !p.can_cancel; });
  }

  // --- per-run results -------------------------------------------------------------

  function table(caption, rows) {
    const body = el("tbody", {}, rows.map(function (r) {
      const name = r.href ? el("a", { href: r.href }, [r.label]) : r.label;
      return el("tr", {}, [el("td", { class: r.wrap ? "reason" : null }, [name]), el("td", { class: "n" }, [Herald.number(r.count)])]);
    }));
    return el("div", { class: "herald-card" }, [el("table", {}, [el("caption", {}, [caption]), body])]);
  }

  function renderTables(panel, b) {
    const links = b.links;
    const byStatus = Object.entries(b.by_status).map(function ([k, n]) { return { label: STATUS_LABELS[k] || k, count: n, href: links.status[k] }; });
    const byProvider = Object.entries(b.by_provider).map(function ([k, n]) { return { label: PROVIDER_LABELS[k] || k, count: n, href: links.provider[k] }; });
    const byPlatform = Object.entries(b.by_platform).map(function ([k, n]) { return { label: PLATFORM_LABELS[k] || k, count: n }; });
    const reasons = b.reasons.map(function (r, i) { return { label: r.reason + " (" + (STATUS_LABELS[r.status] || r.status) + ")", count: r.count, href: links.reasons[i], wrap: true }; });
    const holder = panel.querySelector('[data-field="tables"]');
    holder.replaceChildren(
      table("By status", byStatus.concat([{ label: "Total", count: b.total, href: links.all }])),
      table("By provider", byProvider),
      table("By platform", byPlatform),
      reasons.length ? table("Error reasons", reasons) : el("div", { class: "herald-card" }, [el("h3", {}, ["Error reasons"]), el("p", { class: "herald-quiet" }, ["None."])])
    );
    panel.querySelector('[data-link="all"]').setAttribute("href", links.all);
  }

  // Stacked bars, one per time bucket; the y axis is deliveries per bucket.
  // --- charts (inline SVG; docs/decisions.md, "Operator console") ----------------------

  const CHART = { W: 960, H: 220, left: 48, right: 12, top: 12, bottom: 40 };

  function chartY(n, max) {
    return CHART.top + (CHART.H - CHART.top - CHART.bottom) * (1 - n / max);
  }

  // An empty chart: the svg, a function adding a node to it, and the y grid (0, half, max).
  function chartFrame(ariaLabel, max) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + CHART.W + " " + CHART.H);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", ariaLabel);
    const add = function (tag, attrs, text) {
      const node = document.createElementNS(SVG, tag);
      Object.entries(attrs).forEach(function ([k, v]) { node.setAttribute(k, v); });
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    [0, 0.5, 1].forEach(function (f) {
      const y = chartY(max * f, max);
      add("line", { x1: CHART.left, x2: CHART.W - CHART.right, y1: y, y2: y, class: "grid" });
      add("text", { x: CHART.left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, Herald.number(Math.round(max * f)));
    });
    return { svg: svg, add: add };
  }

  // The first and last time under the x axis, and the legend of the series.
  function chartFooter(add, points, series) {
    const base = CHART.H - CHART.bottom + 16;
    add("text", { x: CHART.left, y: base, class: "axis" }, points[0].label);
    if (points.length > 1) add("text", { x: CHART.W - CHART.right, y: base, "text-anchor": "end", class: "axis" }, points[points.length - 1].label);
    let lx = CHART.left;
    series.forEach(function ([, label, colour]) {
      add("rect", { x: lx, y: CHART.H - 14, width: 10, height: 10, fill: colour });
      add("text", { x: lx + 14, y: CHART.H - 5, class: "axis" }, label);
      lx += 30 + label.length * 7;
    });
  }

  function renderChart(panel, b) {
    const holder = panel.querySelector('[data-field="chart"]');
    const points = b.timeline.points;
    panel.querySelector('[data-field="chart-unit"]').textContent = "(per " + b.timeline.unit + ", " + b.zone + ")";
    if (!points.length) { holder.replaceChildren(el("p", { class: "herald-quiet" }, ["Nothing attempted yet."])); return; }
    const { W, H, left, right, top, bottom } = CHART;
    const max = Math.max.apply(null, points.map(function (p) { return SERIES.reduce(function (s, [k]) { return s + (p[k] || 0); }, 0); })) || 1;
    const step = (W - left - right) / points.length;
    const { svg, add } = chartFrame("Deliveries per " + b.timeline.unit + ", from " + points[0].label + " to " + points[points.length - 1].label, max);
    points.forEach(function (p, i) {
      let y = H - bottom;
      const x = left + i * step + Math.min(2, step * 0.1);
      const width = Math.min(48, Math.max(1, step - 2 * Math.min(2, step * 0.1)));  // few buckets: slim bars
      SERIES.forEach(function ([key, label, colour]) {
        const n = p[key] || 0;
        if (!n) return;
        const h = ((H - top - bottom) * n) / max;
        y -= h;
        const rect = add("rect", { x: x, y: y, width: width, height: h, fill: colour, "data-series": key });
        const title = document.createElementNS(SVG, "title");
        title.textContent = p.label + ": " + Herald.number(n) + " " + label.toLowerCase();
        rect.append(title);
      });
    });
    chartFooter(add, points, SERIES);
    holder.replaceChildren(svg);
  }

  // --- engagement (campaign_analytics) ----------------------------------------------

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : (100 * rate).toFixed(1) + "%";
  }

  function figure(key, label, count, note) {
    return el("div", { class: "herald-card", "data-engagement": key }, [
      el("h3", {}, [label]),
      el("div", { class: "herald-figure", "data-figure": "count" }, [Herald.number(count)]),
      el("div", { class: "herald-quiet", "data-figure": "rate" }, [note]),
    ]);
  }

  // A table with a header row: rows are arrays of cells (first cell a label).
  function grid(caption, head, rows, attrs) {
    const thead = el("thead", {}, [el("tr", {}, head.map(function (h, i) { return el("th", { scope: "col", class: i ? "n" : null }, [h]); }))]);
    const body = el("tbody", {}, rows.map(function (cells) {
      return el("tr", {}, cells.map(function (c, i) { return el("td", { class: i ? "n" : null }, [i && typeof c === "number" ? Herald.number(c) : c]); }));
    }));
    return el("div", Object.assign({ class: "herald-card" }, attrs || {}), [el("table", {}, [el("caption", {}, [caption]), thead, body])]);
  }

  function renderEngagement(panel, a) {
    const t = a.totals, r = a.rates;
    const primary = a.goals.find(function (g) { return g.primary; });
    panel.querySelector('[data-field="engagement-figures"]').replaceChildren(
      figure("sent", "Sent", t.sent, Herald.number(t.targeted) + " targeted"),
      figure("opened", "Opened", t.opened, a.silent ? "open rate —, silent" : "open rate " + percent(r.open_rate)),
      figure("clicked", "Clicked", t.clicked, "click rate " + percent(r.click_rate)),
      figure("converted", "Converted", t.converted, primary ? "conversion rate " + percent(r.conversion_rate) + " · " + primary.name : "no conversion goal set")
    );
    const metrics = function (counts) { return ENGAGEMENT.map(function ([k]) { return counts[k] || 0; }); };
    const head = ["", "Sent", "Opened", "Clicked", "Converted"];
    const tables = [];
    if (a.goals.length) {
      tables.push(grid("Conversion goals", ["Goal", "Converted", "Rate"], a.goals.map(function (g) {
        return [g.name + " (" + g.event + ", " + g.window_hours + " h" + (g.primary ? ", primary" : "") + ")", g.converted, percent(g.rate)];
      }), { "data-table": "goals" }));
    }
    const actions = Object.entries(a.clicks_by_action);
    if (actions.length) tables.push(grid("Clicks by button", ["Button", "Clicks"], actions.map(function ([id, n]) { return [id, n]; }), { "data-table": "actions" }));
    tables.push(grid("By provider", head, Object.entries(a.by_provider).map(function ([k, c]) { return [PROVIDER_LABELS[k] || k].concat(metrics(c)); }), { "data-table": "provider" }));
    tables.push(grid("By platform", head, Object.entries(a.by_platform).map(function ([k, c]) { return [PLATFORM_LABELS[k] || k].concat(metrics(c)); }), { "data-table": "platform" }));
    panel.querySelector('[data-field="engagement-tables"]').replaceChildren.apply(panel.querySelector('[data-field="engagement-tables"]'), tables);
    panel.querySelector('[data-field="engagement-updated"]').textContent = a.updated_at;
    renderEngagementChart(panel, a);
  }

  // Running totals over time (x is time, so per-minute and per-hour points line up),
  // one step line per metric; a dot per point with the bucket's count as its title.
  function renderEngagementChart(panel, a) {
    const holder = panel.querySelector('[data-field="engagement-chart"]');
    const points = a.series.points;
    panel.querySelector('[data-field="engagement-unit"]').textContent = "(points per " + a.series.resolution + (a.series.resolution === "minute" ? " for the first hours, then per hour" : "") + ", " + a.zone + ")";
    if (!points.length) { holder.replaceChildren(el("p", { class: "herald-quiet" }, ["No sends or events counted yet."])); return; }
    const { W, left, right } = CHART;
    const times = points.map(function (p) { return Date.parse(p.t); });
    const t0 = times[0], span = Math.max(times[times.length - 1] - t0, 60000);
    const running = {};
    const totals = points.map(function (p) {
      const row = {};
      ENGAGEMENT.forEach(function ([k]) { running[k] = (running[k] || 0) + (p[k] || 0); row[k] = running[k]; });
      return row;
    });
    const max = Math.max.apply(null, ENGAGEMENT.map(function ([k]) { return running[k]; })) || 1;
    const x = function (i) { return left + ((W - left - right) * (times[i] - t0)) / span; };
    const y = function (n) { return chartY(n, max); };
    const { svg, add } = chartFrame("Engagement running totals from " + points[0].label + " to " + points[points.length - 1].label + ": " + ENGAGEMENT.map(function ([k, label]) { return Herald.number(running[k]) + " " + label.toLowerCase(); }).join(", "), max);
    ENGAGEMENT.forEach(function ([key, label, colour]) {
      const first = points.findIndex(function (p) { return p[key]; });
      if (first < 0) return;  // nothing of it yet: no line lying on the axis
      let d = "M" + x(first) + " " + y(0);
      totals.slice(first).forEach(function (row, i) { d += " H" + x(first + i) + " V" + y(row[key]); });
      d += " H" + (W - right);
      add("path", { d: d, fill: "none", stroke: colour, "stroke-width": 2, "data-series": key });
      points.forEach(function (p, i) {
        if (!p[key]) return;
        const dot = add("circle", { cx: x(i), cy: y(totals[i][key]), r: 3, fill: colour, "data-series": key });
        const title = document.createElementNS(SVG, "title");
        title.textContent = p.label + ": " + Herald.number(p[key]) + " " + label.toLowerCase() + " (" + Herald.number(totals[i][key]) + " in all)";
        dot.append(title);
      });
    });
    chartFooter(add, points, ENGAGEMENT);
    holder.replaceChildren(svg);
  }

  async function loadEngagement(panel, options) {
    const picker = panel.querySelector('[data-field="engagement-run"]');
    if (!picker) return;
    const url = panel.dataset.analyticsUrl.replace(/\/runs\/0\/analytics\/$/, "/runs/" + picker.value + "/analytics/");
    try {
      renderEngagement(panel, await Herald.json(url, options));
    } catch (e) {
      panel.querySelector('[data-field="engagement-figures"]').replaceChildren(el("p", { class: "errornote" }, ["Could not load the engagement: " + e.message]));
    }
  }

  async function loadBreakdown(panel, options) {
    const picker = panel.querySelector('[data-field="run-picker"]');
    if (!picker) return;
    const url = panel.dataset.breakdownUrl.replace(/\/runs\/0\/breakdown\/$/, "/runs/" + picker.value + "/breakdown/");
    try {
      const b = await Herald.json(url, options);
      panel.dataset.resultsTotal = b.total;
      renderTables(panel, b);
      renderChart(panel, b);
    } catch (e) {
      panel.querySelector('[data-field="tables"]').replaceChildren(el("p", { class: "errornote" }, ["Could not load the results: " + e.message]));
    }
  }

  function startPanel(panel) {
    const picker = panel.querySelector('[data-field="run-picker"]');
    const engagementPicker = panel.querySelector('[data-field="engagement-run"]');
    const engagementEvery = Number(panel.dataset.engagementEvery) || 5;
    const pollMs = Number(panel.dataset.pollMs) || 2000;
    let ticks = 0;
    let lastRun = picker ? picker.value : null;
    // Engagement keeps arriving after the sends: keep refreshing it until then.
    let followUntil = 0;
    const follow = function (p) { followUntil = Date.now() + 1000 * (p.engagement_follow_seconds || 0); };
    if (picker) picker.addEventListener("change", function () { loadBreakdown(panel); });
    if (engagementPicker) engagementPicker.addEventListener("change", function () { loadEngagement(panel); });
    const initial = JSON.parse(document.getElementById("herald-progress-data").textContent);
    renderProgress(panel, initial);
    follow(initial);
    loadBreakdown(panel);
    loadEngagement(panel);
    if (panel.dataset.sending !== "1" && Date.now() >= followUntil) return;
    let sending = panel.dataset.sending === "1";
    Herald.poll(async function () {
      ticks += 1;
      if (!sending) {
        // The run is over: only the engagement moves now, refreshed every few polls.
        if (ticks % engagementEvery === 0) await loadEngagement(panel, Herald.BACKGROUND);
        return Date.now() < followUntil;
      }
      const p = await Herald.json(panel.dataset.progressUrl, Herald.BACKGROUND);
      renderProgress(panel, p);
      sending = p.sending;
      follow(p);
      // The results follow the current run: every 5th poll while sending, and once at the end.
      const current = picker && p.run && picker.value === String(p.run.number);
      if (picker && p.run && String(p.run.number) !== lastRun && !picker.querySelector('option[value="' + p.run.number + '"]')) {
        picker.prepend(el("option", { value: p.run.number }, ["Run " + p.run.number]));
        picker.value = String(p.run.number);
        if (engagementPicker) engagementPicker.insertBefore(el("option", { value: p.run.number }, ["Run " + p.run.number]), engagementPicker.options[1] || null);
      }
      lastRun = p.run ? String(p.run.number) : lastRun;
      // Small runs are recounted on every poll; big ones (aggregates over many rows) every 5th.
      const every = Number(panel.dataset.resultsTotal || 0) > 10000 ? 5 : 1;
      if (current && (!p.sending || ticks % every === 0)) loadBreakdown(panel, Herald.BACKGROUND);
      if (!p.sending || ticks % engagementEvery === 0) loadEngagement(panel, Herald.BACKGROUND);
      return p.sending || Date.now() < followUntil;
    }, pollMs);
  }

  // --- buttons ----------------------------------------------------------------------

  function startTestPush(dialog) {
    const form = dialog.querySelector("form[data-test-push]");
    const result = dialog.querySelector('[data-field="test-result"]');
    const show = function () {
      const target = form.elements.target.value;
      dialog.querySelectorAll("[data-target]").forEach(function (part) { part.hidden = part.dataset.target !== target; });
    };
    form.querySelectorAll("input[name=target]").forEach(function (r) { r.addEventListener("change", show); });
    dialog.querySelector('[data-action="close"]').addEventListener("click", function () { dialog.close(); });
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const body = form.elements.target.value === "user"
        ? { external_id: form.elements.external_id.value }
        : { device_token: form.elements.device_token.value, provider: form.elements.provider.value, platform: form.elements.platform.value };
      const button = form.querySelector('[data-action="send-test"]');
      button.disabled = true;
      result.className = "";
      result.textContent = "Sending…";
      try {
        const r = await Herald.json(dialog.dataset.url, { method: "POST", body: body });
        result.className = "ok";
        result.textContent = "Sent through " + (PROVIDER_LABELS[r.provider] || r.provider) + " (delivery " + r.delivery_id + ", provider message id " + (r.provider_message_id || "–") + ").";
      } catch (e) {
        const error = (e.data && e.data.error) || { code: "ERROR", message: e.message };
        result.className = "bad";
        result.textContent = "Not sent: " + error.message + " (" + error.code + ")";
      } finally {
        button.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const panel = document.getElementById("herald-campaign-panel");
    if (panel) startPanel(panel);
    document.querySelectorAll("[data-open-dialog]").forEach(function (button) {
      const dialog = document.getElementById(button.dataset.openDialog);
      if (!dialog) return;
      startTestPush(dialog);
      button.addEventListener("click", function () { dialog.showModal(); });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
    });
  });
})();
