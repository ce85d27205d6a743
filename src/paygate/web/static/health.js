// The health page's charts (Chart.js, served from /static/vendor). The series come from a
// JSON data block in the page (never executed); htmx replaces the panel every 30 s and the
// charts are drawn again from the new block.
(function () {
  "use strict";

  const charts = {};

  function series() {
    const block = document.getElementById("health-series");
    if (!block) return null;
    try { return JSON.parse(block.textContent); } catch (e) { return null; }
  }

  function options(unit) {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      scales: {
        x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } },
        y: { beginAtZero: true, title: { display: true, text: unit } },
      },
    };
  }

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas || typeof window.Chart === "undefined") return;
    if (charts[id]) charts[id].destroy();
    charts[id] = new window.Chart(canvas, config);
  }

  function drawAll() {
    const data = series();
    if (!data) return;
    draw("latency-chart", {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          { label: "p50", data: data.p50, borderColor: "#4f46e5", backgroundColor: "#4f46e5", spanGaps: true, pointRadius: 2 },
          { label: "p95", data: data.p95, borderColor: "#f79009", backgroundColor: "#f79009", spanGaps: true, pointRadius: 2 },
        ],
      },
      options: options("ms"),
    });
    draw("errors-chart", {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [
          { label: "Live calls failed", data: data.errorRate, backgroundColor: "#d92d20" },
          { label: "Checks failed", data: data.checkFailures, backgroundColor: "#98a2b3" },
        ],
      },
      options: Object.assign(options("%"), {}),
    });
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  // After a poll the canvases are new elements: draw again whenever they changed.
  document.body.addEventListener("htmx:afterSettle", function () {
    const canvas = document.getElementById("latency-chart");
    if (canvas && (!charts["latency-chart"] || charts["latency-chart"].canvas !== canvas)) drawAll();
  });
})();
