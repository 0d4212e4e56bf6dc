// The console works without this file; it only saves clicks.
document.addEventListener("DOMContentLoaded", () => {
  // The time zone picker applies as soon as one is chosen.
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  // Actions that cannot be undone ask first.
  for (const button of document.querySelectorAll("[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
});
