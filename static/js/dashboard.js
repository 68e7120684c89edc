// The dashboard's charts of one agent: its four numbers week by week and each threshold's live value over time,
// with the proposals, decisions and rollbacks marked. Data comes from the page (json_script), so nothing is
// fetched.
(function () {
  "use strict";
  const source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const DAY = 86400000;

  function draw(canvas, config) {
    if (!canvas) return;
    new Chart(canvas, config);
    canvas.setAttribute("data-rendered", "true");
  }

  // The current week is not over: its value is not on the line (it would read as a drop) but drawn apart, as a
  // hollow point joined to the last finished week by a dashed segment, labelled "so far".
  function soFarData(values, value) {
    const out = values.map(() => null);
    const last = out.length - 1;
    if (value === null || value === undefined || last < 0) return out;
    out[last] = value;
    for (let i = last - 1; i >= 0; i--) {
      if (values[i] !== null) { out[i] = values[i]; break; }
    }
    return out;
  }

  const colours = { dismissalRate: "#c0362c", escalationRate: "#b7791f", responseRate: "#2f5bea", acceptanceRate: "#1f8a4c" };
  for (const [key, values] of Object.entries(data.series)) {
    const colour = colours[key];
    const datasets = [
      { label: key, data: values, borderColor: colour, backgroundColor: colour, spanGaps: true, tension: 0.2, clip: false },
      {
        label: "this week so far", partial: true, data: soFarData(values, data.soFar[key]), borderColor: colour,
        backgroundColor: "#fff", borderDash: [5, 4], pointRadius: (c) => (c.dataIndex === values.length - 1 ? 5 : 0),
        pointBorderWidth: 2, spanGaps: true, clip: false,
      },
    ];
    if (key === "dismissalRate") {
      datasets.push({ label: "healthy (15 %)", data: values.map(() => data.healthyDismissal), borderColor: "#98a2b3", borderDash: [4, 4], pointRadius: 0 });
    }
    const labels = data.weeks.map((w, i) => (i === data.weeks.length - 1 ? [w, "so far"] : w));
    draw(document.getElementById("chart-" + key), {
      type: "line",
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false,
        layout: { padding: { top: 8, right: 12 } },
        scales: { y: { min: 0, suggestedMax: key === "responseRate" || key === "acceptanceRate" ? 100 : 50 } },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (c) => `${c.dataset.partial ? (c.dataIndex === values.length - 1 ? "so far" : "last full week") : c.dataset.label}: ${c.parsed.y} %` } },
        },
      },
    });
  }

  const marks = { proposed: ["triangle", "#2f5bea"], accepted: ["circle", "#1f8a4c"], modified: ["circle", "#1f8a4c"], rejected: ["crossRot", "#667085"], "rolled back": ["rectRot", "#c0362c"], manual: ["rect", "#b7791f"] };
  const day = (iso) => Date.parse(iso);
  const now = day(data.now);
  data.thresholds.forEach((h, i) => {
    const steps = h.steps.map((p) => ({ x: day(p.x), y: p.y }));
    if (steps.length) steps.push({ x: now, y: steps[steps.length - 1].y });
    const datasets = [{ label: h.name, data: steps, stepped: "before", borderColor: "#1d2330", pointRadius: 0, showLine: true, clip: false }];
    for (const [kind, [shape, colour]] of Object.entries(marks)) {
      const points = h.events.filter((e) => e.kind === kind).map((e) => ({ x: day(e.x), y: e.y, proposal: e.proposal, who: e.who }));
      if (points.length) datasets.push({ label: kind, data: points, pointStyle: shape, pointRadius: 7, borderColor: colour, backgroundColor: colour, showLine: false, clip: false });
    }
    // At least a week on the axis, a tick a day or wider, each date written once; the markers keep a margin.
    const xs = datasets.flatMap((d) => d.data.map((p) => p.x));
    const last = Math.max(now, ...xs);
    const first = Math.min(last - 7 * DAY, ...xs);
    const span = last - first;
    const ys = datasets.flatMap((d) => d.data.map((p) => p.y));
    const low = Math.min(...ys), high = Math.max(...ys);
    const pad = Math.max((high - low) * 0.15, Math.abs(high) * 0.1, 0.05);
    draw(document.getElementById("threshold-" + i), {
      type: "scatter",
      data: { datasets: datasets },
      options: {
        animation: false,
        layout: { padding: { top: 10, right: 14, left: 4 } },
        scales: {
          x: {
            type: "linear", min: first - span * 0.02, max: last + span * 0.02,
            ticks: {
              stepSize: DAY * Math.max(1, Math.ceil(span / DAY / 8)),
              callback: function (v, index, ticks) {
                const label = new Date(v).toISOString().slice(0, 10);
                return index > 0 && new Date(ticks[index - 1].value).toISOString().slice(0, 10) === label ? "" : label;
              },
            },
          },
          y: { min: low >= 0 ? Math.max(0, low - pad) : low - pad, max: high + pad },
        },
        plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.y}` + (c.raw.proposal ? ` (proposal #${c.raw.proposal}${c.raw.who ? ", " + c.raw.who : ""})` : "") } } },
      },
    });
  });
})();
