// Live countdowns: each element with data-until (an ISO time) shows the time left until then.
function timeLeft(seconds) {
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const two = (n) => String(n).padStart(2, "0");
  return (days ? days + "d " : "") + hours + "h " + two(minutes) + "m " + two(seconds % 60) + "s";
}

function tick() {
  for (const element of document.querySelectorAll("[data-until]")) {
    const seconds = Math.round((Date.parse(element.dataset.until) - Date.now()) / 1000);
    element.textContent = seconds > 0 ? timeLeft(seconds) : "now (refresh)";
  }
}

tick();
setInterval(tick, 1000);
