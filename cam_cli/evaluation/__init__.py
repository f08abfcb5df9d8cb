"""Localization figures, what `cam-cli eval` computes: `evaluate.evaluate` takes one
`eval_options.EvalOptions` and gives one `report.Report`. The ground truth is loaded in
`truth`, every file read is spared by every output (`inputs`), a source yields the images
(`sources`: a model run, `bbox` records, given score maps) and the evaluators count them
(`evaluators`: the ILSVRC figures, the second box, PxAP; `maxboxacc`: MaxBoxAccV2 in one
place); `table` renders the report for people."""
