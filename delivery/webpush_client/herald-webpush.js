/*
 * Herald's page helper for web push (docs/api.md, "Reference service worker").
 * Plain JavaScript, no build step, no dependencies: load it with a <script> tag
 * (from Herald at /webpush/herald-webpush.js, or a copy on your site), then, from a
 * click handler (browsers ask for the notification permission only after a gesture):
 *
 *   const config = {herald: "https://herald.example.com", project: "<uuid>",
 *                   key: "<client key>"};
 *   await HeraldWebPush.subscribe(config, {worker: "/herald-sw.js", externalId: "u-42"});
 *
 * subscribe() asks for the permission, registers the worker (your copy of Herald's
 * sw.js, with the config in its URL), subscribes with the project's VAPID public key
 * and registers the subscription with Herald. Call it again on every visit: it
 * reuses the browser's subscription (re-subscribing after a VAPID key rotation), and
 * Herald treats a repeated registration as a refresh. Use a client key: it is
 * visible to every visitor.
 */
"use strict";

self.HeraldWebPush = (() => {
  function apiUrl(config, path) {
    const base = config.herald.replace(/\/+$/, "");
    return `${base}/v1/projects/${encodeURIComponent(config.project)}${path}`;
  }

  async function call(config, method, path, body) {
    const headers = { Authorization: `Bearer ${config.key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(apiUrl(config, path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (answer && answer.error) || {};
      throw new Error(`Herald ${method} ${path}: ${response.status} ${error.code || ""} ${error.message || ""}`.trim());
    }
    return answer;
  }

  function keyBytes(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function sameBytes(buffer, bytes) {
    const other = new Uint8Array(buffer || new ArrayBuffer(0));
    return other.length === bytes.length && other.every((b, i) => b === bytes[i]);
  }

  // Resolves once the registration has an active worker: subscribing needs one.
  function activated(registration) {
    if (registration.active) return Promise.resolve(registration);
    const worker = registration.installing || registration.waiting;
    return new Promise((resolve, reject) => {
      worker.addEventListener("statechange", () => {
        if (worker.state === "activated") resolve(registration);
        if (worker.state === "redundant") reject(new Error("the service worker failed to install"));
      });
    });
  }

  /** The project's VAPID public key (base64url), pushManager.subscribe's applicationServerKey. */
  async function vapidPublicKey(config) {
    return (await call(config, "GET", "/webpush/vapid-public-key")).public_key;
  }

  /** Registers a PushSubscription (or its toJSON()) with Herald; answers the token object. */
  async function registerSubscription(config, subscription, externalId) {
    const body = { provider: "webpush", subscription: subscription.toJSON ? subscription.toJSON() : subscription };
    if (externalId !== undefined) body.external_id = externalId;
    return call(config, "POST", "/tokens", body);
  }

  /** Permission, worker, subscription, registration: the whole flow (see the top). */
  async function subscribe(config, { worker = "/herald-sw.js", scope, externalId } = {}) {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
      throw new Error("this browser has no web push");
    }
    if ((await Notification.requestPermission()) !== "granted") {
      throw new Error("notifications are not allowed for this site");
    }
    const url = new URL(worker, location.href);
    for (const name of ["herald", "project", "key"]) url.searchParams.set(name, config[name]);
    const registration = await activated(
      await navigator.serviceWorker.register(url.pathname + url.search, scope ? { scope } : {}),
    );
    const applicationServerKey = keyBytes(await vapidPublicKey(config));
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameBytes(subscription.options.applicationServerKey, applicationServerKey)) {
      await subscription.unsubscribe(); // subscribed with a rotated-out key: it cannot work
      subscription = null;
    }
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey });
    }
    return registerSubscription(config, subscription, externalId);
  }

  return { subscribe, vapidPublicKey, registerSubscription };
})();
