// The app user page's "Send a test push" (templates/admin/segments/appuser/test_push.html):
// POSTs title, body and silent to the console endpoint and shows the API's answer or error.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const form = document.querySelector("form.herald-test-push");
  if (!form) return;
  const output = form.querySelector(".herald-test-push-result");
  const button = form.querySelector("button[type=submit]");
  const show = function (kind, text) {
    output.className = "herald-test-push-result " + kind;
    output.textContent = text;
  };
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    button.disabled = true;
    show("pending", "Sending…");
    try {
      const answer = await Herald.json(form.dataset.url, {
        method: "POST",
        body: {
          title: form.elements.title.value,
          body: form.elements.body.value,
          silent: form.elements.silent.checked,
        },
      });
      show("ok", "Sent through " + answer.provider.toUpperCase() + " (delivery " + answer.delivery_id +
        ", provider message id " + (answer.provider_message_id || "none") + ").");
    } catch (error) {
      const code = error.data && error.data.error ? error.data.error.code + ": " : "";
      show("bad", "Not sent. " + code + error.message);
    } finally {
      button.disabled = false;
    }
  });
});
