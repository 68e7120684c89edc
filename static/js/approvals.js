// The approval view's chart: a threshold's recent responded decisions by confidence, with the live value and
// the proposed (or decided) one marked. Data comes from the page (json_script), so nothing is fetched.
(function () {
  "use strict";
  var canvas = document.getElementById("threshold-chart");
  var source = document.getElementById("threshold-chart-data");
  if (!canvas || !source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);

  // Bars fill [0, 1] evenly, so a confidence value maps straight onto the x axis's pixel range.
  var markers = {
    id: "thresholdMarkers",
    afterDatasetsDraw: function (chart) {
      var area = chart.chartArea, ctx = chart.ctx;
      var marks = [
        { value: data.current, label: "live " + data.current, color: "#1d2330", dash: [] },
        { value: data.proposed, label: (data.proposedLabel || "proposed") + " " + data.proposed, color: "#2f5bea", dash: [6, 4] }
      ];
      // A decided value that is live now is one line, not two labels on top of each other.
      if (data.proposed === data.current) {
        marks[0].label += " (" + (data.proposedLabel || "proposed") + ")";
        marks.pop();
      }
      marks.forEach(function (m, i) {
        if (m.value === null || m.value === undefined) return;
        var x = area.left + m.value * (area.right - area.left);
        ctx.save();
        ctx.strokeStyle = m.color;
        ctx.lineWidth = 2;
        ctx.setLineDash(m.dash);
        ctx.beginPath();
        ctx.moveTo(x, area.top);
        ctx.lineTo(x, area.bottom);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = m.color;
        ctx.font = "12px system-ui, sans-serif";
        ctx.textAlign = x > (area.left + area.right) / 2 ? "right" : "left";
        ctx.fillText(m.label, x + (ctx.textAlign === "right" ? -4 : 4), area.top + 12 + i * 14);
        ctx.restore();
      });
    }
  };

  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "approved", data: data.approved, backgroundColor: "#1f8a4c" },
        { label: "dismissed", data: data.dismissed, backgroundColor: "#c0362c" },
        { label: "escalated", data: data.escalated, backgroundColor: "#b7791f" }
      ]
    },
    options: {
      animation: false,
      responsive: true,
      scales: {
        x: { stacked: true, title: { display: true, text: (data.scoreName || "confidence") + " (bin start)" } },
        y: { stacked: true, beginAtZero: true, title: { display: true, text: "decisions" }, ticks: { precision: 0 } }
      },
      plugins: { legend: { position: "bottom" } }
    },
    plugins: [markers]
  });
  canvas.setAttribute("data-rendered", "true");
})();
