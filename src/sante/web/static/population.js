// The population page's filters (no inline scripts: CSP): choosing a date picks "other dates"; choosing another
// province clears the commune (it belongs to the old one) and shows the new province at once.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target || !target.closest(".pop-filters")) return;
    if (target.type === "date") {
      var custom = document.getElementById("period-custom");
      if (custom) custom.checked = true;
    } else if (target.id === "f-province") {
      var commune = document.getElementById("f-commune");
      if (commune) commune.value = "";
      target.form.requestSubmit();
    }
  });
})();
