"""Where an evaluation's boxes or maps come from, one module per source: a model run
(`model_run`), the records of a `cam-cli bbox` run (`records`), score maps someone made
(`given_maps`). Each yields the images one by one as `evaluators.base.ScoredImage`, matched to
the ground truth, and says what it left out (`base.Source`).
"""
