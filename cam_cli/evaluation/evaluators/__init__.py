"""The evaluators: each section of a report, computed image by image as a source gives them,
through wsolevaluation's two-method seam (`base.Evaluator`: ``accumulate``, ``compute``).

`registry.EVALUATORS` is the one list of them; a new figure is one module here and one line
there.
"""
