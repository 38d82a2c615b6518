// mltag report filters: by model (hide its columns), by status, and tag search. No network, no libraries.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("mltag-data").textContent);
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

  // Same as html.py's _key(): lower case, "_" as a space, runs of spaces as one.
  function key(text) {
    return text.toLowerCase().replace(/_/g, " ").split(/\s+/).filter(Boolean).join(" ");
  }

  function matches(pair, query) {
    return pair[0].indexOf(query) !== -1 || pair[1].indexOf(query) !== -1;
  }

  function apply() {
    document.querySelectorAll("[data-model]").forEach(function (el) {
      el.classList.toggle("model-hidden", hiddenModels.has(el.getAttribute("data-model")));
    });
    var query = key(search.value);
    var shown = 0;
    var articles = document.querySelectorAll("article.image");
    articles.forEach(function (article) {
      var statusPass = false;
      article.querySelectorAll(".cell").forEach(function (cell) {
        var statusOk = shownStatuses.has(cell.getAttribute("data-status"));
        cell.classList.toggle("status-dimmed", !statusOk);
        if (statusOk && !hiddenModels.has(cell.getAttribute("data-model"))) statusPass = true;
      });
      // The listed tags of the shown models (each li.tag carries its key and normalised key).
      var tagPass = query === "" || Array.prototype.some.call(article.querySelectorAll(".cell"), function (cell) {
        return !hiddenModels.has(cell.getAttribute("data-model")) &&
          Array.prototype.some.call(cell.querySelectorAll("li.tag"), function (li) {
            return matches([li.getAttribute("data-key"), li.getAttribute("data-norm")], query);
          });
      });
      article.querySelectorAll("li.tag").forEach(function (li) {
        var hit = query !== "" && matches([li.getAttribute("data-key"), li.getAttribute("data-norm")], query);
        li.classList.toggle("hit", hit);
      });
      article.querySelectorAll("details.more").forEach(function (details) {
        var hasHit = details.querySelector("li.tag.hit") !== null;
        if (hasHit && !details.open) { details.open = true; details.setAttribute("data-auto-open", ""); }
        if (!hasHit && details.hasAttribute("data-auto-open")) { details.open = false; details.removeAttribute("data-auto-open"); }
      });
      var visible = statusPass && tagPass;
      article.classList.toggle("filtered-out", !visible);
      if (visible) shown += 1;
    });
    counter.textContent = shown + " of " + articles.length + " image(s) shown";
  }

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
