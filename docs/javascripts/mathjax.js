// MathJax 3 for the whole site.
// - Markdown pages: pymdownx.arithmatex (generic mode) writes each formula as
//   \( ... \) or \[ ... \] inside an element of class "arithmatex".
// - Notebook pages (mkdocs-jupyter): markdown cells keep Jupyter's $ ... $ and $$ ... $$.
// MathJax never looks inside code, pre, script and similar tags (its skipHtmlTags).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  }
};
