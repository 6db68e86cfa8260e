"""The run explorer's inline style sheet and script (report.html needs nothing from the network)."""

# Grids travel as strings "012/340" (rows joined by "/", one digit per cell) in one table `G` of the page's
# data, referenced by index; the script draws each at one pixel per cell into a <canvas> that CSS scales up
# with `image-rendering: pixelated`, so 2,000 grids of 30x30 draw in well under a second.

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 16px 40px;color:#222;background:#fafafa}
h1{font-size:20px;margin:14px 0 4px}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;margin:4px 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
.facts li{margin:1px 0}.note{color:#a40}
#controls{position:sticky;top:0;background:#fafafa;padding:8px 0;border-bottom:1px solid #ccc;z-index:2}
#controls button{margin-right:4px;padding:3px 10px;border:1px solid #888;background:#fff;border-radius:3px;
cursor:pointer}
#controls button.on{background:#333;color:#fff}
.card{background:#fff;border:1px solid #ccc;border-radius:4px;margin:10px 0;padding:6px 10px}
.card h3{font-size:15px;margin:2px 0 6px;font-family:monospace}
.mark{font:12px system-ui;padding:1px 6px;border-radius:8px;margin-left:6px;color:#fff}
.mark.solved{background:#2a8f3a}.mark.unsolved{background:#b33}.mark.found{background:#d98200}
.mark.unknown{background:#777}.cfg{font:12px system-ui;color:#555;margin-left:6px}
.row{display:flex;flex-wrap:wrap;align-items:flex-start;gap:10px;margin:4px 0 8px}
.sec{font-size:12px;color:#555;margin-top:6px}
figure{margin:0;display:inline-flex;flex-direction:column;align-items:center}
figcaption{font-size:11px;color:#444;max-width:160px;text-align:center}
canvas{image-rendering:pixelated;image-rendering:crisp-edges;border:2px solid #555;background:#252525}
canvas.right{border-color:#2ECC40}canvas.wrong{border-color:#FF4136}
.pair{display:inline-flex;gap:3px;align-items:center;padding:2px;border:1px dashed #ccc}
.hidden{display:none}
"""

JS = r"""
(function(){
"use strict";
var D = JSON.parse(document.getElementById("report-data").textContent);
var P = D.palette.map(function(h){
  return [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)];
});
var drawn = 0, t0 = Date.now();
function grid(i, caption, cls, px){
  var rows = D.G[i].split("/"), h = rows.length, w = rows[0].length;
  var c = document.createElement("canvas"); c.width = w; c.height = h;
  var cell = Math.max(2, Math.min(px, Math.floor(120 / Math.max(h, w))));
  c.style.width = (w * cell) + "px"; c.style.height = (h * cell) + "px";
  if (cls) c.className = cls;
  var ctx = c.getContext("2d"), img = ctx.createImageData(w, h), d = img.data;
  for (var y = 0; y < h; y++) for (var x = 0; x < w; x++) {
    var v = P[rows[y].charCodeAt(x) - 48] || [255, 0, 255], k = 4 * (y * w + x);
    d[k] = v[0]; d[k + 1] = v[1]; d[k + 2] = v[2]; d[k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0); drawn++;
  var f = document.createElement("figure"); f.appendChild(c);
  var fc = document.createElement("figcaption"); fc.textContent = caption; f.appendChild(fc);
  return f;
}
function el(tag, cls, text){
  var e = document.createElement(tag); if (cls) e.className = cls; if (text) e.textContent = text; return e;
}
function judge(g, answer){return answer < 0 ? "" : (g === answer ? "right" : "wrong");}
function fill(card){
  var t = D.tasks[+card.dataset.index], box = card.querySelector(".grids");
  box.appendChild(el("div", "sec", "demonstrations"));
  var row = el("div", "row");
  t.train.forEach(function(p, j){
    var s = el("span", "pair");
    s.appendChild(grid(p[0], "in " + (j + 1), "", 8)); s.appendChild(grid(p[1], "out " + (j + 1), "", 8));
    row.appendChild(s);
  });
  box.appendChild(row);
  t.tests.forEach(function(o, j){
    box.appendChild(el("div", "sec", "test " + (j + 1) + ": input, attempts" + (o.answer >= 0 ? ", answer" : "") +
      (o.cands.length ? "; top candidates (" + o.n + " distinct)" : "; no model candidates")));
    var r = el("div", "row");
    r.appendChild(grid(o.input, "input", "", 10));
    o.attempts.forEach(function(a, k){r.appendChild(grid(a, "attempt " + (k + 1), judge(a, o.answer), 10));});
    if (o.answer >= 0) r.appendChild(grid(o.answer, "answer", "right", 10));
    o.cands.forEach(function(c, k){
      var cap = "#" + (k + 1) + ": " + c[1] + " votes" + (c[2] !== null ? ", q " + c[2] : "");
      r.appendChild(grid(c[0], cap, judge(c[0], o.answer), 6));
    });
    box.appendChild(r);
  });
}
var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
var list = document.getElementById("cards");
var shows = {all: function(){return true;}, solved: function(m){return m === "solved";},
  unsolved: function(m){return m === "unsolved" || m === "found";}, found: function(m){return m === "found";}};
function filter(name){
  cards.forEach(function(c){c.classList.toggle("hidden", !shows[name](c.dataset.mark));});
  document.querySelectorAll("button[data-filter]").forEach(function(b){
    b.classList.toggle("on", b.dataset.filter === name);
  });
  var shown = cards.filter(function(c){return !c.classList.contains("hidden");});
  document.getElementById("shown").textContent = shown.length;
}
function sort(name){
  var s = cards.slice();
  if (name === "votes") s.sort(function(a, b){
    return (+b.dataset.votes - +a.dataset.votes) || (a.dataset.task < b.dataset.task ? -1 : 1);
  });
  else s.sort(function(a, b){return a.dataset.task < b.dataset.task ? -1 : a.dataset.task > b.dataset.task ? 1 : 0;});
  s.forEach(function(c){list.appendChild(c);});
  document.querySelectorAll("button[data-sort]").forEach(function(b){
    b.classList.toggle("on", b.dataset.sort === name);
  });
}
document.querySelectorAll("button[data-filter]").forEach(function(b){
  b.addEventListener("click", function(){filter(b.dataset.filter);});
});
document.querySelectorAll("button[data-sort]").forEach(function(b){
  b.addEventListener("click", function(){sort(b.dataset.sort);});
});
cards.forEach(fill);
filter("all"); sort("id");
document.body.dataset.cards = cards.length; document.body.dataset.drawn = drawn;
document.body.dataset.drawMs = Date.now() - t0; document.body.dataset.ready = "1";
if (location.hash === "#selftest") {  // what a browser test reads back from the DOM (the buttons clicked for real)
  var seen = {};
  document.querySelectorAll("button[data-filter]").forEach(function(b){
    b.click(); seen[b.dataset.filter] = cards.filter(function(c){return c.offsetParent !== null;}).length;
  });
  document.querySelector("button[data-filter=all]").click();
  document.querySelector("button[data-sort=votes]").click();
  seen.first_by_votes = list.querySelector(".card").dataset.task;
  document.getElementById("selftest").textContent = JSON.stringify(seen);
}
})();
"""
