// The dashboard's period form: choosing a date picks "other dates" (no inline scripts: CSP).
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target || target.type !== "date" || !target.closest(".period-form")) return;
    var custom = document.getElementById("period-custom");
    if (custom) custom.checked = true;
  });
})();
