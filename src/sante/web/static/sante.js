// Sante web app: the few behaviours the pages need beyond htmx. No inline scripts (the Content-Security-Policy
// allows scripts from /static only).
(function () {
  "use strict";
  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }
  // "/" anywhere (outside a field) goes to the patient search box.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var box = document.getElementById("patient-search");
    if (!box) return;
    event.preventDefault();
    box.focus();
    box.select();
  });
  // Escape in the search box clears it (and its results).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !event.target || event.target.id !== "patient-search") return;
    if (event.target.value) {
      event.target.value = "";
      event.target.dispatchEvent(new Event("input", { bubbles: true }));
    }
  });
})();
