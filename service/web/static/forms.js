// Long forms: when the server answers with an error summary, focus moves to it, so keyboard and
// screen-reader users land next to the form with the list of what to correct (each a link).
(function () {
  "use strict";
  var summary = document.querySelector("[data-error-summary]");
  if (summary) { summary.focus(); }
})();
