// Share dialog, result page and "My shares": copy a link, tidy the form.
// A file, not inline script (Content-Security-Policy).
(function () {
  "use strict";

  function statusRegionFor(button) {
    // The nearest aria-live region after the button, else the page's first one.
    var box = button.closest(".share-link-box");
    return (box && box.querySelector(".copy-status")) || document.querySelector(".copy-status");
  }

  function announce(button, text) {
    var region = statusRegionFor(button);
    if (region) {
      region.textContent = "";
      // A fresh text node so that screen readers announce a repeated "Copied".
      window.setTimeout(function () { region.textContent = text; }, 30);
    }
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.classList.add("copied");
    window.setTimeout(function () { button.classList.remove("copied"); }, 2000);
  }

  function fallbackCopy(input) {
    // Older browsers and plain-http intranets (no Clipboard API outside a
    // secure context): select the text and ask the browser to copy it.
    var hidden = input.classList.contains("visually-hidden");
    input.removeAttribute("aria-hidden");
    input.focus();
    input.select();
    input.setSelectionRange(0, input.value.length);
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    if (hidden) { input.setAttribute("aria-hidden", "true"); }
    return ok;
  }

  function copy(button) {
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    if (!input) { return; }
    var text = input.value;
    var done = function () { announce(button, "Copied"); };
    var failed = function () {
      if (fallbackCopy(input)) { done(); }
      else { announce(button, "Could not copy: the link is selected, press Ctrl+C (⌘C) to copy it."); }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, failed);
    } else {
      failed();
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy-link");
    if (button) {
      event.preventDefault();
      copy(button);
    }
  });

  // Clicking into a read-only link selects all of it, ready to copy by hand.
  document.addEventListener("focusin", function (event) {
    if (event.target.classList && event.target.classList.contains("share-url")) {
      event.target.select();
    }
  });

  // Share form: typing a custom expiry chooses "Custom"; a direct link cannot
  // have a download limit, so that box is disabled while "Direct" is chosen.
  var form = document.querySelector("form.share-form");
  if (!form) { return; }
  var custom = form.querySelector("input[name=custom_value]");
  var unit = form.querySelector("select[name=custom_unit]");
  var customRadio = form.querySelector("input[name=expiry][value=custom]");
  function chooseCustom() { if (customRadio) { customRadio.checked = true; } }
  if (custom) { custom.addEventListener("input", chooseCustom); custom.addEventListener("focus", chooseCustom); }
  if (unit) { unit.addEventListener("change", chooseCustom); }
  var limit = form.querySelector("input[name=max_downloads]");
  function syncKind() {
    var direct = form.querySelector("input[name=kind][value=direct]");
    if (limit && direct) { limit.disabled = direct.checked; }
  }
  Array.prototype.forEach.call(form.querySelectorAll("input[name=kind]"), function (radio) {
    radio.addEventListener("change", syncKind);
  });
  syncKind();
})();
