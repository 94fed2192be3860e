// Herald campaign composer: row editors for the JSON fields, the live audience estimate,
// the payload preview and the recurrence's reading (docs/decisions.md, "Console composer").
// Each editor writes the API's JSON into its (hidden) textarea on every change, so the
// server receives exactly what the API would; the server validates, never this file.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach((c) => node.appendChild(typeof c === "string" ? document.createTextNode(c) : c));
    return node;
  }

  function parse(text, fallback) {
    try { const v = JSON.parse(text); return v === null || v === undefined ? fallback : v; }
    catch (e) { return fallback; }
  }

  function changed(textarea, value) {
    textarea.value = JSON.stringify(value);
    textarea.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function removeButton(label, onclick) {
    return el("button", { type: "button", class: "composer-remove", "aria-label": label, title: label, onclick: onclick, text: "×" });
  }

  // ---------------------------------------------------------------- localizations
  // The campaign's button ids, as the actions editor last wrote them.
  function actionIds() {
    const actions = $("#id_actions");
    return parse(actions ? actions.value : "[]", []).map((a) => (a && a.id) || "").filter(Boolean);
  }

  function localizationsEditor(textarea, mount) {
    const rows = el("div", { class: "composer-rows" });
    const add = el("button", { type: "button", class: "button composer-add", text: "+ Add language" });
    mount.append(rows, add);
    const write = () => {
      const out = {};
      $$(".composer-row", rows).forEach((row) => {
        const lang = $("[data-key=language]", row).value.trim();
        const title = $("[data-key=title]", row).value;
        const body = $("[data-key=body]", row).value;
        const image = $("[data-key=image_url]", row).value.trim();
        const buttons = {};
        $$("[data-action]", row).forEach((input) => { if (input.value.trim()) buttons[input.dataset.action] = input.value; });
        if (!lang && !title && !body && !image && !Object.keys(buttons).length) return;
        const entry = {};
        if (title) entry.title = title;
        if (body) entry.body = body;
        if (image) entry.image_url = image;
        if (Object.keys(buttons).length) entry.actions = buttons;
        out[lang] = entry;
      });
      changed(textarea, out);
    };
    // One title input per button of the campaign, kept by id when the buttons change.
    const buttonInputs = (row, titles) => {
      const box = $("[data-key=actions]", row);
      const n = Array.from(rows.children).indexOf(row) + 1;
      const typed = Object.assign({}, titles);
      $$("[data-action]", box).forEach((input) => { typed[input.dataset.action] = input.value; });
      box.replaceChildren(...actionIds().map((id) => el("input", {
        "data-action": id, "aria-label": "Localized button " + id + " " + n, placeholder: "Button " + id, size: 14, value: typed[id] || "",
      })));
    };
    const addRow = (lang, texts) => {
      const n = rows.children.length;
      const row = el("div", { class: "composer-row composer-loc", "data-path": "localizations." + (lang || "") }, [
        el("input", { "data-key": "language", "aria-label": "Language " + (n + 1), placeholder: "fr", size: 6, list: "composer-languages", value: lang || "" }),
        el("input", { "data-key": "title", "aria-label": "Localized title " + (n + 1), placeholder: "Title", class: "composer-grow", value: (texts && texts.title) || "" }),
        el("textarea", { "data-key": "body", "aria-label": "Localized body " + (n + 1), placeholder: "Body", rows: 2, class: "composer-grow" }),
        el("input", { "data-key": "image_url", "aria-label": "Localized image URL " + (n + 1), placeholder: "Image URL (optional)", class: "composer-grow", value: (texts && texts.image_url) || "" }),
        el("span", { "data-key": "actions", class: "composer-loc-actions" }),
        removeButton("Remove language " + (n + 1), () => { row.remove(); write(); }),
      ]);
      $("[data-key=body]", row).value = (texts && texts.body) || "";
      row.addEventListener("input", () => { row.dataset.path = "localizations." + $("[data-key=language]", row).value.trim(); write(); });
      rows.appendChild(row);
      buttonInputs(row, (texts && texts.actions) || {});
      return row;
    };
    Object.entries(parse(textarea.value, {})).forEach(([lang, texts]) => addRow(lang, texts));
    add.addEventListener("click", () => { $("[data-key=language]", addRow("", {})).focus(); });
    const actions = $("#id_actions");
    if (actions) actions.addEventListener("change", () => { $$(".composer-row", rows).forEach((row) => buttonInputs(row, {})); write(); });
  }

  // ---------------------------------------------------------------------- actions
  function actionsEditor(textarea, mount) {
    const rows = el("div", { class: "composer-rows" });
    const add = el("button", { type: "button", class: "button composer-add", text: "+ Add button" });
    mount.append(rows, add);
    const write = () => {
      const out = [];
      $$(".composer-row", rows).forEach((row, i) => {
        row.dataset.path = "actions[" + i + "]";
        const action = { id: $("[data-key=id]", row).value.trim(), title: $("[data-key=title]", row).value };
        const url = $("[data-key=url]", row).value.trim();
        const icon = $("[data-key=icon]", row).value.trim();
        if (url) action.url = url;
        if (icon) action.icon = icon;
        if (action.id || action.title || url || icon) out.push(action);
      });
      add.disabled = rows.children.length >= 3;
      changed(textarea, out);
    };
    const addRow = (action) => {
      const n = rows.children.length + 1;
      const row = el("div", { class: "composer-row", "data-path": "actions[" + (n - 1) + "]" }, [
        el("input", { "data-key": "id", "aria-label": "Button " + n + " id", placeholder: "id, e.g. open", size: 10, value: action.id || "" }),
        el("input", { "data-key": "title", "aria-label": "Button " + n + " label", placeholder: "Label", class: "composer-grow", value: action.title || "" }),
        el("input", { "data-key": "url", "aria-label": "Button " + n + " URL", placeholder: "URL (optional)", class: "composer-grow", value: action.url || "" }),
        el("input", { "data-key": "icon", "aria-label": "Button " + n + " icon URL", placeholder: "Icon URL (optional)", class: "composer-grow", value: action.icon || "" }),
        removeButton("Remove button " + n, () => { row.remove(); write(); }),
      ]);
      row.addEventListener("input", write);
      rows.appendChild(row);
      add.disabled = rows.children.length >= 3;
      return row;
    };
    parse(textarea.value, []).forEach(addRow);
    add.addEventListener("click", () => { $("input", addRow({})).focus(); });
  }

  // -------------------------------------------------------------------- targeting
  const LISTS = [
    ["countries", "Countries", "FR, DE…"],
    ["languages", "Languages", "fr, pt-BR…"],
    ["app_versions", "App versions", "2.3.0…"],
    ["users", "Users (external ids)", "user-42…"],
  ];

  // A chip list: type and press Enter (or a comma) to add; × removes.
  function chips(values, label, placeholder, onchange, choices) {
    const box = el("div", { class: "composer-chips" });
    const list = el("span", { class: "composer-chip-list" });
    const names = Object.fromEntries((choices || []).map((c) => [c.id, c.name]));
    let input;
    const render = () => {
      list.replaceChildren(...values.map((v, i) => el("span", { class: "composer-chip" }, [
        names[v] || v,
        el("button", { type: "button", "aria-label": "Remove " + (names[v] || v) + " from " + label, text: "×", onclick: () => { values.splice(i, 1); render(); onchange(); } }),
      ])));
    };
    const push = (text) => {
      text.split(",").map((t) => t.trim()).filter(Boolean).forEach((t) => { if (!values.includes(t)) values.push(t); });
      render(); onchange();
    };
    if (choices) {
      input = el("select", { "aria-label": label }, [el("option", { value: "", text: "Add…" })]
        .concat(choices.map((c) => el("option", { value: c.id, text: c.name }))));
      input.addEventListener("change", () => { if (input.value) push(input.value); input.value = ""; });
    } else {
      input = el("input", { "aria-label": label, placeholder: placeholder, size: 12 });
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === ",") { e.preventDefault(); push(input.value); input.value = ""; }
      });
      input.addEventListener("blur", () => { if (input.value.trim()) { push(input.value); input.value = ""; } });
    }
    box.append(list, input);
    render();
    return box;
  }

  function typed(text, type) {
    if (type === "number") { const n = Number(text); return text.trim() !== "" && !isNaN(n) ? n : text; }
    if (type === "bool") return text.trim().toLowerCase() === "true" || text.trim().toLowerCase() === "yes";
    return text;
  }

  function targetingEditor(textarea, mount, options) {
    const state = parse(textarea.value, {});
    const projectSelect = $("#id_project");
    const write = () => {
      const out = {};
      LISTS.concat([["segments"]]).forEach(([key]) => {
        const rule = {};
        ["include", "exclude"].forEach((side) => { if (lists[key][side].length) rule[side] = lists[key][side].slice(); });
        if (Object.keys(rule).length) out[key] = rule;
      });
      if (state.platforms) out.platforms = state.platforms; // kept as given (the Platforms field is the widget)
      const userData = {};
      $$(".composer-row", conditions).forEach((row) => {
        const key = $("[data-key=key]", row).value.trim();
        if (!key) return;
        const side = $("[data-key=side]", row).value;
        const type = $("[data-key=type]", row).value;
        const raw = $("[data-key=values]", row).value.split(",").map((v) => v.trim()).filter((v) => v !== "");
        const vals = raw.map((v) => typed(v, type));
        userData[side] = userData[side] || {};
        userData[side][key] = vals.length === 1 ? vals[0] : vals;
      });
      if (Object.keys(userData).length) out.user_data = userData;
      const from = $("[data-key=age-from]", mount).value, to = $("[data-key=age-to]", mount).value;
      if (from !== "" || to !== "") {
        out.subscribed_age = {};
        if (from !== "") out.subscribed_age.from = Number(from);
        if (to !== "") out.subscribed_age.to = Number(to);
      }
      changed(textarea, out);
    };
    const lists = {};
    const table = el("div", { class: "composer-target" });
    const segmentChoices = () => {
      const project = projectSelect ? projectSelect.value : null;
      return (options.segments || []).filter((s) => !project || s.project === project);
    };
    const buildRow = (key, label, placeholder) => {
      const rule = state[key] || {};
      lists[key] = { include: (rule.include || []).slice(), exclude: (rule.exclude || []).slice() };
      const row = el("div", { class: "composer-target-row", "data-path": "targeting." + key }, [el("div", { class: "composer-target-label", text: label })]);
      ["include", "exclude"].forEach((side) => {
        const cell = el("div", { class: "composer-target-cell", "data-path": "targeting." + key + "." + side }, [el("span", { class: "herald-quiet", text: side === "include" ? "Include" : "Exclude" })]);
        cell.appendChild(chips(lists[key][side], label + " " + side, placeholder, write, key === "segments" ? segmentChoices() : null));
        row.appendChild(cell);
      });
      return row;
    };
    LISTS.forEach(([key, label, ph]) => table.appendChild(buildRow(key, label, ph)));
    let segmentRow = buildRow("segments", "Segments", "");
    table.appendChild(segmentRow);
    if (projectSelect) projectSelect.addEventListener("change", () => {
      const fresh = buildRow("segments", "Segments", "");
      lists.segments = { include: [], exclude: [] };
      segmentRow.replaceWith(fresh); segmentRow = fresh; write();
    });

    const conditions = el("div", { class: "composer-rows" });
    const addCondition = (side, key, value) => {
      const values = Array.isArray(value) ? value : (value === undefined ? [] : [value]);
      const type = values.length && typeof values[0] === "number" ? "number" : values.length && typeof values[0] === "boolean" ? "bool" : "text";
      const n = conditions.children.length + 1;
      const row = el("div", { class: "composer-row", "data-path": "targeting.user_data." + side }, [
        el("input", { "data-key": "key", "aria-label": "Condition " + n + " attribute", placeholder: "attribute, e.g. plan", size: 14, value: key || "" }),
        el("select", { "data-key": "side", "aria-label": "Condition " + n + " include or exclude" }, [
          el("option", { value: "include", text: "is one of", selected: side === "include" }),
          el("option", { value: "exclude", text: "is none of", selected: side === "exclude" }),
        ]),
        el("input", { "data-key": "values", "aria-label": "Condition " + n + " values", placeholder: "values, comma-separated", class: "composer-grow", value: values.join(", ") }),
        el("select", { "data-key": "type", "aria-label": "Condition " + n + " value type" }, [
          el("option", { value: "text", text: "text", selected: type === "text" }),
          el("option", { value: "number", text: "number", selected: type === "number" }),
          el("option", { value: "bool", text: "yes/no", selected: type === "bool" }),
        ]),
        removeButton("Remove condition " + n, () => { row.remove(); write(); }),
      ]);
      row.addEventListener("input", write);
      row.addEventListener("change", write);
      conditions.appendChild(row);
      return row;
    };
    const userData = state.user_data || {};
    ["include", "exclude"].forEach((side) => Object.entries(userData[side] || {}).forEach(([k, v]) => addCondition(side, k, v)));
    const addButton = el("button", { type: "button", class: "button composer-add", text: "+ Add condition", onclick: () => $("input", addCondition("include")).focus() });
    const age = state.subscribed_age || {};
    const ageRow = el("div", { class: "composer-row", "data-path": "targeting.subscribed_age" }, [
      el("span", { text: "Subscribed between" }),
      el("input", { type: "number", min: 0, "data-key": "age-from", "aria-label": "Subscribed at least (days)", size: 5, value: age.from === undefined ? "" : age.from }),
      el("span", { text: "and" }),
      el("input", { type: "number", min: 0, "data-key": "age-to", "aria-label": "Subscribed at most (days)", size: 5, value: age.to === undefined ? "" : age.to }),
      el("span", { text: "days ago" }),
    ]);
    ageRow.addEventListener("input", write);
    mount.append(
      table,
      el("div", { class: "composer-subhead", text: "User data conditions" }), conditions, addButton,
      el("div", { class: "composer-subhead", text: "Device age" }), ageRow,
    );
  }

  // ------------------------------------------------------------------------ goals
  // Rows of {name, event, filter, window_hours, primary}. The filter is a segment rule
  // over the event's properties, typed as JSON (what cannot be parsed is sent as typed,
  // for the validator to refuse with its path); the primary is a radio across rows.
  const MAX_GOALS = 5;
  function goalsEditor(textarea, mount, options) {
    const rows = el("div", { class: "composer-rows composer-goals" });
    const add = el("button", { type: "button", class: "button composer-add", text: "+ Add goal" });
    mount.append(rows, add);
    const write = () => {
      const out = [];
      const filled = $$(".composer-row", rows).filter((row) => ["name", "event", "filter"].some((k) => $("[data-key=" + k + "]", row).value.trim()));
      const anyPrimary = filled.some((row) => $("[data-key=primary]", row).checked);
      $$(".composer-row", rows).forEach((row, i) => { row.dataset.path = "goals[" + i + "]"; $$("[data-sub]", row).forEach((n) => { n.dataset.path = "goals[" + i + "]." + n.dataset.sub; }); });
      filled.forEach((row) => {
        const goal = { name: $("[data-key=name]", row).value, event: $("[data-key=event]", row).value.trim() };
        const filter = $("[data-key=filter]", row).value.trim();
        goal.filter = filter ? parse(filter, filter) : null;
        const hours = $("[data-key=window_hours]", row).value.trim();
        goal.window_hours = hours === "" ? 36 : (/^[0-9]+$/.test(hours) ? Number(hours) : hours);
        if (anyPrimary) goal.primary = $("[data-key=primary]", row).checked;
        out.push(goal);
      });
      add.disabled = rows.children.length >= MAX_GOALS;
      changed(textarea, out);
    };
    const addRow = (goal) => {
      const n = rows.children.length + 1;
      const row = el("div", { class: "composer-row composer-goal", "data-path": "goals[" + (n - 1) + "]" }, [
        el("input", { "data-key": "name", "data-sub": "name", "aria-label": "Goal " + n + " name", placeholder: "Name, e.g. Purchase", class: "composer-grow", value: goal.name || "" }),
        el("input", { "data-key": "event", "data-sub": "event", "aria-label": "Goal " + n + " event", placeholder: "event, e.g. purchase", size: 14, value: goal.event || "" }),
        el("input", { "data-key": "filter", "data-sub": "filter", "aria-label": "Goal " + n + " property filter", placeholder: "property filter (optional), e.g. " + (options.filter_example || ""), class: "composer-grow composer-goal-filter", value: goal.filter ? JSON.stringify(goal.filter) : "" }),
        el("label", { class: "composer-goal-window", "data-sub": "window_hours" }, [
          "within ",
          el("input", { type: "number", min: 1, max: 720, "data-key": "window_hours", "aria-label": "Goal " + n + " window (hours)", size: 4, value: goal.window_hours === undefined ? 36 : goal.window_hours }),
          " h",
        ]),
        el("label", { class: "composer-goal-primary", "data-sub": "primary" }, [
          el("input", { type: "radio", name: "composer-goal-primary", "data-key": "primary", "aria-label": "Goal " + n + " is the primary goal", checked: goal.primary === true }),
          " primary",
        ]),
        removeButton("Remove goal " + n, () => {
          row.remove();
          const radios = $$("[data-key=primary]", rows);
          if (radios.length && !radios.some((r) => r.checked)) radios[0].checked = true;
          write();
        }),
      ]);
      row.addEventListener("input", write);
      row.addEventListener("change", write);
      rows.appendChild(row);
      const radios = $$("[data-key=primary]", rows);
      if (!radios.some((r) => r.checked)) radios[0].checked = true;  // a lone goal is primary
      add.disabled = rows.children.length >= MAX_GOALS;
      return row;
    };
    const stored = parse(textarea.value, []);
    (Array.isArray(stored) ? stored : []).forEach(addRow);
    // Paths on the sub-fields from the start, so a refusal marks the right input.
    $$(".composer-row", rows).forEach((row, i) => $$("[data-sub]", row).forEach((n) => { n.dataset.path = "goals[" + i + "]." + n.dataset.sub; }));
    add.addEventListener("click", () => { $("input", addRow({})).focus(); write(); });
  }

  const EDITORS = { localizations: localizationsEditor, actions: actionsEditor, targeting: targetingEditor, goals: goalsEditor };

  function markErrors(textarea, mount) {
    const path = textarea.dataset.errorPath;
    if (!path) return;
    $$("[data-path]", mount).forEach((node) => {
      const p = node.dataset.path;
      if (p === path || path.startsWith(p + ".") || path.startsWith(p + "[")) node.classList.add("composer-invalid");
    });
  }

  function buildEditors() {
    $$("textarea[data-composer]").forEach((textarea) => {
      const build = EDITORS[textarea.dataset.composer];
      if (!build) return;
      const mount = el("div", { class: "composer-editor", "data-editor": textarea.dataset.composer });
      textarea.after(mount);
      textarea.hidden = true;
      build(textarea, mount, parse(textarea.dataset.options || "{}", {}));
      markErrors(textarea, mount);
    });
  }

  // ------------------------------------------------------------------- recurrence
  function recurrenceBuilder(root) {
    const box = $(".composer-inline[data-parts=recurrence]");
    if (!box) return;
    const [kind, every, at, cron, zone] = $$("[data-part]", box);
    const reading = el("div", { class: "composer-reading herald-quiet", "aria-live": "polite" });
    box.after(reading);
    const show = () => {
      const k = kind.value;
      every.hidden = !["seconds", "minutes", "hours", "days"].includes(k);
      at.hidden = k !== "days";
      cron.hidden = k !== "cron";
      zone.hidden = !["days", "cron"].includes(k);
    };
    const value = () => {
      const k = kind.value, n = Number(every.value);
      if (!k) return null;
      if (k === "cron") return { cron: cron.value, timezone: zone.value };
      if (k === "days") return { every_days: n, at: (at.value || "00:00").slice(0, 5), timezone: zone.value };
      return { every_seconds: n * { seconds: 1, minutes: 60, hours: 3600 }[k] };
    };
    const read = Herald.debounce(async () => {
      try {
        const answer = await Herald.json(root.dataset.recurrenceUrl, { method: "POST", body: { project: projectId(), recurrence: value() } });
        reading.textContent = answer.text;
        reading.classList.remove("composer-bad");
      } catch (e) {
        reading.textContent = e.message;
        reading.classList.add("composer-bad");
      }
    }, 300);
    box.addEventListener("input", () => { show(); read(); });
    box.addEventListener("change", () => { show(); read(); });
    show();
    if (kind.value) read();
  }

  // The schedule's zone follows the chosen project's until the operator picks one.
  function scheduleZone() {
    const select = $("#id_schedule_timezone"), project = $("#id_project");
    if (!select || !project) return;
    const zones = parse(select.dataset.projectZones || "{}", {});
    let touched = false;
    select.addEventListener("change", () => { touched = true; });
    project.addEventListener("change", () => { if (!touched && zones[project.value]) select.value = zones[project.value]; });
  }

  function projectId() { const p = $("#id_project"); return p ? p.value : null; }

  // ------------------------------------------------------------- audience estimate
  function estimate(root) {
    const panel = $("#composer-estimate");
    if (!panel) return;
    const show = (key, text) => { const node = $("[data-estimate=" + key + "]", panel); if (node) node.textContent = text; };
    const message = $("[data-estimate=message]", panel);
    let seq = 0;
    const run = Herald.debounce(async () => {
      const mine = ++seq;
      const segment = $("#id_segment");
      const body = {
        project: projectId(),
        segment_id: segment && segment.value ? segment.value : null,
        platforms: $$("input[name=platforms]:checked").map((c) => c.value),
        targeting: parse(($("#id_targeting") || {}).value || "{}", {}),
      };
      panel.classList.add("composer-busy");
      try {
        const counts = await Herald.json(root.dataset.estimateUrl, { method: "POST", body: body });
        if (mine !== seq) return;
        show("total", Herald.number(counts.total));
        Object.entries(counts.by_provider).forEach(([k, v]) => show(k, Herald.number(v)));
        Object.entries(counts.by_platform).forEach(([k, v]) => show(k, Herald.number(v)));
        message.hidden = true;
      } catch (e) {
        if (mine !== seq) return;
        show("total", "–");
        message.textContent = e.message;
        message.hidden = false;
      } finally {
        if (mine === seq) panel.classList.remove("composer-busy");
      }
    }, 300);
    ["#id_segment", "#id_project", "#id_targeting"].forEach((sel) => { const n = $(sel); if (n) n.addEventListener("change", run); });
    $$("input[name=platforms]").forEach((n) => n.addEventListener("change", run));
    run();
  }

  // --------------------------------------------------------------- payload preview
  function preview(root) {
    const panel = $("#composer-preview");
    if (!panel) return;
    const langSelect = $("[data-preview=language]", panel);
    const message = $("[data-preview=message]", panel);
    // "Preview as": a user's external id (the API preview's sample user); with one,
    // the default language option means the user's language.
    const userInput = $("[data-preview=user]", panel);
    const userMessage = $("[data-preview=user-message]", panel);
    const uses = $("[data-preview=placeholders]", panel);
    const userProblem = (text) => {
      userMessage.textContent = text || "";
      userMessage.hidden = !text;
      if (text) userInput.setAttribute("aria-invalid", "true"); else userInput.removeAttribute("aria-invalid");
    };
    const val = (sel) => { const n = $(sel); return n ? n.value : ""; };
    const content = () => {
      const out = {
        title: val("#id_title"), body: val("#id_body"),
        localizations: parse(val("#id_localizations") || "{}", {}),
        image_url: val("#id_image_url").trim(), url: val("#id_url").trim(),
        actions: parse(val("#id_actions") || "[]", []),
        sound: val("#id_sound"), collapse_key: val("#id_collapse_key"),
        priority: val("#id_priority") || "high",
        icon: val("#id_icon").trim(), web_badge: val("#id_web_badge").trim(), tag: val("#id_tag"),
      };
      const vibrate = val("#id_vibrate").split(/[\s,]+/).filter(Boolean);
      if (vibrate.length) out.vibrate = vibrate.map((v) => (/^-?\d+$/.test(v) ? Number(v) : v));
      ["require_interaction", "renotify"].forEach((name) => { const box = $("#id_" + name); if (box && box.checked) out[name] = true; });
      const data = val("#id_data").trim();
      out.data = data ? parse(data, data) : {};
      const badge = val("#id_badge");
      if (badge !== "") out.badge = Number(badge);
      const silent = $("#id_silent");
      if (silent && silent.checked) out.silent = true;
      const ttl = val("#id_ttl_seconds_0");
      if (ttl !== "") out.ttl_seconds = Number(ttl) * ({ seconds: 1, minutes: 60, hours: 3600, days: 86400 }[val("#id_ttl_seconds_1")] || 1);
      return out;
    };
    const languages = (locs) => {
      const wanted = [""].concat(Object.keys(locs).filter(Boolean));
      const have = $$("option", langSelect).map((o) => o.value);
      if (wanted.join("|") === have.join("|")) return;
      const current = langSelect.value;
      langSelect.replaceChildren(...wanted.map((l) => el("option", { value: l, text: l || "Default (no localization)" })));
      langSelect.value = wanted.includes(current) ? current : "";
    };
    let seq = 0;
    const run = Herald.debounce(async () => {
      const mine = ++seq;
      const body = content();
      languages(body.localizations);
      if (!body.title.trim() && !body.body.trim()) {
        message.textContent = "Type a title and a body to see the notification.";
        message.hidden = false;
        return;
      }
      const user = userInput.value.trim();
      const request = { project: projectId(), content: body };
      if (user) request.external_id = user;
      if (!user || langSelect.value) request.language = langSelect.value;
      try {
        const p = await Herald.json(root.dataset.previewUrl, { method: "POST", body: request });
        if (mine !== seq) return;
        userProblem("");
        langSelect.options[0].textContent = user ? "User's language" + (p.language ? ": " + p.language : "") : "Default (no localization)";
        uses.textContent = p.placeholders.length ? "Uses: " + p.placeholders.join(", ") : "";
        uses.hidden = !p.placeholders.length;
        $$("[data-preview=title]", panel).forEach((n) => { n.textContent = p.title; });
        $$("[data-preview=body]", panel).forEach((n) => { n.textContent = p.body; });
        $$("[data-preview=image]", panel).forEach((n) => { n.hidden = !p.image_url; if (p.image_url) n.src = p.image_url; else n.removeAttribute("src"); });
        $$("[data-preview=actions]", panel).forEach((n) => n.replaceChildren(...p.actions.map((a) => el("span", { text: a.title }))));
        const web = p.payloads.webpush && p.payloads.webpush.payload.notification;
        $$("[data-preview=icon]", panel).forEach((n) => { n.hidden = !(web && web.icon); if (web && web.icon) n.src = web.icon; else n.removeAttribute("src"); });
        // The bar shows the payload closest to its own limit (web push's is 3,993 bytes).
        const fullest = Object.keys(p.sizes).reduce((a, b) => (p.sizes[b] / p.limits[b] > p.sizes[a] / p.limits[a] ? b : a));
        const pct = Math.min(100, Math.round((100 * p.sizes[fullest]) / p.limits[fullest]));
        const bar = $("[data-preview=bar]", panel);
        bar.style.width = pct + "%";
        bar.className = p.sizes[fullest] > p.limits[fullest] ? "failed" : "sent";
        const webSize = p.sizes.webpush === undefined ? "" : ", web push " + Herald.number(p.sizes.webpush) + " of " + Herald.number(p.limits.webpush);
        $("[data-preview=size]", panel).textContent = "Largest payload: " + Herald.number(p.largest) + " of " + Herald.number(p.limit) + " bytes (APNs " + Herald.number(p.sizes.apns) + ", FCM Android " + Herald.number(p.sizes.fcm_android) + ", FCM web " + Herald.number(p.sizes.fcm_web) + webSize + ")";
        if (p.too_large.length) {
          message.textContent = "Too large: " + p.too_large.map((r) => r.provider + (r.language ? " (" + r.language + ")" : "") + " " + r.size + " bytes").join(", ");
          message.hidden = false;
        } else message.hidden = true;
        panel.classList.remove("composer-stale");
      } catch (e) {
        if (mine !== seq) return;
        const details = (e.data && e.data.error && e.data.error.details) || {};
        if (details.field === "external_id") {
          userProblem(e.message);
          message.hidden = true;
        } else {
          userProblem("");
          message.textContent = e.message;
          message.hidden = false;
        }
        panel.classList.add("composer-stale");
      }
    }, 300);
    const form = root.closest("form");
    form.addEventListener("input", run);
    form.addEventListener("change", run);
    langSelect.addEventListener("change", run);
    // Enter in "Preview as" previews; it must not submit the campaign form.
    userInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); run(); } });
    sampleUsers(root);
    run();
  }

  // The project's newest users' external ids, suggested by "Preview as".
  function sampleUsers(root) {
    const list = $("#composer-sample-users");
    if (!list || !root.dataset.sampleUsersUrl) return;
    const load = async () => {
      try {
        const answer = await Herald.json(root.dataset.sampleUsersUrl, { method: "POST", body: { project: projectId() } });
        list.replaceChildren(...answer.external_ids.map((id) => el("option", { value: id })));
      } catch (e) {
        list.replaceChildren(); // no project chosen yet: nothing to suggest
      }
    };
    const project = $("#id_project");
    if (project) project.addEventListener("change", load);
    load();
  }

  function languageSuggestions() {
    const list = el("datalist", { id: "composer-languages" });
    ["ar", "de", "en", "en-GB", "en-US", "es", "fr", "hi", "it", "ja", "ko", "nl", "pl", "pt", "pt-BR", "ru", "sv", "tr", "uk", "zh", "zh-TW"]
      .forEach((l) => list.appendChild(el("option", { value: l })));
    document.body.appendChild(list);
  }

  // A MultiWidget's parts (recurrence, quiet hours, TTL) side by side in one row.
  function groupParts() {
    ["recurrence", "quiet_hours", "ttl"].forEach((part) => {
      const parts = $$("[data-part=" + part + "]");
      if (!parts.length) return;
      const row = el("div", { class: "composer-inline", "data-parts": part });
      parts[0].before(row);
      parts.forEach((p) => row.appendChild(p));
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = $("#composer");
    if (!root) return;
    groupParts();
    languageSuggestions();
    buildEditors();
    recurrenceBuilder(root);
    scheduleZone();
    estimate(root);
    preview(root);
  });
})();
