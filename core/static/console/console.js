// Herald console: helpers shared by the pages' own scripts (no framework, no CDN).
"use strict";
window.Herald = window.Herald || {};

// The CSRF token Django set for this session (for the console's JSON POSTs).
Herald.csrfToken = function () {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
};

// fetch() that sends the CSRF token and parses JSON; rejects with the API's error envelope.
Herald.json = async function (url, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  opts.headers = Object.assign({ Accept: "application/json", "X-CSRFToken": Herald.csrfToken() }, opts.headers);
  if (opts.body && typeof opts.body !== "string") {
    opts.body = JSON.stringify(opts.body);
    opts.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, opts);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw Object.assign(new Error((data && data.error && data.error.message) || response.statusText), { status: response.status, data: data });
  return data;
};

// Herald.json's options for what a page fetches by itself (pollers): such requests do
// not count as activity for the session's idle timeout (core/session_timeout.py).
Herald.BACKGROUND = Object.freeze({ headers: Object.freeze({ "X-Herald-Background": "1" }) });

// Call fn(), wait ms after it settles, repeat while it returns true and the page is open.
Herald.poll = function (fn, ms) {
  let stopped = false;
  const tick = async function () {
    let again = false;
    try { again = await fn(); } catch (e) { again = true; }
    if (again && !stopped) setTimeout(tick, ms);
  };
  tick();
  return function () { stopped = true; };
};

// Debounce: run fn once the input has been quiet for ms.
Herald.debounce = function (fn, ms) {
  let timer = null;
  return function () {
    const args = arguments;
    clearTimeout(timer);
    timer = setTimeout(function () { fn.apply(null, args); }, ms);
  };
};

// Numbers as operators read them: 12,345.
Herald.number = function (n) { return Number(n || 0).toLocaleString("en-US"); };

// Behaviour the markup asks for, since the console's Content-Security-Policy allows no
// inline handler or style attribute: a <select data-autosubmit> submits its form when
// changed; an element with data-width="42.5" gets that percentage as its width.
document.addEventListener("change", function (event) {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.hasAttribute("data-autosubmit") && field.form) field.form.submit();
});
Herald.applyWidths = function (root) {
  (root || document).querySelectorAll("[data-width]").forEach(function (node) { node.style.width = node.dataset.width + "%"; });
};
document.addEventListener("DOMContentLoaded", function () { Herald.applyWidths(); });
