/* Clawfleet dashboard: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  function copyText(text, button) {
    var done = function () {
      var old = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = old; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
      return;
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selectable */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (source) copyText(source.textContent.trim(), button);
  });

  // Deploy wizard: show the base URL only for a custom endpoint, suggest a model per provider.
  function setupDeploy(form) {
    var hintsNode = document.getElementById("provider-hints");
    var hints = hintsNode ? JSON.parse(hintsNode.textContent) : {};
    var model = form.querySelector("[name=model_name]");
    var customOnly = form.querySelectorAll(".if-custom");
    var suggested = Object.keys(hints).map(function (k) { return hints[k]; });
    function sync() {
      var checked = form.querySelector("[name=provider]:checked");
      var provider = checked ? checked.value : "";
      customOnly.forEach(function (el) {
        var hasError = el.classList.contains("field-error");
        el.hidden = provider !== "custom" && !hasError;
      });
      if (model && hints[provider]) {
        model.placeholder = hints[provider];
        if (!model.value || suggested.indexOf(model.value) !== -1) model.value = hints[provider];
      }
    }
    form.addEventListener("change", function (event) {
      if (event.target.name === "provider") sync();
    });
    sync();
    form.addEventListener("submit", function () {
      var button = form.querySelector("[data-busy-label]");
      if (button) {
        button.setAttribute("aria-disabled", "true");
        button.textContent = button.getAttribute("data-busy-label");
        setTimeout(function () { button.disabled = true; }, 0);
      }
    });
  }

  // Typed confirmation: the delete button unlocks only when the name matches.
  function setupConfirm(form) {
    var input = form.querySelector("input[name=confirm]");
    var button = form.querySelector("[data-confirm-button]");
    if (!input || !button || input.disabled) return;
    var wanted = form.getAttribute("data-confirm-value");
    function sync() { button.disabled = input.value.trim() !== wanted; }
    input.addEventListener("input", sync);
    sync();
  }

  function init() {
    var deploy = document.getElementById("deploy-form");
    if (deploy) setupDeploy(deploy);
    document.querySelectorAll(".confirm-form").forEach(setupConfirm);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

/* Log tails read bottom-up: after htmx puts new logs in, show the newest line. */
document.addEventListener("htmx:afterSwap", function (event) {
  var pre = event.target && event.target.querySelector && event.target.querySelector("pre.logs");
  if (pre) pre.scrollTop = pre.scrollHeight;
});
