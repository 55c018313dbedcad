// The agent-rl report page. Every piece of env and model text reaches the page as a text node
// (el() below appends strings with Node.append, and nothing here sets innerHTML): it is untrusted.
"use strict";
(function () {
  const summary = window.AGENT_RL_SUMMARY;
  const main = document.getElementById("main");
  const GROUPS_PER_PAGE = 8;
  const EPISODES_PER_PAGE = 24;

  // --- data files, loaded on demand with a <script> tag (file:// pages cannot fetch) ------------
  const chunks = new Map();
  const waiting = new Map();
  window.agentRlChunk = function (name, episodes) {
    chunks.set(name, episodes);
    (waiting.get(name) || []).forEach((done) => done(episodes));
    waiting.delete(name);
  };
  function loadChunk(name, done) {
    if (chunks.has(name)) return done(chunks.get(name));
    if (waiting.has(name)) return waiting.get(name).push(done);
    waiting.set(name, [done]);
    const script = document.createElement("script");
    script.src = "data/" + encodeURIComponent(name) + ".js";
    script.onerror = () => fail("could not load data/" + name + ".js");
    document.body.append(script);
  }

  // --- DOM helpers ----------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child !== undefined && child !== null && child !== false) node.append(child); // strings -> text nodes
    }
    return node;
  }
  function fail(message) {
    main.prepend(el("p", { class: "error" }, message));
    document.body.dataset.error = message;
  }
  const fmt = (value, digits = 3) =>
    typeof value === "number" ? (Number.isFinite(value) ? value.toFixed(digits) : String(value)) : "–";
  const sig = (value) => (Number.isFinite(value) ? value.toPrecision(3) : "–"); // a tiny KL stays readable
  const pct = (value) => (Number.isFinite(value) ? (100 * value).toFixed(1) : "–");
  function done(view) {
    document.body.dataset.view = view;
    document.body.dataset.renderMs = performance.now().toFixed(1); // since navigation start
  }

  // --- routing: #overview, #iter=N, #eval=NAME ----------------------------------------------------
  function route() {
    const hash = decodeURIComponent(location.hash.slice(1));
    const [view, arg] = hash.split(/=(.*)/s);
    tabs(view || (summary.kind === "eval" ? "eval" : "overview"));
    main.replaceChildren();
    if (view === "iter" && summary.iterations.length) return iterationView(Number(arg));
    if (view === "eval" || (!view && summary.kind === "eval")) return evalView(arg);
    return overview();
  }
  function tabs(active) {
    const items = [];
    if (summary.kind === "run") items.push(["overview", "#overview", "Overview"]);
    if (summary.iterations.length) items.push(["iter", "#iter=" + summary.iterations[0].iteration, "Iterations"]);
    if (summary.evals.length) items.push(["eval", "#eval=" + summary.evals[0].name, "Evaluations"]);
    document.getElementById("tabs").replaceChildren(
      ...items.map(([key, href, label]) => el("a", { href, class: key === active ? "tab active" : "tab" }, label)));
  }

  // --- overview: config, learning curves, eval tables ---------------------------------------------
  const CHARTS = [
    ["Success rate (%)", [["train/success_rate", 100], ["val/success_rate", 100]], [0, 100]],
    ["Reward (mean episode score)", [["train/mean_outcome", 1]]],
    ["KL", [["train/approx_kl", 1], ["train/kl_ref", 1]]],
    ["Entropy (nats / token)", [["train/entropy", 1]]],
    ["Log-prob mismatch (rollout vs trainer)", [["train/logprob_mismatch", 1]]],
    ["Loss", [["train/loss", 1]]],
    ["Invalid / truncated (%)", [["train/invalid_rate", 100], ["train/truncated_rate", 100]], [0, 100]],
    ["Time per iteration (s)", [["time/rollout", 1], ["time/credit", 1], ["time/logprobs", 1],
                                ["time/update", 1], ["time/weight_sync", 1]], [0, null]],
  ];
  const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"];

  function overview() {
    main.append(el("section", { class: "card" },
      el("h2", {}, "Run"), el("p", { class: "path" }, summary.path),
      summary.config ? el("details", {}, el("summary", {}, "config.yaml"), el("pre", { class: "config" }, summary.config))
        : el("p", { class: "note" }, "no config.yaml in this folder")));
    const rows = summary.metrics.filter((row) => row.iteration > 0);
    const charts = CHARTS.map(([title, keys, range]) => chart(title, keys, rows, range)).filter(Boolean);
    main.append(el("section", { class: "card" }, el("h2", {}, "Learning curves"),
      charts.length ? el("div", { class: "charts" }, charts) : el("p", { class: "note" }, "no RL iterations logged")));
    if (summary.iterations.length) {
      main.append(el("section", { class: "card" }, el("h2", {}, "Iterations"),
        el("div", { class: "iterlist" }, summary.iterations.map((it) => el("a", { href: "#iter=" + it.iteration },
          `${it.iteration}: ${it.successes}/${it.episodes} won`)))));
    }
    for (const ev of summary.evals) main.append(evalTable(ev, true));
    done("overview");
  }

  function chart(title, keys, rows, range) {
    const series = keys.map(([key, scale]) => [key, rows.filter((r) => Number.isFinite(r[key]))
      .map((r) => [r.iteration, scale * r[key]])]).filter(([, points]) => points.length);
    if (!series.length) return null;
    const W = 320, H = 150, L = 44, R = 8, T = 8, B = 22;
    const xs = series.flatMap(([, p]) => p.map((q) => q[0])), ys = series.flatMap(([, p]) => p.map((q) => q[1]));
    // range: fixed [low, high] of the y axis; null in it = from the data
    let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), range?.[0] ?? Math.min(...ys), range?.[1] ?? Math.max(...ys)];
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
    svg.append(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
               svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    const tick = (y) => (y === 0 ? "0" : Math.abs(y) >= 0.01 ? fmt(y, Math.abs(y) >= 100 ? 0 : Math.abs(y) >= 1 ? 1 : 3)
      : y.toExponential(1));  // a KL or a log-prob gap of 1e-8 reads as such, not as 0.000
    for (const [y, at] of [[y0, H - B], [y1, T + 8]]) svg.append(svgText(L - 4, at, tick(y), "end"));
    svg.append(svgText(L, H - 6, String(x0), "start"), svgText(W - R, H - 6, String(x1), "end"),
               svgText((L + W - R) / 2, H - 6, "iteration", "middle"));
    const legend = el("div", { class: "legend" });
    series.forEach(([key, points], i) => {
      const colour = COLOURS[i % COLOURS.length];
      svg.append(svgEl("polyline", { points: points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "), stroke: colour, class: "line" }));
      for (const [x, y] of points.length <= 60 ? points : []) {
        const dot = svgEl("circle", { cx: sx(x), cy: sy(y), r: 2.2, fill: colour });
        dot.append(svgEl("title", {}, `${key} @ ${x}: ${fmt(y)}`));
        svg.append(dot);
      }
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour;
      legend.append(el("span", {}, swatch, key));
    });
    return el("figure", { class: "chartbox" }, el("figcaption", {}, title), svg, legend);
  }
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const svgText = (x, y, text, anchor) => svgEl("text", { x, y, "text-anchor": anchor, class: "tick" }, text);

  function evalTable(ev, withLink) {
    const p = ev.protocol || {};
    const facts = [["policy", p.policy], ["split", p.split], ["task set", p.task_set], ["seeds", (p.seeds || []).join(" ")],
      ["episodes per seed", p.episodes_per_seed], ["max steps", p.max_steps]].filter(([, v]) => v !== undefined && v !== "");
    const head = ["task type", "success %", "± (seeds)", "N", "avg turns", "invalid %", "truncated %", "mean score"];
    const body = ev.table.map((r) => el("tr", { class: r.task_type === "overall" ? "overall" : null },
      el("td", {}, r.task_type), el("td", {}, pct(Number(r.success_mean))), el("td", {}, pct(Number(r.success_std))),
      el("td", {}, r.n), el("td", {}, fmt(Number(r.avg_turns), 2)), el("td", {}, pct(Number(r.invalid_rate))),
      el("td", {}, pct(Number(r.truncated_rate))), el("td", {}, fmt(Number(r.mean_score), 3))));
    return el("section", { class: "card" },
      el("h2", {}, "Evaluation: " + ev.name, withLink ? el("a", { href: "#eval=" + ev.name, class: "more" }, "read the episodes →") : null),
      el("p", { class: "facts" }, facts.map(([k, v]) => el("span", {}, el("b", {}, k + ": "), String(v)))),
      p.success_definition ? el("p", { class: "note" }, "Success: " + p.success_definition) : null,
      ev.table.length ? el("table", { class: "results" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
        el("tbody", {}, body)) : el("p", { class: "note" }, "no table.csv"));
  }

  // --- filters shared by the iteration and eval views ---------------------------------------------
  function filterBar(episodes, onChange) {
    const state = { outcome: "all", type: "", invalid: false, truncated: false, query: "" };
    const types = [...new Set(episodes.map((e) => e.type))].sort();
    const change = (key, value) => { state[key] = value; onChange(); };
    const outcome = el("select", { "aria-label": "outcome", onchange: (e) => change("outcome", e.target.value) },
      el("option", { value: "all" }, "all episodes"), el("option", { value: "success" }, "successes"),
      el("option", { value: "failure" }, "failures"));
    const type = el("select", { "aria-label": "task type", onchange: (e) => change("type", e.target.value) },
      el("option", { value: "" }, "every task type"), types.map((t) => el("option", { value: t }, t || "(none)")));
    const box = (key, label) => el("label", {}, el("input", { type: "checkbox", onchange: (e) => change(key, e.target.checked) }), label);
    const search = el("input", { type: "search", placeholder: "search text…", "aria-label": "search",
      oninput: (e) => change("query", e.target.value.trim().toLowerCase()) });
    const bar = el("div", { class: "filters" }, outcome, type, box("invalid", "has invalid steps"),
      box("truncated", "truncated"), search);
    const haystacks = new WeakMap();
    const text = (e) => {
      if (!haystacks.has(e)) haystacks.set(e, [e.id, e.task, e.type, ...e.steps.flatMap((s) => [s.obs, s.response, s.action || ""])]
        .join("\n").toLowerCase());
      return haystacks.get(e);
    };
    const keep = (e) => (state.outcome === "all" || e.success === (state.outcome === "success"))
      && (!state.type || e.type === state.type) && (!state.invalid || e.steps.some((s) => !s.valid))
      && (!state.truncated || e.truncated) && (!state.query || text(e).includes(state.query));
    return { bar, keep };
  }
  function pager(page, pages, go) {
    return el("div", { class: "pager" },
      el("button", { onclick: () => go(page - 1), disabled: page <= 0 ? "" : null }, "← previous"),
      el("span", {}, `page ${page + 1} of ${Math.max(pages, 1)}`),
      el("button", { onclick: () => go(page + 1), disabled: page >= pages - 1 ? "" : null }, "next →"));
  }

  // --- one iteration: groups of rollouts side by side ----------------------------------------------
  function iterationView(number) {
    const index = Math.max(0, summary.iterations.findIndex((it) => it.iteration === number));
    const it = summary.iterations[index];
    const picker = el("select", { "aria-label": "iteration", onchange: (e) => { location.hash = "iter=" + e.target.value; } },
      summary.iterations.map((x) => el("option", { value: x.iteration, selected: x === it ? "" : null },
        `iteration ${x.iteration} — ${x.successes}/${x.episodes} won, ${x.groups} groups`)));
    const step = (d) => { const x = summary.iterations[index + d]; if (x) location.hash = "iter=" + x.iteration; };
    const row = metricsRow(it.iteration);
    main.append(el("section", { class: "card" },
      el("div", { class: "iterbar" }, el("button", { onclick: () => step(-1), disabled: index === 0 ? "" : null }, "←"), picker,
        el("button", { onclick: () => step(1), disabled: index === summary.iterations.length - 1 ? "" : null }, "→")),
      row ? el("p", { class: "facts" }, [["success", pct(row["train/success_rate"]) + " %"], ["reward", fmt(row["train/mean_outcome"])],
        ["KL", sig(row["train/approx_kl"])], ["entropy", fmt(row["train/entropy"], 2)],
        ["seconds", fmt(row["time/iteration"], 1)]].map(([k, v]) => el("span", {}, el("b", {}, k + ": "), v))) : null,
      el("p", { class: "note" }, "Rollouts of one task side by side. The bar under each step is the credit method's advantage " +
        "(green above zero, red below, scaled to the largest in this iteration); a coloured “state” chip links the steps of " +
        "the group that share an anchor (GiGPO / HGPO step groups): click it to highlight them.")));
    episodeList(it.chunk, (episodes, keep, page, view) => {
      const groups = new Map();
      for (const e of episodes) if (keep(e)) (groups.get(e.group) || groups.set(e.group, []).get(e.group)).push(e);
      const all = [...groups.values()];
      return [Math.ceil(all.length / GROUPS_PER_PAGE),
        el("p", { class: "count" }, `${all.reduce((n, g) => n + g.length, 0)} episodes in ${all.length} groups shown`),
        ...all.slice(page * GROUPS_PER_PAGE, (page + 1) * GROUPS_PER_PAGE).map((g) => groupBox(g, view))];
    });
  }
  // Load a data file, then show the filter bar and page `page` of what `layout` makes of the kept episodes:
  // layout(episodes, keep, page, view) -> [number of pages, ...nodes]; view = { chunk, scale, links } is what
  // the cards need: the data file (for the prompts), the advantage scale, the step links of the page.
  function episodeList(chunk, layout) {
    const holder = el("div", {}, el("p", { class: "note" }, "loading " + chunk + "…"));
    main.append(holder);
    loadChunk(chunk, (episodes) => {
      episodes.forEach((e, index) => { e.index = index; }); // its row in the prompts file
      const scale = maxAdvantage(episodes);
      const { bar, keep } = filterBar(episodes, () => show(0));
      const list = el("div", {});
      holder.replaceChildren(el("section", { class: "card sticky" }, bar), list);
      function show(page) {
        const [pages, ...nodes] = layout(episodes, keep, page, { chunk, scale, links: new Map() });
        list.replaceChildren(...nodes, pager(page, pages, show));
        done(chunk);
      }
      show(0);
    });
  }
  function metricsRow(iteration) {
    return summary.metrics.find((r) => r.iteration === iteration && "train/success_rate" in r);
  }
  function maxAdvantage(episodes) {
    let m = 0;
    for (const e of episodes) for (const s of e.steps) if (Number.isFinite(s.advantage)) m = Math.max(m, Math.abs(s.advantage));
    return m || 1;
  }
  function groupBox(episodes, view) {
    const won = episodes.filter((e) => e.success).length;
    const first = episodes[0];
    return el("section", { class: "group card" },
      el("h3", {}, "group " + first.group, el("span", { class: "sub" }, ` task ${first.task} · ${first.type || "no task type"} · ${won}/${episodes.length} won`)),
      el("div", { class: "rollouts" }, episodes.map((e) => episodeCard(e, view))));
  }

  // --- one evaluation: its table, then every episode, failures first ------------------------------
  function evalView(name) {
    const ev = summary.evals.find((x) => x.name === name) || summary.evals[0];
    if (summary.evals.length > 1) {
      main.append(el("section", { class: "card" }, el("div", { class: "iterbar" },
        el("select", { "aria-label": "evaluation", onchange: (e) => { location.hash = "eval=" + e.target.value; } },
          summary.evals.map((x) => el("option", { value: x.name, selected: x === ev ? "" : null },
            `${x.name} — ${x.successes}/${x.episodes} won`))))));
    }
    main.append(evalTable(ev, false));
    episodeList(ev.chunk, (episodes, keep, page, view) => {
      const kept = episodes.filter(keep);
      return [Math.ceil(kept.length / EPISODES_PER_PAGE),
        el("p", { class: "count" }, `${kept.length} of ${episodes.length} episodes shown, failures first`),
        el("div", { class: "episodes" }, kept.slice(page * EPISODES_PER_PAGE, (page + 1) * EPISODES_PER_PAGE)
          .map((e) => episodeCard(e, view)))];
    });
  }

  // --- an episode, step by step ---------------------------------------------------------------------
  function episodeCard(e, view) {
    const meta = e.metadata || {};
    const badges = [el("span", { class: e.success ? "badge ok" : "badge fail" }, e.success ? "won" : "not won"),
      e.truncated ? el("span", { class: "badge warn" }, "truncated") : null,
      meta.env_error ? el("span", { class: "badge fail", title: meta.env_error }, "env error") : null];
    return el("article", { class: e.success ? "episode ok" : "episode fail", "data-traj-id": e.id },
      el("header", {}, badges, el("span", { class: "id" }, e.id),
        el("div", { class: "sub" }, `task ${e.task}${e.type ? " · " + e.type : ""} · score ${fmt(e.outcome, 2)} · ${e.steps.length} steps` +
          (meta.seed !== undefined ? ` · seed ${meta.seed}` : ""))),
      meta.env_error ? el("p", { class: "error" }, "env error: " + meta.env_error) : null,
      el("ol", { class: "steps" }, e.steps.map((s, i) => stepItem(e, s, i, view))));
  }
  function stepItem(e, s, i, view) {
    const links = view.links;
    const item = el("li", { class: s.valid ? "step" : "step invalid" });
    const head = el("div", { class: "stephead" }, el("b", {}, "step " + (i + 1)),
      el("span", { class: s.valid ? "badge ok" : "badge fail" }, s.valid ? "valid" : "invalid"),
      el("span", {}, "reward " + fmt(s.reward, 2)));
    if (s.link !== null && s.link !== undefined) {
      const key = e.group + "\u0000" + s.link;
      if (!links.has(key)) links.set(key, []);
      links.get(key).push(item);
      const chip = el("button", { class: "chip", title: "steps of this group in the same state (equal anchor)",
        onclick: () => links.get(key).forEach((x) => x.classList.toggle("linked")) }, "state " + s.link);
      chip.style.borderColor = chip.style.color = `hsl(${(s.link * 67) % 360} 65% 38%)`;
      head.append(chip);
    }
    item.append(head);
    if (s.advantage !== null && s.advantage !== undefined) item.append(advantageBar(s.advantage, view.scale));
    item.append(el("div", { class: "label" }, "observation"), el("pre", { class: "obs" }, s.obs),
      el("div", { class: "label" }, "response"), responseText(s.response), el("div", { class: "label" }, "action"),
      s.action === null ? el("p", { class: "noaction" }, "none: " + (s.error || "the response did not parse"))
        : el("pre", { class: "action" }, s.action));
    const prompt = el("details", { class: "prompt" }, el("summary", {}, "prompt the model saw"));
    prompt.addEventListener("toggle", () => {  // prompts are most of the text: their own file, loaded when asked for
      if (prompt.open && prompt.children.length === 1) {
        loadChunk(view.chunk + ".prompts", (prompts) => {
          if (prompt.children.length === 1) prompt.append(el("pre", {}, prompts[e.index][i]));
        });
      }
    });
    item.append(prompt);
    return item;
  }
  function advantageBar(value, scale) {
    const fill = el("span", { class: value >= 0 ? "fill pos" : "fill neg" });
    fill.style.width = Number.isFinite(value) ? Math.min(50, (50 * Math.abs(value)) / scale) + "%" : "0";
    return el("div", { class: "adv", title: "advantage " + value }, el("span", { class: "track" }, fill),
      el("span", { class: "advvalue" }, "advantage " + (value > 0 ? "+" : "") + fmt(value, 3)));
  }
  function responseText(text) {
    // <think> and <action> blocks coloured; everything stays text.
    const pre = el("pre", { class: "response" });
    const pattern = /<(think|action)>([\s\S]*?)<\/\1>/g;
    let last = 0;
    for (const match of text.matchAll(pattern)) {
      pre.append(text.slice(last, match.index),
        el("span", { class: "tag-" + match[1] }, el("span", { class: "tag" }, `<${match[1]}>`), match[2],
          el("span", { class: "tag" }, `</${match[1]}>`)));
      last = match.index + match[0].length;
    }
    pre.append(text.slice(last));
    return pre;
  }

  if (!summary) return fail("data/summary.js did not load: render the report again with agent-rl view");
  document.getElementById("title").textContent = summary.title + (summary.kind === "eval" ? " (evaluation)" : "");
  document.title = "agent-rl: " + summary.title;
  window.addEventListener("hashchange", route);
  route();
})();
