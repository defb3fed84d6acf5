// The kiosk's only script (no inline scripts: the Content-Security-Policy forbids them).
"use strict";

// A form marked data-once sends one request however often its button is clicked.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("form[data-once]")) return;
  if (form.dataset.sent) {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
  // Disabled after this event, so the clicked button's own value still goes with the form.
  setTimeout(() => form.querySelectorAll("button").forEach((button) => { button.disabled = true; }), 0);
});

// The enrolment page: progress and the verdict in words while frames are read, then the result.
function followEnrolment(section) {
  const progress = document.getElementById("progress");
  const good = document.getElementById("good");
  const verdict = document.getElementById("verdict");
  const poll = async () => {
    let snapshot;
    try {
      const response = await fetch(section.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) throw new Error(String(response.status));
      snapshot = await response.json();
    } catch (error) {
      verdict.textContent = "the kiosk does not answer; retrying";
      setTimeout(poll, 1000);
      return;
    }
    progress.max = snapshot.needed;
    progress.value = snapshot.good;
    progress.textContent = `${snapshot.good} of ${snapshot.needed}`;
    good.textContent = snapshot.good;
    verdict.textContent = snapshot.verdict;
    if (snapshot.state === "running") {
      setTimeout(poll, 250);
    } else {
      window.location.reload();
    }
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("job");
  if (section && section.dataset.state === "running") followEnrolment(section);
});
