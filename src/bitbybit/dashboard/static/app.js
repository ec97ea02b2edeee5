// The dashboard's own script (no inline scripts: the CSP forbids them). Progressive: every page
// works without it; with it, copy buttons copy and charts draw.
"use strict";

function setUp(root) {
  root.querySelectorAll("[data-copy]").forEach(function (button) {
    if (button.dataset.ready) return;
    button.dataset.ready = "1";
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.dataset.copy);
      if (!source || !navigator.clipboard) return;
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
      });
    });
  });
  root.querySelectorAll("[data-chart]").forEach(function (box) {
    if (box.dataset.ready || typeof uPlot === "undefined") return;
    box.dataset.ready = "1";
    var data = JSON.parse(box.dataset.chart);
    var opts = {
      width: Math.max(320, box.clientWidth || 640),
      height: 220,
      scales: { x: { time: true } },
      series: [
        {},
        { label: "Deliveries", stroke: "#1f3a93", width: 2 },
        { label: "Failures", stroke: "#a3161b", width: 2 },
      ],
    };
    new uPlot(opts, [data.t, data.deliveries, data.failures], box);
  });
}

document.addEventListener("DOMContentLoaded", function () { setUp(document); });
document.addEventListener("htmx:afterSettle", function (event) { setUp(event.target); });
