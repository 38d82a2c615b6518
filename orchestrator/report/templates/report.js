// mltag report: draws the images from the page's JSON blocks as the reader scrolls, and filters them by
// model (hide its columns), by status and by tag. No network, no libraries.
// Every text from the document is set with textContent (never innerHTML): model output stays text.
(function () {
  "use strict";
  var BATCH = 24;                       // images drawn at a time, more as the reader nears the end
  var data = JSON.parse(document.getElementById("mltag-data").textContent);
  var recordBlocks = document.querySelectorAll("script.mltag-records");
  var thumbBlocks = document.querySelectorAll("script.mltag-thumbs");
  var records = [];                     // every image's record (small); thumbnails are parsed per block
  var blockOf = [];                     // image index -> [block, position in it]
  Array.prototype.forEach.call(recordBlocks, function (block, b) {
    JSON.parse(block.textContent).forEach(function (record, i) { records.push(record); blockOf.push([b, i]); });
  });
  var thumbCache = {};
  function thumbOf(index) {
    var where = blockOf[index];
    if (!(where[0] in thumbCache)) thumbCache[where[0]] = JSON.parse(thumbBlocks[where[0]].textContent);
    return thumbCache[where[0]][where[1]];
  }

  // From the boxes, not from defaults: a browser may restore their state on reload.
  var hiddenModels = new Set(data.models.filter(function (m) {
    return Array.prototype.some.call(document.querySelectorAll("input.f-model"), function (box) {
      return box.value === m && !box.checked;
    });
  }));
  var shownStatuses = new Set(data.statuses.filter(function (s) {
    return Array.prototype.some.call(document.querySelectorAll("input.f-status"), function (box) {
      return box.value === s && box.checked;
    });
  }));
  var search = document.getElementById("tag-search");
  var counter = document.getElementById("shown-count");
  var list = document.getElementById("image-list");
  var more = document.getElementById("more-images");

  // Same as html.py's _key(): lower case, "_" as a space, runs of spaces as one.
  function key(text) {
    return text.toLowerCase().replace(/_/g, " ").split(/\s+/).filter(Boolean).join(" ");
  }
  function hit(tag, query) {            // tag: [name, score, estimated, category, normalised key]
    return query !== "" && (key(tag[0]).indexOf(query) !== -1 || tag[4].indexOf(query) !== -1);
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // -- drawing -------------------------------------------------------------------------------------
  function drawTags(tags, showCategory, query) {
    var ul = el("ul", "tags");
    tags.forEach(function (t) {
      var score = typeof t[1] === "number" ? t[1] : null;   // null: the model gave no finite number
      var li = el("li", "tag" + (t[2] ? " est" : "") + (hit(t, query) ? " hit" : ""));
      li.setAttribute("data-key", key(t[0]));
      li.setAttribute("data-norm", t[4]);
      li.title = t[0] + ": " + (score === null ? "–" : score.toFixed(4)) + (t[2] ? " (estimated)" : "") +
        (t[3] ? " · " + t[3] : "");
      var name = el("span", "name");
      name.appendChild(el("span", "text", t[0]));
      if (showCategory && t[3]) { name.appendChild(document.createTextNode(" ")); name.appendChild(el("span", "cat", t[3])); }
      var bar = el("span", "bar");
      var fill = el("span");
      fill.style.width = (score === null ? 0 : Math.max(0, Math.min(1, score)) * 100).toFixed(1) + "%";
      bar.appendChild(fill);
      var shown = el("span", "score", score === null ? "–" : score.toFixed(3));
      if (t[2]) shown.appendChild(el("span", "est-mark", "~"));
      li.appendChild(name); li.appendChild(bar); li.appendChild(shown);
      ul.appendChild(li);
    });
    return ul;
  }

  function drawCell(model, c, query) {
    var cell = el("div", "cell st-" + c.s + (shownStatuses.has(c.s) ? "" : " status-dimmed") +
                  (hiddenModels.has(model) ? " model-hidden" : ""));
    cell.setAttribute("data-model", model);
    cell.setAttribute("data-status", c.s);
    var head = el("div", "cell-head");
    head.appendChild(el("span", "model", model));
    if (c.y) {
      var synthesis = el("span", "badge synthesis", "synthesis");
      synthesis.title = "merges the other models' outputs; never saw the image";
      head.appendChild(synthesis);
    }
    head.appendChild(el("span", "badge st-" + c.s, c.s));
    var time = el("span", "time", c.t || "");
    time.title = "inference time";
    head.appendChild(time);
    if (c.n > 1) head.appendChild(el("span", "dim", c.n + " attempts"));
    cell.appendChild(head);
    if (c.m) cell.appendChild(el("div", "msg", c.m));
    if (c.x) { var fix = el("div", "fix", "fix: "); fix.appendChild(el("code", "", c.x)); cell.appendChild(fix); }
    if (c.q) cell.appendChild(el("blockquote", "caption", c.q));
    var shown = c.g.slice(0, c.k), rest = c.g.slice(c.k);
    if (shown.length) cell.appendChild(drawTags(shown, c.c, query));
    if (rest.length) {
      var details = el("details", "more");
      details.appendChild(el("summary", "", rest.length + " more"));
      details.appendChild(drawTags(rest, c.c, query));
      details.open = rest.some(function (t) { return hit(t, query); });
      cell.appendChild(details);
    }
    if (c.u) cell.appendChild(el("div", "dim", c.u + " lower-scored tag(s) not listed (all are in the JSON)"));
    return cell;
  }

  function drawImage(index, query) {
    var r = records[index];
    var article = el("article", "image");
    article.id = r.i;
    article.setAttribute("data-sha256", r.h);
    var head = el("header", "image-head");
    var uri = thumbOf(index);
    if (uri) {
      var img = el("img", "thumb");
      img.src = uri;
      img.alt = "thumbnail of " + r.p;
      img.decoding = "async";
      head.appendChild(img);
    } else {
      var placeholder = el("div", "thumb placeholder", "no preview");
      placeholder.setAttribute("role", "img");
      placeholder.setAttribute("aria-label", "no preview");
      placeholder.appendChild(el("small", "", r.e || ""));
      head.appendChild(placeholder);
    }
    var meta = el("div", "meta");
    meta.appendChild(el("div", "path", r.p));
    var hash = el("div", "hash", "sha256 ");
    hash.title = "sha256 " + r.h;
    hash.appendChild(el("code", "", r.h));
    meta.appendChild(hash);
    meta.appendChild(el("div", "dim", [r.f, r.b].filter(Boolean).join(" · ")));
    if (r.d) meta.appendChild(el("div", "dup", "identical to " + r.d + " (run once)"));
    if (r.a) { var agreement = el("div", "", "agreement "); agreement.appendChild(el("b", "", r.a)); meta.appendChild(agreement); }
    if (r.cs) {
      var chips = el("div", "consensus-chips");
      r.cs.forEach(function (c) {
        var chip = el("span", "chip", c[0] + " ");
        chip.title = c[1] + " model(s), score " + c[2];
        chip.appendChild(el("b", "", c[1]));
        chips.appendChild(chip);
      });
      meta.appendChild(chips);
    }
    head.appendChild(meta);
    article.appendChild(head);
    var cells = el("div", "cells");
    r.r.forEach(function (c, m) { cells.appendChild(drawCell(data.models[m], c, query)); });
    article.appendChild(cells);
    return article;
  }

  // -- filtering: over the records, so images not drawn yet are counted too --------------------------
  function passes(r, query) {
    var statusPass = false, tagPass = query === "";
    r.r.forEach(function (c, m) {
      if (hiddenModels.has(data.models[m])) return;
      if (shownStatuses.has(c.s)) statusPass = true;
      if (!tagPass && c.g.some(function (t) { return hit(t, query); })) tagPass = true;
    });
    return statusPass && tagPass;
  }

  var matching = [], drawn = 0, query = "";
  function drawMore() {
    var end = Math.min(matching.length, drawn + BATCH);
    var batch = document.createDocumentFragment();
    for (; drawn < end; drawn++) batch.appendChild(drawImage(matching[drawn], query));
    list.appendChild(batch);
    more.textContent = drawn < matching.length ? (matching.length - drawn) + " more image(s) below: scroll on" : "";
  }

  function apply() {
    document.querySelectorAll("[data-model]").forEach(function (node) {
      node.classList.toggle("model-hidden", hiddenModels.has(node.getAttribute("data-model")));
    });
    query = key(search.value);
    matching = [];
    for (var i = 0; i < records.length; i++) if (passes(records[i], query)) matching.push(i);
    list.textContent = "";
    drawn = 0;
    drawMore();
    counter.textContent = matching.length + " of " + records.length + " image(s) shown";
  }

  // More images as the end of the list comes near. Observing again after each batch reports the
  // sentinel's state anew, so a window tall enough for several batches fills up.
  var observer = new IntersectionObserver(function (entries) {
    if (entries.some(function (e) { return e.isIntersecting; }) && drawn < matching.length) {
      drawMore();
      observer.unobserve(more);
      observer.observe(more);
    }
  }, { rootMargin: "1500px 0px" });
  observer.observe(more);

  document.querySelectorAll("input.f-model").forEach(function (box) {
    box.addEventListener("change", function () {
      if (box.checked) hiddenModels.delete(box.value); else hiddenModels.add(box.value);
      apply();
    });
  });
  document.querySelectorAll("input.f-status").forEach(function (box) {
    box.addEventListener("change", function () {
      if (box.checked) shownStatuses.add(box.value); else shownStatuses.delete(box.value);
      apply();
    });
  });
  search.addEventListener("input", apply);
  apply();
})();
