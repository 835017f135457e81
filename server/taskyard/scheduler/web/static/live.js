// Keep the page's live part current: the scheduler pushes it, rendered,
// whenever what it shows changes (server-sent events; no reload).
"use strict";

function follow(url, region) {
  const source = new EventSource(url);
  source.addEventListener("update", (event) => {
    region.innerHTML = event.data;
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  });
  return source;
}

// A running task's output, appended as it arrives (a lost attempt's
// successor's after a rule); `end` once the request can write no more.
function followLog(log) {
  const source = new EventSource(log.dataset.follow);
  let attempt = null;
  source.addEventListener("attempt", (event) => {
    if (attempt !== null && event.data !== attempt) {
      const rule = document.createElement("span");
      rule.className = "log";
      rule.textContent = `\n--- attempt ${event.data} ---\n`;
      log.append(rule);
    }
    attempt = event.data;
  });
  const stick = () => log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
  source.addEventListener("chunk", (event) => {
    const chunk = JSON.parse(event.data);
    const atEnd = stick();
    const span = document.createElement("span");
    span.className = chunk.stream;
    span.textContent = chunk.text;
    log.append(span);
    if (atEnd) log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("failed", (event) => { log.dataset.failed = event.data; });
  source.addEventListener("end", () => { source.close(); log.dataset.ended = "true"; });
}

const region = document.getElementById("live");
if (region && document.body.dataset.events) follow(document.body.dataset.events, region);
const log = document.getElementById("log");
if (log && log.dataset.follow) followLog(log);
