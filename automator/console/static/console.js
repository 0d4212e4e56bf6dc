// The console works without this file; it only saves clicks.
document.addEventListener("DOMContentLoaded", () => {
  // Actions that cannot be undone ask first.
  for (const button of document.querySelectorAll("[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
});
