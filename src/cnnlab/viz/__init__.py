"""What the report and the analyses draw with: HTML pieces (``viz.html``) and matplotlib
figures (``viz.plots``). No knowledge of runs or analyses: both sit above this package."""
