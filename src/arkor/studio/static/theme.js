// A classic (blocking) script, run before first paint so a dark-theme user never sees a light
// flash. A file rather than inline: the Content-Security-Policy runs no inline script.
document.documentElement.dataset.theme =
  localStorage.getItem("arkor-studio-theme") ||
  (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
