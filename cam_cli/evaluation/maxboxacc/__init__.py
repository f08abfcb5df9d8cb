"""MaxBoxAccV2 (Choe et al., CVPR 2020), in one place: its protocols (`protocol`), wsolevaluation's
rules (`wsol_protocol`), the host sweep and its figures (`metric`), the device sweeps of a batch
(`sweep_torch`, `sweep_triton`) and the one that picks between them (`sweeps`), thresholds
carried from another split's report (`carried_thresholds`), and the evaluator `eval` runs
(`evaluator`)."""
