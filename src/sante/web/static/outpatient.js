// Sante outpatient pages: the few behaviours the prescription form needs beyond htmx (no inline scripts: the
// Content-Security-Policy allows scripts from /static only). Without them the form still works: the server fills
// in the quantity when it is left empty.
(function () {
  "use strict";
  function number(text) {
    var n = parseFloat(String(text || "").trim().replace(/\s/g, "").replace(",", "."));
    return isFinite(n) ? n : NaN;
  }
  function field(form, name) { return form.querySelector('[name="' + name + '"]'); }

  // The quantity to dispense follows dose × times a day × days until the doctor types their own.
  function recompute(form) {
    var quantity = field(form, "quantity");
    if (!quantity || quantity.dataset.edited === "1") return;
    var dose = number(field(form, "dose").value), times = number(field(form, "frequency_per_day").value),
        days = number(field(form, "duration_days").value);
    quantity.value = dose > 0 && times > 0 && days > 0 ? String(Math.ceil(Math.round(dose * times * days * 1e6) / 1e6)) : "";
  }
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest("form.prescription-form");
    if (!form) return;
    if (event.target.name === "quantity") {
      event.target.dataset.edited = event.target.value ? "1" : "0";
    } else if (["dose", "frequency_per_day", "duration_days"].indexOf(event.target.name) >= 0) {
      recompute(form);
    }
  });
  // Choosing a medicine sets its usual unit and route.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.name !== "medication") return;
    var form = input.closest("form.prescription-form");
    if (!form) return;
    [["unit", input.dataset.unit], ["route", input.dataset.route]].forEach(function (pair) {
      var select = field(form, pair[0]);
      if (select && pair[1] && select.querySelector('option[value="' + pair[1] + '"]')) select.value = pair[1];
    });
  });
})();
