"""HTML reports for people: an evaluation, a `bbox` run, a training run, each one
self-contained file (inline SVG plots, pictures as data URIs, no request of any kind).

`inputs` holds what a run hands over; `eval_page`, `bbox_page` and `training_page` render it;
`failures` names why a box is wrong. matplotlib draws the plots (the ``report`` extra).
"""
