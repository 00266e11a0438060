// The search page: builds a POST /v1/search request, renders hits with per-leg scores.
// Everything user- or server-supplied is written with textContent (never innerHTML).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const LEGS = ["bm25", "dense", "sparse"];
  const LEG_LABELS = { bm25: "BM25", dense: "dense", sparse: "SPLADE" };
  let lastRequest = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return Number(value).toFixed(digits === undefined ? 4 : digits);
  }

  function buildRequest() {
    const legs = {};
    for (const leg of LEGS) legs[leg] = { enabled: $("leg-" + leg).checked };
    const body = {
      index: $("index").value.trim(),
      query: $("query").value,
      size: Number($("size").value) || 10,
      explain: true,
      fusion: { method: $("fusion").value },
      bm25: legs.bm25,
      dense: legs.dense,
      sparse: legs.sparse,
      rerank: { enabled: $("rerank").checked ? true : false },
    };
    // Unchecked: the server's default (a profile may turn MMR on); checked: on.
    if ($("diversify").checked) body.diversify = { enabled: true };
    const engine = $("engine").value;
    if (engine) body.engine = engine;
    return body;
  }

  function headers() {
    const h = { "Content-Type": "application/json", Accept: "application/json" };
    const key = $("api-key").value.trim();
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    const box = $("error");
    box.textContent = "";
    box.hidden = true;
  }

  function legTable(explain) {
    const table = el("table", "legs-table");
    const head = el("tr");
    for (const title of ["leg", "raw score", "rank", "normalized", "contribution"]) {
      head.appendChild(el("th", null, title));
    }
    const thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    const tbody = el("tbody");
    for (const leg of Object.keys(explain.legs)) {
      const info = explain.legs[leg];
      const row = el("tr", info ? "leg leg-" + leg : "leg leg-" + leg + " missed");
      row.dataset.leg = leg;
      row.appendChild(el("td", "leg-name", LEG_LABELS[leg] || leg));
      row.appendChild(el("td", "leg-score", info ? fmt(info.score) : "–"));
      row.appendChild(el("td", "leg-rank", info ? info.rank : "–"));
      row.appendChild(el("td", null, info ? fmt(info.normalized) : "–"));
      row.appendChild(el("td", null, info ? fmt(info.contribution) : "–"));
      tbody.appendChild(row);
    }
    table.appendChild(tbody);
    return table;
  }

  function renderHit(hit) {
    const item = el("li", "hit");
    item.dataset.id = hit.id;
    const top = el("div", "hit-top");
    top.appendChild(el("span", "hit-rank", hit.rank + "."));
    const source = hit.source || {};
    top.appendChild(el("span", "hit-title", source.title || hit.id));
    top.appendChild(el("span", "hit-id", hit.id));
    top.appendChild(el("span", "hit-score", "score " + fmt(hit.score)));
    item.appendChild(top);
    if (source.text) {
      const text = String(source.text);
      item.appendChild(el("p", "hit-text", text.length > 300 ? text.slice(0, 300) + "…" : text));
    }
    const e = hit.explain;
    if (e) {
      const fused = el("div", "fused");
      fused.appendChild(el("span", "fused-score",
        "fused (" + e.fusion + ") " + fmt(e.fused_score) + " · rank " + e.fused_rank));
      if (e.rerank_score !== null && e.rerank_score !== undefined) {
        fused.appendChild(el("span", "rerank-score",
          "rerank " + fmt(e.rerank_score) + " · rank " + e.rerank_rank));
      }
      if (e.mmr) {
        const m = e.mmr;
        let text = "MMR " + fmt(m.mmr_score) + " · was rank " + m.rank_before +
          " · relevance " + fmt(m.relevance) + " · max cosine " + fmt(m.max_similarity);
        if (m.similar_to) text += " (to " + m.similar_to + ")";
        fused.appendChild(el("span", "mmr-score", text));
      }
      item.appendChild(fused);
      item.appendChild(legTable(e));
    }
    return item;
  }

  function renderSummary(data, append) {
    const shown = $("results").children.length;
    const t = data.timings || {};
    const parts = [
      shown + " of " + data.window_total + " shown",
      "total " + fmt(t.total_ms, 1) + " ms",
      "encode " + fmt(t.encode_ms, 1) + " ms",
      "engine " + fmt(t.engine_ms, 1) + " ms",
    ];
    const rerank = data.rerank || {};
    parts.push(rerank.applied ? "reranked by " + rerank.model : "no rerank");
    if (t.diversify_ms) parts.push("MMR " + fmt(t.diversify_ms, 1) + " ms");
    if (data.partial) parts.push("partial results");
    $("summary").textContent = parts.join(" · ");
    if (data.warnings && data.warnings.length && !append) {
      showError("warning: " + data.warnings.join("; "));
    }
  }

  async function run(body, append) {
    clearError();
    $("submit").disabled = true;
    $("more").hidden = true;
    if (!append) {
      $("results").replaceChildren();
      $("summary").textContent = "searching…";
    }
    try {
      const response = await fetch("/v1/search", {
        method: "POST",
        headers: headers(),
        body: JSON.stringify(body),
        credentials: "omit",
      });
      let data = null;
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
      if (!response.ok) {
        const err = data && data.error ? data.error : null;
        let message = err ? err.message : "HTTP " + response.status;
        const retry = response.headers.get("Retry-After");
        if (retry) message += " (retry after " + retry + " s)";
        $("summary").textContent = "";
        showError("error " + response.status + ": " + message);
        return;
      }
      const list = $("results");
      for (const hit of data.hits) list.appendChild(renderHit(hit));
      renderSummary(data, append);
      if (data.next_cursor) {
        lastRequest = Object.assign({}, body, { cursor: data.next_cursor });
        $("more").hidden = false;
      } else {
        lastRequest = null;
      }
    } catch (err) {
      $("summary").textContent = "";
      showError("request failed: " + err);
    } finally {
      $("submit").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const params = new URLSearchParams(window.location.search);
    if (params.get("index")) $("index").value = params.get("index");
    if (params.get("q")) $("query").value = params.get("q");
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      run(buildRequest(), false);
    });
    $("more").addEventListener("click", () => {
      if (lastRequest) run(lastRequest, true);
    });
    document.body.dataset.ready = "true";
  });
})();
