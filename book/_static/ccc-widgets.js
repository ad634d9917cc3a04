// Where the ipywidgets html-manager finds its own assets (the widget fonts). Its webpack bundle
// resolves them against the RequireJS URI of its module "@jupyter-widgets/html-manager/dist/…",
// which by default resolves against the *page* (notebooks/@jupyter-widgets/html-manager/dist/*.woff2:
// 404). Map that module path to the vendored copy next to this file (scripts/vendor_assets.sh puts it
// there), so the fonts load offline from any page depth. A global `require` object defined before
// require.js loads is RequireJS's configuration, hence priority 100 in _config.yml (before it).
(function () {
  var me = document.currentScript && document.currentScript.src;
  if (!me) { return; }
  var base = me.replace(/[^\/]*$/, "") + "vendor/html-manager";
  window.__jupyter_widgets_assets_path__ = base + "/";
  var cfg = (typeof window.require === "object" && window.require) || {};
  cfg.paths = cfg.paths || {};
  cfg.paths["@jupyter-widgets/html-manager/dist"] = base;
  // The bundle's own AMD modules (base, controls, ...) take their webpack public path from their
  // RequireJS module URI, and their CSS resolves the fonts against it: map them into the vendored
  // folder too (else half the @font-face rules point at notebooks/@jupyter-widgets/*: 404).
  ["base", "controls", "base7", "controls7", "html-manager"].forEach(function (m) {
    cfg.paths["@jupyter-widgets/" + m] = base + "/" + m;
  });
  window.require = cfg;
})();
