"""Reports: result tables next to published numbers (``tables``), their renderers (``render``) and figures (``plots``)."""
from sidbench.report.plots import plot_training_curves, plot_tradeoff, read_training_log  # noqa: F401
from sidbench.report.render import html_report, render, to_csv, to_html, to_latex, to_markdown  # noqa: F401
from sidbench.report.tables import (MetricColumn, ReportTable, build_table, fd_network, guidance_value,  # noqa: F401
                                    is_reference, load_published, load_results, shown_path)
