// The proposal's decision screen: draws the candle chart (TradingView Lightweight Charts,
// vendored), asks for confirmation before a decision is sent, and refreshes the execution's
// state from our own JSON endpoint until it is final. Nothing is loaded from elsewhere.
(function () {
  "use strict";
  var root = document.getElementById("decision");
  if (!root) { return; }

  function drawChart() {
    var holder = document.getElementById("decision-chart");
    var source = document.getElementById("decision-chart-data");
    if (!holder || !source || !window.LightweightCharts) { return; }
    var data = JSON.parse(source.textContent);
    if (!data.candles.length) { return; }
    var LWC = window.LightweightCharts;
    var chart = LWC.createChart(holder, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#333333" },
      timeScale: { timeVisible: true, secondsVisible: false },
      localization: { dateFormat: "yyyy-MM-dd" },
    });
    var series = chart.addSeries(LWC.CandlestickSeries, {
      upColor: "#1e7b34", downColor: "#ba2121", borderVisible: false,
      wickUpColor: "#1e7b34", wickDownColor: "#ba2121",
    });
    series.setData(data.candles);
    var proposal = data.proposal;
    if (proposal.price !== null) {
      series.createPriceLine({ price: proposal.price, color: "#2962ff", lineWidth: 1,
        lineStyle: LWC.LineStyle.Dashed, axisLabelVisible: true, title: "proposal" });
    }
    if (data.price_now !== null) {
      series.createPriceLine({ price: data.price_now, color: "#555555", lineWidth: 1,
        lineStyle: LWC.LineStyle.Solid, axisLabelVisible: true, title: "now" });
    }
    var buy = proposal.side === "buy";
    LWC.createSeriesMarkers(series, [{
      time: proposal.time, position: buy ? "belowBar" : "aboveBar",
      color: "#2962ff", shape: buy ? "arrowUp" : "arrowDown", text: proposal.label,
    }]);
    chart.timeScale().fitContent();
    holder.setAttribute("data-drawn", "1");
  }

  function confirmDecisions() {
    var forms = root.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  function text(parent, tag, value) {
    var node = document.createElement(tag);
    node.textContent = value;
    parent.appendChild(node);
    return node;
  }

  function showState(state) {
    document.getElementById("decision-proposal-status").textContent = state.proposal_status;
    var holder = document.getElementById("decision-execution");
    var execution = state.execution;
    holder.textContent = "";
    if (!execution) { return; }
    holder.appendChild(document.createTextNode("· "));
    var link = text(holder, "a", "execution #" + execution.id);
    link.href = root.getAttribute("data-execution-url").replace("/0/", "/" + execution.id + "/");
    holder.appendChild(document.createTextNode(" "));
    text(holder, "strong", execution.status).id = "decision-execution-status";
    if (execution.exchange_order_id) {
      holder.appendChild(document.createTextNode(" order " + execution.exchange_order_id));
    }
    if (execution.average_price) {
      holder.appendChild(document.createTextNode(" filled at " + execution.average_price +
        (execution.filled_eur ? " for " + execution.filled_eur + " EUR" : "") +
        (execution.fee_eur ? ", fee " + execution.fee_eur + " EUR" : "")));
    }
    if (execution.error_code) {
      holder.appendChild(document.createTextNode(" "));
      text(holder, "code", execution.error_code);
    }
  }

  function poll() {
    if (root.getAttribute("data-final") === "1") { return; }
    fetch(root.getAttribute("data-state-url"), { credentials: "same-origin",
      headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (state) {
          showState(state);
          if (state.final) { root.setAttribute("data-final", "1"); return; }
        }
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }

  drawChart();
  confirmDecisions();
  poll();
})();
