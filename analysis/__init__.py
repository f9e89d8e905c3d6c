"""Experiment directory -> tidy tables, the Figure-2 heatmap, paper-style tables, best pairs.

    results.py     load_results(exp_dir): one row per trial x split x language x metric (final values)
    heatmap.py     delta_matrix / support_query_matrix (gain over the baseline), marked_cells, plot_heatmap
    tables.py      paper_table (Table 3: mean ± std over seeds), to_markdown, to_latex, to_csv
    outcomes.py    load_outcomes(df): per-item outcomes of every finished trial's sets
    stats.py       significance(df, outcomes): paired bootstrap delta, 95% interval, p, adjusted p per cell
    picks.py       best_pairs_dev, best_per_target_dev: chosen on dev, reported on test with interval and p
    power.py       power_table: the smallest detectable gain per target, items or seeds a gain needs
    adaptive_*.py  an adaptive sweep: adaptive_load (its record, cells' fates, outcomes -> Adaptive), adaptive_picks,
                   adaptive_stops, adaptive_compute (the CSVs), adaptive_heatmaps (stopped cells hatched),
                   adaptive_report (adaptive.md and the files)
    analyze.py     analyze(exp_dir, out_dir, Options): every file above, for `xlamaml analyze`

Helpers: trial_info.py (params.json; result.json lines are experiment.reports), aggregate.py (means over seeds,
the matching baseline, dev-based choice among variants), langs.py (language order and aux labels),
corrections.py (Holm, Benjamini-Hochberg), marks.py (the significance of the cells a table or figure shows),
markdown.py (the one Markdown table layout of table.md and adaptive.md).
Means over seeds count finished trials only; where several variants (e.g. learning rates) share a
row, the one with the best mean dev score is shown, never the best on test.
"""
