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
