// The console works without this file; it only saves clicks.

// Seconds a form's answer may take before its buttons come back: the console answers an
// action within a second or two, so by then it is gone or stuck.
const ANSWER_WITHIN = 30;
const NO_ANSWER =
  `The console has not answered within ${ANSWER_WITHIN} seconds, so this may or may not have ` +
  "been done. Reload the page to see, or try again.";

document.addEventListener("DOMContentLoaded", () => {
  // Actions that cannot be undone ask first.
  for (const button of document.querySelectorAll("[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
  // A form is sent once: a second click while the first is on its way would act twice,
  // and the page would show the second answer ("already held") instead of the first's.
  // An answer that never comes gives the buttons back, with a word on why.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "yes";
      for (const button of form.querySelectorAll("button")) button.disabled = true;
      document.querySelector("p.flash.no-answer")?.remove();
      const waiting = window.setTimeout(() => noAnswer(form), ANSWER_WITHIN * 1000);
      form.dataset.waiting = String(waiting);
    });
  }
});

// The form's buttons are back and the page says what happened. The request is not given up:
// should its answer come after all, it opens as usual; sent again, the second replaces it.
function noAnswer(form) {
  sendable(form);
  const said = document.createElement("p");
  said.className = "flash error no-answer";
  said.setAttribute("role", "alert");
  said.textContent = NO_ANSWER;
  document.querySelector("main")?.prepend(said);
}

function sendable(form) {
  window.clearTimeout(Number(form.dataset.waiting));
  delete form.dataset.sent;
  delete form.dataset.waiting;
  for (const button of form.querySelectorAll("button")) button.disabled = false;
}

// Back to a page the browser kept: its forms may be sent again.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  for (const form of document.querySelectorAll("form[data-sent]")) sendable(form);
});
