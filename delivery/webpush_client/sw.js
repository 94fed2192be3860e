/*
 * Herald's reference service worker for web push (docs/api.md, "Reference service
 * worker"). Plain JavaScript, no build step, no dependencies.
 *
 * Copy this file to your site (a service worker must come from the origin and path
 * it controls) and register it with Herald's address, your project id and a
 * CLIENT key in its URL:
 *
 *   navigator.serviceWorker.register(
 *     "/herald-sw.js?herald=https://herald.example.com&project=<uuid>&key=<client key>")
 *
 * A site that already has a service worker imports this file into it instead
 * (importScripts("/herald-sw.js")), after setting self.heraldConfig =
 * {herald, project, key}. Without a project and key the worker still shows
 * notifications and opens their pages; it only reports nothing.
 *
 * What it does with the JSON Herald pushes (docs/api.md, "Web push payloads"):
 * - push: shows `notification` (title + every other option, passed through as the
 *   Notifications API spells them), keeping url, action_urls, data and the Herald
 *   ids on the notification. A silent push ({"silent": true}) shows nothing and is
 *   posted to the site's open windows as {type: "herald-push", payload}.
 * - notificationclick: closes the notification, reports push_opened (a click on the
 *   body) or push_clicked with action_id (a button) to Herald's events API, and opens
 *   action_urls[action] or url, focusing a window already showing it. The report and
 *   the window are awaited side by side: a failed report never stops the window.
 */
"use strict";

const HERALD = (() => {
  const query = new URL(self.location.href).searchParams;
  const given = self.heraldConfig || {};
  const herald = given.herald || query.get("herald") || "";
  return {
    base: herald.replace(/\/+$/, ""),
    project: given.project || query.get("project") || "",
    key: given.key || query.get("key") || "",
  };
})();

// A report that meets a network error, 429 or 5xx is tried this many times in all;
// the event id makes a repeat count once (Herald stores an event id once).
const REPORT_ATTEMPTS = 3;
const REPORT_BACKOFF_MS = 1000;

// Named functions (globals of this script), so a site that imports this file into its
// own worker can remove or wrap them.
self.addEventListener("push", heraldOnPush);
self.addEventListener("notificationclick", heraldOnNotificationClick);

function heraldOnPush(event) {
  event.waitUntil(heraldShowPush(event.data ? event.data.json() : {}));
}

function heraldOnNotificationClick(event) {
  const herald = (event.notification.data || {}).herald;
  if (!herald) return; // not one of Herald's notifications: the site's own code decides
  event.notification.close();
  const action = event.action || "";
  const url = (action && herald.action_urls && herald.action_urls[action]) || herald.url;
  event.waitUntil(
    Promise.allSettled([
      heraldReport(herald.delivery_id, action ? "push_clicked" : "push_opened", action),
      url ? heraldOpen(url) : Promise.resolve(),
    ]),
  );
}

async function heraldShowPush(payload) {
  if (payload.silent || !payload.notification) {
    // Nothing to show. Browsers expect a visible notification for every push to a
    // userVisibleOnly subscription and may show their own ("This site has been
    // updated in the background") or withdraw the subscription when one is missing.
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) client.postMessage({ type: "herald-push", payload });
    return;
  }
  const { title, ...options } = payload.notification;
  options.data = {
    herald: {
      url: payload.url || null,
      action_urls: payload.action_urls || {},
      data: payload.data || {},
      campaign_id: payload.herald_campaign_id || null,
      delivery_id: payload.herald_delivery_id || null,
    },
  };
  await self.registration.showNotification(title, options);
}

async function heraldOpen(url) {
  const target = new URL(url, self.location.href).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((client) => client.url === target);
  return open ? open.focus() : self.clients.openWindow(target);
}

async function heraldReport(deliveryId, name, action) {
  if (!/^[0-9]+$/.test(deliveryId || "") || !HERALD.base || !HERALD.project || !HERALD.key) return;
  const event = {
    event_id: await heraldEventId(deliveryId, name, action),
    name,
    delivery_id: deliveryId,
    occurred_at: new Date().toISOString(),
  };
  if (action) event.action_id = action;
  // The API wants delivery_id as a JSON integer; ids may pass 2^53, where a JS number
  // would round, so the payload's decimal string goes into the JSON as it is.
  const body = JSON.stringify({ events: [event] }).replace(
    `"delivery_id":"${deliveryId}"`,
    `"delivery_id":${deliveryId}`,
  );
  const endpoint = `${HERALD.base}/v1/projects/${encodeURIComponent(HERALD.project)}/events`;
  for (let attempt = 1; ; attempt++) {
    let status = 0;
    try {
      const response = await fetch(endpoint, {
        method: "POST",
        headers: { Authorization: `Bearer ${HERALD.key}`, "Content-Type": "application/json" },
        body,
      });
      status = response.status;
      if (response.ok) return;
    } catch (error) {
      // A network error: worth another try.
    }
    const retryable = status === 0 || status === 429 || status >= 500;
    if (!retryable || attempt >= REPORT_ATTEMPTS) {
      throw new Error(`Herald did not take ${name} for delivery ${deliveryId} (HTTP ${status})`);
    }
    await new Promise((resolve) => setTimeout(resolve, REPORT_BACKOFF_MS * attempt));
  }
}

// The same click always gets the same id, so a repeated report counts once:
// "wp:<delivery id>:<name>[:<action id>]", or that string's SHA-256 when it would
// pass the 64 characters Herald allows (long action ids).
async function heraldEventId(deliveryId, name, action) {
  const id = `wp:${deliveryId}:${name}${action ? `:${action}` : ""}`;
  if (id.length <= 64) return id;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(id));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
