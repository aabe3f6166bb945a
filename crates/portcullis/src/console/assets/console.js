// The Portcullis console's only script (the Content-Security-Policy allows no other): copy
// buttons, live updates of the approval queue and the audit tail, and the policy builder's
// two-way sync between its rows and the raw JSON, with validation as you type. Every page
// works without it; text from servers is only ever set with textContent.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : "";
  var WINDOWS = ["second", "minute", "hour", "day", "week", "month"];
  // The on_deny message the builder writes for an argument rule ("Refused: args.x eq 7.").
  var AUTO_MESSAGE = /^Refused: args\.\S+ \S+ [\s\S]*\.$/;

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button[data-copy]") : null;
    if (!b) return;
    var el = document.getElementById(b.getAttribute("data-copy"));
    if (!el) return;
    var text = el.tagName === "INPUT" ? el.value : el.textContent;
    var done = function () { b.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var range = document.createRange();
      range.selectNodeContents(el);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      if (document.execCommand("copy")) done();
    }
  });

  // Polls url every `ms` while `active()`; hands the answer's text to `apply`.
  function poll(url, ms, active, apply) {
    setInterval(function () {
      if (document.hidden || !active()) return;
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (t) { if (t !== null) apply(t); })
        .catch(function () {});
    }, ms);
  }

  var queue = document.getElementById("queue");
  if (queue) {
    poll(queue.getAttribute("data-live"), 2000, function () { return true; }, function (html) {
      var tpl = document.createElement("template");
      tpl.innerHTML = html;
      var fresh = tpl.content.querySelector("#queue");
      // Replace only when the set of pending requests changed: typing is not interrupted.
      if (fresh && fresh.getAttribute("data-ids") !== queue.getAttribute("data-ids")) {
        queue.replaceWith(fresh);
        queue = fresh;
      }
    });
  }

  var rowsEl = document.getElementById("audit-rows");
  var tail = document.getElementById("live-tail");
  if (rowsEl && tail) {
    poll(rowsEl.getAttribute("data-live"), 2000, function () { return tail.checked; }, function (html) {
      var tpl = document.createElement("template");
      tpl.innerHTML = "<table><tbody>" + html + "</tbody></table>";
      var body = tpl.content.querySelector("tbody");
      rowsEl.replaceChildren.apply(rowsEl, Array.prototype.slice.call(body.childNodes));
    });
  }

  var form = document.getElementById("builder");
  if (form) builder(form);

  function builder(form) {
    var ta = document.getElementById("document");
    var presets = JSON.parse(document.getElementById("presets").textContent || "{}");
    var rows = Array.prototype.slice.call(form.querySelectorAll("tr.rule-row"));
    var dflt = document.getElementById("b-default");
    var shadow = document.getElementById("b-shadow");
    var allMax = document.getElementById("b-all-max");
    var allWin = document.getElementById("b-all-window");
    var allScope = document.getElementById("b-all-scope");
    var allCounter = "all_tools_rate";
    var allEditable = true;

    function q(row, cls) { return row.querySelector("." + cls); }
    function parse() {
      try {
        var d = JSON.parse(ta.value);
        return d && typeof d === "object" && !Array.isArray(d) ? d : null;
      } catch (e) { return null; }
    }
    function only(o, keys) { return Object.keys(o).every(function (k) { return keys.indexOf(k) >= 0; }); }
    function isObj(v) { return v && typeof v === "object" && !Array.isArray(v); }
    // Sets a select's value; false when it has no such option.
    function pick(sel, v) { sel.value = v; return sel.value === v; }
    function setMode(row, m) { q(row, "mode").value = m; row.className = "rule-row m-" + m; }
    function argRule(e) {
      return isObj(e) && only(e, ["conditions", "on_deny"]) && Array.isArray(e.conditions) &&
        e.conditions.length === 1 && isObj(e.conditions[0]) && only(e.conditions[0], ["path", "op", "value"]) &&
        typeof e.conditions[0].path === "string" && e.conditions[0].path.indexOf("args.") === 0;
    }
    function unconditional(list) {
      return Array.isArray(list) && list.length === 1 && isObj(list[0]) && Array.isArray(list[0].conditions) &&
        list[0].conditions.length === 0;
    }

    // The row's controls from the document; rules the row cannot show are "custom".
    function rowFromDoc(row, d) {
      var name = row.getAttribute("data-tool");
      var tools = isObj(d.tools) ? d.tools : {};
      var r = Object.prototype.hasOwnProperty.call(tools, name) ? tools[name] : undefined;
      var hidden = Array.isArray(d.hide) && d.hide.indexOf(name) >= 0;
      row._rule = r;
      pick(q(row, "arg-path"), "");
      q(row, "arg-value").value = "";
      var mode = "custom";
      if (hidden) mode = r === undefined ? "hide" : "custom";
      else if (r === undefined) mode = "default";
      else if (isObj(r)) {
        var deny = r.deny_if || [], limits = r.limits || [];
        if (Object.keys(r).length === 0) mode = "allow";
        else if (only(r, ["deny_if"]) && unconditional(deny)) mode = "deny";
        else if (only(r, ["approve_if"]) && unconditional(r.approve_if)) mode = "approve";
        else if (only(r, ["limits", "deny_if"]) && Array.isArray(limits) && Array.isArray(deny) &&
                 limits.length <= 1 && deny.length <= 1 && (deny.length === 0 || argRule(deny[0]))) {
          mode = limits.length ? "limit" : "allow";
          if (limits.length) {
            var l = limits[0];
            if (!isObj(l) || !only(l, ["counter", "window", "max", "scope", "per"]) ||
                !pick(q(row, "window"), l.window) || !pick(q(row, "scope"), l.scope || "grant") ||
                !pick(q(row, "per"), l.per || "")) {
              mode = "custom";
            } else {
              q(row, "max").value = l.max;
              row.setAttribute("data-current-counter", l.counter);
            }
          }
          if (deny.length && mode !== "custom") {
            var c = deny[0].conditions[0];
            if (!pick(q(row, "arg-path"), c.path) || !pick(q(row, "arg-op"), c.op)) mode = "custom";
            else q(row, "arg-value").value = typeof c.value === "string" ? c.value : JSON.stringify(c.value);
          }
        }
      }
      setMode(row, mode);
    }

    function fromDoc() {
      var d = parse();
      if (!d) return;
      pick(dflt, d.default === "allow" ? "allow" : "deny");
      shadow.checked = d.mode === "shadow";
      var lim = isObj(d.all_tools) && Array.isArray(d.all_tools.limits) ? d.all_tools.limits : [];
      allEditable = lim.length <= 1;
      allMax.disabled = allWin.disabled = allScope.disabled = !allEditable;
      allMax.value = "";
      if (lim.length === 1) {
        allMax.value = lim[0].max;
        allEditable = pick(allWin, lim[0].window) && pick(allScope, lim[0].scope || "grant");
        allCounter = lim[0].counter || allCounter;
      }
      rows.forEach(function (row) { rowFromDoc(row, d); });
    }

    function argValue(s) {
      var t = s.trim();
      if (/^(-?\d|\[|\{|"|true$|false$|null$)/.test(t)) {
        try { return JSON.parse(t); } catch (e) { /* text */ }
      }
      return s;
    }

    // The rule a row stands for: an object, null (no entry), or undefined (custom: keep).
    function ruleOf(row) {
      var m = q(row, "mode").value, old = isObj(row._rule) ? row._rule : {};
      var first = function (k, f) { return Array.isArray(old[k]) && isObj(old[k][0]) && old[k][0][f] ? old[k][0][f] : null; };
      if (m === "custom") return undefined;
      if (m === "default" || m === "hide") return null;
      if (m === "deny") return { deny_if: [{ conditions: [], on_deny: first("deny_if", "on_deny") || "Denied by policy." }] };
      if (m === "approve") return { approve_if: [{ conditions: [], reason: first("approve_if", "reason") || "A human approves each call." }] };
      var r = {};
      if (m === "limit") {
        var l = {
          counter: row.getAttribute("data-current-counter") || row.getAttribute("data-counter"),
          window: q(row, "window").value,
          max: parseInt(q(row, "max").value, 10) || 0,
          scope: q(row, "scope").value
        };
        if (q(row, "per").value) l.per = q(row, "per").value;
        r.limits = [l];
      }
      var p = q(row, "arg-path").value;
      if (p) {
        // A message written by hand is kept; the one the rows wrote follows the rule.
        var op = q(row, "arg-op").value, v = q(row, "arg-value").value, kept = first("deny_if", "on_deny");
        r.deny_if = [{
          conditions: [{ path: p, op: op, value: argValue(v) }],
          on_deny: kept && !AUTO_MESSAGE.test(kept) ? kept : "Refused: " + p + " " + op + " " + v + "."
        }];
      }
      return r;
    }

    function toDoc() {
      var d = parse();
      if (!d) return; // the raw JSON does not parse: it is the one to fix first
      d.default = dflt.value;
      if (shadow.checked) d.mode = "shadow"; else delete d.mode;
      if (allEditable) {
        if (allMax.value) {
          d.all_tools = isObj(d.all_tools) ? d.all_tools : {};
          d.all_tools.limits = [{ counter: allCounter, window: allWin.value, max: parseInt(allMax.value, 10) || 0, scope: allScope.value }];
        } else if (isObj(d.all_tools) && d.all_tools.limits) {
          delete d.all_tools.limits;
          if (Object.keys(d.all_tools).length === 0) delete d.all_tools;
        }
      }
      var old = isObj(d.tools) ? d.tools : {};
      var next = {}, hide = Array.isArray(d.hide) ? d.hide.slice() : [];
      rows.forEach(function (row) {
        var name = row.getAttribute("data-tool"), r = ruleOf(row);
        if (r === undefined) return;
        next[name] = r;
        hide = hide.filter(function (h) { return h !== name; });
        if (q(row, "mode").value === "hide") hide.push(name);
        row._rule = r === null ? undefined : r;
      });
      // Keep the order of the tools already there; new ones go last.
      var tools = {};
      Object.keys(old).forEach(function (k) {
        if (!Object.prototype.hasOwnProperty.call(next, k)) tools[k] = old[k];
        else if (next[k] !== null) tools[k] = next[k];
      });
      Object.keys(next).forEach(function (k) {
        if (next[k] !== null && !Object.prototype.hasOwnProperty.call(tools, k)) tools[k] = next[k];
      });
      d.tools = tools;
      if (hide.length) d.hide = hide; else delete d.hide;
      ta.value = JSON.stringify(d, null, 2);
      rows.forEach(function (row) { row.className = "rule-row m-" + q(row, "mode").value; });
      check();
    }

    var timer = null;
    function check() {
      clearTimeout(timer);
      document.getElementById("valid-state").textContent = "Checking…";
      form.setAttribute("data-checked", "no");
      timer = setTimeout(function () {
        var body = new URLSearchParams();
        body.set("document", ta.value);
        fetch("/ui/validate", {
          method: "POST",
          credentials: "same-origin",
          headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
          body: body.toString()
        }).then(function (r) { return r.json(); }).then(show).catch(function () {});
      }, 250);
    }
    function show(res) {
      var ul = document.getElementById("errors"), st = document.getElementById("valid-state");
      var errors = res.errors || [];
      ul.textContent = "";
      errors.forEach(function (e) {
        var li = document.createElement("li"), c = document.createElement("code");
        c.textContent = e.locator;
        li.appendChild(c);
        li.appendChild(document.createTextNode(" " + e.message));
        ul.appendChild(li);
      });
      st.textContent = errors.length ? errors.length + (errors.length === 1 ? " error" : " errors") : "Valid.";
      st.className = errors.length ? "bad" : "ok";
      form.setAttribute("data-checked", errors.length ? "invalid" : "valid");
    }

    form.addEventListener("change", function (ev) { if (ev.target !== ta) toDoc(); });
    form.addEventListener("input", function (ev) {
      if (ev.target === ta) { fromDoc(); check(); }
      else if (ev.target.tagName === "INPUT" && ev.target.type !== "checkbox") toDoc();
    });
    form.addEventListener("click", function (ev) {
      var b = ev.target.closest ? ev.target.closest("button[data-preset]") : null;
      if (!b) return;
      var p = presets[b.getAttribute("data-preset")];
      if (!p) return;
      ta.value = JSON.stringify(p, null, 2);
      fromDoc();
      check();
    });
    fromDoc();
    check();
  }
})();
