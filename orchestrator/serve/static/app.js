// mltag serve: the grid, the photo view and the labelling keys. Plain JS, no library, nothing from the
// network but this app's own API. Every model string is written with textContent, never as markup.
"use strict";

const config = JSON.parse(document.getElementById("mltag-config").textContent);

async function api(method, url, body) {
  const init = {method, headers: {"X-Mltag-Token": config.token}, credentials: "same-origin"};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function toast(text) {
  let box = document.getElementById("toast");
  if (!box) { box = el("div"); box.id = "toast"; document.body.appendChild(box); }
  box.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.remove(), 2500);
}

const fmt = (v) => (typeof v === "number" ? v.toFixed(2) : "–");
const short = (v) => fmt(v).replace(/^0\./, ".");
const ci = (pair) => (Array.isArray(pair) && pair.length === 2 ? `${short(pair[0])}–${short(pair[1])}` : "");

// -- the ranking panel -----------------------------------------------------------------------------
async function refreshRanking() {
  let result;
  try { result = await api("GET", "/api/ranking"); } catch (e) { return; }
  const table = document.getElementById("ranking-table");
  const note = document.getElementById("ranking-note");
  const leader = document.getElementById("ranking-leader");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  note.textContent = result.labelled
    ? `${result.labelled} photo(s) labelled done, ${result.true_tags} true tag(s); 95% intervals: bootstrap over photos.`
    : "Mark photos done (key d) to rank the models on your own labels.";
  table.hidden = !result.labelled;
  for (const m of result.models || []) {
    const row = el("tr");
    row.dataset.model = m.model;
    row.appendChild(el("td", "model", m.model));
    const own = m.own || {}, best = m.best || {};
    const iv = m.intervals || {}, ivOwn = iv.own || {}, ivBest = iv.best || {};
    for (const [value, interval] of [[own.f1, ivOwn.f1], [own.precision, ivOwn.precision],
                                     [own.recall, ivOwn.recall], [best.f1, ivBest.f1]]) {
      const cell = el("td", "num", fmt(value));
      if (interval) cell.appendChild(el("span", "ci", ci(interval)));
      row.appendChild(cell);
    }
    row.appendChild(el("td", "num", best.threshold == null ? "–" : fmt(best.threshold)));
    body.appendChild(row);
  }
  const lead = result.leader;
  leader.className = "leader" + (lead ? (lead.ahead ? " ahead" : " close") : "");
  leader.textContent = lead
    ? `${lead.model} leads ${lead.runner_up} by ${lead.difference >= 0 ? "+" : ""}${lead.difference.toFixed(3)} best F1 ` +
      `(95% interval ${lead.interval[0].toFixed(3)} to ${lead.interval[1].toFixed(3)}): ` +
      (lead.ahead ? "ahead beyond noise" : "not ahead beyond noise yet: label more photos")
    : "";
}

async function labelNext(after) {
  const data = await api("GET", "/api/next" + (after ? `?after=${encodeURIComponent(after)}` : ""));
  if (data.sha256) location.href = `/photo/${data.sha256}?queue=1`;
  else toast("every photo is labelled");
}

// -- the grid --------------------------------------------------------------------------------------
function initGrid() {
  const form = document.getElementById("filters");
  const fields = ["tag", "model", "status", "labelled", "folder", "sort"];
  const params = new URLSearchParams(location.search);
  const cursors = [null];          // the cursor of each page seen: the browser keeps one page of photos
  let page = 0;

  api("GET", "/api/folders").then((folders) => {
    const select = document.getElementById("f-folder");
    for (const f of folders) {
      const option = el("option", null, `${f.folder} (${f.images})`);
      option.value = f.folder;
      select.appendChild(option);
    }
    select.value = params.get("folder") || "";
  });
  for (const name of fields) {
    const input = document.getElementById(`f-${name}`);
    if (params.get(name)) input.value = params.get(name);
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of fields) {
      const value = document.getElementById(`f-${name}`).value.trim();
      if (value) q.set(name, value);
    }
    return q;
  }

  async function load() {
    const q = query();
    history.replaceState(null, "", q.toString() ? `?${q}` : "/");
    const url = new URLSearchParams(q);
    if (cursors[page]) url.set("cursor", cursors[page]);
    url.set("limit", "60");
    const data = await api("GET", `/api/images?${url}`);
    const grid = document.getElementById("grid");
    grid.replaceChildren();
    for (const item of data.items) grid.appendChild(tile(item, q));
    if (data.total != null) document.getElementById("count").textContent = data.total;   // first page only
    cursors[page + 1] = data.next;
    document.getElementById("next-page").disabled = !data.next;
    document.getElementById("prev-page").disabled = page === 0;
    document.getElementById("page-no").textContent = `page ${page + 1}`;
  }

  function tile(item, q) {
    const link = el("a", "tile" + (item.labelled ? " is-done" : ""));
    link.href = `/photo/${item.sha256}${q.toString() ? "?" + q : ""}`;
    link.dataset.sha256 = item.sha256;
    const img = el("img");
    img.loading = "lazy";
    img.alt = item.name;
    img.src = `/thumb/${item.sha256}/256`;
    link.appendChild(img);
    link.appendChild(el("div", "name", item.name)).title = item.path;
    link.appendChild(el("div", "sub", (item.tags || []).join(", ")));
    const failed = Object.entries(item.statuses || {});
    const sub = el("div", "sub", item.agreement == null ? "" : `agreement ${fmt(item.agreement)}`);
    if (failed.length) sub.appendChild(el("span", "fail", " · " + failed.map(([m, s]) => `${m}: ${s}`).join(", ")));
    link.appendChild(sub);
    return link;
  }

  let timer = null;
  const tagInput = document.getElementById("f-tag");
  tagInput.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const tags = await api("GET", `/api/tags?q=${encodeURIComponent(tagInput.value)}`);
      const list = document.getElementById("tag-list");
      list.replaceChildren(...tags.map((t) => {
        const option = el("option", null, `${t.images} photo(s)`);
        option.value = t.tag;
        return option;
      }));
    }, 120);
  });
  const reset = () => { cursors.length = 1; page = 0; load(); };
  form.addEventListener("change", reset);
  form.addEventListener("submit", (event) => { event.preventDefault(); reset(); });
  document.getElementById("next-page").addEventListener("click", () => { page += 1; load(); window.scrollTo(0, 0); });
  document.getElementById("prev-page").addEventListener("click", () => { page -= 1; load(); window.scrollTo(0, 0); });
  load();
}

// -- one photo: labelling by keyboard --------------------------------------------------------------
function initPhoto() {
  const photo = document.getElementById("photo");
  const sha = photo.dataset.sha256;
  const chips = JSON.parse(document.getElementById("mltag-chips").textContent);
  const box = document.getElementById("chips");
  const addInput = document.getElementById("add-tag");
  const undo = [];
  let focus = 0;
  let done = photo.dataset.done === "true";

  function render() {
    box.replaceChildren();
    chips.forEach((chip, i) => {
      const button = el("button", "lchip" + (chip.verdict ? " " + chip.verdict : ""), chip.tag);
      button.type = "button";
      button.tabIndex = i === focus ? 0 : -1;
      button.dataset.tag = chip.tag;
      button.dataset.verdict = chip.verdict || "";
      button.setAttribute("role", "option");
      button.title = chip.models.length ? `given by ${chip.models.join(", ")}` : "added by you";
      button.appendChild(el("span", "n", chip.models.length || "+"));
      button.addEventListener("click", () => { focus = i; setVerdict(chip.verdict === "yes" ? "no" : "yes"); });
      box.appendChild(button);
    });
    const state = document.getElementById("done-state");
    state.textContent = done ? "done" : "not done";
    state.classList.toggle("done", done);
  }

  function focusChip(i) {
    if (!chips.length) return;
    focus = Math.max(0, Math.min(chips.length - 1, i));
    render();
    box.children[focus].focus();
  }

  async function write(tag, verdict) {
    return api("POST", "/api/label", {sha256: sha, tag, verdict});
  }

  async function setVerdict(verdict) {
    const chip = chips[focus];
    if (!chip) return;
    const before = chip.verdict;
    undo.push({kind: "label", index: focus, before});
    chip.verdict = verdict;
    focusChip(focus + 1 < chips.length ? focus + 1 : focus);
    try { await write(chip.tag, verdict); } catch (e) {
      chip.verdict = before;   // not written (e.g. the store is locked): the chip says what the store holds
      undo.pop();
      render();
      toast(e.message);
    }
  }

  async function addTag(text) {
    if (!text.trim()) return;
    let saved;
    try { saved = await api("POST", "/api/label", {sha256: sha, tag: text, verdict: "yes"}); }
    catch (e) { toast(e.message); return; }
    const tag = saved.tag;           // as the store keeps it: normalised as the models' tags are
    let index = chips.findIndex((c) => c.tag === tag);
    if (index < 0) {
      chips.push({tag, n_models: 0, score: 0, models: [], verdict: null, added: true});
      index = chips.length - 1;
    }
    undo.push({kind: "label", index, before: chips[index].verdict});
    chips[index].verdict = "yes";
    addInput.value = "";
    focusChip(index);
  }

  async function markDone() {
    undo.push({kind: "done", before: done});
    try {
      await api("POST", "/api/done", {sha256: sha, done: true});
    } catch (e) { toast(e.message); return; }
    done = true;
    render();
    refreshRanking();   // not awaited: the next photo's page shows the new ranking too
    const queued = new URLSearchParams(location.search).get("queue");
    const next = document.getElementById("next");
    if (!queued && next) location.href = next.href;
    else await labelNext(sha);
  }

  async function undoLast() {
    const step = undo.pop();
    if (!step) { toast("nothing to undo"); return; }
    try {
      if (step.kind === "done") {
        await api("POST", "/api/done", {sha256: sha, done: step.before});
        done = step.before;
        await refreshRanking();
      } else {
        const chip = chips[step.index];
        chip.verdict = step.before;
        await write(chip.tag, step.before);
        focus = step.index;
      }
    } catch (e) { toast(e.message); }
    focusChip(focus);
  }

  document.getElementById("add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    addTag(addInput.value);
  });
  let timer = null;
  addInput.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const tags = await api("GET", `/api/tags?q=${encodeURIComponent(addInput.value)}`);
      document.getElementById("add-list").replaceChildren(...tags.map((t) => {
        const option = el("option");
        option.value = t.tag;
        return option;
      }));
    }, 120);
  });
  addInput.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); addInput.value = ""; focusChip(focus); }
  });

  document.addEventListener("keydown", (event) => {
    if (event.target === addInput || event.ctrlKey || event.metaKey || event.altKey) return;
    const go = (id) => { const link = document.getElementById(id); if (link) location.href = link.href; };
    const actions = {
      ArrowRight: () => focusChip(focus + 1), ArrowDown: () => focusChip(focus + 1),
      ArrowLeft: () => focusChip(focus - 1), ArrowUp: () => focusChip(focus - 1),
      y: () => setVerdict("yes"), n: () => setVerdict("no"), u: () => undoLast(), d: () => markDone(),
      a: () => addInput.focus(), j: () => go("next"), k: () => go("prev"), PageDown: () => go("next"),
      PageUp: () => go("prev"), l: () => labelNext(sha), Escape: () => go("back"),
    };
    const action = actions[event.key];
    if (action) { event.preventDefault(); action(); }
  });
  render();
  if (chips.length) box.children[0].focus();
}

document.getElementById("label-next").addEventListener("click", () => {
  const photo = document.getElementById("photo");
  labelNext(photo ? photo.dataset.sha256 : null);
});
if (document.body.dataset.page === "grid") initGrid();
if (document.body.dataset.page === "photo") initPhoto();
refreshRanking();
