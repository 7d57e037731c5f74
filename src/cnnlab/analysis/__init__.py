"""Analyses of a run that add their own report sections: the lecture's experiments and the
CNN tree. Each writes ``analysis/<name>.json`` (and plots) into the run folder."""
