var root = document.getElementById("run");
var url = root && root.getAttribute("data-events");
if (!url || !window.EventSource) return;
var phase = document.getElementById("phase");
var bar = document.getElementById("progress");
var text = document.getElementById("progress-text");
var log = document.getElementById("log");
var live = document.getElementById("live");
function set(id, v) {
  var el = document.getElementById(id);
  if (el && v !== undefined && v !== null) el.textContent = String(v);
}
function bytes(n) {
  var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"], i = 0;
  if (n < 1024) return n + " B";
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(1) + " " + units[i];
}
function count(n) { return Number(n).toLocaleString("en-US"); }
function two(n) { return (n < 10 ? "0" : "") + n; }
function secs(t) {
  var h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t % 60;
  return h > 0 ? h + "h" + two(m) + "m" : m > 0 ? m + "m" + two(s) + "s" : s + "s";
}
function describe(p) {
  var parts = [];
  if (p.percent) parts.push(p.percent);
  var files = count(p.filesDone || 0);
  parts.push(p.totalFiles != null
    ? files + " / " + count(p.totalFiles) + " files"
    : files + " files");
  var done = bytes(p.bytesDone || 0);
  parts.push(p.totalBytes != null ? done + " / " + bytes(p.totalBytes) : done);
  if (p.secondsRemaining != null) parts.push("about " + secs(p.secondsRemaining) + " left");
  return parts.join(" \u00b7 ");
}
var source = new EventSource(url);
// A page left for another closes its connection, so that pages kept for the back button do
// not hold the browser's few connections to the controller; one shown again starts afresh.
window.addEventListener("pagehide", function () { source.close(); });
window.addEventListener("pageshow", function (e) { if (e.persisted) location.reload(); });
source.addEventListener("status", function (e) {
  var s;
  try { s = JSON.parse(e.data); } catch (err) { return; }
  if (!s) return;
  if (s.phase) {
    phase.textContent = s.phase;
    phase.className = "badge " + (TONES[s.phase] || "info");
  }
  if (s.progress) {
    var pct = parseFloat(s.progress.percent);
    if (!isNaN(pct)) bar.value = Math.max(0, Math.min(100, pct));
    text.textContent = describe(s.progress);
  }
  set("duration", s.duration);
  set("exit-code", s.exitCode);
  set("snapshot", s.snapshotShortId);
  set("data-added", s.dataAdded);
  set("reason", s.reason);
  set("message", s.message);
  if (FINAL.indexOf(s.phase) >= 0) {
    source.close();
    if (s.phase === "Succeeded") {
      bar.value = 100;
      text.textContent = "Done";
    }
    if (live) live.textContent = "Finished \u2014 reload for the full record";
  }
});
source.addEventListener("log", function (e) {
  var follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.appendChild(document.createTextNode(e.data + "\n"));
  var empty = document.getElementById("log-empty");
  if (empty) empty.parentNode.removeChild(empty);
  if (follow) log.scrollTop = log.scrollHeight;
});
