/* The rule form's builder (recadmin/rules/admin.py): rows of field / operator / value, only the
   chosen kind's fields, the live match count, the pin picker and "what this rule changes".
   Plain script, no library: the form also saves without it (the server turns rows into JSON). */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function csrf(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  ready(function () {
    var box = document.querySelector(".rb-builder");
    var form = box ? box.closest("form") : document.querySelector("#businessrule_form");
    if (!form) return;
    var kindSelect = form.querySelector("[name=kind]");

    /* --- only the chosen kind's fields ------------------------------------------------------ */
    function showKind() {
      var kind = kindSelect ? kindSelect.value : "";
      form.querySelectorAll("fieldset[class*='rb-for-'], .rb-for-filter, .rb-for-boost, .rb-for-bury, .rb-for-pin").forEach(function (fs) {
        var wanted = !kind || fs.classList.contains("rb-for-" + kind);
        fs.style.display = wanted ? "" : "none";
      });
      var mode = form.querySelector("[name=filter_mode]");
      var modeRow = mode ? mode.closest(".form-row, .field-row, [class*='field-filter_mode']") || mode.parentElement : null;
      if (modeRow) modeRow.style.display = kind === "filter" || !kind ? "" : "none";
    }
    if (kindSelect) {
      kindSelect.addEventListener("change", function () { showKind(); if (refreshCount) refreshCount(); });
      showKind();
    }

    /* --- the pin picker ---------------------------------------------------------------------- */
    var pinInput = form.querySelector("input.rb-shop-ids");
    var itemsUrl = box ? box.dataset.itemsUrl : "";
    if (pinInput && itemsUrl) {
      var wrapper = el("div", { "class": "rb-picker" });
      pinInput.parentNode.insertBefore(wrapper, pinInput);
      wrapper.appendChild(pinInput);
      var search = el("input", { "class": "rb-item-search", placeholder: "Search items by shop id or title", "aria-label": "search items", autocomplete: "off" });
      search.style.cssText = "margin-top:.4rem;border:1px solid rgb(209 213 219);border-radius:6px;padding:6px 10px;width:100%";
      var results = el("ul", { "class": "rb-picker-results", role: "listbox" });
      results.style.cssText = "background:#fff;border:1px solid rgb(209 213 219);border-radius:6px;display:none";
      wrapper.appendChild(search);
      wrapper.appendChild(results);
      var current = function () {
        return pinInput.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      };
      var add = function (shopId) {
        var ids = current();
        if (ids.indexOf(shopId) < 0) ids.push(shopId);
        pinInput.value = ids.join(", ");
        pinInput.dispatchEvent(new Event("change", { bubbles: true }));
        results.style.display = "none";
        search.value = "";
      };
      search.addEventListener("input", debounce(function () {
        var q = search.value.trim();
        if (!q) { results.style.display = "none"; return; }
        fetch(itemsUrl + "?q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (data) {
            results.innerHTML = "";
            (data.results || []).forEach(function (item) {
              var li = el("li", { role: "option", "data-shop-id": item.shop_id, "class": "rb-picker-option" });
              li.style.cssText = "padding:4px 10px;cursor:pointer";
              li.textContent = item.shop_id + " · " + (item.title || "") + (item.brand ? " · " + item.brand : "") + (item.active ? "" : " (inactive)");
              li.addEventListener("mousedown", function (event) { event.preventDefault(); add(item.shop_id); });
              results.appendChild(li);
            });
            if (!results.children.length) results.appendChild(el("li", { style: "padding:4px 10px" }, "No item found."));
            results.style.display = "block";
          });
      }, 200));
      search.addEventListener("keydown", function (event) {
        if (event.key === "Enter") {
          event.preventDefault();
          var first = results.querySelector(".rb-picker-option");
          if (first) add(first.getAttribute("data-shop-id"));
        }
      });
      search.addEventListener("blur", function () { setTimeout(function () { results.style.display = "none"; }, 150); });
    }

    /* --- "what this rule changes": the preview engine on the unsaved form ------------------- */
    var effectBox = form.querySelector(".rb-effect-box");
    if (effectBox) {
      var submitRow = form.querySelector(".submit-row, #submit-row, [id*=submit]");
      var lastFieldset = form.querySelectorAll("fieldset");
      var anchor = lastFieldset.length ? lastFieldset[lastFieldset.length - 1] : null;
      if (anchor && anchor.parentNode) anchor.parentNode.insertBefore(effectBox, anchor.nextSibling);
      else if (submitRow) submitRow.parentNode.insertBefore(effectBox, submitRow);
      effectBox.style.margin = "1rem 0";
      var sceneSelect = form.querySelector("[name=scenes]");
      var sceneInput = effectBox.querySelector(".rb-effect-scene");
      effectBox.querySelector(".rb-effect-run").addEventListener("click", function () {
        var data = new FormData(form);
        var scene = sceneInput.value.trim();
        var ticked = form.querySelector("input[name=scenes]:checked");
        var chosen = ticked ? ticked.closest("label") || ticked.parentElement :
          (sceneSelect && sceneSelect.selectedOptions && sceneSelect.selectedOptions[0]);
        if (!scene && chosen) scene = chosen.textContent.trim();
        var editing = window.location.pathname.match(/\/(\d+)\/change\/?$/);
        if (editing) data.set("effect_rule", editing[1]);
        data.set("effect_scene", scene || "home");
        data.set("effect_customer", effectBox.querySelector(".rb-effect-customer").value.trim());
        var out = effectBox.querySelector(".rb-effect");
        out.textContent = "Computing...";
        fetch(box.dataset.effectUrl, { method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRFToken": csrf(form) } })
          .then(function (r) { return r.text(); })
          .then(function (html) { out.innerHTML = html; })
          .catch(function (err) { out.textContent = "Could not compute the effect: " + err; });
      });
    }

    if (!box) return;

    /* --- the condition builder --------------------------------------------------------------- */
    var schema = JSON.parse(document.getElementById("rb-schema").textContent);
    var fieldsByName = {};
    schema.fields.forEach(function (f) { fieldsByName[f.name] = f; });
    var rowsBox = box.querySelector(".rb-rows");
    var modeInput = box.querySelector(".rb-mode");
    var textarea = box.querySelector(".rb-json textarea");
    var countBox = box.querySelector(".rb-count");

    function fillOps(row, keep) {
      var field = fieldsByName[row.querySelector(".rb-field").value];
      var opSelect = row.querySelector(".rb-op");
      var previous = keep || opSelect.value;
      opSelect.innerHTML = "";
      (field ? field.ops : []).forEach(function (op) {
        var option = el("option", { value: op.name }, op.label);
        if (op.name === previous) option.selected = true;
        opSelect.appendChild(option);
      });
      hint(row);
      row.querySelector(".rb-attr").style.display = row.querySelector(".rb-field").value === "attributes." ? "" : "none";
    }

    function hint(row) {
      var field = fieldsByName[row.querySelector(".rb-field").value];
      var opName = row.querySelector(".rb-op").value;
      var kind = "";
      (field ? field.ops : []).forEach(function (op) { if (op.name === opName) kind = op.kind; });
      row.querySelector(".rb-value").placeholder = schema.hints[kind] || "value";
    }

    function wire(row) {
      row.querySelector(".rb-field").addEventListener("change", function () { fillOps(row); changed(); });
      row.querySelector(".rb-op").addEventListener("change", function () { hint(row); changed(); });
      row.querySelector(".rb-value").addEventListener("input", changed);
      row.querySelector(".rb-attr").addEventListener("input", changed);
      row.querySelector(".rb-remove").addEventListener("click", function () {
        if (rowsBox.children.length > 1) row.remove();
        else { row.querySelector(".rb-field").value = ""; row.querySelector(".rb-value").value = ""; fillOps(row); }
        changed();
      });
      row.querySelector(".rb-attr").style.display = row.querySelector(".rb-field").value === "attributes." ? "" : "none";
      hint(row);
    }

    Array.prototype.forEach.call(rowsBox.children, wire);
    box.querySelector(".rb-add").addEventListener("click", function () {
      var template = rowsBox.children[0];
      var row = template.cloneNode(true);
      row.querySelector(".rb-field").value = "";
      row.querySelector(".rb-value").value = "";
      row.querySelector(".rb-attr").value = "";
      rowsBox.appendChild(row);
      fillOps(row);
      wire(row);
    });
    box.querySelector(".rb-match").addEventListener("change", changed);
    textarea.addEventListener("input", function () { modeInput.value = "json"; refreshCount(); });

    function changed() {
      modeInput.value = "builder";
      refreshCount();
    }

    var refreshCount = debounce(function () {
      var kind = kindSelect ? kindSelect.value : "";
      if (kind === "pin" || !box.dataset.countUrl) { countBox.textContent = ""; return; }
      var data = new FormData();
      data.set("condition_mode", modeInput.value);
      data.set("condition", textarea.value);
      data.set("cb_match", box.querySelector(".rb-match").value);
      Array.prototype.forEach.call(rowsBox.children, function (row) {
        data.append("cb_field", row.querySelector(".rb-field").value);
        data.append("cb_attr", row.querySelector(".rb-attr").value);
        data.append("cb_op", row.querySelector(".rb-op").value);
        data.append("cb_value", row.querySelector(".rb-value").value);
      });
      fetch(box.dataset.countUrl, { method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRFToken": csrf(form) } })
        .then(function (r) { return r.json(); })
        .then(function (result) {
          countBox.classList.toggle("rb-error", !!result.error);
          if (result.error) { countBox.textContent = result.error; return; }
          if (modeInput.value === "builder" && result.condition) textarea.value = JSON.stringify(result.condition, null, 2);
          if (result.count === null || result.count === undefined) { countBox.textContent = "No condition yet."; return; }
          countBox.textContent = "Matches " + result.count + " of " + result.total + " active items" +
            (result.sample && result.sample.length ? " (e.g. " + result.sample.join(", ") + ")" : "") + ".";
          countBox.setAttribute("data-count", String(result.count));
        })
        .catch(function () { countBox.textContent = ""; });
    }, 250);
    refreshCount();
  });
})();
