// Segment rule builder: nested all/any/none groups of conditions, written as the
// rules JSON into the form's textarea, with a live count and sample beside it.
//
// The builder only edits JSON. What is valid is the server's call: the form runs the
// API's validator on save, and the live panel posts the rules to the console's preview
// view, which runs the API's preview; a refusal's details.path marks the node here.
// The grammar's vocabulary (operators per attribute kind, token choices) comes from
// the page (rule_vocabulary() in segments/admin.py), not from a copy in this file.
"use strict";
(function () {
  const DEBOUNCE_MS = 300;
  const RELATIVE_RE = /^([+-])([0-9]{1,7})([mhdw])$/;
  const DAY_RE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;
  const DATETIME_RE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}/;
  const OTHER = "__other__";
  const OP_LABELS = {
    eq: "is", neq: "is not", gt: "greater than", gte: "at least", lt: "less than",
    lte: "at most", in: "is one of", not_in: "is none of", contains: "contains",
    not_contains: "does not contain", exists: "is set", not_exists: "is not set",
    starts_with: "starts with", ends_with: "ends with", between: "is between",
    not_between: "is not between",
  };
  const VTYPE_LABELS = {
    text: "text", number: "number", boolean: "yes / no", date: "date",
    datetime: "date-time", relative: "relative", version: "version",
    choice: "choice", days: "days",
  };
  const KIND_LABELS = { all: "All of these", any: "Any of these", not: "None of these" };
  const UNITS = { m: "minutes", h: "hours", d: "days", w: "weeks" };

  // ------------------------------------------------------------------ helpers

  function h(tag, attrs, children) {
    const el = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([key, value]) {
      if (value === null || value === undefined || value === false) return;
      if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key in el && key !== "list") el[key] = value;
      else el.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) { if (child) el.append(child); });
    return el;
  }

  function select(options, value, attrs) {
    const el = h("select", attrs);
    options.forEach(function (opt) {
      if (opt.group) {
        const group = h("optgroup", { label: opt.group });
        opt.options.forEach(function (o) { group.append(h("option", { value: o.value, text: o.label })); });
        el.append(group);
      } else {
        el.append(h("option", { value: opt.value, text: opt.label }));
      }
    });
    el.value = value;
    return el;
  }

  // Key-sorted JSON, to tell whether the builder shows a rule exactly.
  function canonical(value) {
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).sort().map(function (k) {
        return JSON.stringify(k) + ":" + canonical(value[k]);
      }).join(",") + "}";
    }
    return JSON.stringify(value === undefined ? null : value);
  }

  function pathMatches(errorPath, path) {
    return errorPath === path || errorPath.startsWith(path + ".") || errorPath.startsWith(path + "[");
  }

  // ------------------------------------------------------------------ builder

  function RuleBuilder(root) {
    this.root = root;
    this.vocab = JSON.parse(root.querySelector("#rb-vocabulary").textContent);
    this.builtins = {};
    this.vocab.builtins.forEach((b) => { this.builtins[b.name] = b; });
    this.seen = {};
    this.textarea = document.getElementById(root.dataset.field);
    this.tree = root.querySelector(".rb-tree");
    this.notice = root.querySelector(".rb-notice");
    this.raw = root.querySelector(".rb-raw");
    this.rawError = root.querySelector(".rb-raw-error");
    this.panel = {
      count: root.querySelector(".rb-count"),
      status: root.querySelector(".rb-status"),
      table: root.querySelector(".rb-sample"),
      body: root.querySelector(".rb-sample tbody"),
    };
    this.projectSelect = document.getElementById("id_project");
    this.errorPath = root.dataset.errorPath || "";
    this.errorMessage = root.dataset.errorMessage || "";
    this.paths = [];
    this.sequence = 0;
    this.schedulePreview = Herald.debounce(() => this.preview(), DEBOUNCE_MS);
    this.onRawInput = Herald.debounce(() => this.loadFromRaw(), DEBOUNCE_MS);
  }

  RuleBuilder.prototype.start = function () {
    this.raw.open = false;
    this.textarea.addEventListener("input", () => this.onRawInput());
    if (this.projectSelect) {
      this.projectSelect.addEventListener("change", () => { this.loadAttributes(); this.schedulePreview(); });
    }
    this.loadFromRaw();
    this.loadAttributes();
    this.preview();
  };

  RuleBuilder.prototype.projectId = function () {
    return this.root.dataset.project || (this.projectSelect ? this.projectSelect.value : "");
  };

  // --------------------------------------------------------- attribute kinds

  RuleBuilder.prototype.kindOf = function (attr) {
    const builtin = this.builtins[attr];
    return builtin ? builtin.kind : "json";
  };

  // The value types a condition on `attr` with `op` may take (first = default).
  RuleBuilder.prototype.vtypesFor = function (attr, op) {
    const base = this.vocab.complements[op] || op;
    const kind = this.kindOf(attr);
    if (base === "exists") return [];
    if (kind === "token") return ["choice"];
    if (kind === "age") return ["days"];
    if (kind === "date_column") return ["date", "relative", "datetime"];
    if (kind === "external_id") return ["text"];
    if (attr === this.vocab.version_attr && this.vocab.version_ops.includes(base)) return ["version"];
    if (["contains", "starts_with", "ends_with"].includes(base)) return ["text"];
    if (this.vocab.builtins.some((b) => b.name === attr)) return ["text"];
    const seen = { number: "number", boolean: "boolean", date: "date" }[(this.seen[attr] || {}).type];
    let types = ["text", "number", "boolean", "date", "relative", "datetime"];
    if (base !== "eq" && base !== "in") types = types.filter((t) => t !== "boolean");
    if (seen && types.includes(seen)) types = [seen].concat(types.filter((t) => t !== seen));
    return types;
  };

  RuleBuilder.prototype.opsFor = function (attr) {
    return this.vocab.allowed_ops[this.kindOf(attr)];
  };

  // ------------------------------------------------------- JSON -> state

  RuleBuilder.prototype.inferVtype = function (attr, op, sample) {
    const types = this.vtypesFor(attr, op);
    if (!types.length) return "";
    let guess = "text";
    if (typeof sample === "number") guess = this.kindOf(attr) === "age" ? "days" : "number";
    else if (typeof sample === "boolean") guess = "boolean";
    else if (typeof sample === "string") {
      if (RELATIVE_RE.test(sample)) guess = "relative";
      else if (DAY_RE.test(sample)) guess = "date";
      else if (DATETIME_RE.test(sample)) guess = "datetime";
    }
    return types.includes(guess) ? guess : types[0];
  };

  function rawOf(value) {
    if (value === null || value === undefined) return "";
    return String(value);
  }

  RuleBuilder.prototype.parseNode = function (node) {
    if (node && typeof node === "object" && !Array.isArray(node)) {
      for (const kind of ["all", "any"]) {
        if (kind in node && Object.keys(node).length === 1) {
          const children = Array.isArray(node[kind]) ? node[kind] : [];
          return { type: "group", kind: kind, children: children.map((c) => this.parseNode(c)) };
        }
      }
      if ("not" in node && Object.keys(node).length === 1) {
        const inner = node.not;
        const many = inner && typeof inner === "object" && Array.isArray(inner.any) && Object.keys(inner).length === 1 && inner.any.length > 1;
        const children = many ? inner.any : [inner];
        return { type: "group", kind: "not", children: children.map((c) => this.parseNode(c)) };
      }
    }
    const cond = node && typeof node === "object" ? node : {};
    const attr = typeof cond.attr === "string" ? cond.attr : "";
    const op = typeof cond.op === "string" ? cond.op : "eq";
    const base = this.vocab.complements[op] || op;
    const value = cond.value;
    const listy = base === "in" || base === "between";
    const items = listy && Array.isArray(value) ? value : [];
    const vtype = this.inferVtype(attr, op, listy ? items[0] : value);
    if (listy) return { type: "cond", attr: attr, op: op, vtype: vtype, values: items.map(rawOf) };
    return { type: "cond", attr: attr, op: op, vtype: vtype, value: rawOf(value), values: [] };
  };

  RuleBuilder.prototype.load = function (rules) {
    if (rules && typeof rules === "object" && !Array.isArray(rules) && Object.keys(rules).length === 0) {
      this.state = { type: "group", kind: "all", children: [], wrapped: true };
    } else {
      const parsed = this.parseNode(rules);
      const isGroup = parsed.type === "group" && parsed.kind !== "not";
      this.state = isGroup ? parsed : { type: "group", kind: "all", children: [parsed], wrapped: true };
    }
    const exact = canonical(this.serialize()) === canonical(rules);
    this.notice.hidden = exact;
    this.notice.textContent = exact ? "" : "The builder cannot show these rules exactly. Edit them as raw JSON below; a change in the builder replaces them.";
    if (!exact) this.raw.open = true;
  };

  RuleBuilder.prototype.loadFromRaw = function () {
    const text = this.textarea.value.trim();
    let rules = {};
    if (text) {
      try { rules = JSON.parse(text); } catch (e) {
        this.rawError.textContent = "Not valid JSON: " + e.message;
        return;
      }
    }
    this.rawError.textContent = "";
    this.load(rules);
    this.render();
    this.schedulePreview();
  };

  // ------------------------------------------------------- state -> JSON

  function convert(raw, vtype) {
    const text = String(raw).trim();
    if (vtype === "text" || vtype === "choice" || vtype === "version") return raw === "" ? null : raw;
    if (text === "") return null;
    if (vtype === "number" || vtype === "days") return Number(text);
    if (vtype === "boolean") return text === "true";
    return text;
  }

  RuleBuilder.prototype.serializeNode = function (node, path) {
    this.paths.push({ path: path, node: node });
    if (node.type === "group") {
      if (node.kind === "not") {
        if (node.children.length === 1) return { not: this.serializeNode(node.children[0], path + ".not") };
        if (node.children.length === 0) return { not: null };
        return { not: { any: node.children.map((c, i) => this.serializeNode(c, path + ".not.any[" + i + "]")) } };
      }
      return { [node.kind]: node.children.map((c, i) => this.serializeNode(c, path + "." + node.kind + "[" + i + "]")) };
    }
    const out = { attr: node.attr, op: node.op };
    const base = this.vocab.complements[node.op] || node.op;
    if (base === "exists") return out;
    if (base === "in" || base === "between") {
      const values = node.values.filter((v) => base === "between" || String(v).trim() !== "");
      out.value = values.map((v) => convert(v, node.vtype));
    } else {
      out.value = convert(node.value, node.vtype);
    }
    return out;
  };

  RuleBuilder.prototype.serialize = function () {
    this.paths = [];
    const root = this.state;
    if (!root.children.length && root.kind !== "not") {
      this.paths.push({ path: "rules", node: root });
      return {};
    }
    if (root.wrapped && root.kind === "all" && root.children.length === 1) {
      this.paths.push({ path: "rules", node: root });
      return this.serializeNode(root.children[0], "rules");
    }
    return this.serializeNode(root, "rules");
  };

  // Builder changed: write the JSON, recount. `structural` re-renders the tree.
  RuleBuilder.prototype.changed = function (structural) {
    this.errorPath = "";
    if (structural) this.render();
    this.textarea.value = JSON.stringify(this.serialize(), null, 2);
    this.notice.hidden = true;
    this.rawError.textContent = "";
    this.clearMarks();
    this.schedulePreview();
  };

  // ------------------------------------------------------------- rendering

  RuleBuilder.prototype.render = function () {
    this.serialize();  // fills this.paths for the nodes
    this.tree.replaceChildren(this.renderGroup(this.state, null));
    this.markError(this.errorPath, this.errorMessage);
  };

  RuleBuilder.prototype.renderGroup = function (group, parent) {
    const children = h("div", { class: "rb-children" });
    group.children.forEach((child) => {
      children.append(child.type === "group" ? this.renderGroup(child, group) : this.renderCondition(child, group));
    });
    if (!group.children.length) {
      children.append(h("p", { class: "rb-empty herald-quiet", text: parent ? "Empty group: add a condition." : "No conditions: every user of the project matches." }));
    }
    const kind = select(
      Object.keys(KIND_LABELS).map((k) => ({ value: k, label: KIND_LABELS[k] })),
      group.kind,
      { class: "rb-kind", "aria-label": parent ? "Group type" : "Match", onchange: (e) => { group.kind = e.target.value; this.changed(true); } }
    );
    const head = h("div", { class: "rb-group-head" }, [
      h("span", { class: "rb-match", text: parent ? "Group:" : "Users matching" }),
      kind,
      parent ? h("button", { type: "button", class: "rb-remove", title: "Remove this group", "aria-label": "Remove group", text: "×", onclick: () => this.remove(parent, group) }) : null,
    ]);
    const actions = h("div", { class: "rb-group-actions" }, [
      h("button", { type: "button", class: "button rb-add-condition", text: "+ Condition", onclick: () => this.add(group, this.newCondition()) }),
      h("button", { type: "button", class: "button rb-add-group", text: "+ Group", onclick: () => this.add(group, { type: "group", kind: "any", children: [this.newCondition()] }) }),
    ]);
    const el = h("div", { class: "rb-group rb-kind-" + group.kind + (parent ? "" : " rb-root"), role: "group" }, [head, children, actions, h("p", { class: "rb-error", role: "alert" })]);
    el.rbNode = group;
    return el;
  };

  RuleBuilder.prototype.newCondition = function () {
    return { type: "cond", attr: "country", op: "eq", vtype: "text", value: "", values: [] };
  };

  RuleBuilder.prototype.add = function (group, node) {
    group.children.push(node);
    this.changed(true);
    const added = this.findElement(node);
    const first = added && added.querySelector("select, input");
    if (first) first.focus();
  };

  RuleBuilder.prototype.remove = function (parent, node) {
    parent.children = parent.children.filter((c) => c !== node);
    this.changed(true);
  };

  RuleBuilder.prototype.attributeOptions = function (current) {
    const builtinNames = this.vocab.builtins.map((b) => b.name);
    const seen = Object.keys(this.seen).filter((name) => !builtinNames.includes(name));
    const options = [
      { group: "Built-in", options: builtinNames.map((n) => ({ value: n, label: n })) },
    ];
    if (seen.length) options.push({ group: "Seen in this project", options: seen.map((n) => ({ value: n, label: n })) });
    if (current && !builtinNames.includes(current) && !seen.includes(current)) {
      options.push({ group: "Typed", options: [{ value: current, label: current }] });
    }
    options.push({ value: OTHER, label: "Other attribute…" });
    return options;
  };

  RuleBuilder.prototype.renderCondition = function (cond, parent) {
    const attr = select(this.attributeOptions(cond.attr), cond.custom ? OTHER : cond.attr, {
      class: "rb-attr", "aria-label": "Attribute",
      onchange: (e) => {
        if (e.target.value === OTHER) { cond.custom = true; cond.attr = ""; }
        else { cond.custom = false; cond.attr = e.target.value; }
        this.fitCondition(cond);
        this.changed(true);
        if (cond.custom) { const el = this.findElement(cond); if (el) el.querySelector(".rb-attr-name").focus(); }
      },
    });
    const parts = [attr];
    if (cond.custom) {
      parts.push(h("input", {
        type: "text", class: "rb-attr-name", value: cond.attr, placeholder: "attribute name",
        "aria-label": "Attribute name", pattern: this.vocab.attribute_pattern, maxLength: 64,
        oninput: (e) => { cond.attr = e.target.value.trim(); this.changed(false); },
        onchange: () => { cond.custom = !cond.attr; this.fitCondition(cond); this.changed(true); },
      }));
    }
    const ops = this.opsFor(cond.attr).slice();
    if (!ops.includes(cond.op)) ops.push(cond.op);
    parts.push(select(ops.map((o) => ({ value: o, label: OP_LABELS[o] || o + " (not in the grammar)" })), cond.op, {
      class: "rb-op", "aria-label": "Operator",
      onchange: (e) => { cond.op = e.target.value; this.fitCondition(cond); this.changed(true); },
    }));
    const vtypes = this.vtypesFor(cond.attr, cond.op);
    if (vtypes.length > 1) {
      parts.push(select(vtypes.map((t) => ({ value: t, label: VTYPE_LABELS[t] })), cond.vtype, {
        class: "rb-vtype", "aria-label": "Value type",
        onchange: (e) => { cond.vtype = e.target.value; cond.value = ""; cond.values = []; cond.values = this.freshValues(cond); this.changed(true); },
      }));
    }
    parts.push(this.renderValue(cond));
    parts.push(h("button", { type: "button", class: "rb-remove", title: "Remove this condition", "aria-label": "Remove condition", text: "×", onclick: () => this.remove(parent, cond) }));
    const el = h("div", { class: "rb-cond" }, [h("div", { class: "rb-cond-row" }, parts), h("p", { class: "rb-error", role: "alert" })]);
    el.rbNode = cond;
    return el;
  };

  // After the attribute or operator changed: keep what still fits, reset the rest.
  RuleBuilder.prototype.fitCondition = function (cond) {
    const ops = this.opsFor(cond.attr);
    if (!ops.includes(cond.op)) cond.op = ops[0];
    const vtypes = this.vtypesFor(cond.attr, cond.op);
    if (!vtypes.includes(cond.vtype)) { cond.vtype = vtypes[0] || ""; cond.value = ""; }
    cond.values = this.freshValues(cond);
  };

  RuleBuilder.prototype.freshValues = function (cond) {
    const base = this.vocab.complements[cond.op] || cond.op;
    if (base === "between") return [cond.values[0] || "", cond.values[1] || ""];
    if (base === "in") return cond.values.length ? cond.values : (cond.value ? [cond.value] : []);
    return [];
  };

  // One input for one value of a type; `set` stores the raw string.
  RuleBuilder.prototype.input = function (cond, vtype, raw, set, label) {
    const changed = (e) => { set(e.target.value); this.changed(false); };
    if (vtype === "boolean") {
      if (raw === "") { raw = "true"; set("true"); }
      return select([{ value: "true", label: "true" }, { value: "false", label: "false" }], raw, { class: "rb-value-input", "aria-label": label, onchange: changed });
    }
    if (vtype === "choice") {
      const choices = (this.builtins[cond.attr] || { choices: [] }).choices;
      if (raw === "") { raw = choices[0]; set(raw); }
      return select(choices.map((c) => ({ value: c, label: c })), raw, { class: "rb-value-input", "aria-label": label, onchange: changed });
    }
    if (vtype === "relative") {
      const match = RELATIVE_RE.exec(raw) || [null, "-", "7", "d"];
      if (raw === "") set(match[1] + match[2] + match[3]);
      const parts = { sign: match[1], amount: match[2], unit: match[3] };
      const update = () => { set(parts.sign + (parts.amount || "0") + parts.unit); this.changed(false); };
      return h("span", { class: "rb-relative" }, [
        h("input", { type: "number", min: 0, step: 1, value: parts.amount, class: "rb-value-input rb-amount", "aria-label": label + " amount", oninput: (e) => { parts.amount = e.target.value; update(); } }),
        select(Object.keys(UNITS).map((u) => ({ value: u, label: UNITS[u] })), parts.unit, { class: "rb-unit", "aria-label": label + " unit", onchange: (e) => { parts.unit = e.target.value; update(); } }),
        select([{ value: "-", label: "ago" }, { value: "+", label: "from now" }], parts.sign, { class: "rb-sign", "aria-label": label + " direction", onchange: (e) => { parts.sign = e.target.value; update(); } }),
      ]);
    }
    const attrs = { class: "rb-value-input", value: raw, "aria-label": label, oninput: changed };
    if (vtype === "number" || vtype === "days") Object.assign(attrs, { type: "number", step: vtype === "days" ? 1 : "any", min: vtype === "days" ? 0 : null });
    else if (vtype === "date") attrs.type = "date";
    else if (vtype === "datetime") Object.assign(attrs, { type: "text", placeholder: "2026-05-01T09:00:00+02:00" });
    else if (vtype === "version") Object.assign(attrs, { type: "text", placeholder: "2.10", inputMode: "decimal" });
    else attrs.type = "text";
    const examples = (this.seen[cond.attr] || {}).examples || [];
    if (examples.length && (vtype === "text" || vtype === "number")) {
      attrs.list = "rb-examples-" + cond.attr.replace(/[^A-Za-z0-9_-]/g, "_");
      this.ensureDatalist(attrs.list, examples);
    }
    return h("input", attrs);
  };

  RuleBuilder.prototype.ensureDatalist = function (id, examples) {
    if (document.getElementById(id)) return;
    this.root.append(h("datalist", { id: id }, examples.map((v) => h("option", { value: String(v) }))));
  };

  RuleBuilder.prototype.renderValue = function (cond) {
    const base = this.vocab.complements[cond.op] || cond.op;
    if (base === "exists") return null;
    if (base === "between") {
      return h("span", { class: "rb-value rb-between" }, [
        this.input(cond, cond.vtype, cond.values[0] || "", (v) => { cond.values[0] = v; }, "From"),
        h("span", { class: "herald-quiet", text: "and" }),
        this.input(cond, cond.vtype, cond.values[1] || "", (v) => { cond.values[1] = v; }, "To"),
      ]);
    }
    if (base === "in" && cond.vtype === "choice") {
      const choices = (this.builtins[cond.attr] || { choices: [] }).choices;
      return h("span", { class: "rb-value rb-choices" }, choices.map((c) => h("label", {}, [
        h("input", {
          type: "checkbox", value: c, checked: cond.values.includes(c),
          onchange: (e) => {
            cond.values = choices.filter((x) => (x === c ? e.target.checked : cond.values.includes(x)));
            this.changed(false);
          },
        }),
        " " + c,
      ])));
    }
    if (base === "in") {
      const list = h("span", { class: "rb-value rb-list" });
      cond.values.forEach((raw, i) => {
        list.append(h("span", { class: "rb-item" }, [
          this.input(cond, cond.vtype, raw, (v) => { cond.values[i] = v; }, "Value " + (i + 1)),
          h("button", { type: "button", class: "rb-remove rb-remove-item", "aria-label": "Remove value " + (i + 1), title: "Remove this value", text: "×", onclick: () => { cond.values.splice(i, 1); this.changed(true); } }),
        ]));
      });
      list.append(h("button", { type: "button", class: "button rb-add-value", text: "+ Value", onclick: () => {
        cond.values.push("");
        this.changed(true);
        const inputs = this.findElement(cond).querySelectorAll(".rb-item .rb-value-input");
        if (inputs.length) inputs[inputs.length - 1].focus();
      } }));
      return list;
    }
    return h("span", { class: "rb-value" }, [this.input(cond, cond.vtype, cond.value, (v) => { cond.value = v; }, "Value")]);
  };

  RuleBuilder.prototype.findElement = function (node) {
    const all = this.tree.querySelectorAll(".rb-group, .rb-cond");
    return Array.from(all).find((el) => el.rbNode === node) || null;
  };

  // ------------------------------------------------------------- errors

  RuleBuilder.prototype.clearMarks = function () {
    this.tree.querySelectorAll(".rb-invalid").forEach((el) => el.classList.remove("rb-invalid"));
    this.tree.querySelectorAll(".rb-error").forEach((el) => { el.textContent = ""; });
  };

  // Mark the node a refusal's details.path names (the deepest node on that path).
  RuleBuilder.prototype.markError = function (path, message) {
    this.clearMarks();
    if (!path) return;
    let best = null;
    this.paths.forEach((entry) => {
      if (pathMatches(path, entry.path) && (!best || entry.path.length >= best.path.length)) best = entry;
    });
    const el = best && this.findElement(best.node);
    if (!el) return;
    el.classList.add("rb-invalid");
    const slot = Array.from(el.children).find((c) => c.classList.contains("rb-error"));
    if (slot) slot.textContent = message;
  };

  // ------------------------------------------------------------- server data

  RuleBuilder.prototype.loadAttributes = async function () {
    const project = this.projectId();
    if (!project) return;
    try {
      const data = await Herald.json(this.root.dataset.attributesUrl + "?project_id=" + encodeURIComponent(project));
      this.seen = {};
      data.attributes.forEach((a) => { this.seen[a.name] = a; });
      this.render();
    } catch (e) {
      this.seen = {};
    }
  };

  RuleBuilder.prototype.preview = async function () {
    const project = this.projectId();
    const panel = this.panel;
    if (!project) {
      panel.count.textContent = "—";
      panel.status.textContent = "Choose a project to count its members.";
      panel.table.hidden = true;
      return;
    }
    let rules;
    try { rules = JSON.parse(this.textarea.value.trim() || "{}"); } catch (e) { return; }
    const sequence = ++this.sequence;
    this.root.classList.add("rb-loading");
    try {
      const data = await Herald.json(this.root.dataset.previewUrl, { method: "POST", body: { project_id: project, rules: rules } });
      if (sequence !== this.sequence) return;
      panel.count.textContent = Herald.number(data.count);
      panel.count.dataset.count = String(data.count);
      panel.status.textContent = data.count === 1 ? "user matches these rules now." : "users match these rules now.";
      panel.status.classList.remove("rb-bad");
      this.renderSample(data.sample);
      this.markError(this.errorPath, this.errorMessage);
    } catch (error) {
      if (sequence !== this.sequence) return;
      const details = (error.data && error.data.error && error.data.error.details) || {};
      panel.count.textContent = "—";
      delete panel.count.dataset.count;
      panel.status.textContent = error.message;
      panel.status.classList.add("rb-bad");
      panel.table.hidden = true;
      if (details.path) this.markError(details.path, error.message);
    } finally {
      if (sequence === this.sequence) this.root.classList.remove("rb-loading");
    }
  };

  function attributeText(attributes) {
    return Object.entries(attributes || {}).map(([k, v]) => k + ": " + (Array.isArray(v) ? v.join(", ") : String(v))).join(" · ");
  }

  RuleBuilder.prototype.renderSample = function (sample) {
    const rows = sample.map((user) => h("tr", {}, [
      h("td", {}, [h("a", { href: user.url, text: user.external_id })]),
      h("td", { class: "rb-attrs", text: attributeText(user.attributes), title: attributeText(user.attributes) }),
    ]));
    this.panel.body.replaceChildren(...rows);
    this.panel.table.hidden = rows.length === 0;
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-rule-builder]").forEach(function (root) {
      new RuleBuilder(root).start();
    });
  });
})();
